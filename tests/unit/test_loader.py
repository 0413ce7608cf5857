"""How configuration directories are read, end to end: ``mkosi -C DIR --json summary`` in process.

Every test writes a real configuration tree into ``tmp_path`` and runs ``mkosi.__main__.main`` on it, the
way a user would. Expected values were checked against the reference implementation (mkosi 27.1) on the
same trees, except for ``summary --origins``, which is this project's own feature, and the error reporting
rules of docs/architecture.md (every error with file:line, all of them in one run, no tracebacks).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mkosi.__main__ import main

#: Every tree starts from this so that nothing depends on the host's distribution.
BASE = """\
[Distribution]
Distribution=debian
Release=bookworm
"""


@dataclasses.dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` below ``root`` (text is dedented). Returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert isinstance(rc, int)
    assert "Traceback" not in err, err
    return Result(rc, out, err)


def summary(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> dict[str, dict[str, Any]]:
    """The JSON summary of every image, by image name. Fails the test if mkosi fails."""
    result = run(capsys, "-C", str(root), *args, "--json", "summary")
    assert result.rc == 0, result.err
    document = json.loads(result.out)
    return {image["Image"]: image for image in document["Images"]}


def main_image(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> dict[str, Any]:
    return summary(capsys, root, *args)["main"]


def failure(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Result:
    result = run(capsys, "-C", str(root), *args, "--json", "summary")
    assert result.rc == 1, (result.rc, result.err)
    assert result.out == ""
    return result


# -- precedence ---------------------------------------------------------------------------------------------


def test_scalar_precedence_cli_over_local_over_dropins_over_mkosi_conf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nImageId=conf\n"})
    assert main_image(capsys, tmp_path)["ImageId"] == "conf"

    write_tree(tmp_path, {"mkosi.conf.d/10-a.conf": "[Output]\nImageId=dropin-10\n"})
    assert main_image(capsys, tmp_path)["ImageId"] == "dropin-10"

    write_tree(tmp_path, {"mkosi.conf.d/20-b.conf": "[Output]\nImageId=dropin-20\n"})
    assert main_image(capsys, tmp_path)["ImageId"] == "dropin-20"

    write_tree(tmp_path, {"mkosi.local.conf": "[Output]\nImageId=local\n"})
    assert main_image(capsys, tmp_path)["ImageId"] == "local"

    assert main_image(capsys, tmp_path, "--image-id=cli")["ImageId"] == "cli"
    assert main_image(capsys, tmp_path, "--image-id", "cli2")["ImageId"] == "cli2"


def test_later_assignment_in_the_same_file_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nImageId=first\nImageId=second\n"})
    assert main_image(capsys, tmp_path)["ImageId"] == "second"


def test_dropins_are_read_in_name_order_and_only_conf_files_and_directories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "mkosi.conf.d/20-b.conf": "[Output]\nImageId=b\n",
            "mkosi.conf.d/10-a.conf": "[Output]\nImageId=a\n",
            "mkosi.conf.d/15-dir/mkosi.conf": "[Content]\nPackages=from-dir\n",
            "mkosi.conf.d/15-dir/mkosi.conf.d/1.conf": "[Content]\nPackages=from-dir-dropin\n",
            "mkosi.conf.d/30-ignored.conf.bak": "[Output]\nImageId=bak\n",
            "mkosi.conf.d/README": "[Output]\nImageId=readme\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert image["ImageId"] == "b"
    assert sorted(image["Packages"]) == ["from-dir", "from-dir-dropin"]
    assert image["Files"] == [
        str(tmp_path / "mkosi.conf"),
        str(tmp_path / "mkosi.conf.d/10-a.conf"),
        str(tmp_path / "mkosi.conf.d/15-dir/mkosi.conf"),
        str(tmp_path / "mkosi.conf.d/15-dir/mkosi.conf.d/1.conf"),
        str(tmp_path / "mkosi.conf.d/20-b.conf"),
    ]


def test_lists_accumulate_and_cli_items_come_after_file_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "Repositories=r-conf\n[Content]\nPackages=zz-conf\nKernelCommandLine=zz=1\n",
            "mkosi.conf.d/10.conf": "[Distribution]\nRepositories=r-dropin\n[Content]\nPackages=yy-dropin\n",
            "mkosi.local.conf": "[Distribution]\nRepositories=r-local\n[Content]\nPackages=mm-local\n",
        },
    )
    image = main_image(
        capsys, tmp_path, "--package=aa-cli", "--repositories=r-cli", "--kernel-command-line=aa=1", "-p", "bb"
    )
    # Packages are sorted within the files, but what the command line adds stays at the end.
    assert image["Packages"] == ["yy-dropin", "zz-conf", "mm-local", "aa-cli", "bb"]
    assert image["Repositories"] == ["r-conf", "r-dropin", "r-local", "r-cli"]
    assert image["KernelCommandLine"] == ["zz=1", "aa=1"]


def test_empty_cli_value_resets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE
            + "Repositories=r\n[Output]\nFormat=tar\nImageId=conf\n[Content]\nPackages=a b\n"
        },
    )
    image = main_image(capsys, tmp_path, "--package=", "--repositories=", "--image-id=", "--format=")
    assert image["Packages"] == []
    assert image["Repositories"] == []
    assert image["ImageId"] is None
    assert image["Format"] == "disk"  # back to the default

    image = main_image(capsys, tmp_path, "--package=", "--package=c")
    assert image["Packages"] == ["c"]


def test_empty_release_falls_back_to_the_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # As in mkosi 27.1: Release= is never left unset (ImageId= above is), so Config.release is a str.
    write_tree(tmp_path, {"mkosi.conf": BASE + "Release=\n"})
    assert main_image(capsys, tmp_path)["Release"] is not None
    assert main_image(capsys, tmp_path, "--release=")["Release"] is not None


def test_empty_file_value_resets_earlier_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Content]\nPackages=a b\n",
            "mkosi.conf.d/10.conf": "[Content]\nPackages=\nPackages=c\n",
        },
    )
    assert main_image(capsys, tmp_path)["Packages"] == ["c"]


def test_local_conf_does_not_beat_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {"mkosi.conf": BASE, "mkosi.local.conf": "[Output]\nImageId=local\n[Distribution]\nRelease=trixie\n"},
    )
    image = main_image(capsys, tmp_path, "--release=sid")
    assert image["Release"] == "sid"
    assert image["ImageId"] == "local"


def test_local_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Output]\nImageId=conf\n",
            "mkosi.local/mkosi.conf": "[Output]\nImageId=local-dir\n[Content]\nPackages=local-dir\n",
            "mkosi.local/mkosi.conf.d/1.conf": "[Content]\nPackages=local-dropin\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert image["ImageId"] == "local-dir"
    assert sorted(image["Packages"]) == ["local-dir", "local-dropin"]


def test_local_and_cli_values_are_seen_by_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "mkosi.local.conf": "[Output]\nImageId=local-id\n",
            "mkosi.conf.d/10.conf": "[Match]\nImageId=local-id\n[Content]\nPackages=by-local\n",
            "mkosi.conf.d/20.conf": "[Match]\nDistribution=fedora\n[Content]\nPackages=by-cli\n",
        },
    )
    assert main_image(capsys, tmp_path)["Packages"] == ["by-local"]
    image = main_image(capsys, tmp_path, "--distribution=fedora", "--release=40")
    assert image["Distribution"] == "fedora"
    assert sorted(image["Packages"]) == ["by-cli", "by-local"]


# -- [Match] and [TriggerMatch] --------------------------------------------------------------------------

#: The tree every [Match] case is evaluated against (plus the drop-in under test).
MATCH_BASE = BASE + "Architecture=arm64\n[Output]\nImageVersion=1.5\nImageId=abc-def\n"

MATCH_CASES: list[tuple[str, str, bool]] = [
    ("equal", "[Match]\nDistribution=debian\n", True),
    ("not-equal", "[Match]\nDistribution=fedora\n", False),
    ("negated", "[Match]\nDistribution=!fedora\n", True),
    ("negated-false", "[Match]\nDistribution=!debian\n", False),
    ("and", "[Match]\nDistribution=debian\nRelease=bookworm\n", True),
    ("and-false", "[Match]\nDistribution=debian\nRelease=trixie\n", False),
    ("trigger-one", "[Match]\nDistribution=|fedora\nDistribution=|debian\n", True),
    ("trigger-none", "[Match]\nDistribution=|fedora\nDistribution=|arch\n", False),
    ("trigger-negated", "[Match]\nDistribution=|!debian\nRelease=|!bookworm\n", False),
    ("trigger-negated-one", "[Match]\nDistribution=|!debian\nRelease=|!trixie\n", True),
    ("plain-and-trigger", "[Match]\nDistribution=debian\nRelease=|trixie\nRelease=|bookworm\n", True),
    ("plain-false-and-trigger", "[Match]\nDistribution=fedora\nRelease=|bookworm\n", False),
    ("two-match-sections", "[Match]\nDistribution=debian\n[Match]\nRelease=bookworm\n", True),
    ("two-match-sections-false", "[Match]\nDistribution=debian\n[Match]\nRelease=trixie\n", False),
    (
        "triggermatch-second",
        "[TriggerMatch]\nDistribution=fedora\n[TriggerMatch]\nDistribution=debian\nRelease=bookworm\n",
        True,
    ),
    (
        "triggermatch-none",
        "[TriggerMatch]\nDistribution=fedora\n[TriggerMatch]\nDistribution=debian\nRelease=trixie\n",
        False,
    ),
    ("triggermatch-with-pipes", "[TriggerMatch]\nRelease=|trixie\nRelease=|bookworm\n", True),
    (
        "triggermatch-pipes-none-other-section",
        "[TriggerMatch]\nRelease=|trixie\nRelease=|sid\n[TriggerMatch]\nDistribution=debian\n",
        True,
    ),
    ("match-and-triggermatch", "[Match]\nDistribution=debian\n[TriggerMatch]\nRelease=bookworm\n", True),
    ("match-and-triggermatch-false", "[Match]\nDistribution=debian\n[TriggerMatch]\nRelease=trixie\n", False),
    ("version-range", "[Match]\nImageVersion=>=1.4\nImageVersion=<1.10\n", True),
    ("version-greater", "[Match]\nImageVersion=>1.5\n", False),
    ("version-equal", "[Match]\nImageVersion=1.5\n", True),
    ("version-equal-leading-zero", "[Match]\nImageVersion=1.05\n", True),
    ("version-equal-op", "[Match]\nImageVersion===1.5\n", True),
    ("version-not-equal", "[Match]\nImageVersion=!=1.5\n", False),
    ("version-negated-op", "[Match]\nImageVersion=!>=2\n", True),
    ("version-triggers", "[Match]\nImageVersion=|>=2\nImageVersion=|<1\n", False),
    ("version-less-equal", "[Match]\nImageVersion=<=1.5~rc1\n", False),
    # Release is matched as a plain string in mkosi 27.1: no version comparison, no globs.
    ("release-is-a-string", "[Match]\nRelease=>=bookworm\n", False),
    ("release-no-glob", "[Match]\nRelease=book*\n", False),
    ("image-id-glob", "[Match]\nImageId=abc-*\n", True),
    ("image-id-glob-false", "[Match]\nImageId=xyz-*\n", False),
    ("architecture", "[Match]\nArchitecture=arm64\n", True),
    ("architecture-false", "[Match]\nArchitecture=x86-64\n", False),
    ("format-default", "[Match]\nFormat=disk\n", True),
    ("image", "[Match]\nImage=main\n", True),
    ("image-false", "[Match]\nImage=other\n", False),
    ("path-exists", "[Match]\nPathExists=%D/mkosi.conf\n", True),
    ("path-exists-false", "[Match]\nPathExists=%D/nope\n", False),
    ("path-exists-negated", "[Match]\nPathExists=!%D/nope\n", True),
    ("no-profiles", "[Match]\nProfiles=\n", True),
    ("environment-unset", "[Match]\nEnvironment=FOO\n", False),
    ("specifier-in-match", "[Match]\nImageId=%i\n", True),
]


@pytest.mark.parametrize(("block", "applies"), [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES])
def test_match(tmp_path: Path, capsys: pytest.CaptureFixture[str], block: str, applies: bool) -> None:
    write_tree(
        tmp_path,
        {"mkosi.conf": MATCH_BASE, "mkosi.conf.d/50-test.conf": block + "[Content]\nPackages=marker\n"},
    )
    image = main_image(capsys, tmp_path)
    assert (image["Packages"] == ["marker"]) is applies
    assert (str(tmp_path / "mkosi.conf.d/50-test.conf") in image["Files"]) is applies


def test_match_in_mkosi_conf_skips_its_dropins_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "mkosi.conf.d/10-dir/mkosi.conf": "[Match]\nDistribution=fedora\n[Content]\nPackages=dir\n",
            "mkosi.conf.d/10-dir/mkosi.conf.d/1.conf": "[Content]\nPackages=dir-dropin\n",
        },
    )
    assert main_image(capsys, tmp_path)["Packages"] == []


def test_match_sees_values_assigned_earlier_in_the_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "mkosi.conf.d/10.conf": "[Output]\nImageId=set-by-10\n",
            "mkosi.conf.d/20.conf": "[Match]\nImageId=set-by-10\n[Content]\nPackages=seen\n",
            "mkosi.conf.d/30.conf": "[Match]\nImageId=set-by-40\n[Content]\nPackages=not-yet\n",
            "mkosi.conf.d/40.conf": "[Output]\nImageId=set-by-40\n",
        },
    )
    assert main_image(capsys, tmp_path)["Packages"] == ["seen"]


def test_match_on_environment_and_profiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "mkosi.conf.d/10.conf": "[Match]\nEnvironment=FOO\n[Content]\nPackages=foo-set\n",
            "mkosi.conf.d/20.conf": "[Match]\nEnvironment=FOO=bar\n[Content]\nPackages=foo-bar\n",
            "mkosi.conf.d/30.conf": "[Match]\nProfiles=dev\n[Content]\nPackages=dev\n",
        },
    )
    assert main_image(capsys, tmp_path)["Packages"] == []
    image = main_image(capsys, tmp_path, "--environment=FOO=bar", "--profile=dev")
    assert sorted(image["Packages"]) == ["dev", "foo-bar", "foo-set"]
    image = main_image(capsys, tmp_path, "--environment=FOO=baz")
    assert image["Packages"] == ["foo-set"]


def test_match_on_a_setting_that_cannot_be_matched_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE, "mkosi.conf.d/10.conf": "[Match]\nPackages=vim\n"})
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 1
    assert f"{tmp_path / 'mkosi.conf.d/10.conf'}:2" in result.err
    assert "Packages" in result.err


def test_match_on_an_unknown_key_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE, "mkosi.conf.d/10.conf": "[Match]\nFrobnicate=1\n"})
    result = failure(capsys, tmp_path)
    assert f"{tmp_path / 'mkosi.conf.d/10.conf'}:2" in result.err
    assert "Frobnicate" in result.err


def test_match_with_an_invalid_value_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE, "mkosi.conf.d/10.conf": "[Match]\nDistribution=floppy\n"})
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 1
    assert f"{tmp_path / 'mkosi.conf.d/10.conf'}:2" in result.err
    assert "floppy" in result.err
    assert "debian" in result.err  # what is accepted


# -- [Assert] and [TriggerAssert] --------------------------------------------------------------------------

ASSERT_CASES: list[tuple[str, str, bool]] = [
    ("holds", "[Assert]\nDistribution=debian\n", True),
    ("fails", "[Assert]\nDistribution=fedora\n", False),
    ("negated", "[Assert]\nDistribution=!fedora\n", True),
    ("trigger-one", "[Assert]\nDistribution=|fedora\nDistribution=|debian\n", True),
    ("trigger-none", "[Assert]\nDistribution=|fedora\nDistribution=|arch\n", False),
    ("triggerassert-one", "[TriggerAssert]\nDistribution=fedora\n[TriggerAssert]\nRelease=bookworm\n", True),
    ("triggerassert-none", "[TriggerAssert]\nDistribution=fedora\n[TriggerAssert]\nRelease=trixie\n", False),
    ("version", "[Assert]\nImageVersion=>=1\n", True),
    ("version-fails", "[Assert]\nImageVersion=>=2\n", False),
]


@pytest.mark.parametrize(("block", "holds"), [c[1:] for c in ASSERT_CASES], ids=[c[0] for c in ASSERT_CASES])
def test_assert(tmp_path: Path, capsys: pytest.CaptureFixture[str], block: str, holds: bool) -> None:
    dropin = tmp_path / "mkosi.conf.d/50-test.conf"
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Output]\nImageVersion=1.5\n",
            "mkosi.conf.d/50-test.conf": block + "[Content]\nPackages=marker\n",
        },
    )
    if holds:
        assert main_image(capsys, tmp_path)["Packages"] == ["marker"]
    else:
        result = failure(capsys, tmp_path)
        assert str(dropin) in result.err
        assert len(result.err_lines) == 1


def test_failed_match_skips_the_file_before_its_assert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "mkosi.conf.d/10.conf": "[Match]\nDistribution=fedora\n[Assert]\nDistribution=fedora\n",
        },
    )
    assert main_image(capsys, tmp_path)["Packages"] == []


# -- Include= ----------------------------------------------------------------------------------------------


def test_include_reads_each_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Include]\nInclude=inc/a.conf\nInclude=inc/a.conf\n",
            "inc/a.conf": "[Include]\nInclude=inc/b.conf\n[Content]\nPackages=from-a\n",
            # b includes a again: a cycle that must end.
            "inc/b.conf": "[Include]\nInclude=inc/a.conf\n[Content]\nPackages=from-b\n",
            "mkosi.conf.d/10.conf": "[Include]\nInclude=%D/inc/b.conf\n[Content]\nPackages=dropin\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert sorted(image["Packages"]) == ["dropin", "from-a", "from-b"]
    assert image["Files"].count(str(tmp_path / "inc/a.conf")) == 1
    assert image["Files"].count(str(tmp_path / "inc/b.conf")) == 1


def test_include_directory_and_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE,
            "inc/dir/mkosi.conf": "[Content]\nPackages=dir\n",
            "inc/dir/mkosi.conf.d/1.conf": "[Content]\nPackages=dir-dropin\n",
            "inc/extra.conf": "[Output]\nImageId=included\n",
        },
    )
    image = main_image(
        capsys, tmp_path, f"--include={tmp_path / 'inc/dir'}", "-I", str(tmp_path / "inc/extra.conf")
    )
    assert sorted(image["Packages"]) == ["dir", "dir-dropin"]
    assert image["ImageId"] == "included"


def test_relative_paths_on_the_command_line_are_relative_to_the_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `mkosi -C DIR --include=x` reads DIR/x, as the reference does, whatever the current directory is.
    project = write_tree(
        tmp_path / "project",
        {"mkosi.conf": BASE, "inc/extra.conf": "[Output]\nImageId=included\n", "out/.keep": ""},
    )
    elsewhere = tmp_path / "elsewhere"
    write_tree(elsewhere, {"inc/extra.conf": "[Output]\nImageId=wrong-directory\n", "out/.keep": ""})
    monkeypatch.chdir(elsewhere)
    image = main_image(capsys, project, "--include=inc/extra.conf", "--output-directory=out")
    assert image["ImageId"] == "included"
    assert image["OutputDirectory"] == str(project / "out")


def test_include_of_a_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Include]\nInclude=nope.conf\n"})
    result = failure(capsys, tmp_path)
    assert "nope.conf" in result.err
    assert len(result.err_lines) == 1


# -- profiles ----------------------------------------------------------------------------------------------


def test_profiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Config]\nProfiles=dev,prod\n",
            "mkosi.profiles/prod.conf": "[Content]\nPackages=prof-prod\n",
            "mkosi.profiles/dev/mkosi.conf": "[Content]\nPackages=prof-dev\n",
            "mkosi.profiles/dev/mkosi.conf.d/1.conf": "[Content]\nPackages=prof-dev-dropin\n",
            "mkosi.profiles/other.conf": "[Content]\nPackages=prof-other\n",
            "mkosi.conf.d/20.conf": "[Match]\nProfiles=dev\n[Content]\nPackages=if-dev\n",
            "mkosi.conf.d/30.conf": "[Match]\nProfiles=other\n[Content]\nPackages=if-other\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert image["Profiles"] == ["dev", "prod"]
    assert sorted(image["Packages"]) == ["if-dev", "prof-dev", "prof-dev-dropin", "prof-prod"]

    image = main_image(capsys, tmp_path, "--profile=other")
    assert image["Profiles"] == ["dev", "prod", "other"]
    assert "prof-other" in image["Packages"] and "if-other" in image["Packages"]

    image = main_image(capsys, tmp_path, "--profile=", "--profile=other")
    assert image["Profiles"] == ["other"]
    assert sorted(image["Packages"]) == ["if-other", "prof-other"]


def test_profiles_are_read_after_the_dropins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Config]\nProfiles=p\n",
            "mkosi.conf.d/10.conf": "[Output]\nImageId=dropin\n",
            "mkosi.profiles/p.conf": "[Output]\nImageId=profile\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert image["ImageId"] == "profile"
    assert image["Files"][-1] == str(tmp_path / "mkosi.profiles/p.conf")


def test_profile_name_must_not_be_a_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Config]\nProfiles=../evil\n"})
    result = failure(capsys, tmp_path)
    assert f"{tmp_path / 'mkosi.conf'}:5" in result.err
    assert "Profiles" in result.err


# -- specifiers --------------------------------------------------------------------------------------------


def test_specifiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": """\
                [Distribution]
                Distribution=debian
                Release=bookworm
                Architecture=arm64
                [Output]
                ImageId=img-%d-%r-%a
                ImageVersion=7
                Output=out_%i_%v_%%_%t
                [Build]
                Environment=PCT=100%%
                  CDIR=%C
                  DDIR=%D
                  PDIR=%P
                  IMG=%I
                  FS=%F
                  LITERAL=%%d
                """,
            "mkosi.conf.d/10.conf": "[Build]\nEnvironment=DROPIN_C=%C\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert image["ImageId"] == "img-debian-bookworm-arm64"
    assert image["Output"] == "out_img-debian-bookworm-arm64_7_%_disk"
    assert image["Environment"] == {
        "PCT": "100%",
        "CDIR": str(tmp_path),
        "DDIR": str(tmp_path),
        "PDIR": str(tmp_path),
        "IMG": "main",
        "FS": "ext4",
        "LITERAL": "%d",
        "DROPIN_C": str(tmp_path / "mkosi.conf.d"),
    }


def test_specifier_of_a_setting_not_yet_set_is_dropped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nImageId=%v-x\n"})
    result = run(capsys, "-C", str(tmp_path), "--json", "summary")
    assert result.rc == 0
    assert json.loads(result.out)["Images"][0]["ImageId"] == "-x"
    assert "%v" in result.err


def test_unknown_specifier_is_dropped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nImageId=a%zb\nImageVersion=1%\n"})
    result = run(capsys, "-C", str(tmp_path), "--json", "summary")
    assert result.rc == 0
    image = json.loads(result.out)["Images"][0]
    assert image["ImageId"] == "ab"
    assert image["ImageVersion"] == "1%"
    assert "%z" in result.err
    assert str(tmp_path / "mkosi.conf") in result.err


def test_specifier_in_a_subimage_names_the_subimage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE, "mkosi.images/sub.conf": "[Build]\nEnvironment=NAME=%I\n"})
    assert summary(capsys, tmp_path)["sub"]["Environment"] == {"NAME": "sub"}


# -- where the configuration is ------------------------------------------------------------------------------


def test_mkosi_subdirectory_fallback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi/mkosi.conf": BASE + "[Output]\nImageId=in-subdir\n",
            "mkosi/mkosi.conf.d/10.conf": "[Content]\nPackages=subdir-dropin\n",
        },
    )
    image = main_image(capsys, tmp_path)
    assert image["ImageId"] == "in-subdir"
    assert image["Packages"] == ["subdir-dropin"]
    assert image["Files"] == [
        str(tmp_path / "mkosi/mkosi.conf"),
        str(tmp_path / "mkosi/mkosi.conf.d/10.conf"),
    ]


def test_top_level_mkosi_conf_wins_over_the_subdirectory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {"mkosi.conf": BASE + "[Output]\nImageId=top\n", "mkosi/mkosi.conf": "[Output]\nImageId=subdir\n"},
    )
    image = main_image(capsys, tmp_path)
    assert image["ImageId"] == "top"
    assert image["Files"] == [str(tmp_path / "mkosi.conf")]


def test_empty_directory_gives_the_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = main_image(capsys, tmp_path, "--distribution=debian", "--release=bookworm")
    assert image["Files"] == []
    assert image["Format"] == "disk"
    assert image["Packages"] == []


# -- subimages -----------------------------------------------------------------------------------------------


def test_subimages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Output]\nImageId=parent\n[Content]\nPackages=main-pkg\n",
            "mkosi.images/a.conf": "[Output]\nFormat=sysext\n[Content]\nPackages=a-pkg\n",
            "mkosi.images/b/mkosi.conf": "[Output]\nFormat=tar\nImageId=child\n",
            "mkosi.images/b/mkosi.conf.d/1.conf": "[Match]\nImage=b\n[Content]\nPackages=b-dropin\n",
            "mkosi.images/c.conf": "[Match]\nDistribution=fedora\n[Output]\nFormat=none\n",
        },
    )
    images = summary(capsys, tmp_path)
    assert list(images) == ["a", "b", "main"]
    assert images["a"]["Packages"] == ["a-pkg"]
    assert images["a"]["ImageId"] == "parent"  # inherited
    assert images["a"]["Distribution"] == "debian"  # universal
    assert images["b"]["ImageId"] == "child"
    assert images["b"]["Packages"] == ["b-dropin"]
    assert images["main"]["Dependencies"] == ["a", "b"]

    images = summary(capsys, tmp_path, "--distribution=fedora", "--release=40", "--dependency=c")
    assert list(images) == ["c", "main"]
    assert images["c"]["Distribution"] == "fedora"


# -- summary --origins (this project's own feature) ----------------------------------------------------------


def test_summary_origins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Output]\nImageId=conf\n",
            "mkosi.conf.d/10-applied.conf": "[Content]\n\nPackages=vim\n",
            "mkosi.conf.d/20-skipped.conf": "[Match]\nDistribution=fedora\n[Content]\nPackages=dnf\n",
            "mkosi.conf.d/30-trigger.conf": "[Match]\nRelease=|trixie\nRelease=|sid\n[Content]\nPackages=x\n",
        },
    )
    result = run(capsys, "-C", str(tmp_path), "summary", "--origins")
    assert result.rc == 0, result.err
    lines = result.out.splitlines()

    def line_of(name: str, value: str) -> str:
        found = [line for line in lines if line.strip().startswith(f"{name}:") and value in line]
        assert found, f"no summary line for {name}"
        return found[0]

    assert f"{tmp_path / 'mkosi.conf'}:3" in line_of("Release", "bookworm")
    assert f"{tmp_path / 'mkosi.conf'}:5" in line_of("ImageId", "conf")
    assert f"{tmp_path / 'mkosi.conf.d/10-applied.conf'}:3" in line_of("Packages", "vim")

    skipped = [line for line in lines if str(tmp_path / "mkosi.conf.d/20-skipped.conf") in line]
    assert skipped, result.out
    assert any("Distribution" in line and "fedora" in line for line in skipped), skipped
    assert any(str(tmp_path / "mkosi.conf.d/30-trigger.conf") in line for line in lines)
    assert "dnf" not in line_of("Packages", "vim")


def test_summary_origins_names_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nImageId=conf\n"})
    result = run(capsys, "-C", str(tmp_path), "--image-id=cli", "summary", "--origins")
    assert result.rc == 0, result.err
    line = next(line for line in result.out.splitlines() if line.strip().startswith("ImageId:"))
    assert "cli" in line
    assert "command line" in line


# -- errors and warnings -------------------------------------------------------------------------------------


def test_invalid_value_is_one_line_with_file_line_setting_and_what_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nFormat=floppy\n"})
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert f"{tmp_path / 'mkosi.conf'}:5" in line
    assert "Format" in line
    assert "floppy" in line
    for accepted in ("disk", "tar", "directory"):
        assert accepted in line


@pytest.mark.parametrize(
    ("assignment", "accepted"),
    [
        ("[Content]\nWithDocs=maybe", "yes"),
        ("[Output]\nCompressLevel=abc", "integer"),
        ("[Output]\nOutputSize=lots", "size"),
        ("[Output]\nSeed=not-a-uuid", "UUID"),
    ],
)
def test_invalid_values_of_other_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], assignment: str, accepted: str
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + assignment + "\n"})
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 1, result.err
    name = assignment.splitlines()[1].split("=")[0]
    assert f"{tmp_path / 'mkosi.conf'}:5" in result.err
    assert name in result.err
    assert accepted.lower() in result.err.lower()


def test_errors_in_different_files_are_all_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Output]\nFormat=floppy\n",
            "mkosi.conf.d/10.conf": "[Content]\nPackages=ok\n",
            "mkosi.conf.d/20.conf": "[Content]\n\nWithDocs=maybe\n",
            "mkosi.images/sub.conf": "[Output]\nCompressLevel=abc\n",
        },
    )
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 3, result.err
    assert f"{tmp_path / 'mkosi.conf'}:5" in result.err
    assert f"{tmp_path / 'mkosi.conf.d/20.conf'}:3" in result.err
    assert f"{tmp_path / 'mkosi.images/sub.conf'}:2" in result.err


def test_syntax_error_and_value_error_are_both_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(
        tmp_path,
        {
            "mkosi.conf": BASE + "[Output]\nFormat=floppy\n",
            "mkosi.conf.d/10.conf": "[Content]\nPackages vim\n",
        },
    )
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 2, result.err
    assert f"{tmp_path / 'mkosi.conf'}:5" in result.err
    assert f"{tmp_path / 'mkosi.conf.d/10.conf'}:2" in result.err


def test_invalid_cli_value_and_file_value_are_both_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Output]\nCompressLevel=abc\n"})
    result = run(capsys, "-C", str(tmp_path), "--format=floppy", "--json", "summary")
    assert result.rc != 0
    assert result.out == ""
    assert len(result.err_lines) == 2, result.err
    assert "--format" in result.err and "floppy" in result.err and "disk" in result.err
    assert f"{tmp_path / 'mkosi.conf'}:5" in result.err


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("Packages=vim\n[Content]\n", 1, ["outside"]),
        ("[Content]\nPackages vim\n", 2, ["Packages vim", "="]),
        ("[Content\nPackages=vim\n", 1, ["[Content"]),
    ],
)
def test_syntax_errors_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, words: list[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE, "mkosi.conf.d/10.conf": text})
    result = failure(capsys, tmp_path)
    assert len(result.err_lines) == 1, result.err
    assert f"{tmp_path / 'mkosi.conf.d/10.conf'}:{line}" in result.err
    for word in words:
        assert word in result.err


def test_unknown_setting_is_a_warning_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Content]\nFrobnicate=yes\nPackages=vim\n"})
    result = run(capsys, "-C", str(tmp_path), "--json", "summary")
    assert result.rc == 0, result.err
    assert json.loads(result.out)["Images"][0]["Packages"] == ["vim"]
    assert len(result.err_lines) == 1, result.err
    assert f"{tmp_path / 'mkosi.conf'}:5" in result.err
    assert "Frobnicate" in result.err


def test_setting_in_the_wrong_section_is_a_warning_and_still_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "Packages=vim\n"})
    result = run(capsys, "-C", str(tmp_path), "--json", "summary")
    assert result.rc == 0, result.err
    assert json.loads(result.out)["Images"][0]["Packages"] == ["vim"]
    assert len(result.err_lines) == 1, result.err
    assert f"{tmp_path / 'mkosi.conf'}:4" in result.err
    assert "Packages" in result.err and "[Content]" in result.err


def test_unknown_section_is_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tree(tmp_path, {"mkosi.conf": BASE + "[Frobnicate]\nPackages=vim\n"})
    result = run(capsys, "-C", str(tmp_path), "--json", "summary")
    assert result.rc == 0, result.err
    assert json.loads(result.out)["Images"][0]["Packages"] == []


def test_unknown_verb_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "-C", str(tmp_path), "frobnicate")
    assert result.rc != 0
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    assert "frobnicate" in result.err


def test_unknown_option_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "-C", str(tmp_path), "--frobnicate", "summary")
    assert result.rc != 0
    assert len(result.err_lines) == 1, result.err
    assert "--frobnicate" in result.err


def unimplemented_verb() -> str:
    """A verb that has no implementation yet (vm first), picked anew as verbs get implemented."""
    from mkosi.cli import Verb
    from mkosi.verbs import VERBS

    for verb in (Verb.vm, Verb.qemu, Verb.ssh, Verb.serve, Verb.journalctl, Verb.coredumpctl, Verb.sysupdate):
        if verb not in VERBS:
            return verb.value
    raise AssertionError("every candidate verb is implemented: pick another subject for this test")


def test_unimplemented_verb_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    verb = unimplemented_verb()
    write_tree(tmp_path, {"mkosi.conf": BASE})
    result = run(capsys, "-C", str(tmp_path), verb)
    assert result.rc == 1
    assert result.out == ""
    assert len(result.err_lines) == 1, result.err
    assert "not implemented yet" in result.err
    assert verb in result.err
