# SPDX-License-Identifier: LGPL-2.1-or-later
"""The [Content] settings: the table against facts checked once (tests/data/settings-content.json), and
every setting's parsing and JSON against the reference mkosi, run in a subprocess.

refdiff.py finds the reference (tools/reference-mkosi.sh fetches it) and runs it.

Regenerate the fixture (after checking the diff by hand) with:

    PYTHONPATH=src python3 tests/unit/test_settings_content.py --regenerate-fixture [FACTS_JSON]
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import refdiff

from mkosi.config.model import Distribution, OutputFormat
from mkosi.config.settings import content
from mkosi.config.settings.base import Setting
from mkosi.config.values import Feature, ValueProblem

SECTION = "Content"
FIXTURE = refdiff.fixture_path(SECTION)


# ---------------------------------------------------------------------------------------------------------
# The part that runs under the reference's PYTHONPATH. It reads a request on stdin and prints results.

REFERENCE_HELPER = textwrap.dedent(
    """
    import dataclasses, json, logging, os, sys
    logging.disable(logging.CRITICAL)
    from mkosi import config as c
    from mkosi.distribution import Distribution

    def enc(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = dataclasses.asdict(v, dict_factory=c.dict_with_capitalised_keys_factory)
        elif isinstance(v, list):
            return [enc(x) for x in v]
        return json.loads(json.dumps(v, cls=c.JsonEncoder))

    def attempt(fn):
        try:
            return {"value": enc(fn())}
        except SystemExit:
            return {"error": "die"}
        except Exception as e:
            return {"error": type(e).__name__}

    def parse_all(name, texts):
        s = c.SETTINGS_LOOKUP_BY_NAME[name]
        def run():
            value = None
            for text in texts:
                value = s.parse(text, value)
            return value
        return attempt(run)

    def initrds(ns):
        ns = dict(ns)
        ns["distribution"] = Distribution(ns["distribution"])
        ns["output_format"] = c.OutputFormat(ns["output_format"])
        ns["bootable"] = c.ConfigFeature(ns["bootable"])
        return attempt(lambda: c.config_default_initrds(ns))

    def source_date_epoch(env):
        os.environ.pop("SOURCE_DATE_EPOCH", None)
        if env is not None:
            os.environ["SOURCE_DATE_EPOCH"] = env
        return attempt(lambda: c.config_default_source_date_epoch({"environment": {}}))

    def meta(name):
        s = c.SETTINGS_LOOKUP_BY_NAME[name]
        return {"default": enc(s.default), "unset": enc(s.parse(None, None))}

    request = json.load(sys.stdin)
    json.dump(
        {
            "parse": [parse_all(name, texts) for name, texts in request.get("parse", [])],
            "initrds": [initrds(ns) for ns in request.get("initrds", [])],
            "source_date_epoch": [source_date_epoch(env) for env in request.get("source_date_epoch", [])],
            "meta": {name: meta(name) for name in request.get("meta", [])},
        },
        sys.stdout,
    )
    """
)


def run_reference(request: dict[str, Any], cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    return refdiff.run_reference(REFERENCE_HELPER, request, cwd, env)


# ---------------------------------------------------------------------------------------------------------
# Inputs. Each case is a setting and the texts assigned to it one after the other (a list accumulates,
# "" resets). Relative paths refer to the files made by make_tree().

CASES: list[tuple[str, list[str]]] = [
    ("Packages", ["b a,/x (c|d)"]),
    ("Packages", ["z", "(x) /y a", ""]),
    ("Packages", ["a", "", "b,c"]),
    ("BuildPackages", ["y x", "/usr/bin/ld"]),
    ("VolatilePackages", ["(a) b"]),
    ("PackageDirectories", ["dir"]),
    ("PackageDirectories", ["dir,file.txt", ""]),
    ("PackageDirectories", ["missing"]),
    ("VolatilePackageDirectories", ["dir file.txt"]),
    ("VolatilePackageDirectories", ["missing"]),
    ("WithRecommends", ["yes"]),
    ("WithRecommends", ["0"]),
    ("WithRecommends", [""]),
    ("WithRecommends", ["maybe"]),
    ("WithDocs", ["no"]),
    ("WithDocs", ["bad"]),
    ("BaseTrees", ["missing-ok dir"]),
    ("BaseTrees", ["tree.tar", ""]),
    ("SkeletonTrees", ["dir"]),
    ("SkeletonTrees", ["dir:/usr/share", "tree.tar:/opt"]),
    ("SkeletonTrees", ["dir:relative"]),
    ("SkeletonTrees", ["missing"]),
    ("ExtraTrees", ["missing:/x"]),
    ("ExtraTrees", ["dir:/usr", ""]),
    ("ExtraTrees", ["dir:rel"]),
    ("RemovePackages", ["a,b", "c"]),
    ("RemoveFiles", ["/usr/share/doc/* /x"]),
    ("CleanPackageMetadata", ["auto"]),
    ("CleanPackageMetadata", ["yes"]),
    ("CleanPackageMetadata", ["false"]),
    ("CleanPackageMetadata", [""]),
    ("CleanPackageMetadata", ["sometimes"]),
    ("SourceDateEpoch", ["0"]),
    ("SourceDateEpoch", ["1700000000", ""]),
    ("SourceDateEpoch", ["-1"]),
    ("SourceDateEpoch", ["abc"]),
    ("SyncScripts", ["s1.sh"]),
    ("SyncScripts", ["s*.sh"]),
    ("SyncScripts", ["nomatch*"]),
    ("SyncScripts", ["missing.sh"]),
    ("PrepareScripts", ["s2.sh s1.sh"]),
    ("PrepareScripts", ["s1.sh", ""]),
    ("BuildScripts", ["s*.sh"]),
    ("BuildScripts", ["missing.sh"]),
    ("PostInstallationScripts", ["s2.sh,s1.sh"]),
    ("FinalizeScripts", ["s1.sh"]),
    ("PostOutputScripts", ["s*.sh", "s1.sh"]),
    ("Bootable", ["yes"]),
    ("Bootable", ["auto"]),
    ("Bootable", ["disabled"]),
    ("Bootable", ["x"]),
    ("Bootloader", ["grub"]),
    ("Bootloader", ["uki-signed"]),
    ("Bootloader", ["systemd-boot", ""]),
    ("Bootloader", ["yes"]),
    ("Bootloader", ["lilo"]),
    ("BiosBootloader", ["grub"]),
    ("BiosBootloader", ["uefi"]),
    ("ShimBootloader", ["signed"]),
    ("ShimBootloader", ["unsigned"]),
    ("ShimBootloader", ["x"]),
    ("UnifiedKernelImages", ["yes"]),
    ("UnifiedKernelImages", ["no"]),
    ("UnifiedKernelImages", ["unsigned"]),
    ("UnifiedKernelImages", ["none"]),
    ("UnifiedKernelImages", ["maybe"]),
    ("UnifiedKernelImageFormat", ["&e-&k"]),
    ("UnifiedKernelImageFormat", ["a/b"]),
    ("UnifiedKernelImageFormat", [".."]),
    ("UnifiedKernelImageFormat", ["x", ""]),
    ("UnifiedKernelImageProfiles", ["p1.conf"]),
    ("UnifiedKernelImageProfiles", ["p1.conf,p2.conf"]),
    ("UnifiedKernelImageProfiles", ["p3.conf", "p1.conf"]),
    ("UnifiedKernelImageProfiles", ["p1.conf", ""]),
    ("UnifiedKernelImageProfiles", ["missing.conf"]),
    ("UnifiedKernelImageProfiles", ["bad-bool.conf"]),
    ("UnifiedKernelImageProfiles", ["bad-syntax.conf"]),
    ("Initrds", ["default"]),
    ("Initrds", ["missing.img default"]),
    ("Initrds", ["file.txt", ""]),
    ("MicrocodeHost", ["yes"]),
    ("MicrocodeHost", ["nah"]),
    ("InitrdProfiles", ["lvm,raid"]),
    ("InitrdProfiles", ["bogus"]),
    ("InitrdPackages", ["a b"]),
    ("InitrdVolatilePackages", ["x", "", "y"]),
    ("Devicetrees", ["rockchip/*,imx.*"]),
    ("Splash", ["/usr/share/splash.bmp"]),
    ("Splash", ["/x/../y.bmp"]),
    ("Splash", ["relative.bmp"]),
    ("Splash", ["/a", ""]),
    ("KernelCommandLine", ["console=ttyS0 quiet", "rw"]),
    ("KernelCommandLine", ["a,b c\nd"]),
    ("KernelCommandLine", ["x", ""]),
    ("KernelModulesInclude", ["default host ext4"]),
    ("KernelModulesInclude", ["a,b", ""]),
    ("KernelModulesExclude", ["btrfs", ".*"]),
    ("KernelModules", ["-foo /kernel/bar", "default"]),
    ("KernelModulesIncludeHost", ["yes"]),
    ("KernelModulesIncludeHost", ["?"]),
    ("KernelModulesInitrd", ["no"]),
    ("KernelModulesInitrdInclude", ["x host"]),
    ("KernelModulesInitrdExclude", ["y"]),
    ("KernelInitrdModules", ["x y"]),
    ("KernelModulesInitrdIncludeHost", ["true"]),
    ("FirmwareInclude", ["iwlwifi-.*"]),
    ("FirmwareExclude", ["host"]),
    ("FirmwareFiles", ["cxgb4/bcm8483.bin", "bcm*"]),
    ("Locale", ["C.UTF-8"]),
    ("Locale", ["x", ""]),
    ("LocaleMessages", ["de_DE.UTF-8"]),
    ("Keymap", ["us"]),
    ("Timezone", ["Europe/Berlin"]),
    ("Hostname", ["host"]),
    ("RootShell", ["/bin/zsh"]),
    ("RootPassword", ["secret"]),
    ("RootPassword", ["hashed:$6$abc"]),
    ("RootPassword", ["  padded  "]),
    ("RootPassword", ["hashed:"]),
    ("RootPassword", [" "]),
    ("RootPassword", ["x", ""]),
    ("MachineId", ["b4a2f3c0-1111-2222-3333-444455556666"]),
    ("MachineId", ["B4A2F3C0111122223333444455556666"]),
    ("MachineId", ["nope"]),
    ("MachineId", ["b4a2f3c0-1111-2222-3333-444455556666", ""]),
    ("Autologin", ["yes"]),
    ("Autologin", ["perhaps"]),
    ("MakeInitrd", ["1"]),
    ("Ssh", ["always"]),
    ("Ssh", ["yes"]),
    ("Ssh", ["no"]),
    ("Ssh", ["runtime"]),
    ("Ssh", ["sometimes"]),
    ("SELinuxRelabel", ["auto"]),
    ("SELinuxRelabel", ["no"]),
    ("SELinuxRelabel", ["bad"]),
]

INITRD_NAMESPACES: list[dict[str, Any]] = [
    {"output_format": fmt, "bootable": bootable, "distribution": dist, "packages": pkgs, "overlay": overlay}
    for fmt in ("disk", "uki", "directory", "sysext", "cpio", "tar")
    for bootable in ("auto", "enabled", "disabled")
    for dist, pkgs in (
        ("debian", ["linux-image-amd64"]),
        ("debian", ["linux-headers-amd64"]),
        ("ubuntu", ["linux-generic"]),
        ("ubuntu", ["linux-tools-common"]),
        ("kali", ["linux-image-arm64"]),
        ("fedora", ["kernel-core"]),
        ("rocky", ["kernel"]),
        ("arch", ["linux-zen"]),
        ("opensuse", ["kernel-kvmsmall"]),
        ("postmarketos", ["linux-postmarketos-generic"]),
        ("postmarketos", ["linux-firmware-x"]),
        ("custom", ["linux"]),
        ("fedora", []),
    )
    for overlay in (False, True)
]

SOURCE_DATE_EPOCH_ENV: list[str | None] = [None, "", "0", "1700000000", "-5", "soon"]

UKI_PROFILES = {
    "p1.conf": "[UKIProfile]\nProfile=ID=one\n  TITLE=First one\nCmdline=quiet rw\n",
    "p2.conf": "[UKIProfile]\nSignExpectedPcr=no\nUnknown=1\n[Other]\nCmdline=ignored\n",
    "p3.conf": "[UKIProfile]\nProfile=\nCmdline=a b\nCmdline=\nSignExpectedPcr=\n",
    "bad-bool.conf": "[UKIProfile]\nSignExpectedPcr=maybe\n",
    "bad-syntax.conf": "[UKIProfile]\nCmdline\n",
}


def make_tree(root: Path) -> None:
    (root / "dir").mkdir()
    (root / "file.txt").write_text("x")
    (root / "tree.tar").write_bytes(b"")
    for script in ("s1.sh", "s2.sh"):
        (root / script).write_text("#!/bin/sh\n")
    for name, text in UKI_PROFILES.items():
        (root / name).write_text(text)


def ours(name: str, texts: list[str]) -> dict[str, Any]:
    setting = by_name(name)
    try:
        value = refdiff.parse(setting, texts)
    except ValueProblem as e:
        return {"error": "die", "message": str(e)}
    return {"value": setting.kind.to_json(value)}


def by_name(name: str) -> Setting:
    for s in content.SETTINGS:
        if s.name == name:
            return s
    raise AssertionError(f"{name} is not in the [Content] table")


def load_fixture() -> list[dict[str, Any]]:
    return refdiff.load_facts(SECTION)


# ---------------------------------------------------------------------------------------------------------
# The table against the facts.


def test_table_has_the_sections_settings_in_order() -> None:
    assert [s.name for s in content.SETTINGS] == [f["name"] for f in load_fixture()]


# (Empty only while the fixture is being regenerated; the test above fails without it.)
FACTS = load_fixture() if FIXTURE.exists() else []


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: str(f["name"]))
def test_setting_matches_facts(fact: dict[str, Any]) -> None:
    s = by_name(fact["name"])
    refdiff.check_facts(s, fact, SECTION)
    assert s.match == fact["match"]
    assert s.dest == fact["dest"]
    assert s.kind.nullable == fact["reset_is_empty"]
    assert (s.default_factory is not None) == fact["default_factory"]
    assert list(s.depends) == fact["depends"]
    assert s.kind.to_json(s.kind.unset()) == fact["unset"]
    if s.default_factory is None:
        default = s.default if s.default is not None else s.kind.unset()
        expected = fact["default"] if fact["default"] is not None else fact["unset"]
        assert s.kind.to_json(default) == expected


def test_shared_values_are_shown_once() -> None:
    """KernelModules=, KernelInitrdModules= and FirmwareFiles= share a value with a *Include= setting; like
    mkosi, the JSON shows it once, under the glob setting's name."""
    for dest in ("kernel_modules_include", "kernel_modules_initrd_include", "firmware_include"):
        shown = [s.name for s in content.SETTINGS if s.dest == dest and s.in_json]
        assert len(shown) == 1, (dest, shown)
    names = [s.name for s in content.SETTINGS if s.in_json]
    assert len(names) == len(set(names))


def test_every_case_setting_exists_and_all_are_covered() -> None:
    covered = {name for name, _ in CASES}
    assert covered == {s.name for s in content.SETTINGS}


# ---------------------------------------------------------------------------------------------------------
# Against the reference.


@pytest.fixture(scope="module")
def differential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("content")
    make_tree(root)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        results = [ours(name, texts) for name, texts in CASES]
    finally:
        os.chdir(cwd)
    reference = run_reference(
        {
            "parse": CASES,
            "initrds": [dict(ns, volatile_packages=[]) for ns in INITRD_NAMESPACES],
            "source_date_epoch": SOURCE_DATE_EPOCH_ENV,
        },
        root,
    )
    return {"ours": results, "reference": reference}


def test_parsing_agrees_with_the_reference(differential: dict[str, Any]) -> None:
    mismatches = []
    for (name, texts), mine, theirs in zip(CASES, differential["ours"], differential["reference"]["parse"]):
        if theirs.get("error") not in (None, "die"):
            mismatches.append(
                f"{name}={texts!r}: the reference crashed ({theirs['error']}); pick another input"
            )
        elif ("error" in mine) != ("error" in theirs) or mine.get("value") != theirs.get("value"):
            mismatches.append(f"{name}={texts!r}: ours {mine} != reference {theirs}")
    assert not mismatches, "\n".join(mismatches)


def test_default_initrds_agree_with_the_reference(differential: dict[str, Any]) -> None:
    mismatches = []
    for ns, theirs in zip(INITRD_NAMESPACES, differential["reference"]["initrds"]):
        mine = content.default_initrds(
            dict(
                ns,
                output_format=OutputFormat(ns["output_format"]),
                bootable=Feature(ns["bootable"]),
                distribution=Distribution(ns["distribution"]),
                volatile_packages=[],
            )
        )
        if {"value": [str(p) for p in mine]} != theirs:
            mismatches.append(f"{ns}: ours {mine} != reference {theirs}")
    assert not mismatches, "\n".join(mismatches)


def test_source_date_epoch_default_agrees_with_the_reference(
    differential: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for env, theirs in zip(SOURCE_DATE_EPOCH_ENV, differential["reference"]["source_date_epoch"]):
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
        if env is not None:
            monkeypatch.setenv("SOURCE_DATE_EPOCH", env)
        try:
            mine: dict[str, Any] = {"value": content.default_source_date_epoch({"environment": {}})}
        except ValueProblem:
            mine = {"error": "die"}
        assert mine == theirs, env


def test_random_machine_id() -> None:
    kind = by_name("MachineId").kind
    first, second = kind.parse("random", None), kind.parse("random", None)
    assert isinstance(first, uuid.UUID) and first != second
    assert kind.to_json(first) == str(first)


def test_root_password_is_not_shown() -> None:
    kind = by_name("RootPassword").kind
    assert kind.to_text(kind.parse("hunter2", None)) == "(set)"
    assert kind.to_text(None) == "(default)"


def test_errors_say_what_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "timestamp" in ours("SourceDateEpoch", ["abc"])["message"]
    assert "systemd-boot" in ours("Bootloader", ["lilo"])["message"]
    assert "absolute" in ours("Splash", ["relative.bmp"])["message"]
    make_tree(tmp_path)
    assert "bad-syntax.conf:2" in ours("UnifiedKernelImageProfiles", ["bad-syntax.conf"])["message"]
    assert "bad-bool.conf:2" in ours("UnifiedKernelImageProfiles", ["bad-bool.conf"])["message"]


# ---------------------------------------------------------------------------------------------------------
# Regenerating the fixture from the reference's facts.


def regenerate_fixture(facts_path: Path) -> None:
    facts = [f for f in json.loads(facts_path.read_text())["settings"] if f["section"] == SECTION]
    meta = run_reference({"meta": [f["name"] for f in facts]}, Path.cwd())["meta"]
    fixture = [
        {
            "name": f["name"],
            "section": f["section"],
            "scope": f["scope"],
            "short": f["short"],
            "long": f["long"],
            "long_aliases": f["compat_longs"],
            "old_names": f["compat_names"],
            "specifier": f["specifier"],
            "paths": f["path_suffixes"],
            "path_globs": f["recursive_path_suffixes"],
            "path_read_text": f["path_read_text"],
            "path_secret": f["path_secret"],
            "tools": f["tools"],
            "match": f["match"] is not None,
            "dest": f["dest"],
            "reset_is_empty": bool(f["reset_is_empty"]),
            "default_factory": f["default_factory"] is not None,
            "depends": f["default_depends"],
            "default": meta[f["name"]]["default"],
            "unset": meta[f["name"]]["unset"],
        }
        for f in facts
    ]
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--regenerate-fixture"]:
        regenerate_fixture(Path(sys.argv[2] if len(sys.argv) > 2 else "/opt/ref/facts.json"))
    else:
        sys.exit(f"usage: {sys.argv[0]} --regenerate-fixture [FACTS_JSON]")
