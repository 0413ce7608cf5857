# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared machinery of the configuration-loader conformance suite.

Used by regenerate.py (which runs the reference implementation and writes expected/*.json) and by
test_conformance.py (which runs this project's implementation and compares against those files).

A fixture is a configuration tree plus the command-line arguments and environment variables to run
`mkosi --json summary` with:

* trees/<name>/ : a small tree written for this suite. Optional files beside the configuration (mkosi
  ignores files it does not know):
    args   JSON list of extra command-line arguments, put between `-C <tree>` and `--json summary`
    env    JSON object of environment variables to set
    modes  JSON object {relative path: "0600"}: file modes git cannot store (secret files must not be
           readable by others, or mkosi refuses them)
    preserve  JSON list of keys normalize() must leave alone (a tree that configures Seed= itself)
* corpus.json: real-world trees read from <repository>/../shared/corpus/<path> (never copied into the
  project), each with its own args and env.

Both implementations are run on a private copy of the fixture (same base name, so the default Machine=
is unchanged), with cwd = the copy and `-C <copy>`, in the environment built by fixture_environment().

normalize() rewrites ONLY what is random or specific to the host or the run, each for the reason written
beside it. Everything else is compared verbatim.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFORMANCE_DIR = Path(__file__).resolve().parent
REPO_ROOT = CONFORMANCE_DIR.parent.parent
TREES_DIR = CONFORMANCE_DIR / "trees"
EXPECTED_DIR = CONFORMANCE_DIR / "expected"
CORPUS_MANIFEST = CONFORMANCE_DIR / "corpus.json"
KNOWN_DIFFERENCES = CONFORMANCE_DIR / "known-differences.toml"
HOST_FACTS = EXPECTED_DIR / "HOST.json"

DEFAULT_REFERENCE = Path("/var/tmp/mkosi-reference/usr/lib/python3/dist-packages")

# Name under which the top-level "Tools" object of the summary is compared, as if it were an image.
TOOLS = "(tools)"

# Files in a tree that describe how to run it; they are not configuration.
CONTROL_FILES = ("args", "env", "modes", "preserve")


def corpus_dir() -> Path:
    """Where the real-world trees are: shared/corpus beside the repository (CI lays a copy there)."""
    if d := os.environ.get("MKOSI_CONFORMANCE_CORPUS"):
        return Path(d)
    return REPO_ROOT.parent / "shared" / "corpus"


def reference_pythonpath(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if p := os.environ.get("MKOSI_REFERENCE_PYTHONPATH"):
        return Path(p)
    return DEFAULT_REFERENCE


# ----------------------------------------------------------------------------------------------------------
# Fixtures


@dataclass(frozen=True)
class Fixture:
    name: str
    source: Path
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    modes: Mapping[str, int] = field(default_factory=dict)
    preserve: tuple[str, ...] = ()
    corpus: bool = False
    description: str = ""

    @property
    def expected_json(self) -> Path:
        return EXPECTED_DIR / f"{self.name}.json"

    @property
    def expected_stderr(self) -> Path:
        return EXPECTED_DIR / f"{self.name}.stderr"


def _read_json(path: Path, kind: type) -> Any:
    value = json.loads(path.read_text())
    if not isinstance(value, kind):
        raise ValueError(f"{path}: expected a JSON {kind.__name__}")
    return value


def load_tree(path: Path) -> Fixture:
    args = _read_json(path / "args", list) if (path / "args").exists() else []
    env = _read_json(path / "env", dict) if (path / "env").exists() else {}
    modes = _read_json(path / "modes", dict) if (path / "modes").exists() else {}
    preserve = _read_json(path / "preserve", list) if (path / "preserve").exists() else []
    if not all(isinstance(a, str) for a in args):
        raise ValueError(f"{path}/args: every argument must be a string")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError(f"{path}/env: keys and values must be strings")
    return Fixture(
        name=path.name,
        source=path,
        args=tuple(args),
        env=dict(env),
        modes={k: int(v, 8) for k, v in modes.items()},
        preserve=tuple(preserve),
    )


def load_fixtures(names: Iterable[str] = ()) -> list[Fixture]:
    fixtures = [load_tree(p) for p in sorted(TREES_DIR.iterdir()) if p.is_dir()]

    for name, entry in _read_json(CORPUS_MANIFEST, dict).items():
        fixtures.append(
            Fixture(
                name=name,
                source=corpus_dir() / entry["path"],
                args=tuple(entry.get("args", [])),
                env=dict(entry.get("env", {})),
                corpus=True,
                description=entry.get("description", ""),
            )
        )

    if names := list(names):
        unknown = set(names) - {f.name for f in fixtures}
        if unknown:
            raise KeyError(f"unknown fixtures: {', '.join(sorted(unknown))}")
        fixtures = [f for f in fixtures if f.name in names]

    return fixtures


def prepare(fixture: Fixture, workdir: Path) -> Path:
    """Copy the fixture into workdir/<basename of its source> and return the (resolved) copy.

    Copying keeps the repository and shared/ untouched whatever either implementation does, lets us set
    modes git cannot store, and keeps the directory's base name (the default of Machine=).
    """
    if not fixture.source.is_dir():
        raise FileNotFoundError(f"fixture {fixture.name}: {fixture.source} is not a directory")

    dest = workdir / fixture.source.name
    shutil.copytree(fixture.source, dest, symlinks=True)
    for control in CONTROL_FILES:
        if not fixture.corpus and (dest / control).is_file():
            (dest / control).unlink()
    for rel, mode in fixture.modes.items():
        os.chmod(dest / rel, mode)
    if fixture.corpus:
        # shared/ is laid out without write bits; give the owner write access back on the private copy.
        for p in [dest, *dest.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return dest.resolve()


# Variables the reference consults while computing defaults that would make the result depend on the
# machine or the calling shell rather than on the tree: the proxy settings (ProxyUrl=, ProxyExclude=),
# SOURCE_DATE_EPOCH (SourceDateEpoch=), and mkosi's own MKOSI_* switches (MKOSI_HOST_DISTRIBUTION and
# MKOSI_HOST_RELEASE replace the host's os-release, MKOSI_IN_BOX changes ToolsTree=, ...). A fixture that
# wants one of them sets it in its env file.
SCRUBBED_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "SOURCE_DATE_EPOCH",
    "SYSEXT_SCOPE",
    "CONFEXT_SCOPE",
    "GNUPGHOME",
)


def scrubbed(name: str) -> bool:
    return name in SCRUBBED_VARIABLES or name.startswith("MKOSI_")


def fixture_environment(fixture: Fixture, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if not scrubbed(k)}
    env.update(fixture.env)
    return env


# ----------------------------------------------------------------------------------------------------------
# Running the reference implementation


class ReferenceMissing(RuntimeError):
    pass


def run_reference(fixture: Fixture, tree: Path, pythonpath: Path) -> tuple[int, str, str]:
    """Run the reference in the prepared copy `tree`; return (exit code, stdout, stderr)."""
    if not (pythonpath / "mkosi" / "__init__.py").is_file():
        raise ReferenceMissing(
            f"the reference implementation is not at {pythonpath}: run tools/reference-mkosi.sh "
            "(or pass --reference / set MKOSI_REFERENCE_PYTHONPATH)"
        )

    env = fixture_environment(fixture)
    env["PYTHONPATH"] = os.fspath(pythonpath)
    env.pop("PYTHONHOME", None)
    # The reference pages only on a terminal; make sure it never does.
    env["PAGER"] = "cat"
    env["SYSTEMD_PAGER"] = "cat"

    proc = subprocess.run(
        [sys.executable, "-m", "mkosi", "-C", os.fspath(tree), *fixture.args, "--json", "summary"],
        cwd=tree,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


# ----------------------------------------------------------------------------------------------------------
# Normalisation


@dataclass(frozen=True)
class Context:
    """What is specific to one run: where the fixture was copied to, where the corpus lives, ..."""

    tree: Path
    corpus: Path | None = None
    resources: tuple[Path, ...] = ()
    home: str | None = None
    user: str | None = None


# Builtin configurations (mkosi-initrd, mkosi-tools, mkosi-vm, ...) are read from the implementation's
# resources directory. The reference unpacks its resources into a fresh temporary directory on every run
# (/tmp/tmpXXXXXXXX/resources), and this project keeps them wherever its package lives, so the directory
# holding the builtin configurations is replaced by @RESOURCES@. It is recognised by what follows it.
RESOURCES_RE = re.compile(r"(?P<root>/(?:[^/\s\"':]+/)*?resources)/(?=mkosi-[a-z0-9-]+(?:/|$))")

SEED_KEYS = ("Seed",)


def _path_re(prefix: str) -> re.Pattern[str]:
    # A path prefix only counts where it ends a path component.
    return re.compile(re.escape(prefix) + r"(?=/|$|[\s\"':,;=])")


def _replacements(ctx: Context) -> list[tuple[re.Pattern[str], str]]:
    pairs: list[tuple[str, str]] = []

    def add(path: Path | str | None, token: str) -> None:
        if path is None:
            return
        for p in {os.fspath(path), os.fspath(Path(path).resolve())}:
            if p not in ("", "/"):
                pairs.append((p, token))

    # The private copy of the fixture: its absolute path differs on every run.
    add(ctx.tree, "@TREE@")
    # The shared corpus: where shared/ is laid out differs between machines (and CI).
    add(ctx.corpus, "@CORPUS@")
    for r in ctx.resources:
        add(r, "@RESOURCES@")
    # The home directory only appears through ~ expansion, and differs between users and machines.
    add(ctx.home, "@HOME@")

    # Longest first, so that a tree inside the home directory becomes @TREE@, not @HOME@/....
    pairs.sort(key=lambda kv: len(kv[0]), reverse=True)
    return [(_path_re(p), token) for p, token in pairs]


def _normalize_string(s: str, replacements: list[tuple[re.Pattern[str], str]], ctx: Context) -> str:
    for regex, token in replacements:
        s = regex.sub(token, s)
    s = RESOURCES_RE.sub("@RESOURCES@/", s)
    # The user name is only normalised where it is a whole value, never inside other text, and not when it
    # is root: everyone in this workplace (developers and CI) runs as root, and "root" is also a word that
    # appears in real values (root=, RootShell=, ...).
    if ctx.user and ctx.user != "root" and s == ctx.user:
        s = "@USER@"
    return s


def normalize(document: Any, ctx: Context, *, preserve: Iterable[str] = ()) -> Any:
    """Normalise a `mkosi --json summary` document (the parsed JSON) and return the new document.

    Seed= is random when not configured: each distinct seed becomes @SEED-1@, @SEED-2@, ... in order of
    first appearance (Tools, then Images in order), so that which images share a seed is still compared.
    A fixture that configures the seed itself can keep it with preserve=["Seed"].
    """
    replacements = _replacements(ctx)
    keep = set(preserve)
    seeds: dict[str, str] = {}

    def walk(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {walk(k, None): walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if key in SEED_KEYS and key not in keep:
                return seeds.setdefault(value, f"@SEED-{len(seeds) + 1}@")
            return _normalize_string(value, replacements, ctx)
        return value

    return walk(document, None)


def default_context(tree: Path, resources: Iterable[Path] = ()) -> Context:
    return Context(
        tree=tree,
        corpus=corpus_dir(),
        resources=tuple(resources),
        home=os.path.expanduser("~"),
        user=os.environ.get("USER") or os.environ.get("LOGNAME"),
    )


def normalize_stderr(text: str, ctx: Context) -> str:
    replacements = _replacements(ctx)
    lines = []
    for line in text.splitlines():
        lines.append(_normalize_string(line, replacements, ctx))
    return "\n".join(lines) + ("\n" if lines else "")


def dump(document: Any) -> str:
    return json.dumps(document, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Comparison


def images_by_name(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary as {image name: settings}, with the tools tree (if any) under TOOLS."""
    result: dict[str, dict[str, Any]] = {}
    if document.get("Tools") is not None:
        result[TOOLS] = document["Tools"]
    for image in document.get("Images") or []:
        result[str(image.get("Image"))] = image
    return result


def image_order(document: Mapping[str, Any]) -> list[str]:
    return [str(image.get("Image")) for image in document.get("Images") or []]


@dataclass
class Difference:
    image: str
    key: str
    expected: Any
    actual: Any


@dataclass
class Comparison:
    differences: list[Difference] = field(default_factory=list)
    # (image, key) pairs only one side has; they are reported, not failures.
    only_expected: list[tuple[str, str]] = field(default_factory=list)
    only_actual: list[tuple[str, str]] = field(default_factory=list)


MISSING = "<no such image>"


def compare(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> Comparison:
    result = Comparison()
    exp, act = images_by_name(expected), images_by_name(actual)

    # Which images exist and the order they are built in are part of the configuration's meaning.
    if image_order(expected) != image_order(actual):
        result.differences.append(
            Difference("*", "(image order)", image_order(expected), image_order(actual))
        )
    if (TOOLS in exp) != (TOOLS in act):
        result.differences.append(Difference(TOOLS, "(present)", TOOLS in exp, TOOLS in act))

    for name in [n for n in exp if n in act]:
        e, a = exp[name], act[name]
        for key in sorted(set(e) | set(a)):
            if key not in a:
                result.only_expected.append((name, key))
            elif key not in e:
                result.only_actual.append((name, key))
            elif e[key] != a[key]:
                result.differences.append(Difference(name, key, e[key], a[key]))

    return result


@dataclass(frozen=True)
class KnownDifference:
    tree: str
    image: str
    key: str
    reason: str

    def covers(self, tree: str, d: Difference) -> bool:
        import fnmatch

        return (
            fnmatch.fnmatchcase(tree, self.tree)
            and fnmatch.fnmatchcase(d.image, self.image)
            and fnmatch.fnmatchcase(d.key, self.key)
        )


def load_known_differences(path: Path = KNOWN_DIFFERENCES) -> list[KnownDifference]:
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    entries = []
    for i, entry in enumerate(data.get("difference", [])):
        missing = {"tree", "image", "key", "reason"} - set(entry)
        if missing:
            raise ValueError(f"{path}: entry {i + 1} lacks {', '.join(sorted(missing))}")
        if not str(entry["reason"]).strip():
            raise ValueError(f"{path}: entry {i + 1} needs a reason")
        entries.append(KnownDifference(entry["tree"], entry["image"], entry["key"], entry["reason"]))
    return entries


def _show(value: Any, limit: int = 2000) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _list_delta(expected: list[Any], actual: list[Any]) -> str:
    missing = [v for v in expected if v not in actual]
    extra = [v for v in actual if v not in expected]
    parts = []
    if missing:
        parts.append(f"missing {_show(missing, 600)}")
    if extra:
        parts.append(f"unexpected {_show(extra, 600)}")
    if not parts:
        parts.append("same items, different order")
    return "; ".join(parts)


def report(tree: str, differences: list[Difference]) -> str:
    lines = [f"{tree}: {len(differences)} key(s) differ from the reference (expected = reference):"]
    for d in differences:
        lines.append(f"  [{d.image}] {d.key}:")
        lines.append(f"      expected {_show(d.expected)}")
        lines.append(f"      actual   {_show(d.actual)}")
        if isinstance(d.expected, list) and isinstance(d.actual, list):
            lines.append(f"      ({_list_delta(d.expected, d.actual)})")
    return "\n".join(lines)


def host_facts() -> dict[str, Any]:
    """Facts of the machine that some defaults come from (see the report in regenerate.py)."""
    import platform

    osrel: dict[str, str] = {}
    for candidate in (Path("/etc/os-release"), Path("/usr/lib/os-release")):
        if candidate.exists():
            for line in candidate.read_text().splitlines():
                k, sep, v = line.partition("=")
                if sep and k in ("ID", "VERSION_ID", "VERSION_CODENAME"):
                    osrel[k] = v.strip().strip("\"'")
            break

    try:
        systemd = subprocess.run(
            ["systemctl", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[1]
    except (OSError, IndexError):
        systemd = None

    return {
        "os-release": osrel,
        "machine": platform.machine(),
        "systemd": systemd,
        "ca-bundle": [
            p
            for p in ("/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt")
            if Path(p).exists()
        ],
    }
