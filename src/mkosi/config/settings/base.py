"""The shape of one entry of the settings table."""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from mkosi.config.values import Kind, NoneType, returned_type, union_members


class Scope(enum.Enum):
    """How a setting behaves in multi-image builds (the manual's "BUILDING MULTIPLE IMAGES")."""

    #: Per image; not passed down.
    local = "local"
    #: Set on the main image (or the tools tree) and forced on every subimage.
    universal = "universal"
    #: Only settable on the main image; passed to subimages and the tools tree.
    multiversal = "multiversal"
    #: Passed down to subimages as a default they may override.
    inherit = "inherit"
    #: Only settable on the main image; not passed down.
    main = "main"
    #: Only settable on the main image; configures the default tools tree.
    tools = "tools"
    #: Only settable on the main image; configures the default initrd.
    initrd = "initrd"
    #: Like inherit, but only the default initrd inherits it.
    initrd_inherit = "initrd-inherit"

    def main_only(self) -> bool:
        return self in (Scope.main, Scope.tools, Scope.initrd, Scope.multiversal)

    def passed_down(self) -> bool:
        return self in (Scope.universal, Scope.multiversal)


#: ``Defaults`` callbacks receive the values of the settings they depend on (by attribute name), plus
#: ``image`` (the image name) and ``directory`` (the directory mkosi runs in).
DefaultFactory = Callable[[Mapping[str, Any]], Any]


def snake(name: str) -> str:
    """``OutputDirectory`` → ``output_directory``; ``CPUs`` → ``cpus``; ``VSockCID`` → ``vsock_cid``."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Setting:
    """One setting: everything parsing, the command line, defaults, summary and JSON need."""

    name: str
    section: str
    kind: Kind
    help: str
    #: A fixed default (used when nothing is assigned); ``None`` means ``kind.unset()``.
    default: Any = None
    #: A computed default; called with the values of ``depends`` (attribute names).
    default_factory: DefaultFactory | None = None
    depends: tuple[str, ...] = ()
    scope: Scope = Scope.local
    #: ``-d`` style short option.
    short: str | None = None
    #: If set, the short option takes no argument and stores this value (``-a`` → Autologin=yes).
    short_const: Any = None
    #: Long option; derived from the name (``--output-directory``) unless given.
    long: str | None = None
    #: Extra long options accepted for compatibility.
    long_aliases: tuple[str, ...] = ()
    #: Old names accepted in files (with a deprecation warning).
    old_names: tuple[str, ...] = ()
    #: Specifier letter that expands to this setting's value (``%d`` → Distribution).
    specifier: str = ""
    #: Default files or directories next to the config: ``("extra", "extra.tar")`` → ``mkosi.extra``, …
    paths: tuple[str, ...] = ()
    #: Default files found inside a directory: ``("credentials/*",)``.
    path_globs: tuple[str, ...] = ()
    #: The default file's content (or an executable's output) is the value, not its path.
    path_read_text: bool = False
    #: The default file is a secret (checked for permissions).
    path_secret: bool = False
    #: Whether the setting can be configured for the default tools tree (``ToolsTree*`` settings).
    tools: bool = False
    #: In JSON and ``summary``: the setting is not part of an image's configuration (e.g. ``Include=``).
    in_json: bool = True
    #: ``[Match]`` on this setting uses the kind's ``matches`` (only if the kind is matchable).
    match: bool = False
    #: The argparse metavar override.
    metavar: str | None = None
    #: The attribute name on ``Config`` when ``snake(name)`` reads badly (``CPUs`` → ``cpus``).
    attr: str | None = None

    @functools.cached_property
    def dest(self) -> str:
        return self.attr or snake(self.name)

    @functools.cached_property
    def value_type(self) -> object:
        """The type of the final value, the field type of ``Config``: the kind's type, plus ``None`` if the
        value can end up unset (an empty assignment of a nullable kind whose unset value is None, no default
        at all, or a default factory whose return annotation includes None)."""
        form = self.kind.python_type()
        unset_is_none = self.kind.unset() is None
        if self.default_factory is not None:
            returned = returned_type(self.default_factory)
            members = union_members(returned)
            if any(m is not NoneType and m != form for m in members):
                raise TypeError(f"{self.name}: the default factory returns {returned}, not {form} (or None)")
            default_may_be_none = NoneType in members
        else:
            default_may_be_none = self.default is None and unset_is_none
        if (unset_is_none and self.kind.nullable) or default_may_be_none:
            return operator.or_(form, None)
        return form

    @property
    def long_option(self) -> str:
        return self.long or "--" + snake(self.name).replace("_", "-")

    @property
    def matchable(self) -> bool:
        return self.match and self.kind.matchable()
