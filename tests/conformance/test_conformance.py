# SPDX-License-Identifier: LGPL-2.1-or-later
"""Conformance of the configuration loader: `mkosi --json summary` against the reference, per fixture.

For every fixture (tests/conformance/trees/* and the corpus trees listed in corpus.json) this runs our
implementation in-process, as `main(["-C", tree, *args, "--json", "summary"])` on a private copy of the
tree, normalises the JSON like regenerate.py did for the reference's output, and compares image by image,
key by key, with expected/<fixture>.json. A fixture fails with one assertion listing every differing key
with both values. Keys only one side knows are reported as warnings (MKOSI_CONFORMANCE_STRICT=1 makes them
failures). known-differences.toml lists tolerated differences, each with a reason.

MKOSI_CONFORMANCE_IMPL=reference runs the reference implementation (see regenerate.py for where it is
looked up) instead of ours: a check of the harness itself, which must pass on every fixture.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent


def _load_normalize() -> Any:
    # Loaded under a unique name: test directories without __init__.py share one module namespace.
    name = "mkosi_conformance_normalize"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "normalize.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


n = _load_normalize()

IMPL = os.environ.get("MKOSI_CONFORMANCE_IMPL", "ours")
STRICT = os.environ.get("MKOSI_CONFORMANCE_STRICT", "") not in ("", "0")
FIXTURES = n.load_fixtures()
KNOWN = n.load_known_differences()


class ConformanceKeyWarning(UserWarning):
    """A key that only one implementation prints (not compared)."""


def _host_mismatch() -> str | None:
    """Some defaults come from the machine (see README.md); fixtures are only valid on a matching one."""
    if not n.HOST_FACTS.exists():
        return None
    recorded = json.loads(n.HOST_FACTS.read_text())
    current = n.host_facts()
    differing = [k for k in recorded if recorded[k] != current.get(k)]
    if not differing:
        return None
    details = ", ".join(f"{k}: fixtures {recorded[k]!r}, here {current.get(k)!r}" for k in differing)
    return f"the fixtures were generated on another kind of host ({details}); run regenerate.py here"


HOST_MISMATCH = _host_mismatch()


# ------------------------------------------------------------------------------------------------------
# Running an implementation


def _apply_environment(fixture: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = n.fixture_environment(fixture)
    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)


def _import_our_main() -> tuple[Any, tuple[Path, ...]]:
    src = n.REPO_ROOT / "src"
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    try:
        from mkosi.__main__ import main  # type: ignore[import-not-found]
    except Exception as e:  # noqa: BLE001 - any failure to import is reported the same way
        pytest.fail(f"cannot import main from mkosi.__main__ ({type(e).__name__}: {e})", pytrace=False)

    import mkosi  # type: ignore[import-not-found]

    resources = Path(mkosi.__file__).resolve().parent / "resources"
    return main, ((resources,) if resources.is_dir() else ())


def run_ours(
    fixture: Any, tree: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str, tuple[Path, ...]]:
    main, resources = _import_our_main()
    _apply_environment(fixture, monkeypatch)
    monkeypatch.chdir(tree)
    capsys.readouterr()

    code: int = 0
    try:
        result = main(["-C", os.fspath(tree), *fixture.args, "--json", "summary"])
        if isinstance(result, int):
            code = result
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)

    out, err = capsys.readouterr()
    return code, out, err, resources


def run_implementation(
    fixture: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Any:
    """Run the implementation under test on a copy of the fixture; return its normalised JSON."""
    tree = n.prepare(fixture, tmp_path)

    if IMPL == "reference":
        pythonpath = n.reference_pythonpath()
        try:
            code, out, err = n.run_reference(fixture, tree, pythonpath)
        except n.ReferenceMissing as e:
            pytest.skip(str(e))
        resources: tuple[Path, ...] = ()
    elif IMPL == "ours":
        code, out, err, resources = run_ours(fixture, tree, monkeypatch, capsys)
    else:
        pytest.fail(f"MKOSI_CONFORMANCE_IMPL must be 'ours' or 'reference', not {IMPL!r}", pytrace=False)

    ctx = n.default_context(tree, resources)
    if code != 0:
        pytest.fail(
            f"{fixture.name}: `mkosi --json summary` exited with {code}; its stderr:\n"
            + n.normalize_stderr(err, ctx),
            pytrace=False,
        )
    try:
        document = json.loads(out)
    except json.JSONDecodeError as e:
        pytest.fail(f"{fixture.name}: stdout is not JSON ({e}):\n{out[:2000]}", pytrace=False)

    return n.normalize(document, ctx, preserve=fixture.preserve)


# ------------------------------------------------------------------------------------------------------
# The conformance test


# Fixtures that need the built-in configurations (mkosi-initrd, mkosi-tools, mkosi-vm, ...) or the default
# initrd and tools tree images derived from them and are expected to fail (strictly: once one passes, remove
# it here). Empty since our own built-in configurations exist (issue 2).
NEEDS_BUILTIN_CONFIGS: set[str] = set()


def _params() -> list[object]:
    reason = "built-in configurations and the default initrd/tools images are not implemented yet"
    return [
        pytest.param(f, id=f.name, marks=pytest.mark.xfail(strict=True, reason=reason))
        if f.name in NEEDS_BUILTIN_CONFIGS and os.environ.get("MKOSI_CONFORMANCE_IMPL") != "reference"
        else pytest.param(f, id=f.name)
        for f in FIXTURES
    ]


@pytest.mark.parametrize("fixture", _params())
def test_conformance(
    fixture: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if HOST_MISMATCH:
        pytest.skip(HOST_MISMATCH)
    if fixture.corpus and not fixture.source.is_dir():
        pytest.fail(
            f"corpus tree {fixture.source} is not available (shared/ beside the repository, or set "
            "MKOSI_CONFORMANCE_CORPUS)",
            pytrace=False,
        )
    if not fixture.expected_json.exists():
        pytest.fail(f"{fixture.expected_json} is missing: run tests/conformance/regenerate.py", pytrace=False)

    expected = json.loads(fixture.expected_json.read_text())
    actual = run_implementation(fixture, tmp_path, monkeypatch, capsys)

    result = n.compare(expected, actual)

    tolerated = [d for d in result.differences if any(k.covers(fixture.name, d) for k in KNOWN)]
    failing = [d for d in result.differences if d not in tolerated]

    for entry in KNOWN:
        if entry.tree == fixture.name and not any(entry.covers(fixture.name, d) for d in result.differences):
            warnings.warn(
                f"{fixture.name}: known difference [{entry.image}] {entry.key} no longer differs; "
                "remove it from known-differences.toml",
                ConformanceKeyWarning,
                stacklevel=1,
            )

    one_sided = []
    if result.only_expected:
        one_sided.append(
            f"{fixture.name}: {len(result.only_expected)} key(s) only the reference prints: "
            + ", ".join(f"[{image}] {key}" for image, key in result.only_expected)
        )
    if result.only_actual:
        one_sided.append(
            f"{fixture.name}: {len(result.only_actual)} key(s) only this implementation prints: "
            + ", ".join(f"[{image}] {key}" for image, key in result.only_actual)
        )
    for message in one_sided:
        warnings.warn(message, ConformanceKeyWarning, stacklevel=1)

    message = n.report(fixture.name, failing) if failing else ""
    if STRICT and one_sided:
        message = "\n".join([message, *one_sided]).strip()

    if message:
        pytest.fail(message, pytrace=False)


# ------------------------------------------------------------------------------------------------------
# Checks of the fixtures and of the harness itself (fast, no implementation involved)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f.name)
def test_config_types(fixture: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The typed Config says the truth: every field of every loaded image (and of the default tools tree)
    holds a value of the type the generated Config declares. A failure means a kind's ``python_type()``, a
    default factory's annotation or the loader is wrong; fix it and run
    ``python -m mkosi.config.generate``."""
    if fixture.corpus and not fixture.source.is_dir():
        pytest.fail(f"corpus tree {fixture.source} is not available", pytrace=False)
    tree = n.prepare(fixture, tmp_path)
    _apply_environment(fixture, monkeypatch)
    monkeypatch.chdir(tree)
    _import_our_main()
    from mkosi.cli import parse_args  # type: ignore[import-not-found]
    from mkosi.config.generate import type_problems  # type: ignore[import-not-found]
    from mkosi.config.images import load  # type: ignore[import-not-found]
    from mkosi.config.typed import Config  # type: ignore[import-not-found]

    args, cli, _ = parse_args(["-C", os.fspath(tree), *fixture.args, "summary"])
    problems = [p for image in load(args, cli) for p in type_problems(image, Config, image.name)]
    assert not problems, "values that do not have their declared type:\n" + "\n".join(problems)


