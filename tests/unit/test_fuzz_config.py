"""Property tests: whatever the configuration files or the command line say, mkosi fails politely.

* Garbled configuration trees (random sections, known and unknown keys, specifiers, ``|``, ``!``, unicode,
  very long lines, continuation lines, binary garbage) make the loader either succeed or raise
  ``MkosiError``, the one user-facing error type; a successful load can always be summarised.
* Random command lines (known flags with random values, unknown flags, verbs) make ``main()`` return an
  int without printing a traceback or an "internal error". Only command lines whose verb merely reads
  and prints are run (summary, cat-config, help): anything that would build, boot or write keys is
  skipped, so the test never leaves its temporary directory.

Bounded: 80 to 200 examples per test, no deadline, derandomized; well under 20 s in total.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mkosi import log
from mkosi.__main__ import main
from mkosi.cli import Verb, parse_args
from mkosi.config.images import load
from mkosi.config.settings import BY_NAME, SECTIONS, SETTINGS
from mkosi.config.summary import summary_json, summary_text
from mkosi.config.syntax import read_entries
from mkosi.errors import MkosiError

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- configuration files ---------------------------------------------------------------------------------

SECTION_NAMES = sorted(SECTIONS | {"Match", "TriggerMatch", "Assert", "TriggerAssert", "Include", "Config"})
KEYS = sorted(BY_NAME) + ["PathExists", "SystemdVersion", "HostArchitecture", "Image"]

#: Characters for free text: anything printable or not, but no surrogates (files are UTF-8).
TEXT = st.characters(exclude_categories=["Cs"])
#: Values that reach interesting code: specifiers, triggers, negations, versions, sizes, paths, globs.
INTERESTING = [
    "",
    "yes",
    "no",
    "auto",
    "debian",
    "fedora",
    "bookworm",
    "x86-64",
    "disk",
    "tar",
    "%d",
    "%%",
    "%C",
    "%D",
    "%P",
    "%I",
    "%F",
    "%v-%r",
    "%",
    "a%",
    "%z",
    "|debian",
    "!fedora",
    "|!debian",
    "!|x",
    ">=1",
    "<=~rc",
    "==",
    "!=1.0^post",
    "1G",
    "0",
    "-1",
    "99999999999999999999999",
    "random",
    "00000000-0000-0000-0000-000000000000",
    "a=b",
    "A=1 B=2",
    "FOO",
    "*",
    "?[",
    "..",
    "../x",
    "a/b",
    "/nonexistent/path",
    "%D/mkosi.conf",
    "%D/mkosi.conf.d",
    "~",
    "$HOME",
    "${UNSET}/x",
    "file:x",
    "engine:",
    "a:b:c",
    "x\x00y",
    "ünïcödé ☃ 日本語",
    "\t",
    "'unbalanced",
    '"quoted value"',
    "a,b,,c",
    "!*",
]

values = st.one_of(
    st.sampled_from(INTERESTING),
    st.text(TEXT, max_size=30).filter(lambda s: "\n" not in s and "\r" not in s),
    st.tuples(st.sampled_from(["", "|", "!", "|!", "!|"]), st.sampled_from(INTERESTING)).map("".join),
    st.integers(200, 20000).map(lambda n: "x" * n),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(TEXT, min_size=1, max_size=12))
sections = st.one_of(st.sampled_from(SECTION_NAMES), st.text(TEXT, max_size=12))

lines = st.one_of(
    sections.map(lambda s: f"[{s}]"),
    st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(st.sampled_from(["@", ""]), st.sampled_from(KEYS), values).map(
        lambda t: f"{t[0]}{t[1]}={t[2]}"
    ),
    values.map(lambda v: f"  {v}"),  # continuation
    st.sampled_from(["", "#", "# comment", "  # indented", "=", "[", "]", "[]", "[ ]", "key", "=value"]),
    st.text(TEXT, max_size=40),
)


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    body: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        body.append(f"[{draw(st.sampled_from(SECTION_NAMES))}]")
        body += draw(st.lists(lines, max_size=6))
    indent = draw(st.sampled_from(["", "", "  ", "\t"]))
    return "\n".join(indent + line for line in body) + draw(st.sampled_from(["", "\n", "\r\n"]))


file_contents = st.one_of(
    config_texts(),
    config_texts(),
    config_texts(),
    st.binary(max_size=200),
    st.text(TEXT, max_size=200),
)

#: Where files may go in a tree.
TREE_PATHS = [
    "mkosi.conf",
    "mkosi.conf.d/10.conf",
    "mkosi.conf.d/20.conf",
    "mkosi.conf.d/30-dir/mkosi.conf",
    "mkosi.local.conf",
    "mkosi.images/sub.conf",
    "mkosi.images/other/mkosi.conf",
    "mkosi.images/other/mkosi.conf.d/1.conf",
    "mkosi.profiles/p.conf",
    "mkosi/mkosi.conf",
    "inc.conf",
]

trees = st.dictionaries(st.sampled_from(TREE_PATHS), file_contents, max_size=5)


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Swallow stdout and stderr (and point mkosi's log there); yields the captured stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        log.setup()
        try:
            yield err
        finally:
            log.setup()


@FUZZ
@given(text=config_texts())
@example(text="[Content]\nPackages=" + "a " * 50000)
@example(text="[Match]\nDistribution=|\n[TriggerMatch]\n[Assert]\nPathExists=!\n")
def test_syntax_raises_only_mkosi_errors(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mkosi.conf"
        path.write_text(text)
        try:
            entries = read_entries(path)
        except MkosiError as e:
            assert str(path) in str(e)
            return
    for entry in entries:
        assert "#" not in entry.value
        assert entry.key == entry.key.strip()


@settings(FUZZ, max_examples=100)
@given(
    files=trees,
    extra=st.lists(st.sampled_from(["--profile=p", "--include=inc.conf", "--distribution=fedora"])),
)
@example(files={"mkosi.conf": b"\xff\xfe\x00garbage"}, extra=[])
@example(files={"mkosi.conf": "[Include]\nInclude=%D\n[Config]\nProfiles=p\n"}, extra=[])
@example(files={"mkosi.conf": "[Output]\nImageId=x\x00y\n[Match]\nPathExists=x\x00y\n"}, extra=[])
@example(
    files={"mkosi.conf.d/10.conf": "[Match]\nImage=|sub\nImage=|!main\n", "mkosi.images/sub.conf": ""},
    extra=[],
)
@example(files={"mkosi.conf": "[Include]\nInclude=" + "x" * 300 + "\n"}, extra=[])
@example(files={"mkosi.conf": "[Build]\nBuildSources=a\x00b\n"}, extra=[])
def test_loader_raises_only_mkosi_errors(files: dict[str, str | bytes], extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d, quiet():
        root = Path(d)
        write_files(root, files)
        args, cli, _ = parse_args(["-C", d, *extra, "summary"])
        try:
            images = load(args, cli)
        except MkosiError as e:
            assert e.message
            return
        # Whatever loads can be shown.
        summary_json(images)
        summary_text(images, origins=True)


# -- command lines ----------------------------------------------------------------------------------------

SETTING_FLAGS = sorted(
    {flag for s in SETTINGS for flag in (s.long_option, *s.long_aliases, s.short or s.long_option)}
)
OTHER_FLAGS = [
    "-f",
    "-ff",
    "--force",
    "--json",
    "--origins",
    "--no-pager",
    "-B",
    "--auto-bump",
    "-w",
    "-R",
    "--debug-timing",
    "--debug-shell",
    "--genkey-valid-days",
    "--genkey-common-name",
    "--doc-format",
    "-h",
    "--help",
]
UNKNOWN_FLAGS = ["--frobnicate", "-Z", "--format-", "---", "--", "-", "--=", "--json=yes", "--no-such=1"]
VERBS = [v.value for v in Verb] + ["frobnicate", "Build", ""]


def flag_tokens(flag: str, value: str, style: int) -> list[str]:
    if style == 0:
        return [flag]
    if style == 1:
        return [flag, value]
    return [f"{flag}={value}"]


tokens = st.one_of(
    st.builds(flag_tokens, st.sampled_from(SETTING_FLAGS), values, st.integers(0, 2)),
    st.builds(flag_tokens, st.sampled_from(OTHER_FLAGS), values, st.integers(0, 2)),
    st.sampled_from(UNKNOWN_FLAGS).map(lambda f: [f]),
    st.sampled_from(VERBS).map(lambda v: [v]),
    values.map(lambda v: [v]),
)
#: Half of the command lines are settings only (``--flag=value``), so that most of them reach the loader.
command_lines = st.one_of(
    st.lists(st.builds(flag_tokens, st.sampled_from(SETTING_FLAGS), values, st.just(2)), max_size=4),
    st.lists(tokens, max_size=6),
).map(lambda ts: [t for group in ts for t in group])


#: What main() may be asked to do here: read the configuration and print it, nothing else.
SAFE_VERBS = frozenset({Verb.summary, Verb.cat_config, Verb.help})


def safe_to_run(argv: list[str]) -> bool:
    """Whether ``main(argv)`` stays harmless: it fails while parsing, or its verb only prints."""
    try:
        with quiet():
            args, _, _ = parse_args(argv)
    except Exception:  # main() fails at the same place, which is what the test checks
        return True
    return args.verb in SAFE_VERBS


#: Mostly verbs that load the configuration, so that the loader sees these command lines.
verbs = st.one_of(st.sampled_from(["summary", "cat-config"]), st.sampled_from(VERBS))


@settings(FUZZ, max_examples=80)
@given(argv=command_lines, verb=verbs, files=trees)
@example(argv=["--help"], verb="summary", files={})
@example(argv=["--format="], verb="summary", files={})
@example(argv=["summary", "--"], verb="x", files={})
@example(argv=["--image-id=a\x00b", "--output-directory=\x00"], verb="summary", files={})
@example(argv=["--json"], verb="summary", files={"mkosi.conf": "[Output]\nFormat=floppy\n"})
@example(argv=["--package-directory=" + "x" * 300], verb="summary", files={})
def test_main_never_prints_a_traceback(argv: list[str], verb: str, files: dict[str, str | bytes]) -> None:
    full = [*argv, verb]
    # Keep the run inside the temporary directory: no other -C.
    assume(not any(t.startswith(("-C", "--directory", "--dir")) for t in full))
    # --debug asks for tracebacks.
    assume("--debug" not in full)
    with tempfile.TemporaryDirectory() as d:
        write_files(Path(d), files)
        # Only verbs that read and print may run: a command line that parses into build, boot, genkey, …
        # (or into the default verb, build, after a stray "--") would really do it.
        assume(safe_to_run(["-C", d, *full]))
        with quiet() as err:
            rc = main(["-C", d, *full])
    assert isinstance(rc, int)
    assert "Traceback" not in err.getvalue()
    # main() turns anything that is not a MkosiError into "internal error: ...": that is a bug too.
    assert "internal error" not in err.getvalue(), err.getvalue()[:2000]


def test_version_flag_returns_zero() -> None:
    # Kept out of the random command lines above so that they keep exploring while this one fails.
    with quiet() as err:
        try:
            rc: object = main(["--version"])
        except SystemExit as e:
            rc = f"SystemExit({e.code})"
    assert rc == 0
    assert "Traceback" not in err.getvalue()
