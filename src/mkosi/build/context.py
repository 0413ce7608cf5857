"""The state one image's build steps share."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mkosi.cli import Args
from mkosi.config.typed import Config


@dataclasses.dataclass
class Shared:
    """What all images of one invocation share: staged artifacts and synced repository metadata."""

    workspace: Path
    #: final path in an output directory → staged path (artifacts of images built earlier in this run)
    staged: dict[Path, Path] = dataclasses.field(default_factory=dict)
    #: repository metadata directories already synced in this invocation, by repository key
    synced: dict[str, Path] = dataclasses.field(default_factory=dict)

    def resolve_input(self, path: Path) -> Path:
        """An input that names an earlier image's output resolves to that output while it is staged."""
        return self.staged.get(Path(path).absolute(), path)


@dataclasses.dataclass
class Context:
    args: Args
    config: Config
    shared: Shared
    #: this image's private workspace (removed with the shared workspace)
    workspace: Path
    #: artifacts (files or directories) written by the output step, by final name
    artifacts: dict[str, Path] = dataclasses.field(default_factory=dict)
    #: free-form facts steps hand to later steps (e.g. the root hash)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.workspace / "root"

    @property
    def staging(self) -> Path:
        return self.workspace / "staging"

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_directory or self.args.directory or Path.cwd())

    @property
    def cache_dir(self) -> Path | None:
        d = self.config.cache_directory
        return Path(d) if d else None

    @property
    def package_cache_dir(self) -> Path:
        if self.config.package_cache_directory:
            return Path(self.config.package_cache_directory)
        if self.cache_dir:
            return self.cache_dir / "packages"
        return Path("/var/cache/mkosi/packages")

    def base_trees(self) -> list[Path]:
        return [self.shared.resolve_input(Path(p)) for p in self.config.base_trees]
