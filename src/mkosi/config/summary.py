"""The human summary and the JSON of loaded images (``summary``, ``--json summary``, ``cat-config``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mkosi.config.settings import SETTINGS, Scope, Setting
from mkosi.config.specifiers import build_subdir
from mkosi.config.typed import Config


def in_json(s: Setting) -> bool:
    return s.in_json and s.scope != Scope.tools


def image_json(image: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if in_json(s):
            out[s.name] = s.kind.to_json(getattr(image, s.dest))
    out["Files"] = [str(p) for p in image.files]
    out["Image"] = image.name
    if (subdir := build_subdir(image)) is not None:
        out["BuildSubdirectory"] = str(subdir)
    return out


def summary_json(images: Sequence[Config]) -> str:
    tools = images[-1].tools if images else None
    document = {"Images": [image_json(i) for i in images], "Tools": image_json(tools) if tools else None}
    return json.dumps(document, indent=4, sort_keys=True)


def summary_text(images: Sequence[Config], origins: bool = False) -> str:
    lines: list[str] = []
    width = max(len(s.name) for s in SETTINGS)
    for image in images:
        lines.append(f"IMAGE: {image.name}")
        section = None
        for s in SETTINGS:
            if not in_json(s):
                continue
            if s.section != section:
                section = s.section
                lines.append("")
                lines.append(f"    {section.upper()}:")
            text = s.kind.to_text(getattr(image, s.dest)).splitlines() or [""]
            where = ""
            if origins and s.dest in image.origins:
                where = "    ← " + ", ".join(str(o) for o in image.origins[s.dest])
            lines.append(f"    {s.name:>{width}}: {text[0]}{where}")
            lines += [f"    {'':>{width}}  {t}" for t in text[1:]]
        if origins:
            lines.append("")
            lines.append("    FILES READ:")
            lines += [f"    {p}" for p in image.files] or ["    (none)"]
            if image.match_notes:
                lines.append("")
                lines.append("    SKIPPED BY [Match]:")
                lines += [f"    {note}" for note in image.match_notes]
        lines.append("")
    return "\n".join(lines)


def cat_config(images: Sequence[Config]) -> str:
    chunks: list[str] = []
    for image in images:
        for path in image.files:
            chunks.append(f"# {path}\n{path.read_text().rstrip()}\n")
    return "\n".join(chunks)
