"""The node's default index: the pointer `foenet demo` leaves in the cache."""

from __future__ import annotations

from pathlib import Path

from foenet_ros import maps


def test_default_index_pointer_round_trip(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    assert maps.default_index() is None
    idx = tmp_path / "some_index"
    idx.mkdir()
    pointer = maps.set_default_index(idx)
    assert pointer.parent == tmp_path / "cache"
    assert maps.default_index() == idx.resolve()
    idx.rmdir()  # a stale pointer is ignored, not followed
    assert maps.default_index() is None
