"""The command line: verbs, command-line-only options, and one ``--flag`` per setting (from the table)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import getpass
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from mkosi import __version__
from mkosi.config.settings import SETTINGS, Setting
from mkosi.config.syntax import Origin
from mkosi.config.values import ValueProblem
from mkosi.errors import MkosiError


class Verb(enum.StrEnum):
    build = "build"
    clean = "clean"
    summary = "summary"
    cat_config = "cat-config"
    shell = "shell"
    boot = "boot"
    vm = "vm"
    qemu = "qemu"
    ssh = "ssh"
    serve = "serve"
    bump = "bump"
    help = "help"
    genkey = "genkey"
    documentation = "documentation"
    journalctl = "journalctl"
    coredumpctl = "coredumpctl"
    burn = "burn"
    dependencies = "dependencies"
    completion = "completion"
    sysupdate = "sysupdate"
    box = "box"
    sandbox = "sandbox"
    init = "init"
    latest_snapshot = "latest-snapshot"

    def needs_config(self) -> bool:
        return self not in (
            Verb.help,
            Verb.genkey,
            Verb.documentation,
            Verb.dependencies,
            Verb.completion,
            Verb.init,
            Verb.box,
            Verb.sandbox,
        )

    def needs_build(self) -> bool:
        return self in (
            Verb.build,
            Verb.shell,
            Verb.boot,
            Verb.vm,
            Verb.qemu,
            Verb.serve,
            Verb.burn,
            Verb.sysupdate,
        )

    def takes_arguments(self) -> bool:
        return self in (
            Verb.build,
            Verb.shell,
            Verb.boot,
            Verb.vm,
            Verb.qemu,
            Verb.ssh,
            Verb.journalctl,
            Verb.coredumpctl,
            Verb.burn,
            Verb.documentation,
            Verb.completion,
            Verb.sysupdate,
            Verb.box,
            Verb.sandbox,
            Verb.dependencies,
        )


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line-only options (everything that is not a setting)."""

    verb: Verb = Verb.build
    cmdline: list[str] = dataclasses.field(default_factory=list)
    force: int = 0
    directory: Path | None = None
    debug: bool = False
    debug_shell: bool = False
    debug_workspace: bool = False
    debug_sandbox: bool = False
    debug_timing: bool = False
    pager: bool = True
    genkey_valid_days: str = "730"
    genkey_common_name: str = ""
    auto_bump: bool = False
    doc_format: str = "auto"
    json: bool = False
    wipe_build_dir: bool = False
    rerun_build_scripts: bool = False
    origins: bool = False


class UsageError(MkosiError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see mkosi --help)", exit_code=2)


