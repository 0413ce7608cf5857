"""The syntax of one configuration file (``mkosi.config.syntax``).

Sections, assignments, continuation lines, comments, indentation and the errors that name file and line.
Every test writes a real file and reads it back, so the path in messages is the one a user would see.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mkosi.config.syntax import Entry, Origin, SyntaxProblem, read_entries
from mkosi.errors import MkosiError

Row = tuple[str, str, str, int]


def write(tmp_path: Path, text: str, name: str = "mkosi.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(tmp_path: Path, text: str) -> list[Row]:
    """(section, key, value, line) of every entry, section ends included (key and value empty)."""
    path = write(tmp_path, text)
    entries = read_entries(path)
    for e in entries:
        assert isinstance(e, Entry)
        assert e.origin.path == path
    return [(e.section, e.key, e.value, e.origin.line) for e in entries]


def assignments(tmp_path: Path, text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of the assignments only."""
    return [(s, k, v) for s, k, v, _ in rows(tmp_path, text) if k]


def problem(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SyntaxProblem) as info:
        read_entries(path)
    # The problem is a user-facing error: __main__ prints it as one line without a traceback.
    assert isinstance(info.value, MkosiError)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- sections and assignments ---------------------------------------------------------------------------


def test_sections_assignments_and_section_ends(tmp_path: Path) -> None:
    text = "[Distribution]\nDistribution=debian\nRelease=bookworm\n[Content]\nPackages=vim\n"
    assert rows(tmp_path, text) == [
        ("Distribution", "Distribution", "debian", 2),
        ("Distribution", "Release", "bookworm", 3),
        ("Distribution", "", "", 1),
        ("Content", "Packages", "vim", 5),
        ("Content", "", "", 4),
    ]


def test_section_end_marker(tmp_path: Path) -> None:
    entries = read_entries(write(tmp_path, "[Match]\nDistribution=debian\n"))
    assert [e.is_section_end for e in entries] == [False, True]
    assert entries[1].section == "Match"


def test_empty_file_and_file_of_comments(tmp_path: Path) -> None:
    assert rows(tmp_path, "") == []
    assert rows(tmp_path, "\n\n   \n# nothing here\n\t# nor here\n") == []


def test_section_without_assignments(tmp_path: Path) -> None:
    assert rows(tmp_path, "[Output]\n[Content]\n") == [("Output", "", "", 1), ("Content", "", "", 2)]


