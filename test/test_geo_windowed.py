"""Windowed maps: WindowedMap (COG/VRT read by block through an LRU) against the in-memory MapRaster,
open_map / MapSource windows against read_map, VRT mosaics, COG writing, and the faults: damaged
blocks, whole-map reads of huge maps, runaway warps, mismatched grids."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from foenet_ros.errors import CRSMismatchError, RasterError
from foenet_ros.geo import GeoFrame, MapRaster, open_map, read_map, synthetic_map
from foenet_ros.geo import windowed
from foenet_ros.geo.raster import affine_compose
from foenet_ros.geo.windowed import WindowedMap, write_cog, write_geotiff_window, write_vrt

LON0, LAT0 = 85.52, 27.63


def quadrant_tifs(m: MapRaster, folder) -> list:
    """``m`` cut into four GeoTIFF quadrants (what a survey delivers: tiles on one grid)."""
    h2, w2 = m.height // 2, m.width // 2
    parts = []
    for i, (r, c) in enumerate([(0, 0), (0, w2), (h2, 0), (h2, w2)]):
        sub = MapRaster(m.image[r : r + h2, c : c + w2].copy(), m.valid[r : r + h2, c : c + w2].copy(),
                        affine_compose(m.transform, Affine.translation(c, r)), m.frame, m.gsd_m)
        parts.append(write_geotiff_window(folder / f"q{i}.tif", sub))
    return parts


@pytest.fixture(scope="module")
def holey_map() -> MapRaster:
    """1400 x 1000 px at 0.5 m with a no-data corner (valid mask matters)."""
    m = synthetic_map(size_m=(700.0, 500.0), gsd_m=0.5, seed=3)
    m.valid[:100, :150] = False
    m.image[:100, :150] = 0
    return m


@pytest.fixture(scope="module")
def cog(tmp_path_factory, holey_map) -> str:
    d = tmp_path_factory.mktemp("cog")
    part = write_geotiff_window(d / "part.tif", holey_map)
    return str(write_cog(part, d / "map.tif", compression="deflate"))  # lossless: pixel-exact comparisons


def test_crop_matches_the_in_memory_map(cog, holey_map):
    w = WindowedMap(cog, holey_map.frame)
    assert w.overview_factors == [2, 4] and w.gsd_m == holey_map.gsd_m and w.transform == holey_map.transform
    assert w.bounds_xy == holey_map.bounds_xy and w.xy_to_pixel(*holey_map.center_xy) == holey_map.xy_to_pixel(*holey_map.center_xy)
    cx, cy = holey_map.center_xy
    xmin, _, _, ymax = holey_map.bounds_xy
    # at the map's resolution: the same pixels (rotated, off-centre, across the no-data corner)
    for center, size, px, heading in [((cx, cy), 60.0, 120, 0.0), ((cx + 33.3, cy - 17.0), 60.0, 100, 37.0),
                                      ((xmin + 5.0, ymax - 5.0), 80.0, 160, 10.0)]:
        a, va = holey_map.crop(center, size, px, heading)
        b, vb = w.crop(center, size, px, heading)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(va, vb)
    # coarser: read from the COG's overviews (box average instead of the Gaussian pyramid): close
    for size, px in [(300.0, 160), (600.0, 100)]:
        a, va = holey_map.crop((cx, cy), size, px)
        b, vb = w.crop((cx, cy), size, px)
        # validity differs only along the no-data edge: a Gaussian pyramid's mask (MapRaster: a coarse pixel is
        # valid when all its finer support is) vs the COG's box-averaged internal mask
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 10 and (va == vb).mean() > 0.98
    # entirely off the map: black and invalid, nothing decoded
    img, valid = w.crop((xmin - 1000.0, ymax + 1000.0), 50.0, 64)
    assert img.max() == 0 and not valid.any()
    # read_window at the map's GSD is an exact copy (the snapped grid), and equals MapRaster.read_window
    box = (cx - 50.2, cy - 40.0, cx + 50.0, cy + 40.1)
    rw, ref = w.read_window(box), holey_map.read_window(box)
    assert rw.transform == ref.transform and rw.image.shape == ref.image.shape
    np.testing.assert_array_equal(rw.image, ref.image)
    c, r = holey_map.xy_to_pixel(rw.transform.c, rw.transform.f)
    np.testing.assert_array_equal(rw.image, holey_map.image[int(round(r)):int(round(r)) + rw.height,
                                                            int(round(c)):int(round(c)) + rw.width])
    # a small map is also available whole (plots, tests), and as an overview
    np.testing.assert_array_equal(w.image, holey_map.image)
    np.testing.assert_array_equal(w.valid, holey_map.valid)
    ov = w.overview(350)
    assert max(ov.image.shape[:2]) <= 351 and ov.gsd_m == pytest.approx(2.0) and ov.bounds_xy == pytest.approx(w.bounds_xy)


def test_perspective_view_through_the_windowed_map(cog, holey_map):
    from foenet_ros.geo import CameraIntrinsics, CameraPose, render_view

    w = WindowedMap(cog)
    intr = CameraIntrinsics.from_hfov(70, 320, 240)
    pose = CameraPose(*holey_map.center_xy, 120.0, heading_deg=30.0, pitch_deg=10.0)
    a, va = render_view(holey_map, intr, pose)
    b, vb = render_view(w, intr, pose)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3 and (va == vb).mean() > 0.99
    # a warp that would decode too much at once is refused (never a silent multi-GB read)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(windowed, "MAX_READ_PX", 10_000)
        with pytest.raises(RasterError, match="would decode"):
            render_view(w, intr, pose)


def test_lru_cache_stays_within_its_budget(cog, holey_map):
    w = WindowedMap(cog, cache_mb=1.0)  # a 512 px RGB block + mask is 1 MiB: the cache keeps about one
    rng = np.random.default_rng(0)
    xmin, ymin, xmax, ymax = holey_map.bounds_xy
    for _ in range(30):
        w.crop((rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)), 100.0, 200)
        assert w.cache.nbytes <= 2 * 2**20
    big = WindowedMap(cog, cache_mb=64)
    for _ in range(3):
        big.crop(holey_map.center_xy, 100.0, 200)
    assert big.cache.hits > 0 and big.cache.misses <= 4  # decoded once, then served from the cache


def test_whole_map_access_is_refused_for_huge_maps(cog, monkeypatch):
    w = WindowedMap(cog)
    monkeypatch.setattr(windowed, "MAX_READ_PX", 500_000)
    with pytest.raises(RasterError, match="read it by window"):
        w.image  # noqa: B018
    assert w.level(2)[0].shape == (250, 350, 3)  # the coarse level still fits
    with pytest.raises(RasterError, match="too large"):
        w.read_window(w.bounds_xy)


def test_damaged_block_and_bad_files_raise_raster_errors(tmp_path, holey_map):
    part = write_geotiff_window(tmp_path / "p.tif", holey_map)
    data = bytearray(part.read_bytes())
    with rasterio.open(part) as ds:  # garble the compressed bytes of the first block
        off, size = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1)), int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
    data[off : off + size] = bytes(size)
    part.write_bytes(bytes(data))
    w = WindowedMap(part)
    xmin, _, _, ymax = holey_map.bounds_xy
    with pytest.raises(RasterError, match="cannot read block"):
        w.crop((xmin + 60.0, ymax - 60.0), 50.0, 64)
    with pytest.raises(RasterError, match="cannot open"):
        WindowedMap(tmp_path / "missing.tif")
    gray = tmp_path / "gray.tif"
    with rasterio.open(gray, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:32632",
                       transform=Affine(1, 0, 4e5, 0, -1, 5e6)) as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(RasterError, match="3 uint8"):
        WindowedMap(gray)
    with pytest.raises(CRSMismatchError):
        WindowedMap(part, GeoFrame("EPSG:32645"))


def test_vrt_mosaic_of_parts_and_cog_with_jpeg_keeps_the_exact_mask(tmp_path, holey_map):
    m = holey_map
    parts = quadrant_tifs(m, tmp_path)
    vrt = write_vrt(parts[::-1], tmp_path / "m.vrt")  # order does not matter: placed by georeference
    v = WindowedMap(vrt)
    assert v.transform == m.transform and (v.width, v.height) == (m.width, m.height)
    np.testing.assert_array_equal(v.image, m.image)
    np.testing.assert_array_equal(v.valid, m.valid)
    # the VRT is an input like any other (read_map / open_map / build-index)
    np.testing.assert_array_equal(read_map(vrt).image, m.image)
    cog = write_cog(vrt, tmp_path / "m.tif")  # JPEG: lossy colours, exact mask
    c = WindowedMap(cog)
    np.testing.assert_array_equal(c.valid, m.valid)
    assert np.abs(c.image.astype(int) - m.image.astype(int))[m.valid].mean() < 4
    with rasterio.open(cog) as ds:
        assert ds.profile["compress"] == "jpeg" and ds.block_shapes[0] == (512, 512) and ds.overviews(1) == [2, 4]
    # files that do not share a grid are refused (they need reprojection: open_map / build-index)
    coarse = MapRaster(m.image[::2, ::2].copy(), m.valid[::2, ::2].copy(),
                       Affine(1.0, 0, m.transform.c, 0, -1.0, m.transform.f), m.frame, 1.0)
    with pytest.raises(RasterError, match="CRS/GSD"):
        write_vrt([parts[0], write_geotiff_window(tmp_path / "c.tif", coarse)], tmp_path / "bad.vrt")
    shifted = MapRaster(m.image[:50, :50].copy(), m.valid[:50, :50].copy(),
                        affine_compose(m.transform, Affine.translation(0.3, 0)), m.frame, m.gsd_m)
    with pytest.raises(RasterError, match="pixel grid"):
        write_vrt([parts[0], write_geotiff_window(tmp_path / "s.tif", shifted)], tmp_path / "bad.vrt")
    with pytest.raises(RasterError, match="compression"):
        write_cog(vrt, tmp_path / "x.tif", compression="lzma")


def test_open_map_windows_equal_read_map(tmp_path):
    """Windows of a reprojected (Web Mercator) source and of a uint16 source match the whole-map read."""
    from pyproj import Transformer

    src = synthetic_map(size_m=(240.0, 180.0), gsd_m=0.5, seed=8, lonlat=(LON0, LAT0))
    t = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    lon0, lat0, lon1, lat1 = src.lonlat_bounds()
    (x0, y0), (x1, y1) = t.transform(lon0, lat1), t.transform(lon1, lat0)
    h, w = src.height, src.width
    merc = tmp_path / "merc.tif"
    with rasterio.open(merc, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:3857",
                       transform=Affine((x1 - x0) / w, 0, x0, 0, (y1 - y0) / h, y0)) as ds:
        ds.write(np.moveaxis(src.image, 2, 0))
    whole = read_map(merc)
    ms = open_map(merc)
    assert (ms.width, ms.height, ms.transform) == (whole.width, whole.height, whole.transform)
    assert ms.identity()[0]["size"] == merc.stat().st_size
    cx, cy = whole.center_xy
    win = ms.read_window((cx - 60, cy - 40, cx + 50, cy + 45))
    c, r = whole.xy_to_pixel(win.transform.c, win.transform.f)
    ref = whole.image[int(round(r)) : int(round(r)) + win.height, int(round(c)) : int(round(c)) + win.width]
    assert ref.shape == win.image.shape
    assert np.abs(ref.astype(int) - win.image.astype(int)).mean() < 1.0
    # a coarser window (decimated read) is close to an area average of the whole map
    coarse = ms.read_window(ms.bounds_xy, 2.0)
    assert coarse.gsd_m == 2.0 and coarse.valid_fraction > 0.9
    # non-uint8 data: one stretch for the whole file, so two halves equal the whole (no seams)
    data = np.linspace(0, 4000, 60 * 80, dtype=np.float64).reshape(1, 60, 80).astype(np.uint16)
    u16 = tmp_path / "u16.tif"
    with rasterio.open(u16, "w", driver="GTiff", width=80, height=60, count=1, dtype="uint16", crs="EPSG:32645",
                       transform=Affine(1, 0, 4e5, 0, -1, 3e6)) as ds:
        ds.write(data)
    full = read_map(u16)
    west = open_map(u16).read_window((4e5, 3e6 - 60, 4e5 + 40, 3e6))
    np.testing.assert_array_equal(west.image, full.image[:, :40])


def test_map_raster_read_window_pads_outside_with_invalid():
    m = synthetic_map(size_m=(60.0, 40.0), gsd_m=0.5, seed=1)
    xmin, ymin, xmax, ymax = m.bounds_xy
    win = m.read_window((xmin - 5.0, ymax - 10.0, xmin + 10.0, ymax + 5.0))
    assert win.image.shape == (30, 30, 3) and win.valid[10:, 10:].all() and not win.valid[:10].any()
    np.testing.assert_array_equal(win.image[10:, 10:], m.image[:20, :20])
    coarse = m.read_window(m.bounds_xy, 1.0)
    assert coarse.image.shape == (40, 60, 3) and coarse.gsd_m == 1.0
    with pytest.raises(RasterError, match="min < max"):
        m.read_window((xmin, ymin, xmin, ymax))
