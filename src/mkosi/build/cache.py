"""Incremental builds (``Incremental=``) and when repository metadata is synced (``CacheOnly=``).

With ``Incremental=yes`` the root is saved right after the packages are installed (the manual's step 12:
base trees, skeleton trees, packages and prepare scripts are in it; nothing of the extra trees, scripts or
finalize settings is) to ``<CacheDirectory>/<CacheKey>.cache/``, with ``<CacheKey>.cache.json`` beside it: the
cache key, a digest over exactly the inputs that shaped that tree (see :func:`key_inputs`). The next build
whose inputs have the same digest starts from a copy of the saved tree (a reflink copy where the file system
can) and skips those steps. ``Incremental=strict`` fails when there is no up-to-date cache; ``-ff`` removes
the cache before building. Whether the cache is reused is decided before the sync scripts run (they get
the answer as ``$CACHED``); the tree is copied in after them.

``CacheOnly=`` (the manual's CACHING section): ``auto`` syncs repository metadata only when some image has no
up-to-date cache, and then — as new metadata may bring new package versions — every cache of the build is
invalidated; ``never`` always syncs (so caches are always rebuilt); ``metadata`` and ``always`` never sync,
reusing the metadata of an earlier build. ``always`` also never downloads a package: apt runs without a
network and takes them from the package cache (see :class:`mkosi.installers.apt.AptSetup`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mkosi import log
from mkosi.build.context import Context, Shared
from mkosi.build.trees import copy_tree
from mkosi.config.model import CacheOnly, Incremental, OutputFormat
from mkosi.config.typed import Config
from mkosi.config.values import ConfigTree
from mkosi.errors import MkosiError

#: Bump when what a cached tree contains changes meaning (old caches are then out of date).
CACHE_FORMAT = 1

#: Settings whose values shape the cached tree, by attribute name. Trees and scripts among them count by
#: their contents (see :func:`key_inputs`). Nothing else is part of the key.
KEY_SETTINGS = (
    "distribution",
    "release",
    "architecture",
    "mirror",
    "local_mirror",
    "snapshot",
    "repositories",
    "packages",
    "with_docs",
    "with_recommends",
    "package_directories",
    "sandbox_trees",
    "skeleton_trees",
    "base_trees",
    "prepare_scripts",
    # Prepare scripts see Environment=; without prepare scripts it shapes nothing that is cached.
    "environment",
)

# ---------------------------------------------------------------------------------------------------------
# The key


def fingerprint(path: Path) -> str:
    """A digest of a file or directory tree: every entry's relative path, type and mode, size, modification
    time and symlink target. Any change to a file (content, mtime or size), an added or a removed entry
    changes it; nothing is read but metadata, so it is fast even for a whole OS tree."""
    digest = hashlib.sha256()

    def entry(rel: str, st: os.stat_result, full: str) -> None:
        link = os.readlink(full) if os.path.islink(full) else ""
        digest.update(f"{rel}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())

    if not os.path.lexists(path):
        return "missing"
    top = os.fspath(path)
    entry(".", os.lstat(top), top)
    if os.path.isdir(top) and not os.path.islink(top):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted([*dirnames, *filenames]):
                full = os.path.join(dirpath, name)
                entry(os.path.relpath(full, top), os.lstat(full), full)
    return digest.hexdigest()


def _content(path: Path) -> str:
    if path.is_dir():
        return fingerprint(path)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def _plain(value: Any) -> Any:
    """A setting's value as JSON (enums by value, paths as strings, collections recursively)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, type):
        return _plain(value.value)
    return str(value)


def key_inputs(config: Config, resolve: Callable[[Path], Path] = lambda p: p) -> dict[str, Any]:
    """Everything the cached tree depends on, as JSON. ``resolve`` maps a base tree path to where it really
    is now (an image built earlier in the same invocation is still staged)."""
    c = config
    prepare = [Path(p) for p in c.prepare_scripts or []]
    return {
        "format": CACHE_FORMAT,
        "distribution": _plain(c.distribution),
        "release": _plain(c.release),
        "architecture": _plain(c.architecture),
        "mirror": _plain(c.mirror),
        "local_mirror": _plain(c.local_mirror),
        "snapshot": _plain(c.snapshot),
        "repositories": _plain(c.repositories or []),
        "packages": _plain(c.packages or []),
        "with_docs": _plain(c.with_docs),
        "with_recommends": _plain(c.with_recommends),
        "package_directories": [
            {"path": os.fspath(p), "fingerprint": fingerprint(Path(p))} for p in c.package_directories or []
        ],
        "sandbox_trees": [_tree(t) for t in c.sandbox_trees or []],
        "skeleton_trees": [_tree(t) for t in c.skeleton_trees or []],
        "base_trees": [
            {"path": os.fspath(p), "fingerprint": fingerprint(resolve(Path(p)))} for p in c.base_trees or []
        ],
        "prepare_scripts": [{"path": os.fspath(p), "sha256": _content(p)} for p in prepare],
        "environment": _plain(c.environment or {}) if prepare else {},
    }