def test_repeated_sections_and_keys_are_kept_in_order(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a\n[Output]\nFormat=tar\n[Content]\nPackages=b\nPackages=c\n"
    assert assignments(tmp_path, text) == [
        ("Content", "Packages", "a"),
        ("Output", "Format", "tar"),
        ("Content", "Packages", "b"),
        ("Content", "Packages", "c"),
    ]


def test_whitespace_around_names_and_values_is_stripped(tmp_path: Path) -> None:
    text = "[  Distribution\t]\n  Distribution   =   debian   \nRelease\t=\tbookworm\n"
    assert assignments(tmp_path, text) == [
        ("Distribution", "Distribution", "debian"),
        ("Distribution", "Release", "bookworm"),
    ]


def test_only_the_first_equals_sign_separates(tmp_path: Path) -> None:
    text = "[Build]\nEnvironment=A=B=C\nKernelCommandLine=console=ttyS0 quiet=\n"
    assert assignments(tmp_path, text) == [
        ("Build", "Environment", "A=B=C"),
        ("Build", "KernelCommandLine", "console=ttyS0 quiet="),
    ]


def test_empty_values(tmp_path: Path) -> None:
    text = "[Content]\nPackages=\nPackages=   \nBuildPackages=\n"
    assert rows(tmp_path, text) == [
        ("Content", "Packages", "", 2),
        ("Content", "Packages", "", 3),
        ("Content", "BuildPackages", "", 4),
        ("Content", "", "", 1),
    ]


def test_specifiers_and_special_characters_are_left_alone(tmp_path: Path) -> None:
    # Expansion, `|`, `!` and `@` belong to the loader; the syntax layer keeps the text as written.
    text = "[Match]\nDistribution=|!fedora\n@Release=%r-%%\nPath=a;b\n"
    assert assignments(tmp_path, text) == [
        ("Match", "Distribution", "|!fedora"),
        ("Match", "@Release", "%r-%%"),
        ("Match", "Path", "a;b"),
    ]


def test_unicode_is_kept(tmp_path: Path) -> None:
    text = "[Output]\nImageId=bücher-ÿ-日本\n"
    assert assignments(tmp_path, text) == [("Output", "ImageId", "bücher-ÿ-日本")]


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "mkosi.conf"
    path.write_bytes(b"[Distribution]\r\nDistribution=debian\r\nRelease=bookworm\r\n")
    entries = read_entries(path)
    assert [(e.key, e.value, e.origin.line) for e in entries if e.key] == [
        ("Distribution", "debian", 2),
        ("Release", "bookworm", 3),
    ]


def test_text_argument_is_parsed_instead_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.conf"
    entries = read_entries(path, "[Output]\nFormat=tar\n")
    assert [(e.section, e.key, e.value) for e in entries if e.key] == [("Output", "Format", "tar")]
    assert str(entries[0].origin) == f"{path}:2"


# -- continuation lines ---------------------------------------------------------------------------------


def test_continuation_lines_join_with_newlines(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a\n    b\n\tc d\nBuildPackages=x\n"
    assert rows(tmp_path, text) == [
        ("Content", "Packages", "a\nb\nc d", 2),
        ("Content", "BuildPackages", "x", 5),
        ("Content", "", "", 1),
    ]


def test_continuation_after_an_empty_value(tmp_path: Path) -> None:
    text = "[Content]\nPackages=\n  a\n  b\n"
    assert assignments(tmp_path, text) == [("Content", "Packages", "\na\nb")]


def test_blank_and_comment_lines_inside_a_continuation(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a\n\n  # a comment line\n  b\n\n  c\n"
    assert assignments(tmp_path, text) == [("Content", "Packages", "a\nb\nc")]


def test_continuation_ends_at_the_next_section(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a\n  b\n[Output]\nFormat=tar\n"
    assert rows(tmp_path, text) == [
        ("Content", "Packages", "a\nb", 2),
        ("Content", "", "", 1),
        ("Output", "Format", "tar", 5),
        ("Output", "", "", 4),
    ]


def test_indented_line_right_after_a_section_is_an_assignment(tmp_path: Path) -> None:
    # Nothing to continue yet: the indented line is an assignment of its own.
    text = "[Content]\n  Packages=a\n"
    assert assignments(tmp_path, text) == [("Content", "Packages", "a")]


def test_indented_line_without_equals_after_a_section_is_an_error(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a\n[Output]\n  tar\n"
    message = problem(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:4:")
    assert "'='" in message


def test_continuation_keeps_equals_signs(tmp_path: Path) -> None:
    text = "[Build]\nEnvironment=A=1\n  B=2\n"
    assert assignments(tmp_path, text) == [("Build", "Environment", "A=1\nB=2")]


# -- comments ---------------------------------------------------------------------------------------------


def test_comments_anywhere_on_a_line(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """\
        # leading comment
        [Distribution] # after a section header
        Distribution=debian# glued to the value
        Release=bookworm   # after spaces
        # Release=trixie
          # indented comment
        Mirror=http://example.org/#anchor
        """
    )
    assert rows(tmp_path, text) == [
        ("Distribution", "Distribution", "debian", 3),
        ("Distribution", "Release", "bookworm", 4),
        ("Distribution", "Mirror", "http://example.org/", 7),
        ("Distribution", "", "", 2),
    ]


def test_commented_out_section_header_does_not_open_a_section(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a\n#[Output]\nBuildPackages=b\n"
    assert assignments(tmp_path, text) == [("Content", "Packages", "a"), ("Content", "BuildPackages", "b")]


def test_comment_in_continuation_line(tmp_path: Path) -> None:
    text = "[Content]\nPackages=a # first\n  b # second\n  # third\n  c\n"
    assert assignments(tmp_path, text) == [("Content", "Packages", "a\nb\nc")]


def test_semicolon_is_not_a_comment(tmp_path: Path) -> None:
    assert assignments(tmp_path, "[Content]\nPackages=a;b\n") == [("Content", "Packages", "a;b")]


# -- indentation ------------------------------------------------------------------------------------------


def test_uniformly_indented_file_is_dedented(tmp_path: Path) -> None:
    text = "    [Distribution]\n    Distribution=debian\n    Release=bookworm\n"
    assert rows(tmp_path, text) == [
        ("Distribution", "Distribution", "debian", 2),
        ("Distribution", "Release", "bookworm", 3),
        ("Distribution", "", "", 1),
    ]


def test_dedent_keeps_relative_indentation_for_continuations(tmp_path: Path) -> None:
    text = "  [Content]\n  Packages=a\n      b\n  BuildPackages=c\n"
    assert assignments(tmp_path, text) == [
        ("Content", "Packages", "a\nb"),
        ("Content", "BuildPackages", "c"),
    ]


def test_dedent_with_blank_lines_keeps_line_numbers(tmp_path: Path) -> None:
    text = "\n  [Content]\n\n  Packages=a\n"
    assert rows(tmp_path, text) == [("Content", "Packages", "a", 4), ("Content", "", "", 2)]


# -- origins ------------------------------------------------------------------------------------------------


def test_origin_is_file_and_line_of_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[Content]\n\nPackages=a\n  b\n  c\nBuildPackages=d\n")
    entries = [e for e in read_entries(path) if e.key]
    assert [str(e.origin) for e in entries] == [f"{path}:3", f"{path}:6"]


def test_origin_text() -> None:
    assert str(Origin(Path("/x/mkosi.conf"), 7)) == "/x/mkosi.conf:7"
    assert str(Origin(Path("/x/mkosi.extra"), 0, "default path")) == "/x/mkosi.extra"
    assert str(Origin(None, 0, "--format on the command line")) == "--format on the command line"
    assert str(Origin(None)) == "command line"


# -- errors -------------------------------------------------------------------------------------------------


def test_setting_outside_a_section(tmp_path: Path) -> None:
    message = problem(tmp_path, "# header\n\nDistribution=debian\n[Distribution]\n")
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:3:")
    assert "Distribution=debian" in message
    assert "section" in message


def test_missing_equals_sign(tmp_path: Path) -> None:
    message = problem(tmp_path, "[Distribution]\nDistribution=debian\nRelease bookworm\n")
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:3:")
    assert "Release bookworm" in message
    assert "'='" in message


def test_missing_setting_name(tmp_path: Path) -> None:
    message = problem(tmp_path, "[Distribution]\n=debian\n")
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:2:")
    assert "=debian" in message


@pytest.mark.parametrize("header", ["[Distribution", "[Distribution]x", "[Distribution] ]x"])
def test_bad_section_header(tmp_path: Path, header: str) -> None:
    message = problem(tmp_path, f"[Output]\nFormat=tar\n{header}\nDistribution=debian\n")
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:3:")
    assert header.split("#")[0].strip() in message
    assert "section" in message


@pytest.mark.parametrize("header", ["[]", "[   ]"])
def test_empty_section_name(tmp_path: Path, header: str) -> None:
    message = problem(tmp_path, f"\n{header}\nFormat=tar\n")
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:2:")
    assert "section" in message.lower()


def test_error_line_number_counts_continuation_lines(tmp_path: Path) -> None:
    message = problem(tmp_path, "[Content]\nPackages=a\n  b\n  c\nbroken\n")
    assert message.startswith(f"{tmp_path / 'mkosi.conf'}:5:")


def test_error_names_the_file_it_is_in(tmp_path: Path) -> None:
    (tmp_path / "mkosi.conf.d").mkdir()
    path = write(tmp_path, "[Content]\nPackages=a\noops\n", "mkosi.conf.d/20-broken.conf")
    with pytest.raises(SyntaxProblem, match=r"mkosi\.conf\.d/20-broken\.conf:3:"):
        read_entries(path)


def test_binary_file_is_a_syntax_problem(tmp_path: Path) -> None:
    path = tmp_path / "mkosi.conf"
    path.write_bytes(b"[Content]\nPackages=\xff\xfe\x00\x80\n")
    with pytest.raises(SyntaxProblem) as info:
        read_entries(path)
    assert str(path) in str(info.value)


def test_unreadable_path_is_a_syntax_problem(tmp_path: Path) -> None:
    with pytest.raises(SyntaxProblem) as info:
        read_entries(tmp_path / "missing.conf")
    assert str(tmp_path / "missing.conf") in str(info.value)
    with pytest.raises(SyntaxProblem):
        read_entries(tmp_path)  # a directory
