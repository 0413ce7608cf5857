"""Distributions: one module per distribution, looked up by the Distribution enum."""

from __future__ import annotations

from types import ModuleType

from mkosi.config.model import Distribution
from mkosi.distributions import debian, kali, ubuntu
from mkosi.errors import MkosiError

MODULES: dict[Distribution, ModuleType] = {
    Distribution.debian: debian,
    Distribution.ubuntu: ubuntu,
    Distribution.kali: kali,
}


def module(distribution: Distribution) -> ModuleType:
    try:
        return MODULES[distribution]
    except KeyError:
        raise MkosiError(f"Distribution={distribution.value}: building it is not implemented yet") from None
