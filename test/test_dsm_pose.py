"""Surface models: reading a DSM into the index frame, sampling it, and the PnP pose over hills that
the flat-ground homography gets tens of metres wrong (the orthority frames: 21-26 m -> 0.2-0.5 m)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from affine import Affine

from foenet_ros.errors import RasterError
from foenet_ros.geo import CameraIntrinsics, CameraPose, GeoFrame
from foenet_ros.geo.camera import project_points
from foenet_ros.geo.dsm import DsmGrid, read_dsm
from foenet_ros.localize.pose import homography_fix, pnp_fix

X0, Y0 = 500_000.0, 5_000_000.0


def _hill(x, y):
    """A 40 m hill north-east of the origin, on a gentle slope."""
    return 60.0 + 40.0 * np.exp(-((x - X0 - 60) ** 2 + (y - Y0 - 40) ** 2) / (2 * 50.0**2)) + 0.05 * (x - X0)


def test_read_dsm_reprojects_and_samples(tmp_path):
    import rasterio

    gsd = 2.0
    cols, rows = np.meshgrid(np.arange(200) + 0.5, np.arange(200) + 0.5)
    xs, ys = X0 - 200 + cols * gsd, Y0 + 200 - rows * gsd
    z = _hill(xs, ys).astype(np.float32)
    path = tmp_path / "dsm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=1, dtype="float32", crs="EPSG:32632",
                       transform=Affine(gsd, 0, X0 - 200, 0, -gsd, Y0 + 200), nodata=-9999.0) as ds:
        ds.write(z, 1)
    grid = read_dsm(path, GeoFrame(32632), (X0 - 100, Y0 - 100, X0 + 100, Y0 + 100))
    pts = np.array([[X0, Y0], [X0 + 60, Y0 + 40], [X0 - 80.3, Y0 + 77.7]])
    np.testing.assert_allclose(grid.sample(pts), _hill(pts[:, 0], pts[:, 1]), atol=0.05)
    assert np.isnan(grid.sample(np.array([[X0 + 5000, Y0]])))[0]
    assert 20.0 < grid.relief() < 50.0 and grid.relief((X0 - 100, Y0 - 100, X0 - 90, Y0 - 90)) < 2.0
    with pytest.raises(RasterError, match="overlap"):
        read_dsm(path, GeoFrame(32632), (X0 + 10_000, Y0, X0 + 10_100, Y0 + 100))


def test_pnp_pose_over_a_hill_beats_the_flat_ground_homography():
    intr = CameraIntrinsics.from_hfov(70.0, 960, 640)
    ground = 60.0
    pose = CameraPose(X0 - 40.0, Y0 - 30.0, 100.0 + ground, heading_deg=50.0, pitch_deg=30.0, roll_deg=2.0)
    rng = np.random.default_rng(0)
    # ground points seen by the camera, on the hill
    gx, gy = X0 + rng.uniform(-60, 160, 400), Y0 + rng.uniform(-60, 160, 400)
    xyz = np.column_stack([gx, gy, _hill(gx, gy)])
    uv = project_points(intr, pose, xyz)
    ok = np.isfinite(uv).all(axis=1) & (uv[:, 0] > 0) & (uv[:, 0] < 959) & (uv[:, 1] > 0) & (uv[:, 1] < 639)
    uv, xyz = uv[ok] + rng.normal(0, 0.5, (ok.sum(), 2)), xyz[ok]
    assert len(uv) > 60
    dsm = DsmGrid(np.zeros((3, 3), np.float32) + ground, Affine(500, 0, X0 - 750, 0, -500, Y0 + 750))  # flat at 60 m below the camera
    fix = pnp_fix(uv, xyz[:, :2], xyz[:, 2], intr, (960, 640), bootstrap=8, dsm=dsm)
    assert fix is not None and fix.model == "pnp"
    err = math.hypot(fix.xy[0] - pose.x, fix.xy[1] - pose.y)
    assert err < 0.5, err
    assert abs(fix.alt_m - 100.0) < 0.5 and abs(fix.tilt_deg - pose.tilt_deg) < 0.5
    assert math.sqrt(np.linalg.eigvalsh(fix.cov).max()) < 1.0
    # the same matches through a plane: the hill moves the camera by metres to tens of metres
    H, _ = cv2.findHomography(uv, xyz[:, :2] - xyz[:, :2].mean(0), cv2.RANSAC, 5.0)
    H = np.array([[1, 0, xyz[:, 0].mean()], [0, 1, xyz[:, 1].mean()], [0, 0, 1.0]]) @ H
    flat = homography_fix(H, uv, xyz[:, :2], intr, None, None, (960, 640), bootstrap=4, no_intrinsics_sigma_frac=0.15)
    assert math.hypot(flat.xy[0] - pose.x, flat.xy[1] - pose.y) > 5 * err + 2.0
    # heights missing (NaN) for most points: too few for PnP
    z = xyz[:, 2].copy()
    z[5:] = np.nan
    assert pnp_fix(uv, xyz[:, :2], z, intr, (960, 640), bootstrap=4) is None
