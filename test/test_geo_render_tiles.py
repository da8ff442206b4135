"""geo.render + geo.tiles + geo.synthetic: rendered views agree with the geometry, tiles cover maps,
the synthetic town is deterministic, fast, feature-rich and not self-similar."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from foenet_ros.errors import CameraError, RasterError
from foenet_ros.geo import (
    CameraIntrinsics,
    CameraPose,
    GeoFrame,
    MapRaster,
    TileSet,
    image_to_ground,
    make_tiles,
    pose_from_homography,
    render_view,
    synthetic_map,
    tile_scales_for_camera,
)
from foenet_ros.geo.camera import distort_uv

INTR = CameraIntrinsics.from_hfov(70.0, 480, 360)


@pytest.fixture(scope="module")
def town() -> MapRaster:
    return synthetic_map(size_m=(300, 240), gsd_m=0.3, seed=3)


def _map_colour(m: MapRaster, xy: np.ndarray) -> np.ndarray:
    """Bilinear map colour at frame points ``xy[N,2]``."""
    col, row = m.xy_to_pixel(xy[:, 0], xy[:, 1])
    mx = (col - 0.5).astype(np.float32).reshape(-1, 1)
    my = (row - 0.5).astype(np.float32).reshape(-1, 1)
    return cv2.remap(m.image, mx, my, cv2.INTER_LINEAR).reshape(len(xy), -1).astype(float)


# ------------------------------------------------------------------ render
@pytest.mark.parametrize(
    "heading,pitch,roll", [(0.0, 0.0, 0.0), (37.0, 15.0, 0.0), (250.0, 8.0, -6.0)]
)
def test_rendered_pixel_has_the_map_colour_at_its_ground_point(town, heading, pitch, roll):
    cx, cy = town.center_xy
    pose = CameraPose(cx, cy, 70.0, heading, pitch, roll)
    img, valid = render_view(town, INTR, pose)
    assert img.shape == (360, 480, 3) and img.dtype == np.uint8 and valid.all()
    rng = np.random.default_rng(0)
    uv = np.column_stack([rng.integers(5, 475, 300), rng.integers(5, 355, 300)]).astype(float)
    xy = image_to_ground(INTR, pose, uv)
    rendered = img[uv[:, 1].astype(int), uv[:, 0].astype(int)].astype(float)
    err = np.abs(rendered - _map_colour(town, xy)).mean()
    assert err < 8.0, err
    # a wrong pose (5 m off) must not match as well: the test can see misregistration
    shifted = image_to_ground(INTR, pose.replace(x=cx + 5.0), uv)
    assert np.abs(rendered - _map_colour(town, shifted)).mean() > 2 * err


def test_nadir_north_up_view_is_the_map_crop(town):
    cx, cy = town.center_xy
    alt = 0.3 * INTR.fx  # one image pixel = one map pixel at the centre
    img, _ = render_view(town, INTR, CameraPose(cx, cy, alt))
    c, r = town.xy_to_pixel(cx, cy)
    ref = town.image[int(round(r - 0.5)) - 180 : int(round(r - 0.5)) + 180, int(round(c - 0.5)) - 240 : int(round(c - 0.5)) + 240]
    assert np.abs(img.astype(int) - ref.astype(int)).mean() < 3.0


def test_distorted_render_matches_ideal_render_through_the_lens_model(town):
    cx, cy = town.center_xy
    pose = CameraPose(cx, cy, 80.0, 20.0, 10.0, 0.0)
    lens = CameraIntrinsics(480, 360, INTR.fx, INTR.fy, INTR.cx, INTR.cy, (-0.22, 0.06, 0.0005, -0.0005, 0.0))
    raw, raw_valid = render_view(town, lens, pose)
    ideal, _ = render_view(town, lens, pose, distort=False)
    assert np.abs(raw.astype(int) - ideal.astype(int)).mean() > 5  # distortion changed the image
    rng = np.random.default_rng(1)
    uv_ideal = np.column_stack([rng.uniform(60, 420, 200), rng.uniform(50, 310, 200)])
    uv_raw = distort_uv(lens, uv_ideal)
    inside = (uv_raw[:, 0] > 1) & (uv_raw[:, 0] < 478) & (uv_raw[:, 1] > 1) & (uv_raw[:, 1] < 358)
    a = cv2.remap(raw, uv_raw[inside, 0:1].astype(np.float32), uv_raw[inside, 1:2].astype(np.float32), cv2.INTER_LINEAR)
    b = ideal[np.round(uv_ideal[inside, 1]).astype(int), np.round(uv_ideal[inside, 0]).astype(int)]
    assert np.abs(a.reshape(-1, 3).astype(int) - b.astype(int)).mean() < 10
    assert raw_valid[10:-10, 10:-10].all()


def test_render_errors_and_edges(town):
    cx, cy = town.center_xy
    with pytest.raises(CameraError, match="horizon"):
        render_view(town, INTR, CameraPose(cx, cy, 80.0, 0.0, 60.0))
    with pytest.raises(CameraError):
        render_view(town, INTR, CameraPose(cx, cy, 0.0))
    # off the map edge: part black and invalid
    xmin, _, _, _ = town.bounds_xy
    img, valid = render_view(town, INTR, CameraPose(xmin, cy, 60.0))
    assert 0.3 < valid.mean() < 0.7
    assert (img[~valid] == 0).all(axis=1).mean() > 0.98  # only the 1-px blended seam is not black
    # mono maps render mono
    mono = MapRaster(town.image[:, :, 1].copy(), town.valid, town.transform, town.frame, town.gsd_m)
    g, _ = render_view(mono, INTR, CameraPose(cx, cy, 60.0))
    assert g.shape == (360, 480)


# ------------------------------------------------------------------ tiles
def test_tiles_cover_the_map_with_overlap(town):
    ts = make_tiles(town, [40.0, 90.0], overlap=0.5, min_valid=0.6)
    assert len(ts) > 0 and set(np.unique(ts.scale_idx)) == {0, 1} and ts.scales_m == (40.0, 90.0)
    np.testing.assert_allclose(ts.size_m, np.asarray(ts.scales_m)[ts.scale_idx])
    xmin, ymin, xmax, ymax = town.bounds_xy
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(xmin, xmax, 2000), rng.uniform(ymin, ymax, 2000)])
    for k, size in enumerate(ts.scales_m):
        sel = ts.scale_idx == k
        c = ts.centers_xy[sel]
        inside = (np.abs(pts[:, None, 0] - c[None, :, 0]) <= size / 2) & (np.abs(pts[:, None, 1] - c[None, :, 1]) <= size / 2)
        assert inside.any(axis=1).all(), f"scale {size}: some map points are in no tile"
        xs = np.unique(np.round(c[:, 0], 6))
        assert np.diff(xs).max() <= size * 0.5 + 1e-6  # >= 50 % overlap
        assert c[:, 0].min() - size / 2 == pytest.approx(xmin) and c[:, 0].max() + size / 2 == pytest.approx(xmax)
    # polygons are the north-up squares around the centres (TL, TR, BR, BL)
    p = ts.polygons_xy[0]
    cx, cy = ts.centers_xy[0]
    h = ts.size_m[0] / 2
    np.testing.assert_allclose(p, [[cx - h, cy + h], [cx + h, cy + h], [cx + h, cy - h], [cx - h, cy - h]])
    assert np.all(ts.valid_frac == pytest.approx(1.0))


def test_tiles_respect_the_valid_mask(town, tmp_path):
    valid = town.valid.copy()
    valid[:, : town.width // 2] = False  # west half has no data
    half = MapRaster(town.image, valid, town.transform, town.frame, town.gsd_m)
    ts = make_tiles(half, [60.0], overlap=0.5, min_valid=0.6)
    assert (ts.valid_frac >= 0.6).all()
    xmid = half.center_xy[0]
    assert (ts.centers_xy[:, 0] > xmid - 0.1 * 60).all()
    # valid_frac agrees with counting the crop's valid pixels
    for i in range(0, len(ts), max(1, len(ts) // 5)):
        _, v = ts.crop(half, i, 120)
        assert abs(v.mean() - ts.valid_frac[i]) < 0.05
    # npz round trip without pickle
    np.savez(tmp_path / "t.npz", **ts.to_arrays())
    back = TileSet.from_arrays(np.load(tmp_path / "t.npz", allow_pickle=False))
    np.testing.assert_array_equal(back.polygons_xy, ts.polygons_xy)
    assert back.scales_m == ts.scales_m and len(back) == len(ts)
    with pytest.raises(RasterError, match="no tile"):
        make_tiles(half, [1000.0])
    with pytest.raises(RasterError):
        make_tiles(half, [0.0])
    with pytest.raises(RasterError):
        make_tiles(half, [50.0], overlap=1.0)


def test_tile_scales_for_camera():
    intr = CameraIntrinsics.from_hfov(60.0, 640, 480)
    (s,) = tile_scales_for_camera(intr, 100.0)
    assert s == pytest.approx(2 * 100 * math.tan(math.radians(30)), abs=0.05)
    scales = tile_scales_for_camera(intr, (80.0, 320.0))
    assert len(scales) == 3 and scales[0] < scales[1] < scales[2]
    assert scales[1] == pytest.approx(math.sqrt(scales[0] * scales[2]), rel=0.01)
    assert tile_scales_for_camera(intr, (100.0, 100.0), max_tilt_deg=30.0)[0] > s
    with pytest.raises(CameraError):
        tile_scales_for_camera(intr, (-5.0, 100.0))


# ------------------------------------------------------------------ synthetic map
def test_synthetic_map_is_deterministic_fast_and_georeferenced():
    t0 = time.perf_counter()
    m = synthetic_map()
    dt = time.perf_counter() - t0
    assert m.image.shape == (1500, 2000, 3) and m.gsd_m == 0.3 and m.valid.all()
    assert dt < 6.0, f"synthetic_map took {dt:.1f} s"  # ~1.5 s alone; the CI box is shared
    assert m.frame == GeoFrame.for_lonlat(8.5417, 47.3769)
    lon, lat = m.frame.to_lonlat(*m.center_xy)
    assert abs(lon - 8.5417) < 1e-6 and abs(lat - 47.3769) < 1e-6
    small = synthetic_map(size_m=(150, 100), seed=11)
    np.testing.assert_array_equal(small.image, synthetic_map(size_m=(150, 100), seed=11).image)
    assert np.abs(small.image.astype(int) - synthetic_map(size_m=(150, 100), seed=12).image.astype(int)).mean() > 20


def _sift_matches(a: np.ndarray, b: np.ndarray):
    sift = cv2.SIFT_create(nfeatures=1500)
    ka, da = sift.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
    kb, db = sift.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
    if da is None or db is None or len(ka) < 4 or len(kb) < 4:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    pa = np.float64([ka[m.queryIdx].pt for m in good])
    pb = np.float64([kb[m.trainIdx].pt for m in good])
    return pa, pb


def test_synthetic_view_localises_with_sift_and_pose_from_homography(town):
    """The chain the Localizer runs: render a tilted view, SIFT + RANSAC against a north-up map
    crop, compose with the crop's georeference, recover the camera pose."""
    cx, cy = town.center_xy
    truth = CameraPose(cx + 12.0, cy - 8.0, 90.0, 30.0, 12.0, 2.0)
    view, _ = render_view(town, INTR, truth)
    crop_size, crop_px = 180.0, 600
    crop, _ = town.crop((cx, cy), crop_size, crop_px)
    pa, pb = _sift_matches(view, crop)
    H, inl = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
    assert H is not None and int(inl.sum()) >= 60, int(inl.sum()) if inl is not None else 0
    # crop pixel (centre convention) -> frame metres
    s = crop_size / crop_px
    c0 = (crop_px - 1) / 2
    A = np.array([[s, 0, cx - s * c0], [0, -s, cy + s * c0], [0, 0, 1.0]])
    est, info = pose_from_homography(INTR, A @ H)
    assert math.hypot(est.x - truth.x, est.y - truth.y) < 2.0
    assert abs(est.alt_m - truth.alt_m) < 3.0
    assert abs((est.heading_deg - truth.heading_deg + 180) % 360 - 180) < 1.0
    assert abs(est.pitch_deg - truth.pitch_deg) < 2.0
    # ... while the image centre lands ~19 m away from the camera
    assert math.hypot(info["center_ground_x"] - truth.x, info["center_ground_y"] - truth.y) > 15