def test_every_fixture_has_expected_output() -> None:
    missing = [f.name for f in FIXTURES if not f.expected_json.exists()]
    assert not missing, f"no expected output (run regenerate.py): {', '.join(missing)}"

    known = {f.expected_json.name for f in FIXTURES} | {f.expected_stderr.name for f in FIXTURES}
    known.add(n.HOST_FACTS.name)
    stale = sorted(p.name for p in n.EXPECTED_DIR.iterdir() if p.name not in known)
    assert not stale, f"expected/ files without a fixture: {', '.join(stale)}"


def test_expected_outputs_are_normalised() -> None:
    leaks = []
    for fixture in FIXTURES:
        if not fixture.expected_json.exists():
            continue
        text = fixture.expected_json.read_text()
        for needle in ("/tmp/", "/var/tmp/", os.fspath(n.REPO_ROOT), os.fspath(n.corpus_dir())):
            if needle in text:
                leaks.append(f"{fixture.name}: contains {needle!r}")
        if text != n.dump(json.loads(text)):
            leaks.append(f"{fixture.name}: not in the canonical form written by regenerate.py")
    assert not leaks, "\n".join(leaks)


SCRIPT_KINDS = ("sync", "prepare", "build", "postinst", "finalize", "postoutput", "clean", "configure")