@dataclasses.dataclass
class CliValues:
    """Settings given on the command line: values, explicit resets, origins and problems."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    reset: set[str] = dataclasses.field(default_factory=set)
    origins: dict[str, list[Origin]] = dataclasses.field(default_factory=dict)
    errors: list[MkosiError] = dataclasses.field(default_factory=list)


class _SettingAction(argparse.Action):
    def __init__(self, *args: Any, setting: Setting, sink: CliValues, **kwargs: Any) -> None:
        self.setting = setting
        self.sink = sink
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        s = self.setting
        if self.const is not None and not values:
            text = self.const
        else:
            text = "" if values is None else str(values)
        try:
            new = s.kind.parse(text, self.sink.values.get(s.dest))
        except ValueProblem as e:
            self.sink.errors.append(MkosiError(f"{option_string}={text}: {e}"))
            return
        if new is None:
            self.sink.reset.add(s.dest)
        self.sink.values[s.dest] = new
        self.sink.origins.setdefault(s.dest, []).append(
            Origin(None, 0, f"{option_string} on the command line")
        )


def _short_const_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


def build_parser(sink: CliValues) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mkosi",
        description="Build bespoke OS images",
        usage="mkosi [options…] [verb] [-- arguments…]\n\n  verbs: " + ", ".join(v.value for v in Verb),
        add_help=False,
        allow_abbrev=False,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"mkosi {__version__}")
    parser.add_argument("-h", "--help", action="store_true", dest="show_help", help="Show this help")
    parser.add_argument(
        "-f",
        "--force",
        action="count",
        dest="force",
        default=0,
        help="Remove existing outputs first (-ff: also caches, -fff: also the package cache)",
    )
    parser.add_argument(
        "-C", "--directory", metavar="PATH", help="Change to this directory before doing anything"
    )
    parser.add_argument(
        "--debug", action="store_true", default=False, help="Show debug output and tracebacks"
    )
    parser.add_argument(
        "--debug-shell",
        action="store_true",
        default=False,
        help="Open a shell in the image when a command inside it fails",
    )
    parser.add_argument(
        "--debug-workspace",
        action="store_true",
        default=False,
        help="Keep the workspace when the build fails",
    )
    parser.add_argument(
        "--debug-sandbox", action="store_true", default=False, help="Trace the sandbox that runs commands"
    )
    parser.add_argument(
        "--debug-timing", action="store_true", default=False, help="Show the duration of every build step"
    )
    parser.add_argument(
        "--no-pager", action="store_false", dest="pager", default=True, help="Do not page long output"
    )
    parser.add_argument(
        "--genkey-valid-days",
        metavar="DAYS",
        default="730",
        help="Validity of the certificate made by genkey",
    )
    parser.add_argument(
        "--genkey-common-name",
        metavar="CN",
        default=None,
        help="Common name of the certificate made by genkey",
    )
    parser.add_argument(
        "-B",
        "--auto-bump",
        action="store_true",
        default=False,
        help="Bump the image version after a successful build",
    )
    parser.add_argument(
        "--doc-format",
        default="auto",
        choices=["auto", "markdown", "man", "pandoc", "system"],
        help="Format of the documentation verb",
    )
    parser.add_argument("--json", action="store_true", default=False, help="Show the summary as JSON")
    parser.add_argument(
        "--origins",
        action="store_true",
        default=False,
        help="In the summary, show where each value came from and which [Match] failed",
    )
    parser.add_argument(
        "-w",
        "--wipe-build-dir",
        action="store_true",
        default=False,
        help="Empty the build directory before building",
    )
    parser.add_argument(
        "-R",
        "--rerun-build-scripts",
        action="store_true",
        default=False,
        help="Run the build scripts again without rebuilding the image",
    )
    parser.add_argument("verb", nargs="?", default="build", help=argparse.SUPPRESS)
    parser.add_argument("cmdline", nargs="*", default=[], help=argparse.SUPPRESS)

    section = None
    group: Any = parser
    for s in SETTINGS:
        if s.section != section:
            section = s.section
            group = parser.add_argument_group(f"[{section}] settings")
        metavar = s.metavar or s.kind.metavar
        if s.short and s.short_const is not None:
            group.add_argument(
                s.short,
                action=_SettingAction,
                setting=s,
                sink=sink,
                nargs=0,
                const=_short_const_text(s.short_const),
                help=argparse.SUPPRESS,
            )
            group.add_argument(
                s.long_option,
                *s.long_aliases,
                action=_SettingAction,
                setting=s,
                sink=sink,
                metavar=metavar,
                help=s.help,
            )
            continue
        opts = [o for o in (s.short, s.long_option) if o]
        group.add_argument(*opts, action=_SettingAction, setting=s, sink=sink, metavar=metavar, help=s.help)
        for alias in s.long_aliases:
            group.add_argument(
                alias, action=_SettingAction, setting=s, sink=sink, metavar=metavar, help=argparse.SUPPRESS
            )
    return parser


def parse_args(argv: list[str]) -> tuple[Args, CliValues, argparse.ArgumentParser]:
    sink = CliValues()
    parser = build_parser(sink)
    # Everything after "--" belongs to the verb (the command to run in the image, etc.).
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    # Like mkosi, values on the command line are relative to the -C directory.
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("-C", "--directory")
    known, _ = early.parse_known_args(argv)
    cwd = Path(known.directory) if known.directory else Path.cwd()
    if not cwd.is_dir():
        raise UsageError(f"-C {known.directory}: not a directory")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        ns = parser.parse_args(argv)
    finally:
        os.chdir(old)
    try:
        verb = Verb(ns.verb)
    except ValueError:
        raise UsageError(
            f"unknown verb {ns.verb!r} (one of {', '.join(v.value for v in Verb)})", exit_code=2
        ) from None
    cmdline = [*ns.cmdline, *extra]
    if cmdline and not verb.takes_arguments():
        raise UsageError(f"the {verb.value} verb takes no arguments (got {' '.join(cmdline)})", exit_code=2)
    directory = Path(ns.directory) if getattr(ns, "directory", None) else Path.cwd()
    if not directory.is_dir():
        raise UsageError(f"-C {ns.directory}: not a directory")
    args = Args(
        verb=Verb.help if getattr(ns, "show_help", False) else verb,
        cmdline=cmdline,
        force=ns.force,
        directory=directory.absolute(),
        debug=ns.debug,
        debug_shell=ns.debug_shell,
        debug_workspace=ns.debug_workspace,
        debug_sandbox=ns.debug_sandbox,
        debug_timing=ns.debug_timing,
        pager=ns.pager,
        genkey_valid_days=ns.genkey_valid_days,
        genkey_common_name=ns.genkey_common_name or f"mkosi of {_user()}",
        auto_bump=ns.auto_bump,
        doc_format=ns.doc_format,
        json=ns.json,
        wipe_build_dir=ns.wipe_build_dir,
        rerun_build_scripts=ns.rerun_build_scripts,
        origins=ns.origins,
    )
    if args.rerun_build_scripts and args.force:
        raise UsageError("--force cannot be combined with --rerun-build-scripts")
    return args, sink, parser


def _user() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def print_help(parser: argparse.ArgumentParser) -> None:
    sys.stdout.write(parser.format_help())