def test_synthetic_map_is_not_self_similar(town):
    """A view matches its own place far better than any other place of the town."""
    rng = np.random.default_rng(4)
    xmin, ymin, xmax, ymax = town.bounds_xy
    places: list[tuple[float, float]] = []
    while len(places) < 4:  # distinct places: no overlap between their 80 m crops and the view
        p = (rng.uniform(xmin + 45, xmax - 45), rng.uniform(ymin + 45, ymax - 45))
        if all(math.hypot(p[0] - q[0], p[1] - q[1]) > 85 for q in places):
            places.append(p)
    view, _ = render_view(town, INTR, CameraPose(places[0][0], places[0][1], 60.0, 0.0, 0.0))
    inliers = []
    for p in places:
        crop, _ = town.crop(p, 80.0, 400)
        pa, pb = _sift_matches(view, crop)
        if len(pa) < 8:
            inliers.append(0)
            continue
        _, inl = cv2.findHomography(pa, pb, cv2.RANSAC, 3.0)
        inliers.append(int(inl.sum()) if inl is not None else 0)
    assert inliers[0] >= 80, inliers
    assert max(inliers[1:]) < 0.2 * inliers[0], inliers
    # plenty of corners for ORB too, also over open land (shrubs, stones, furrows)
    orb = cv2.ORB_create(nfeatures=3000)
    counts = []
    for _ in range(6):
        pose = CameraPose(rng.uniform(xmin + 50, xmax - 50), rng.uniform(ymin + 50, ymax - 50), rng.uniform(50, 120), rng.uniform(0, 360))
        v, _ = render_view(town, INTR, pose)
        counts.append(len(orb.detect(cv2.cvtColor(v, cv2.COLOR_RGB2GRAY), None)))
    assert min(counts) > 300 and float(np.median(counts)) > 800, counts
