"""Fixtures of the fault-injection tests: one small synthetic index (built once per session) and
helpers that copy it and damage a copy in a controlled way."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from foenet_ros.index import IndexConfig, TileIndex, build_index

from .faultlib import HFOV, IMAGE_SIZE


@pytest.fixture(scope="session")
def encoder():
    from foenet_ros.model import Encoder, load_default_model

    return Encoder(load_default_model(), device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def fault_map():
    from foenet_ros.geo import synthetic_map

    return synthetic_map(size_m=(400.0, 320.0), gsd_m=0.5, seed=21)


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, fault_map, encoder) -> Path:
    """A valid index of ``fault_map`` (camera-derived tiles for a 70 deg camera at 80-120 m)."""
    out = tmp_path_factory.mktemp("faults") / "idx"
    cfg = IndexConfig(hfov_deg=HFOV, image_size=IMAGE_SIZE, alt_range_m=(80.0, 120.0), max_tilt_deg=10.0)
    build_index(fault_map, encoder, out, cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def index(index_dir) -> TileIndex:
    return TileIndex.load(index_dir)


@pytest.fixture()
def copy_index(index_dir, tmp_path) -> Callable[[str], Path]:
    """``copy_index(name)`` -> a fresh copy of the valid index to damage."""

    def make(name: str = "copy") -> Path:
        dst = tmp_path / name
        shutil.copytree(index_dir, dst)
        return dst

    return make
