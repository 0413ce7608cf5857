"""What the settings tests (tests/unit/test_settings_*.py) share: finding the reference mkosi, running its
parsers, the table against the facts fixture, and the differential tests a section's module subclasses.

The reference is Debian's mkosi, unpacked by tools/reference-mkosi.sh; it is found at
$MKOSI_REFERENCE_PYTHONPATH (its dist-packages directory), below $MKOSI_REFERENCE (the directory it was
unpacked into), or in one of REFERENCE_CANDIDATES. It runs in a subprocess, so its ``mkosi`` package never
meets ours: a helper script reads a request as JSON on stdin and prints its answer as JSON.

A test module subclasses ``EffectiveValueChecks`` or ``ParsedValueChecks`` as ``Test<Section>``, with the
section's name, its cases and the files they refer to; the tests themselves live here.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mkosi.config import model
from mkosi.config.settings import BY_NAME, SETTINGS
from mkosi.config.settings.base import Setting
from mkosi.config.values import ValueProblem

DATA = Path(__file__).resolve().parent.parent / "data"

#: The reference's dist-packages directory where tools/reference-mkosi.sh puts it (its default first).
REFERENCE_CANDIDATES = (
    Path("/var/tmp/mkosi-reference/usr/lib/python3/dist-packages"),
    Path("/opt/ref/root/usr/lib/python3/dist-packages"),
)

#: How long a helper may take.
REFERENCE_TIMEOUT = 60


def reference_pythonpath() -> Path:
    candidates = list(REFERENCE_CANDIDATES)
    if root := os.environ.get("MKOSI_REFERENCE"):
        candidates.insert(0, Path(root) / "usr/lib/python3/dist-packages")
    if path := os.environ.get("MKOSI_REFERENCE_PYTHONPATH"):
        candidates.insert(0, Path(path))
    for candidate in candidates:
        if (candidate / "mkosi" / "config.py").is_file():
            return candidate
    pytest.fail(
        "the reference mkosi is needed for this test (looked in "
        + ", ".join(map(str, candidates))
        + "): run tools/reference-mkosi.sh, or point MKOSI_REFERENCE_PYTHONPATH at its dist-packages"
    )


def run_reference(
    helper: str, request: Any, cwd: Path, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run ``helper`` under the reference's Python path in ``cwd`` (with ``env``, else our environment)."""
    environment = dict(os.environ if env is None else env, PYTHONPATH=str(reference_pythonpath()))
    result = subprocess.run(
        [sys.executable, "-c", helper],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=REFERENCE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"reference helper failed:\n{result.stderr}"
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def fixture_path(section: str) -> Path:
    """The facts checked into tests/data for a section (written once from the reference's facts.json)."""
    return DATA / f"settings-{section.lower()}.json"


@functools.cache
def load_facts(section: str) -> list[dict[str, Any]]:
    """The fixture's rows, one a setting, in the reference's order."""
    data = json.loads(fixture_path(section).read_text())
    rows: list[dict[str, Any]] = data["settings"] if isinstance(data, dict) else data
    return rows


def section_settings(section: str) -> list[Setting]:
    return [s for s in SETTINGS if s.section == section]


def check_facts(setting: Setting, fact: dict[str, Any], section: str, *, kind_metavar: bool = False) -> None:
    """The setting against its row of the fixture.

    Every fixture has the columns checked first; ``nullable``, ``has_default_factory`` and ``metavar`` are
    checked where the fixture has them. With ``kind_metavar`` a metavar may come from the setting's kind and
    an empty one is not checked; without, the setting itself must name it.
    """
    assert setting.name == fact["name"]
    assert setting.section == fact["section"] == section, setting.name
    assert setting.scope.value == fact["scope"], setting.name
    assert setting.short == fact["short"], setting.name
    assert setting.long_option == fact["long"], setting.name
    assert list(setting.long_aliases) == fact["long_aliases"], setting.name
    assert list(setting.old_names) == fact["old_names"], setting.name
    assert setting.specifier == fact["specifier"], setting.name
    assert list(setting.paths) == fact["paths"], setting.name
    assert list(setting.path_globs) == fact["path_globs"], setting.name
    assert setting.path_read_text == fact["path_read_text"], setting.name
    assert setting.path_secret == fact["path_secret"], setting.name
    assert setting.tools == fact["tools"], setting.name
    assert setting.matchable == fact["match"], setting.name
    if "nullable" in fact:
        assert setting.kind.nullable == fact["nullable"], setting.name
    if "has_default_factory" in fact:
        assert (setting.default_factory is not None) == fact["has_default_factory"], setting.name
    if "metavar" in fact:
        if kind_metavar:
            if fact["metavar"]:
                assert (setting.metavar or setting.kind.metavar) == fact["metavar"], setting.name
        elif fact["metavar"] is not None:
            assert setting.metavar == fact["metavar"], setting.name
    assert setting.help and "\n" not in setting.help, setting.name


def parse(setting: Setting, texts: Iterable[str]) -> Any:
    """Our value after assigning ``texts`` one after the other."""
    value = None
    for text in texts:
        value = setting.kind.parse(text, value)
    return value


# ---------------------------------------------------------------------------------------------------------
# The differential tests of one section.


class SectionChecks:
    """A section's settings parsed by ours and by the reference; subclassed once a section as ``Test…``.

    Tests take ``case`` (an index into CASES), ``factory_case`` (into FACTORY_CASES) or ``name`` (a setting's
    name, from ``names()``), and the ``tree`` and ``reference`` fixtures.
    """

    SECTION: ClassVar[str]
    #: Each case is a setting and the texts assigned to it one after the other.
    #: Relative paths name the files ``make_tree`` makes.
    CASES: ClassVar[list[tuple[str, list[str]]]]
    #: Default factories and the namespace they are called with (enum values by value, paths as strings).
    FACTORY_CASES: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    #: Run by the reference's Python: reads the request on stdin, prints the answer as JSON.
    HELPER: ClassVar[str]

    @staticmethod
    def make_tree(root: Path) -> None:
        """The files the cases refer to."""

    @classmethod
    def settings(cls) -> list[Setting]:
        return section_settings(cls.SECTION)

    @classmethod
    def names(cls) -> list[str]:
        return [s.name for s in cls.settings()]

    @classmethod
    def factory_case_ids(cls) -> list[str]:
        return [f"{name}-{i}" for i, (name, _) in enumerate(cls.FACTORY_CASES)]

    def reference_request(self) -> dict[str, Any]:
        return {"cases": self.CASES, "factories": self.FACTORY_CASES, "names": self.names()}

    def reference_environment(self) -> dict[str, str]:
        return dict(os.environ)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" in metafunc.fixturenames:
            ids = [f"{name}={'|'.join(texts)}" for name, texts in self.CASES]
            metafunc.parametrize("case", range(len(self.CASES)), ids=ids)
        if "factory_case" in metafunc.fixturenames:
            ids = self.factory_case_ids()
            metafunc.parametrize("factory_case", range(len(self.FACTORY_CASES)), ids=ids)
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", self.names())

    # Class-scoped fixtures run once per class, so they are class methods; the hooks they call only read
    # class attributes, through an instance of their own.
    @pytest.fixture(scope="class")
    @classmethod
    def tree(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        root = tmp_path_factory.mktemp(f"settings-{cls.SECTION.lower()}")
        cls().make_tree(root)
        return root

    @pytest.fixture(scope="class")
    @classmethod
    def reference(cls, tree: Path) -> dict[str, Any]:
        helper = cls()
        return run_reference(cls.HELPER, helper.reference_request(), tree, helper.reference_environment())


#: EffectiveValueChecks' helper: values in the reference's own JSON encoding, or the error it died of.
EFFECTIVE_VALUE_HELPER = r"""
import dataclasses, json, sys
import mkosi.config as C

def plain(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v, dict_factory=C.dict_with_capitalised_keys_factory)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v

def enc(v):
    return json.loads(json.dumps(plain(v), cls=C.JsonEncoder))

req = json.load(sys.stdin)
by_name = {s.name: s for s in C.SETTINGS}
out = {"cases": [], "unset": {}, "defaults": {}, "factories": []}

for name, texts in req["cases"]:
    s = by_name[name]
    value = None
    try:
        for text in texts:
            value = s.parse(text, value)
    except (SystemExit, Exception) as e:
        out["cases"].append({"error": f"{type(e).__name__}: {e}"})
    else:
        out["cases"].append({"value": enc(value)})

for name in req["names"]:
    s = by_name[name]
    out["unset"][name] = enc(s.parse(None, None))
    if s.default_factory is not None:
        out["defaults"][name] = None
    elif s.default is not None:
        out["defaults"][name] = enc(s.default)
    else:
        out["defaults"][name] = enc(s.parse(None, None))

for name, ns in req["factories"]:
    ns = dict(ns)
    ns.setdefault("image", "main")
    ns.setdefault("directory", None)
    for key, cls in req["enums"].items():
        if ns.get(key) is not None:
            ns[key] = getattr(C, cls)(ns[key])
    out["factories"].append(enc(by_name[name].default_factory(ns)))

json.dump(out, sys.stdout)
"""

DEFAULT = "<default>"


def effective(value: Any, nullable: bool, unset: Any) -> Any:
    """What the value becomes in the configuration: a reset either empties it or brings the default."""
    if value is not None:
        return value
    return unset if nullable else DEFAULT


class EffectiveValueChecks(SectionChecks):
    """Values as they end up in the configuration (a reset is the default or empty), against the reference's
    own JSON encoding of them; where the reference refuses a value we must raise ``ValueProblem``. The facts
    fixture (every one of the section's settings, in any order) allows metavars from the kinds."""

    HELPER = EFFECTIVE_VALUE_HELPER
    #: Namespace entries that hold enums: the attribute name → the enum's class name (same in both packages).
    FACTORY_ENUMS: ClassVar[dict[str, str]] = {}
    #: Settings whose fixed default is random: only the kind of value is compared.
    RANDOM_DEFAULTS: ClassVar[set[str]] = set()

    @staticmethod
    def make_tree(root: Path) -> None:
        """dir/, script.sh, clean.d/{a,b}.sh, secret.key (0600), open.key (0644) and cert.crt."""
        (root / "dir").mkdir()
        (root / "script.sh").write_text("#!/bin/sh\n")
        (root / "clean.d").mkdir()
        (root / "clean.d/a.sh").write_text("#!/bin/sh\n")
        (root / "clean.d/b.sh").write_text("#!/bin/sh\n")
        (root / "secret.key").write_text("key\n")
        (root / "secret.key").chmod(0o600)
        (root / "open.key").write_text("key\n")
        (root / "open.key").chmod(0o644)
        (root / "cert.crt").write_text("cert\n")

    @classmethod
    def facts(cls) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in load_facts(cls.SECTION)}

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls.facts())

    @classmethod
    def factory_case_ids(cls) -> list[str]:
        return [f"{name}-{sorted(ns.items())}" for name, ns in cls.FACTORY_CASES]

    def reference_request(self) -> dict[str, Any]:
        names = [s.name for s in self.settings()]
        return {
            "cases": self.CASES,
            "names": names,
            "factories": self.FACTORY_CASES,
            "enums": self.FACTORY_ENUMS,
        }

    def test_every_setting_of_the_section_is_in_the_table(self) -> None:
        assert {s.name for s in self.settings()} == set(self.facts())

    def test_static_facts(self, name: str) -> None:
        check_facts(BY_NAME[name], self.facts()[name], self.SECTION, kind_metavar=True)

    def test_parse_agrees_with_reference(
        self, case: int, reference: dict[str, Any], tree: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        name, texts = self.CASES[case]
        setting = BY_NAME[name]
        answer = reference["cases"][case]
        monkeypatch.chdir(tree)

        if "error" in answer:
            with pytest.raises(ValueProblem):
                parse(setting, texts)
            return

        nullable = self.facts()[name]["nullable"]
        theirs = effective(answer["value"], nullable, reference["unset"][name])
        value = parse(setting, texts)
        ours = effective(
            None if value is None else setting.kind.to_json(value),
            setting.kind.nullable,
            setting.kind.to_json(setting.kind.unset()),
        )
        assert ours == theirs

    def test_unset_and_default_agree_with_reference(self, name: str, reference: dict[str, Any]) -> None:
        setting = BY_NAME[name]
        assert setting.kind.to_json(setting.kind.unset()) == reference["unset"][name]
        if setting.default_factory is not None:
            return
        default = setting.default if setting.default is not None else setting.kind.unset()
        if name in self.RANDOM_DEFAULTS:
            uuid.UUID(setting.kind.to_json(default))
            uuid.UUID(reference["defaults"][name])
        else:
            assert setting.kind.to_json(default) == reference["defaults"][name]

    def test_default_factory_agrees_with_reference(
        self, factory_case: int, reference: dict[str, Any]
    ) -> None:
        name, ns = self.FACTORY_CASES[factory_case]
        setting = BY_NAME[name]
        assert setting.default_factory is not None
        namespace: dict[str, Any] = {"image": "main", "directory": None, **ns}
        for key, cls in self.FACTORY_ENUMS.items():
            if namespace.get(key) is not None:
                namespace[key] = getattr(model, cls)(namespace[key])
        assert set(setting.depends) <= set(namespace)
        expected = reference["factories"][factory_case]
        assert setting.kind.to_json(setting.default_factory(namespace)) == expected


#: ParsedValueChecks' helper: {"ok", "value"} in a JSON encoding of its own, or {"ok": False, "error"}.
PARSED_VALUE_HELPER = r"""
import dataclasses, enum, json, sys, uuid
from pathlib import Path
from mkosi.config import SETTINGS_LOOKUP_BY_NAME as SETTINGS
from mkosi.distribution import Distribution

def enc(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"".join(p.capitalize() for p in f.name.split("_")): enc(getattr(v, f.name))
                for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (Path, uuid.UUID)):
        return str(v)
    return v

def attempt(fn):
    try:
        return {"ok": True, "value": enc(fn())}
    except BaseException as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}

def run_case(name, texts):
    value = None
    for text in texts:
        value = SETTINGS[name].parse(text, value)
    return value

def namespace(ns):
    out = {}
    for k, v in ns.items():
        if k in ("distribution", "tools_tree_distribution") and v is not None:
            v = Distribution(v)
        elif k in ("directory", "proxy_client_certificate") and v is not None:
            v = Path(v)
        out[k] = v
    return out

def default(s):
    return s.default if s.default is not None else s.parse(None, None)

request = json.load(sys.stdin)
json.dump({
    "cases": [attempt(lambda: run_case(n, t)) for n, t in request["cases"]],
    "factories": [
        attempt(lambda: SETTINGS[n].default_factory(namespace(x))) for n, x in request["factories"]
    ],
    "defaults": {n: attempt(lambda: default(SETTINGS[n])) for n in request["names"]},
}, sys.stdout)
"""


class ParsedValueChecks(SectionChecks):
    """Parsed values as they are, against the reference's; where the reference dies, ours raises
    ValueProblem. Every setting must have cases; the facts fixture lists the section's settings in the
    table's order, and metavars are the settings' own. Both sides run in ``tree``, in the same environment."""

    HELPER = PARSED_VALUE_HELPER
    #: Environment variables neither side sees, and ones both sides see.
    UNSET_ENV: ClassVar[tuple[str, ...]] = ()
    SET_ENV: ClassVar[dict[str, str]] = {}
    #: Settings with a default factory whose value for the main image is compared with the reference's
    #: fixed default.
    FACTORY_DEFAULTS: ClassVar[frozenset[str]] = frozenset()

    def reference_environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k not in self.UNSET_ENV} | self.SET_ENV

    @pytest.fixture
    def ours(self, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Our side runs in the same directory and environment as the reference's."""
        monkeypatch.chdir(tree)
        for name in self.UNSET_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.SET_ENV.items():
            monkeypatch.setenv(name, value)

    def check_facts(self, setting: Setting, fact: dict[str, Any]) -> None:
        check_facts(setting, fact, self.SECTION)

    def test_every_reference_setting_is_in_the_table(self) -> None:
        facts = load_facts(self.SECTION)
        assert [f["name"] for f in facts] == self.names()
        for f in facts:
            self.check_facts(BY_NAME[f["name"]], f)

    def test_every_setting_has_cases(self) -> None:
        assert {name for name, _ in self.CASES} == set(self.names())

    @pytest.mark.usefixtures("ours")
    def test_parse_like_the_reference(self, case: int, reference: dict[str, Any]) -> None:
        name, texts = self.CASES[case]
        expected = reference["cases"][case]
        setting = BY_NAME[name]
        if not expected["ok"]:
            with pytest.raises(ValueProblem):
                parse(setting, texts)
            return
        assert setting.kind.to_json(parse(setting, texts)) == expected["value"]

    @pytest.mark.usefixtures("ours")
    def test_default_like_the_reference(self, name: str, reference: dict[str, Any]) -> None:
        setting = BY_NAME[name]
        expected = reference["defaults"][name]
        assert expected["ok"], expected
        if setting.default_factory is not None and name not in self.FACTORY_DEFAULTS:
            return  # compared in test_default_factory_like_the_reference
        if setting.default_factory is not None:
            value = setting.default_factory({"image": "main", "directory": Path.cwd()})
        elif setting.default is not None:
            value = setting.default
        else:
            value = setting.kind.unset()
        assert setting.kind.to_json(value) == expected["value"]

    @pytest.mark.usefixtures("ours")
    def test_default_factory_like_the_reference(self, factory_case: int, reference: dict[str, Any]) -> None:
        name, ns = self.FACTORY_CASES[factory_case]
        expected = reference["factories"][factory_case]
        assert expected["ok"], expected
        setting = BY_NAME[name]
        assert setting.default_factory is not None
        assert set(setting.depends) <= set(ns), "the case must provide every dependency"
        value = setting.default_factory({"image": "main", "directory": None} | ns)
        assert setting.kind.to_json(value) == expected["value"]
