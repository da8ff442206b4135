"""geo.raster: bounds sidecars, world files, GeoTIFF reading in any CRS, mosaics, masks, crops, errors."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine

from conftest import require_shared
from foenet_ros.errors import CRSMismatchError, RasterError
from foenet_ros.geo import GeoFrame, MapRaster, read_bounds_sidecar, read_map, read_world_file, synthetic_map
from foenet_ros.geo.raster import affine_apply, affine_compose

LON0, LAT0 = 85.52, 27.63  # near Banepa: UTM 45N


def _write_tif(path: Path, bands: np.ndarray, crs: str, transform: Affine, nodata=None) -> Path:
    """bands: [C, H, W] uint8."""
    c, h, w = bands.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype="uint8",
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(bands)
    return path


def _marker_image(h: int, w: int, pts: list[tuple[int, int]]) -> np.ndarray:
    img = np.zeros((3, h, w), np.uint8)
    for c, r in pts:
        img[:, r - 1 : r + 2, c - 1 : c + 2] = 255
    img[1] = np.maximum(img[1], 40)  # keep pixels valid-looking but dark
    return img


def _find_blob(m: MapRaster, x: float, y: float, win: int = 12) -> tuple[float, float]:
    """Intensity-weighted centroid (frame metres) of the bright marker near (x, y)."""
    col, row = m.xy_to_pixel(x, y)
    c0, r0 = int(col) - win, int(row) - win
    patch = m.image[r0 : r0 + 2 * win, c0 : c0 + 2 * win, 0].astype(np.float64)
    patch = np.where(patch > 60, patch, 0.0)
    assert patch.sum() > 0, "marker not found near its expected position"
    rr, cc = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    cm = (cc * patch).sum() / patch.sum() + c0 + 0.5
    rm = (rr * patch).sum() / patch.sum() + r0 + 0.5
    return m.pixel_to_xy(cm, rm)


# ------------------------------------------------------------------ sidecars / world files
def test_bounds_sidecar_parsing(tmp_path):
    p = tmp_path / "map_metadata.txt"
    p.write_text(
        "filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon\n"
        "a.png 27.64 85.50 27.63 85.51\n\n"
        "b.png 27.64 85.51 27.63 85.52\n"
    )
    table = read_bounds_sidecar(p)
    assert set(table) == {"a.png", "b.png"}
    assert table["b.png"].top_left_lon == 85.51 and table["a.png"].bottom_right_lat == 27.63
    for bad in (
        "name lat lon\na.png 1 2 3 4\n",  # header
        "filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon\na.png 1 2 3\n",  # columns
        "filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon\na.png x 2 3 4\n",  # number
        "filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon\na.png 27.0 85.5 27.1 85.6\n",  # south>north
        "filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon\n",  # empty
    ):
        p.write_text(bad)
        with pytest.raises(RasterError, match="map_metadata"):
            read_bounds_sidecar(p)


@pytest.mark.shared
def test_real_aerovloc_sidecar_and_mosaic(shared_data):
    meta = require_shared(shared_data, "aerovloc_pair/map/map_metadata.txt")
    table = read_bounds_sidecar(meta)
    assert set(table) == {"0.png", "1.png"}
    b0, b1 = table["0.png"], table["1.png"]
    assert b0.bottom_right_lon == pytest.approx(b1.top_left_lon)  # side by side
    m = read_map([meta.parent / "1.png", meta.parent / "0.png"])  # order must not matter
    assert m.frame.epsg == 32637 and m.image.shape[2] == 3
    w, h = m.size_m
    assert 850 < w < 890 and 400 < h < 440  # two ~433 x 413 m tiles
    assert m.valid_fraction > 0.95
    # the query photo's GPS lies in the western tile
    x, y = m.frame.from_lonlat(38.246245, 55.542349)
    col, row = m.xy_to_pixel(x, y)
    assert 0 < col < m.width / 2 and 0 < row < m.height and m.valid[int(row), int(col)]


def test_world_file_png_and_png_sidecar_with_alpha(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(40, 255, (100, 120, 3), dtype=np.uint8)
    alpha = np.full((100, 120), 255, np.uint8)
    alpha[:, :20] = 0  # transparent strip -> invalid
    cv2.imwrite(str(tmp_path / "t.png"), np.dstack([rgb[:, :, ::-1], alpha]))
    (tmp_path / "map_metadata.txt").write_text(
        "filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon\n"
        f"t.png {LAT0 + 0.001} {LON0} {LAT0} {LON0 + 0.0012}\n"
    )
    m = read_map(tmp_path / "t.png")
    assert m.frame.epsg == 32645
    # the transparent west strip is invalid, the rest valid
    xw, _ = m.frame.from_lonlat(LON0 + 0.0012 * 0.05, LAT0 + 0.0005)
    xe, yc = m.frame.from_lonlat(LON0 + 0.0012 * 0.6, LAT0 + 0.0005)
    cw, rw = m.xy_to_pixel(xw, yc)
    ce, re_ = m.xy_to_pixel(xe, yc)
    assert not m.valid[int(rw), int(cw)] and m.valid[int(re_), int(ce)]

    # world file (pixel-centre convention) in UTM with an explicit CRS
    cv2.imwrite(str(tmp_path / "w.png"), rgb[:, :, ::-1])
    (tmp_path / "w.pgw").write_text("0.5\n0\n0\n-0.5\n400000.25\n3000000.75\n")
    assert read_world_file(tmp_path / "w.pgw") == Affine(0.5, 0, 400000.0, 0, -0.5, 3000001.0)
    with pytest.raises(RasterError, match="world_crs"):
        read_map(tmp_path / "w.png")
    mw = read_map(tmp_path / "w.png", world_crs="EPSG:32645")
    assert mw.frame.epsg == 32645 and mw.gsd_m == pytest.approx(0.5)
    assert mw.bounds_xy == pytest.approx((400000.0, 2999951.0, 400060.0, 3000001.0))
    np.testing.assert_array_equal(mw.image, rgb)


# ------------------------------------------------------------------ GeoTIFF in other CRSs
@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_read_geotiff_any_crs_pixel_to_xy(tmp_path, crs):
    from pyproj import Transformer

    h, w = 160, 200
    pts = [(30, 30), (150, 40), (100, 80), (40, 130), (170, 120)]
    # a ~100 x 80 m grid around LON0, LAT0 in the source CRS
    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x0, y0 = t.transform(LON0, LAT0 + 0.0008)
    x1, y1 = t.transform(LON0 + 0.001, LAT0)
    tr = Affine((x1 - x0) / w, 0, x0, 0, (y1 - y0) / h, y0)
    path = _write_tif(tmp_path / "m.tif", _marker_image(h, w, pts), crs, tr)
    m = read_map(path)
    assert m.frame.epsg == 32645 and m.transform.b == 0 and m.transform.e < 0
    assert 0.3 < m.gsd_m < 0.6
    back = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    for c, r in pts:
        sx, sy = affine_apply(tr, c + 0.5, r + 0.5)
        lon, lat = back.transform(sx, sy)
        ex, ey = m.frame.from_lonlat(lon, lat)
        fx, fy = _find_blob(m, ex, ey)
        assert math.hypot(fx - ex, fy - ey) < 0.5 * m.gsd_m, (c, r)


def test_read_map_resamples_to_requested_gsd_and_frame(tmp_path):
    src = synthetic_map(size_m=(120, 90), gsd_m=0.3, seed=5, lonlat=(LON0, LAT0))
    path = src.to_geotiff(tmp_path / "s.tif")
    same = read_map(path)
    np.testing.assert_array_equal(same.image, src.image)
    assert same.transform == src.transform and same.frame == src.frame and same.valid.all()
    coarse = read_map(path, gsd_m=0.9)
    assert coarse.gsd_m == 0.9 and abs(coarse.width - 134) <= 1
    # downsampled colour matches an area average of the original
    a = cv2.resize(src.image, (coarse.width, coarse.height), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(a[5:-5, 5:-5] - coarse.image[5:-5, 5:-5]).mean() < 12
    # an explicit neighbouring UTM zone is fine; a far-away one is a CRS mismatch
    other = read_map(path, frame=GeoFrame("EPSG:32644"))
    assert other.frame.epsg == 32644 and other.valid_fraction > 0.9
    with pytest.raises(CRSMismatchError):
        read_map(path, frame=GeoFrame("EPSG:32632"))


def test_mosaic_two_tiles_by_georeference(tmp_path):
    src = synthetic_map(size_m=(120, 90), gsd_m=0.3, seed=6, lonlat=(LON0, LAT0))
    full = src.to_geotiff(tmp_path / "full.tif")
    half = src.width // 2
    west = MapRaster(src.image[:, :half].copy(), src.valid[:, :half].copy(), src.transform, src.frame, src.gsd_m)
    east = MapRaster(
        src.image[:, half:].copy(), src.valid[:, half:].copy(), affine_compose(src.transform, Affine.translation(half, 0)),
        src.frame, src.gsd_m,
    )
    pw, pe = west.to_geotiff(tmp_path / "west.tif"), east.to_geotiff(tmp_path / "east.tif")
    a = read_map([pe, pw])
    b = read_map([pw, pe])
    ref = read_map(full)
    assert a.transform == ref.transform == b.transform
    np.testing.assert_array_equal(a.image, ref.image)
    np.testing.assert_array_equal(b.image, ref.image)
    assert a.valid.all()


def test_nodata_and_band_selection(tmp_path):
    h, w = 60, 80
    data = np.full((4, h, w), 100, np.uint8)
    data[3] = 200  # "NIR"
    data[:, 10:30, 10:30] = 0  # nodata hole
    tr = Affine(1.0, 0, 400000.0, 0, -1.0, 3000000.0)
    path = _write_tif(tmp_path / "n.tif", data, "EPSG:32645", tr, nodata=0)
    m = read_map(path)
    assert m.image.shape == (h, w, 3)
    assert not m.valid[10:30, 10:30].any() and m.valid[40:, 40:].all()
    assert m.valid.sum() == h * w - 400
    nir = read_map(path, bands=[4])
    assert nir.image.shape == (h, w) and nir.image[50, 50] == 200 and not nir.valid[15, 15]
    with pytest.raises(RasterError, match="bands"):
        read_map(path, bands=[5])


def test_non_uint8_is_stretched(tmp_path):
    data = np.linspace(0, 4000, 50 * 40, dtype=np.float64).reshape(1, 50, 40).astype(np.uint16)
    with rasterio.open(tmp_path / "u16.tif", "w", driver="GTiff", width=40, height=50, count=1, dtype="uint16",
                       crs="EPSG:32645", transform=Affine(1, 0, 4e5, 0, -1, 3e6)) as dst:
        dst.write(data)
    m = read_map(tmp_path / "u16.tif")
    assert m.image.dtype == np.uint8 and m.image.shape == (50, 40, 3)  # gray replicated to RGB
    assert m.image[0, 0, 0] == 0 and m.image[-1, -1, 0] == 255 and 100 < m.image[25, 20, 0] < 155


def test_raster_errors(tmp_path):
    with pytest.raises(RasterError, match="not found"):
        read_map(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_text("not an image")
    with pytest.raises(RasterError, match="cannot read"):
        read_map(tmp_path / "junk.tif")
    cv2.imwrite(str(tmp_path / "plain.png"), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(RasterError, match="not georeferenced"):
        read_map(tmp_path / "plain.png")
    path = _write_tif(tmp_path / "empty.tif", np.zeros((3, 20, 20), np.uint8), "EPSG:32645",
                      Affine(1, 0, 4e5, 0, -1, 3e6), nodata=0)
    with pytest.raises(RasterError, match="no valid pixels"):
        read_map(path)
    with pytest.raises(RasterError):
        read_map([])
    with pytest.raises(RasterError):
        read_map(path, gsd_m=-1.0)


# ------------------------------------------------------------------ MapRaster
def test_crop_north_up_and_rotated():
    m = synthetic_map(size_m=(200, 150), gsd_m=0.5, seed=2)
    cx, cy = m.center_xy
    img, valid = m.crop((cx, cy), 20.0, 40)  # 0.5 m/px: same resolution as the map
    c, r = m.xy_to_pixel(cx - 10, cy + 10)
    ref = m.image[int(round(r)) : int(round(r)) + 40, int(round(c)) : int(round(c)) + 40]
    assert valid.all() and np.abs(img.astype(int) - ref.astype(int)).mean() < 2.0
    # heading 90: east is up -> the crop is the north-up crop rotated by 90 deg counter-clockwise
    rot, _ = m.crop((cx, cy), 20.0, 40, heading_deg=90.0)
    assert np.abs(rot.astype(int) - np.rot90(img, k=1).astype(int)).mean() < 2.0
    # partly outside the map: black + invalid
    xmin, ymin, _, _ = m.bounds_xy
    out, v = m.crop((xmin, ymin), 40.0, 64)
    assert 0.2 < v.mean() < 0.3 and out[~v].max() == 0
    # coarse crops sample a pyramid level (no aliasing) and stay close to an area average
    small, _ = m.crop((cx, cy), 100.0, 50)
    c, r = m.xy_to_pixel(cx - 50, cy + 50)
    block = m.image[int(round(r)) : int(round(r)) + 200, int(round(c)) : int(round(c)) + 200]
    area = cv2.resize(block, (50, 50), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - area.astype(int)).mean() < 10


def test_maprast_geometry_helpers(tmp_path):
    m = synthetic_map(size_m=(60, 30), gsd_m=0.5, seed=1, lonlat=(LON0, LAT0))
    xmin, ymin, xmax, ymax = m.bounds_xy
    assert (xmax - xmin, ymax - ymin) == pytest.approx((60.0, 30.0))
    assert m.xy_to_pixel(xmin, ymax) == pytest.approx((0.0, 0.0))
    assert m.pixel_to_xy(m.width, m.height) == pytest.approx((xmax, ymin))
    lon0, lat0, lon1, lat1 = m.lonlat_bounds()
    assert lon0 < LON0 < lon1 and lat0 < LAT0 < lat1
    with pytest.raises(RasterError):
        MapRaster(m.image, m.valid[:-1], m.transform, m.frame, m.gsd_m)
    with pytest.raises(RasterError, match="north-up"):
        MapRaster(m.image, m.valid, Affine(0.5, 0.1, 0, 0, -0.5, 0), m.frame, m.gsd_m)


@pytest.mark.shared
def test_real_geotiffs_banepa_naip_pix4d(shared_data):
    """Real files in three CRSs: Web Mercator (Banepa, decimated read), NAD83 UTM (NAIP NIR band),
    WGS84 UTM south with an alpha band (Pix4D)."""
    banepa = require_shared(shared_data, "oam_banepa/banepa_z19_0.15m.tif")
    m = read_map(banepa, gsd_m=1.0)
    assert m.frame.epsg == 32645 and m.gsd_m == 1.0
    w, h = m.size_m
    assert abs(w - 1504) < 3 and abs(h - 1164) < 3  # 1.68 x 1.30 km of Web-Mercator metres on the ground
    assert 0.95 < m.valid_fraction < 0.995  # slightly rotated into UTM + two no-data patches
    assert m.image[m.valid].mean() > 40  # real imagery, not black

    naip = require_shared(shared_data, "naip_nd_5m/m_4709963_se_14_1_20090818.tif")
    nir = read_map(naip, bands=[4])
    rgb = read_map(naip)
    assert nir.image.ndim == 2 and rgb.image.shape == nir.image.shape + (3,)
    assert nir.transform == rgb.transform and nir.frame.epsg == 32614 and nir.gsd_m == 5.0
    # vegetation is bright in NIR and dark in red: the bands really are different
    assert np.corrcoef(nir.image[nir.valid].ravel(), rgb.image[..., 0][rgb.valid].ravel())[0, 1] < 0.9

    pix4d = require_shared(shared_data, "pix4d_bali_ortho/pix4d_alpha_nodata.tif")
    p = read_map(pix4d)
    assert p.frame.epsg == 32750 and 0.8 < p.valid_fraction < 0.95
    assert p.image[~p.valid].max() == 0
