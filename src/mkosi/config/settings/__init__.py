"""The settings table: every setting of every section, assembled into one registry."""

from __future__ import annotations

from mkosi.config.settings import build, config, content, distribution, output, runtime, validation
from mkosi.config.settings.base import Scope, Setting

SETTINGS: tuple[Setting, ...] = (
    *config.SETTINGS,
    *distribution.SETTINGS,
    *output.SETTINGS,
    *content.SETTINGS,
    *validation.SETTINGS,
    *build.SETTINGS,
    *runtime.SETTINGS,
)

BY_NAME: dict[str, Setting] = {}
for _s in SETTINGS:
    BY_NAME[_s.name] = _s
    for _old in _s.old_names:
        BY_NAME.setdefault(_old, _s)
BY_DEST: dict[str, Setting] = {s.dest: s for s in SETTINGS}
BY_SPECIFIER: dict[str, Setting] = {s.specifier: s for s in SETTINGS if s.specifier}
SECTIONS: frozenset[str] = frozenset(s.section for s in SETTINGS) | {"Host"}

__all__ = ["BY_DEST", "BY_NAME", "BY_SPECIFIER", "SECTIONS", "SETTINGS", "Scope", "Setting"]
