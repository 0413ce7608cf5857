"""Distributions: one module per distribution, looked up by the Distribution enum."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from mkosi.config.model import Distribution
from mkosi.distributions import debian, kali, ubuntu
from mkosi.errors import MkosiError
from mkosi.installers.apt import AptSetup


class DistributionModule(Protocol):
    """What the build asks of a distribution module (each module is checked against this by mypy)."""

    def default_components(self) -> tuple[str, ...]: ...

    def default_filesystem(self) -> str: ...

    def architecture(self, arch: str) -> str: ...

    def apt_setup(
        self,
        root: Path,
        *,
        release: str,
        cache_dir: Path,
        state_dir: Path,
        arch: str = ...,
        mirror: str | None = ...,
        components: Sequence[str] = ...,
        local_mirror: str | None = ...,
        snapshot: str | None = ...,
        extra_sources: Sequence[str] = ...,
        with_recommends: bool = ...,
        with_docs: bool = ...,
        repository_key_check: bool = ...,
        sandbox_tree: Path | None = ...,
        cache_only: bool = ...,
    ) -> AptSetup: ...


MODULES: dict[Distribution, DistributionModule] = {
    Distribution.debian: debian,
    Distribution.ubuntu: ubuntu,
    Distribution.kali: kali,
}


def module(distribution: Distribution) -> DistributionModule:
    try:
        return MODULES[distribution]
    except KeyError:
        raise MkosiError(f"Distribution={distribution.value}: building it is not implemented yet") from None
