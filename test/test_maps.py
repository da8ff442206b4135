"""The demo data registry: entries, resolution order ($FOENET_DATA, cache, network, synthetic),
XYZ tile stitching (exercised offline with file:// tiles) and cropping."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from foenet_ros import maps

from conftest import require_shared


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    """No shared data, an empty cache of our own."""
    monkeypatch.delenv("FOENET_DATA", raising=False)
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path


def test_registry_entries_are_complete():
    assert {"banepa", "naip_2019", "naip_2020", "synthetic"} <= set(maps.list_maps())
    for name, entry in maps.REGISTRY.items():
        assert entry.files and entry.attribution, name
        for f in entry.files:
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f
            assert f.licence and (f.url or f.recipe), f
            assert f.url is None or f.url.startswith("https://")
            assert f.recipe is None or f.recipe in maps.ASSEMBLERS
    tiles = maps.read_tile_recipe(maps.RECIPES_DIR / "banepa_z19_tiles.csv")
    assert len(tiles) == 374 and {t.z for t in tiles} == {19}
    assert len({(t.x, t.y) for t in tiles}) == 22 * 17  # a complete grid
    assert all(t.url.startswith("https://raw.githubusercontent.com/hotosm/fAIr-models/") and t.git_blob_sha1 for t in tiles)


def test_registry_checksums_match_the_shared_copy(shared_data):
    """The registry's sha256 values are those of the shared data's SHA256SUMS."""
    sums = {}
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.removeprefix("./")] = digest
    for entry in maps.REGISTRY.values():
        for f in entry.files:
            assert sums[f.rel_path] == f.sha256, f.rel_path


def test_xyz_bounds_match_the_shared_banepa_mosaic(shared_data):
    import rasterio

    path = require_shared(shared_data, "oam_banepa/banepa_z19_0.15m.tif")
    tiles = maps.read_tile_recipe(maps.RECIPES_DIR / "banepa_z19_tiles.csv")
    left, _, _, top = maps.xyz_tile_bounds(min(t.x for t in tiles), min(t.y for t in tiles), 19)
    _, bottom, right, _ = maps.xyz_tile_bounds(max(t.x for t in tiles), max(t.y for t in tiles), 19)
    with rasterio.open(path) as ds:
        b = ds.bounds
    assert (left, bottom, right, top) == pytest.approx((b.left, b.bottom, b.right, b.top), abs=0.01)


def test_shared_data_serves_banepa_and_a_cached_crop(shared_data, monkeypatch, tmp_path):
    import rasterio

    require_shared(shared_data, "oam_banepa/banepa_z19_0.15m.tif")
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    paths = maps.resolve_map("banepa", download=False)
    assert paths == [shared_data / "oam_banepa" / "banepa_z19_0.15m.tif"]
    dm = maps.demo_map("banepa", crop_frac=(0.1, 0.1), max_side_px=500, download=False)
    assert not dm.synthetic and dm.paths[0].is_relative_to(tmp_path / "cache")
    with rasterio.open(dm.paths[0]) as crop, rasterio.open(paths[0]) as full:
        assert crop.crs == full.crs and max(crop.width, crop.height) == 500
        cx = (crop.bounds.left + crop.bounds.right) / 2
        assert abs(cx - (full.bounds.left + full.bounds.right) / 2) < 5.0  # centred on the mosaic
        assert crop.read_masks(1).mean() > 0


def test_without_data_or_network_the_demo_map_is_synthetic_and_says_so(isolated, caplog):
    assert maps.resolve_map("banepa", download=False) is None
    with caplog.at_level(logging.WARNING, logger="foenet_ros.maps"):
        dm = maps.demo_map("banepa", download=False)
    assert dm.synthetic and dm.paths is None and dm.raster is not None
    assert "SYNTHETIC" in caplog.text


def _tile_server(tmp_path, img, x0, y0, z, px=64, fmt="png", corrupt=None):
    """Cut ``img`` into px-sized XYZ tiles written as files; return TileRefs with file:// URLs."""
    import cv2

    refs = []
    rows, cols = img.shape[0] // px, img.shape[1] // px
    for r in range(rows):
        for c in range(cols):
            tile = img[r * px:(r + 1) * px, c * px:(c + 1) * px]
            p = tmp_path / f"OAM-{x0 + c}-{y0 + r}-{z}.{fmt}"
            cv2.imwrite(str(p), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
            blob = maps.git_blob_sha1(p.read_bytes())
            if corrupt == (r, c):
                blob = "0" * 40
            refs.append(maps.TileRef(x0 + c, y0 + r, z, p.as_uri(), blob))
    return refs


def test_stitch_xyz_tiles_offline(isolated):
    import rasterio

    yy, xx = np.mgrid[0:192, 0:256]
    img = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it to a few levels
    refs = _tile_server(isolated, img, 386690, 220240, 19, corrupt=(1, 2))
    out = maps.stitch_xyz_tiles(refs, isolated / "mosaic.tif", progress=False)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 3857 and (ds.width, ds.height) == (256, 192)
        left, _, _, top = maps.xyz_tile_bounds(386690, 220240, 19)
        _, bottom, right, _ = maps.xyz_tile_bounds(386693, 220242, 19)
        assert (ds.bounds.left, ds.bounds.top, ds.bounds.right, ds.bounds.bottom) == pytest.approx((left, top, right, bottom))
        data = np.moveaxis(ds.read(), 0, -1)
        mask = ds.read_masks(1) > 0
    # the tile with a wrong git blob id is left out (no data), every other pixel is the source (JPEG-coded)
    assert not mask[64:128, 128:192].any() and mask.sum() == 256 * 192 - 64 * 64
    diff = np.abs(data.astype(int) - img.astype(int))[mask]
    assert diff.mean() < 3  # a misplaced tile would be off by tens of levels


def test_stitch_without_any_tile_fails(isolated):
    refs = [maps.TileRef(1, 1, 19, (isolated / "missing.png").as_uri(), None)]
    with pytest.raises(maps.DataFetchError, match="none of the 1 tiles"):
        maps.stitch_xyz_tiles(refs, isolated / "x.tif", progress=False)
    calls = []

    def offline(url):
        calls.append(url)
        raise maps.DataFetchError(f"cannot download {url}: no network")

    refs = [maps.TileRef(x, 1, 19, f"https://example.invalid/{x}.png", None) for x in range(50)]
    with pytest.raises(maps.DataFetchError, match="offline"):
        maps.stitch_xyz_tiles(refs, isolated / "x.tif", fetch=offline, progress=False)
    assert len(calls) == maps.MAX_FAILURES_BEFORE_FIRST_TILE  # gives up early, not after 50 tries


def test_download_verifies_sha256(isolated, monkeypatch):
    src = isolated / "remote.tif"
    src.write_bytes(b"pretend geotiff")
    good = maps.DataFile("x/remote.tif", maps.hashlib.sha256(b"pretend geotiff").hexdigest(), "test", url=src.as_uri())
    p = maps.resolve_file(good)
    assert p == maps.cache_dir() / "data" / "x" / "remote.tif" and p.read_bytes() == b"pretend geotiff"
    assert maps.resolve_file(good, download=False) == p  # now served from the cache
    bad = maps.DataFile("y/remote.tif", "0" * 64, "test", url=src.as_uri())
    assert maps.resolve_file(bad) is None and not (maps.cache_dir() / "data" / "y" / "remote.tif").exists()
