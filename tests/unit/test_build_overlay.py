"""The build overlay's set-up: an overlayfs mount where possible, else the caller copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkosi.build import scripts


def test_falls_back_to_copying_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir(mode=0o751)
    root.chmod(0o751)
    calls = []

    def refuse(lower: Path, upper: Path, work: Path, target: Path) -> bool:
        calls.append((lower, upper, work, target))
        assert upper.stat().st_mode & 0o777 == 0o751, "the upper layer carries the root's mode"
        return False

    monkeypatch.setattr(scripts, "mount_overlay", refuse)
    overlay, upper, work = tmp_path / "overlay", tmp_path / "upper", tmp_path / "work"
    assert scripts._mount_build_overlay(root, overlay, upper, work) is False
    assert calls == [(root, upper, work, overlay)]
    assert not overlay.exists() and not upper.exists() and not work.exists()


def test_mounted_overlay_keeps_its_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setattr(scripts, "mount_overlay", lambda *paths: True)
    overlay, upper, work = tmp_path / "overlay", tmp_path / "upper", tmp_path / "work"
    assert scripts._mount_build_overlay(root, overlay, upper, work) is True
    assert overlay.is_dir() and upper.is_dir() and work.is_dir()
