"""The typed ``Config`` (``config/typed.py``) is generated from the settings table and says the truth.

* the checked-in file is what ``python -m mkosi.config.generate`` writes from the table today;
* every setting has exactly one field, typed as its ``Setting.value_type``;
* fixed defaults have the declared type, and the checker used for that (and for the conformance trees, see
  ``tests/conformance/test_config_types.py``) does reject wrong values.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any, cast

import pytest

from mkosi.cli import parse_args
from mkosi.config import generate
from mkosi.config.images import load
from mkosi.config.model import OutputFormat
from mkosi.config.settings import SETTINGS
from mkosi.config.typed import SETTING_FIELDS, Config
from mkosi.config.values import ConfigTree, Drive, KeySource


def test_generated_file_is_current() -> None:
    expected = generate.render()
    current = generate.TARGET.read_text()
    assert current == expected, (
        f"{generate.TARGET} does not match the settings table: run `python -m mkosi.config.generate`"
    )


def test_one_field_per_setting() -> None:
    dests = list(dict.fromkeys(s.dest for s in SETTINGS))
    assert list(SETTING_FIELDS) == dests
    bookkeeping = [name for name, _, _ in generate.BOOKKEEPING]
    assert [f.name for f in dataclasses.fields(Config)] == [*bookkeeping, *dests, "tools"]


def test_field_types_are_the_tables() -> None:
    hints = typing.get_type_hints(Config)
    for s in SETTINGS:
        assert hints[s.dest] == s.value_type, s.name


def test_fixed_defaults_have_the_declared_type() -> None:
    for s in SETTINGS:
        if s.default is not None:
            assert generate.type_problems(copy.deepcopy(s.default), s.value_type, s.name) == []


def test_kind_types_are_concrete() -> None:
    # Every kind states a type; none is Any (an unannotated parser would make the field untyped).
    for s in SETTINGS:
        rendered = generate.render_type(s.value_type, generate.Names())
        assert "Any" not in rendered and "object" not in rendered, s.name


def test_frozen(config: Config) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, "release", "trixie")  # noqa: B010 - what the frozen dataclass refuses
    changed = dataclasses.replace(config, release="trixie")
    assert changed.release == "trixie" and config.release == "bookworm"
    assert changed.values["release"] == "trixie"
    assert set(changed.values) == set(SETTING_FIELDS)


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (None, str),
        ("x", int),
        (True, int),
        (1, str | None),
        (["a", 1], list[str]),
        (("a",), list[str]),
        ({"a": 1}, dict[str, str]),
        (("a", "b"), tuple[str, bool]),
        (("a", True, 1), tuple[str, bool]),
        ("disk", OutputFormat),
        (ConfigTree(Path("/a"), cast(Any, "b")), ConfigTree),
        (KeySource("file", cast(Any, 1)), KeySource),
        (Drive("a", 1, None, None, "a", cast(Any, [1])), Drive),
    ],
)
def test_checker_rejects(value: Any, form: object) -> None:
    assert generate.type_problems(value, form, "x")


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (None, str | None),
        (3, int),
        ([], list[str]),
        ([Path("/a")], list[Path]),
        ({"a": "b"}, dict[str, str]),
        (("a", True), tuple[str, bool]),
        ((1, 2, 3), tuple[int, ...]),
        (OutputFormat.disk, OutputFormat),
        (ConfigTree(Path("/a"), Path("b")), ConfigTree),
    ],
)
def test_checker_accepts(value: Any, form: object) -> None:
    assert generate.type_problems(value, form, "x") == []


def test_checker_checks_a_whole_config(config: Config) -> None:
    assert generate.type_problems(config, Config, "main") == []
    broken = dataclasses.replace(config, tools=dataclasses.replace(config, packages=cast(Any, None)))
    assert generate.type_problems(broken, Config, "main") == ["main.tools.packages: None is not list[str]"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    (tmp_path / "mkosi.conf").write_text(
        "[Distribution]\nDistribution=debian\nRelease=bookworm\n[Content]\nPackages=less\n"
    )
    monkeypatch.chdir(tmp_path)
    args, cli, _ = parse_args(["-C", str(tmp_path), "summary"])
    return load(args, cli)[-1]