def _tree(tree: ConfigTree) -> dict[str, Any]:
    return {
        "source": os.fspath(tree.source),
        "target": os.fspath(tree.target) if tree.target else None,
        "fingerprint": fingerprint(Path(tree.source)),
    }


def key_digest(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The names of the settings whose inputs differ (``Packages=``, …), for the log."""
    from mkosi.config.settings import BY_DEST

    names = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            setting = BY_DEST.get(key)
            names.append(f"{setting.name}=" if setting else key)
    return names


# ---------------------------------------------------------------------------------------------------------
# Where caches live


def expand_cache_key(config: Config) -> str:
    """``CacheKey=`` with its delayed ``&`` specifiers expanded (``&d~&r~&a~&I`` → ``debian~bookworm~…``)."""
    values = {
        "d": _plain(config.distribution),
        "r": _plain(config.release),
        "a": _plain(config.architecture),
        "i": config.image_id or "",
        "v": config.image_version or "",
        "I": config.name,
        "&": "&",
    }
    text = str(config.cache_key or "&d~&r~&a~&I")
    out = []
    i = 0
    while i < len(text):
        if text[i] == "&" and i + 1 < len(text):
            letter = text[i + 1]
            if letter not in values:
                raise MkosiError(f"CacheKey={text}: unknown specifier &{letter}")
            out.append(str(values[letter] or ""))
            i += 2
            continue
        out.append(text[i])
        i += 1
    name = "".join(out)
    if not name or "/" in name or name in (".", ".."):
        raise MkosiError(f"CacheKey={text}: expands to {name!r}, which is not a file name")
    return name


@dataclasses.dataclass(frozen=True)
class CachePaths:
    tree: Path
    manifest: Path

    @classmethod
    def of(cls, config: Config) -> CachePaths | None:
        if not config.cache_directory:
            return None
        name = expand_cache_key(config)
        base = Path(config.cache_directory)
        return cls(base / f"{name}.cache", base / f"{name}.cache.json")


def read_manifest(paths: CachePaths) -> dict[str, Any] | None:
    if not paths.tree.is_dir() or not paths.manifest.is_file():
        return None
    try:
        data = json.loads(paths.manifest.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_incremental(config: Config) -> bool:
    return config.incremental in (Incremental.yes, Incremental.strict)


def up_to_date(config: Config, resolve: Callable[[Path], Path] = lambda p: p) -> bool:
    paths = CachePaths.of(config)
    if paths is None:
        return False
    data = read_manifest(paths)
    return data is not None and data.get("key") == key_digest(key_inputs(config, resolve))


def remove(config: Config) -> bool:
    """Remove an image's cached tree and manifest (``-ff``, ``mkosi clean -ff``). Whether there was one."""
    paths = CachePaths.of(config)
    if paths is None:
        return False
    found = False
    if paths.manifest.exists():
        paths.manifest.unlink()
        found = True
    for tree in (paths.tree, paths.tree.with_name(paths.tree.name + ".new")):
        if tree.exists():
            shutil.rmtree(tree)
            found = True
    if found:
        log.info(f"Removed the cached image {paths.tree}")
    return found


# ---------------------------------------------------------------------------------------------------------
# The plan for one invocation


def _installs_packages(config: Config) -> bool:
    # The same rule as mkosi.build.packages.wanted: packages, or no base tree to start from.
    return bool(config.packages) or not config.base_trees


@dataclasses.dataclass(frozen=True)
class CachePlan:
    """What the invocation does with caches, decided before the first image is built."""

    #: Images (by name) whose cache may be reused.
    reusable: frozenset[str] = frozenset()
    #: Whether repository metadata is synced (else the metadata of an earlier build is used as it is).
    resync: bool = True
    #: Why caches that are up to date are not reused (for the log).
    reason: str = ""


def plan(images: Sequence[Config], metadata_exists: Callable[[Config], bool]) -> CachePlan:
    """Apply ``CacheOnly=`` to the images of an invocation (the manual's CACHING section).

    ``metadata_exists(config)`` tells whether an earlier build left repository metadata for the image.
    """
    built = [c for c in images if c.output_format != OutputFormat.none or c.packages]
    incremental = [c for c in built if is_incremental(c) and c.cache_directory]
    names = [expand_cache_key(c) for c in incremental]
    if len(names) != len(set(names)):
        dup = next(n for n in names if names.count(n) > 1)
        raise MkosiError(f"CacheKey= expands to {dup} for more than one image (cache keys must be unique)")
    hits = frozenset(c.name for c in incremental if up_to_date(c))
    cached = {c.name for c in incremental if (p := CachePaths.of(c)) and read_manifest(p) is not None}
    installing = [c for c in built if _installs_packages(c) and c.name not in hits]
    mode = built[-1].cache_only if built else CacheOnly.auto
    if mode == CacheOnly.never and any(_installs_packages(c) for c in built):
        return CachePlan(frozenset(), resync=True, reason="CacheOnly=never syncs repository metadata")
    if not installing or mode in (CacheOnly.metadata, CacheOnly.always):
        return CachePlan(hits, resync=False)
    # auto: sync when no image was built before; or when every image was cached and one cache is out of
    # date. Caches made with other metadata are invalidated whenever it is synced.
    if not all(metadata_exists(c) for c in installing):
        reason = "there is no repository metadata yet, so it is synced"
        return CachePlan(frozenset(), resync=True, reason=reason)
    if all(c.name in cached for c in built):
        reason = "another cached image is out of date, so repository metadata is synced"
        return CachePlan(frozenset(), resync=True, reason=reason)
    return CachePlan(hits, resync=False)


# ---------------------------------------------------------------------------------------------------------
# The steps

RESTORED = "cached"
PLAN = "cache-plan"
#: The decision of :func:`check`: the key digest of the cached tree that will be reused (absent: none).
DECIDED = "cache-decision"


def restored(ctx: Context) -> bool:
    return bool(ctx.facts.get(RESTORED))


def available(ctx: Context) -> bool:
    """Whether a cached image is reused for this build (``$CACHED`` of the sync scripts): decided by
    :func:`check` before the sync scripts run, so they see the value the build goes on with."""
    return ctx.facts.get(DECIDED) is not None


def unless_restored(when: Callable[[Context], bool]) -> Callable[[Context], bool]:
    """A step condition that is false once the root came from the cache (the step's work is in it)."""
    return lambda ctx: not restored(ctx) and when(ctx)


def wants_restore(ctx: Context) -> bool:
    return is_incremental(ctx.config)


def _paths_or_warn(ctx: Context) -> CachePaths | None:
    paths = CachePaths.of(ctx.config)
    if paths is None:
        message = f"Incremental={ctx.config.incremental.value} needs CacheDirectory= (or a mkosi.cache/ dir)"
        if ctx.config.incremental == Incremental.strict:
            raise MkosiError(message)
        if not ctx.facts.get("cache-warned"):
            log.warn(f"{message}: not caching")
            ctx.facts["cache-warned"] = True
    return paths


def check(ctx: Context) -> None:
    """Decide whether the cached tree is reused: it must be up to date (and the plan must allow it).

    Runs before the sync scripts (which are told the outcome in ``$CACHED``); :func:`restore` copies the
    tree in after them. ``Incremental=strict`` fails here, before any script ran, without a usable cache.
    """
    paths = _paths_or_warn(ctx)
    if paths is None:
        return
    inputs = key_inputs(ctx.config, ctx.shared.resolve_input)
    digest = key_digest(inputs)
    data = read_manifest(paths)
    current = data is not None and data.get("key") == digest
    the_plan = ctx.facts.get(PLAN)
    if current and isinstance(the_plan, CachePlan) and ctx.config.name not in the_plan.reusable:
        log.info(f"Not reusing the cached image {paths.tree}: {the_plan.reason or 'metadata is synced'}")
        current = False
    elif not current:
        if data is None:
            log.info(f"No cached image at {paths.tree}")
        else:
            what = ", ".join(changed_inputs(data.get("inputs") or {}, inputs)) or "its inputs"
            log.info(f"The cached image {paths.tree} is out of date ({what} changed)")
    if not current:
        if ctx.config.incremental == Incremental.strict:
            raise MkosiError(
                f"Incremental=strict: no up-to-date cached image at {paths.tree}",
                hint="build once with Incremental=yes to create it",
            )
        return
    ctx.facts[DECIDED] = digest
    log.info(f"The cached image {paths.tree} is up to date")


def will_restore(ctx: Context) -> bool:
    return available(ctx)


def restore(ctx: Context) -> None:
    """Start from the cached tree that :func:`check` chose, unless the sync scripts changed an input of its
    key since (then the image is built from scratch, and cached anew)."""
    paths = CachePaths.of(ctx.config)
    assert paths is not None
    data = read_manifest(paths)
    # Only sync scripts run in between (they may update the sources, prepare scripts among them).
    inputs = key_inputs(ctx.config, ctx.shared.resolve_input) if ctx.config.sync_scripts else None
    digest = key_digest(inputs) if inputs is not None else ctx.facts.get(DECIDED)
    if data is None or not (data.get("key") == digest == ctx.facts.get(DECIDED)):
        inputs = inputs or key_inputs(ctx.config, ctx.shared.resolve_input)
        what = ", ".join(changed_inputs((data or {}).get("inputs") or {}, inputs)) or "its inputs"
        message = f"The sync scripts changed an input of the cached image {paths.tree} ({what})"
        if ctx.config.incremental == Incremental.strict:
            raise MkosiError(f"Incremental=strict: {message}")
        log.warn(f"{message}: building without it")
        ctx.facts.pop(DECIDED)
        return
    for entry in ctx.root.iterdir() if ctx.root.exists() else []:
        raise MkosiError(f"Cannot restore the cache into {ctx.root}: it is not empty ({entry.name})")
    copy_tree(paths.tree, ctx.root)
    ctx.facts[RESTORED] = paths.tree
    log.info(f"Reusing the cached image {paths.tree}: skipping the installation")


def wants_save(ctx: Context) -> bool:
    return is_incremental(ctx.config) and not restored(ctx) and ctx.config.cache_directory is not None


def save(ctx: Context) -> None:
    """Save the root as the image's cache (written aside, then renamed; the manifest last)."""
    paths = _paths_or_warn(ctx)
    if paths is None:
        return
    inputs = key_inputs(ctx.config, ctx.shared.resolve_input)
    paths.tree.parent.mkdir(parents=True, exist_ok=True)
    paths.manifest.unlink(missing_ok=True)
    new = paths.tree.with_name(paths.tree.name + ".new")
    for stale in (new, paths.tree):
        if stale.exists():
            shutil.rmtree(stale)
    copy_tree(ctx.root, new)
    new.rename(paths.tree)
    manifest = {"key": key_digest(inputs), "image": ctx.config.name, "inputs": inputs}
    tmp = paths.manifest.with_name(paths.manifest.name + ".new")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp.replace(paths.manifest)
    log.info(f"Saved the image to the cache {paths.tree}")


def wants_cached_metadata(ctx: Context) -> bool:
    """Whether the repository metadata of an earlier build is used instead of syncing it (and something is
    going to be installed)."""
    if not _will_install(ctx):
        return False
    if ctx.config.cache_only in (CacheOnly.metadata, CacheOnly.always):
        return True
    the_plan = ctx.facts.get(PLAN)
    return isinstance(the_plan, CachePlan) and not the_plan.resync


def metadata_lists(ctx: Context) -> Path:
    """Where apt keeps the image's repository metadata (resolved, as the apt setup has it)."""
    from mkosi.build import packages

    return packages.state_dir(ctx).resolve() / "lists"


def has_metadata(ctx: Context) -> bool:
    return any(_metadata_files(metadata_lists(ctx)))


def _will_install(ctx: Context) -> bool:
    from mkosi.build import packages

    c = ctx.config
    return (not restored(ctx) and packages.wanted(ctx)) or bool(c.volatile_packages or c.build_packages)


def use_cached_metadata(ctx: Context) -> None:
    """Mark the repository metadata of an earlier build as synced for this invocation."""
    lists = metadata_lists(ctx)
    if not any(_metadata_files(lists)):
        if ctx.config.cache_only not in (CacheOnly.metadata, CacheOnly.always):
            return
        raise MkosiError(
            f"CacheOnly={ctx.config.cache_only.value}: there is no repository metadata in {lists} to use",
            hint="build once with CacheOnly=auto (and a CacheDirectory=) to sync it",
        )
    state_dir = lists.parent
    ctx.shared.synced.setdefault(str(state_dir), state_dir)
    log.info(f"Using the repository metadata of an earlier build (CacheOnly={ctx.config.cache_only.value})")


def _metadata_files(lists: Path) -> Iterable[Path]:
    if not lists.is_dir():
        return []
    return (p for p in lists.iterdir() if p.is_file() and p.name != "lock")


# ---------------------------------------------------------------------------------------------------------
# For the runner


def _context(args: Any, config: Config, shared: Any) -> Context:
    return Context(args=args, config=config, shared=shared, workspace=Path(shared.workspace) / config.name)


def plan_for(args: Any, images: Sequence[Config], shared: Any) -> CachePlan:
    """:func:`plan` for the images of an invocation, with the metadata each image would install from."""

    def metadata_exists(config: Config) -> bool:
        if not config.cache_directory:
            return False
        try:
            return has_metadata(_context(args, config, shared))
        except MkosiError:
            return False

    return plan(images, metadata_exists)


def remove_for_rebuild(args: Any, config: Config) -> None:
    """``-ff``: remove the image's cached tree and its synced repository metadata."""
    remove(config)
    if not config.cache_directory:
        return
    try:
        # With a cache directory the metadata lives there, so the workspace is never looked at.
        shared = Shared(workspace=Path(config.cache_directory))
        state = metadata_lists(_context(args, config, shared)).parent
    except MkosiError:
        return
    if state.is_dir():
        shutil.rmtree(state)
        log.info(f"Removed the repository metadata {state}")
