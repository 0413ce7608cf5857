"""Settings of the [Config] and [Include] sections: how configuration itself is assembled."""

from __future__ import annotations

from mkosi import __version__
from mkosi.config.settings.base import Scope, Setting
from mkosi.config.values import Custom, ListKind, PathRules, ValueProblem, filename_item
from mkosi.config.versions import GenericVersion


def _minimum_version(text: str, old: str | None) -> str | None:
    if not text:
        return old
    if text.startswith("commit:"):
        raise ValueProblem("a git commit can only be required of a git checkout of upstream mkosi")
    if GenericVersion(text) > __version__:
        raise ValueProblem(f"mkosi {text} or newer is required by this configuration (this is {__version__})")
    if old and GenericVersion(old) >= GenericVersion(text):
        return old
    return text


#: Configurations that ship with mkosi and can be named in Include= without a path.
BUILTIN_CONFIGS = ("mkosi-tools", "mkosi-initrd", "mkosi-vm", "mkosi-addon", "mkosi-obs")

SETTINGS = [
    Setting(
        "Include",
        "Include",
        ListKind(item=PathRules(constants=BUILTIN_CONFIGS).parse, reset=False, metavar="PATH"),
        "Read these configuration files or directories in place of this assignment",
        short="-I",
        long="--include",
        in_json=False,
        tools=True,
    ),
    Setting(
        "Profiles",
        "Config",
        ListKind(item=filename_item("a profile is a name, not a path"), match_enabled=True),
        "Enable these profiles (files or directories in mkosi.profiles/)",
        scope=Scope.inherit,
        long="--profile",
        old_names=("Profile",),
        match=True,
        tools=True,
        metavar="PROFILE",
    ),
    Setting(
        "Dependencies",
        "Config",
        ListKind(metavar="IMAGE"),
        "Build these subimages before this image",
        long="--dependency",
    ),
    Setting(
        "MinimumVersion",
        "Config",
        Custom(parse_fn=_minimum_version, metavar="VERSION"),
        "Refuse to run with a mkosi older than this version",
        scope=Scope.main,
    ),
    Setting(
        "ConfigureScripts",
        "Config",
        ListKind(item=PathRules().parse, globs=True, metavar="PATH"),
        "Scripts that receive the configuration as JSON and may modify it",
        paths=("configure",),
        long="--configure-script",
    ),
    Setting(
        "PassEnvironment",
        "Config",
        ListKind(delimiter=" ", metavar="NAME"),
        "Pass these variables of Environment= on to subimages",
        scope=Scope.main,
    ),
]