def _looks_like_script(path: Path) -> bool:
    if path.suffix == ".sh" or path.name == "mkosi.version" and path.read_text().startswith("#!"):
        return True
    return any(
        path.name in (f"mkosi.{kind}", f"mkosi.{kind}.chroot") or path.parent.name == f"mkosi.{kind}.d"
        for kind in SCRIPT_KINDS
    )


def test_trees_are_well_formed() -> None:
    problems = []
    for fixture in FIXTURES:
        if fixture.corpus:
            continue
        root = fixture.source
        if not any((root / p).exists() for p in ("mkosi.conf", "mkosi/mkosi.conf", "mkosi.images")):
            problems.append(f"{fixture.name}: no mkosi.conf, mkosi/mkosi.conf or mkosi.images/")
        for path in root.rglob("*"):
            if path.is_file() and _looks_like_script(path) and not os.access(path, os.X_OK):
                problems.append(f"{fixture.name}: {path.relative_to(root)} is a script but not executable")
    assert not problems, "\n".join(problems)


def test_known_differences_refer_to_fixtures() -> None:
    names = {f.name for f in FIXTURES}
    import fnmatch

    unknown = [k for k in KNOWN if not any(fnmatch.fnmatchcase(name, k.tree) for name in names)]
    assert not unknown, f"known differences for fixtures that do not exist: {unknown}"


def test_normalize_replaces_only_run_specific_values() -> None:
    tree = Path("/somewhere/run-1234/fixture")
    ctx = n.Context(tree=tree, corpus=Path("/data/corpus"), home="/home/alice", user="alice")
    document = {
        "Tools": None,
        "Images": [
            {
                "Image": "sub",
                "Seed": "11111111-1111-1111-1111-111111111111",
                "Files": [f"{tree}/mkosi.conf", "/tmp/tmpabcd1234/resources/mkosi-initrd/mkosi.conf"],
                "Environment": {"HOME_DIR": "/home/alice/x", "TREE_ISH": f"{tree}-other", "USER": "alice"},
                "KernelCommandLine": [f"root={tree}/root", "/data/corpus/x"],
            },
            {"Image": "main", "Seed": "11111111-1111-1111-1111-111111111111", "Output": "image"},
            {"Image": "other", "Seed": "22222222-2222-2222-2222-222222222222"},
        ],
    }
    result = n.normalize(document, ctx)
    sub, main, other = result["Images"]
    assert sub["Seed"] == main["Seed"] == "@SEED-1@" and other["Seed"] == "@SEED-2@"
    assert sub["Files"] == ["@TREE@/mkosi.conf", "@RESOURCES@/mkosi-initrd/mkosi.conf"]
    assert sub["Environment"] == {"HOME_DIR": "@HOME@/x", "TREE_ISH": f"{tree}-other", "USER": "@USER@"}
    assert sub["KernelCommandLine"] == ["root=@TREE@/root", "@CORPUS@/x"]
    assert main["Output"] == "image"

    kept = n.normalize(document, ctx, preserve=["Seed"])
    assert kept["Images"][2]["Seed"] == "22222222-2222-2222-2222-222222222222"


def test_compare_reports_every_difference() -> None:
    expected = {"Tools": None, "Images": [{"Image": "main", "A": 1, "B": [1, 2], "OnlyRef": 0}]}
    actual = {"Tools": None, "Images": [{"Image": "main", "A": 2, "B": [2, 3], "OnlyOurs": 0}]}
    result = n.compare(expected, actual)
    assert [(d.image, d.key) for d in result.differences] == [("main", "A"), ("main", "B")]
    assert result.only_expected == [("main", "OnlyRef")]
    assert result.only_actual == [("main", "OnlyOurs")]
    text = n.report("t", result.differences)
    assert "[main] A:" in text and "missing [1]" in text and "unexpected [3]" in text

    reordered = n.compare(
        {"Images": [{"Image": "a"}, {"Image": "main"}]}, {"Images": [{"Image": "main"}, {"Image": "a"}]}
    )
    assert [d.key for d in reordered.differences] == ["(image order)"]
