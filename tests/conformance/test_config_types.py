# SPDX-License-Identifier: LGPL-2.1-or-later
"""The typed Config says the truth: for every conformance fixture (the trees and the corpus), every field of
every loaded image (and of the default tools tree) holds a value of the type the generated Config declares.

A failure means a kind's ``python_type()``, a default factory's return annotation or the loader disagree;
fix the one that is wrong and regenerate with ``python -m mkosi.config.generate``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from mkosi.cli import parse_args
from mkosi.config.generate import type_problems
from mkosi.config.images import load
from mkosi.config.typed import Config

_HERE = Path(__file__).resolve().parent


def _load_normalize() -> Any:
    # The same module object test_conformance.py uses (test directories share one module namespace).
    name = "mkosi_conformance_normalize"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "normalize.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


n = _load_normalize()


@pytest.mark.parametrize("fixture", n.load_fixtures(), ids=lambda f: f.name)
def test_config_types(fixture: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if fixture.corpus and not fixture.source.is_dir():
        pytest.fail(f"corpus tree {fixture.source} is not available", pytrace=False)
    tree = n.prepare(fixture, tmp_path)
    env = n.fixture_environment(fixture)
    for name in list(os.environ):
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tree)

    args, cli, _ = parse_args(["-C", os.fspath(tree), *fixture.args, "summary"])
    images = load(args, cli)

    problems = [p for image in images for p in type_problems(image, Config, image.name)]
    assert not problems, "values that do not have their declared type:\n" + "\n".join(problems)
