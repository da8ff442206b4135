"""geo.crs + geo.camera: frames, UTM/WGS84, pinhole geometry over flat ground, pose recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foenet_ros.errors import CameraError, CRSMismatchError
from foenet_ros.geo import (
    CameraIntrinsics,
    CameraPose,
    GeoFrame,
    footprint,
    ground_to_image_homography,
    image_center_ground,
    image_to_ground,
    pose_from_homography,
    pose_from_opk,
    project_points,
    utm_epsg_for_lonlat,
)
from foenet_ros.geo.camera import distort_uv

INTR = CameraIntrinsics.from_hfov(70.0, 640, 480)


# ------------------------------------------------------------------ frames
@pytest.mark.parametrize(
    "lon,lat,epsg",
    [(8.5417, 47.3769, 32632), (85.539, 27.633, 32645), (115.2, -8.6, 32750), (-99.1, 47.05, 32614), (-179.9, 10.0, 32601)],
)
def test_utm_zone_and_round_trip_sub_mm(lon, lat, epsg):
    assert utm_epsg_for_lonlat(lon, lat) == epsg
    f = GeoFrame.for_lonlat(lon, lat)
    assert f.epsg == epsg
    rng = np.random.default_rng(0)
    lons = lon + rng.uniform(-0.02, 0.02, 100)
    lats = lat + rng.uniform(-0.02, 0.02, 100)
    x, y = f.from_lonlat(lons, lats)
    lon2, lat2 = f.to_lonlat(x, y)
    x2, y2 = f.from_lonlat(lon2, lat2)
    assert np.abs(x2 - x).max() < 1e-3 and np.abs(y2 - y).max() < 1e-3  # metres
    # 1e-8 deg ~ 1 mm
    assert np.abs(lon2 - lons).max() < 1e-8 and np.abs(lat2 - lats).max() < 1e-8
    # scalars stay scalars
    xs, ys = f.from_lonlat(lon, lat)
    assert isinstance(xs, float) and isinstance(ys, float)


def test_utm_known_coordinates():
    # the central meridian of zone 32 (9 E) at the equator is x = 500000, y = 0
    x, y = GeoFrame("EPSG:32632").from_lonlat(9.0, 0.0)
    assert abs(x - 500000.0) < 1e-6 and abs(y) < 1e-6
    # 1 arc-second of latitude is ~30.9 m
    f = GeoFrame.for_lonlat(8.5, 47.0)
    _, y0 = f.from_lonlat(8.5, 47.0)
    _, y1 = f.from_lonlat(8.5, 47.0 + 1 / 3600)
    assert 30.8 < y1 - y0 < 31.0


def test_geoframe_json_eq_and_errors():
    f = GeoFrame.for_lonlat(85.5, 27.6)
    g = GeoFrame.from_json(f.to_json())
    assert f == g and hash(f) == hash(g) and repr(f) == "GeoFrame('EPSG:32645')"
    assert f != GeoFrame("EPSG:32632")
    with pytest.raises(CRSMismatchError, match="not a projected"):
        GeoFrame("EPSG:4326")
    with pytest.raises(CRSMismatchError, match="unknown CRS"):
        GeoFrame("EPSG:99999999")
    with pytest.raises(CRSMismatchError):
        f.require_same(GeoFrame("EPSG:32632"), "index")
    with pytest.raises(CRSMismatchError):
        GeoFrame.for_lonlat(0.0, 89.0)


# ------------------------------------------------------------------ intrinsics
def test_intrinsics_from_hfov_and_validate():
    assert INTR.fx == pytest.approx(320 / math.tan(math.radians(35)))
    assert INTR.hfov_deg == pytest.approx(70.0)
    assert (INTR.cx, INTR.cy) == (319.5, 239.5)
    half = INTR.scaled(0.5)
    assert (half.width, half.height) == (320, 240) and half.hfov_deg == pytest.approx(70.0)
    assert (half.cx, half.cy) == (159.5, 119.5)
    bad = [
        dict(fx=float("nan")), dict(fy=-1.0), dict(fx=0.0), dict(cx=900.0), dict(cy=-20.0),
        dict(width=0), dict(dist=(0.1, float("inf"), 0, 0)), dict(dist=(0.1, 0.2, 0.3)),
    ]
    for change in bad:
        d = INTR.to_json() | change
        with pytest.raises(CameraError):
            CameraIntrinsics(**{k: (tuple(v) if k == "dist" else v) for k, v in d.items()}).validate()
    with pytest.raises(CameraError):
        CameraIntrinsics.from_hfov(0.0, 640, 480)
    assert CameraIntrinsics.from_json(INTR.to_json()) == INTR


# ------------------------------------------------------------------ conventions
def test_nadir_heading_zero_is_north_up_east_right():
    pose = CameraPose(1000.0, 2000.0, 100.0)
    uv = project_points(INTR, pose, np.array([[1000.0, 2010.0, 0.0], [1010.0, 2000.0, 0.0]]))
    c = np.array([INTR.cx, INTR.cy])
    north, east = uv[0] - c, uv[1] - c
    assert north[1] < -10 and abs(north[0]) < 1e-9  # north is image-up
    assert east[0] > 10 and abs(east[1]) < 1e-9  # east is image-right


def test_heading_90_puts_east_up():
    pose = CameraPose(0.0, 0.0, 100.0, heading_deg=90.0)
    uv = project_points(INTR, pose, np.array([[10.0, 0.0, 0.0], [0.0, -10.0, 0.0]]))
    c = np.array([INTR.cx, INTR.cy])
    assert (uv[0] - c)[1] < -10  # east is up
    assert (uv[1] - c)[0] > 10  # south is right


def test_pitch_looks_forward_roll_lowers_right_side():
    # pitch: the image centre moves towards the image-up direction (north at heading 0)
    g = image_center_ground(INTR, CameraPose(0.0, 0.0, 100.0, 0.0, 20.0, 0.0))
    assert g[1] == pytest.approx(100 * math.tan(math.radians(20))) and abs(g[0]) < 1e-9
    # heading 90: forward = east
    g = image_center_ground(INTR, CameraPose(0.0, 0.0, 100.0, 90.0, 20.0, 0.0))
    assert g[0] == pytest.approx(100 * math.tan(math.radians(20))) and abs(g[1]) < 1e-9
    # roll +10: right side down -> the view swings to image-left (west at heading 0)
    g = image_center_ground(INTR, CameraPose(0.0, 0.0, 100.0, 0.0, 0.0, 10.0))
    assert g[0] == pytest.approx(-100 * math.tan(math.radians(10))) and abs(g[1]) < 1e-9


def test_tilted_camera_position_is_not_the_image_centre():
    """The fact the Localizer depends on: at 100 m and 12 deg tilt they differ by ~21 m."""
    pose = CameraPose(500000.0, 4000000.0, 100.0, heading_deg=33.0, pitch_deg=12.0)
    g = image_center_ground(INTR, pose)
    offset = math.hypot(g[0] - pose.x, g[1] - pose.y)
    assert offset == pytest.approx(21.26, abs=0.01)
    # ... and pose_from_homography returns the camera, not the image centre
    est, info = pose_from_homography(INTR, np.linalg.inv(ground_to_image_homography(INTR, pose)))
    assert math.hypot(est.x - pose.x, est.y - pose.y) < 1e-4
    assert math.hypot(info["center_ground_x"] - g[0], info["center_ground_y"] - g[1]) < 1e-4


# ------------------------------------------------------------------ homographies
POSES = [
    CameraPose(500123.0, 4100456.0, 100.0),
    CameraPose(500123.0, 4100456.0, 80.0, 45.0, 15.0, 0.0),
    CameraPose(-300.0, 250.0, 250.0, 300.0, 30.0, -7.0),
    CameraPose(1.0, 2.0, 40.0, 179.0, -12.0, 9.0),
]


@pytest.mark.parametrize("pose", POSES)
def test_homography_matches_full_projection(pose):
    rng = np.random.default_rng(1)
    xy = np.column_stack([pose.x + rng.uniform(-30, 30, 50), pose.y + rng.uniform(-30, 30, 50)])
    R_cw = pose.R_world_from_cam.T
    # K [R | t] X, written out independently of the library helpers
    t = -R_cw @ np.array([pose.x, pose.y, pose.alt_m])
    P = INTR.K @ np.column_stack([R_cw, t])
    X = np.column_stack([xy, np.zeros(50), np.ones(50)])
    p = X @ P.T
    uv_ref = p[:, :2] / p[:, 2:]
    H = ground_to_image_homography(INTR, pose)
    q = np.column_stack([xy, np.ones(50)]) @ H.T
    assert np.all(q[:, 2] > 0)  # points in front have w > 0
    np.testing.assert_allclose(q[:, :2] / q[:, 2:], uv_ref, atol=1e-6)
    np.testing.assert_allclose(project_points(INTR, pose, X[:, :3]), uv_ref, atol=1e-6)
    # rotation is proper
    R = pose.R_world_from_cam
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


@pytest.mark.parametrize("pose", POSES)
def test_image_to_ground_inverts_projection(pose):
    rng = np.random.default_rng(2)
    uv = np.column_stack([rng.uniform(0, 639, 40), rng.uniform(0, 479, 40)])
    xy = image_to_ground(INTR, pose, uv)
    back = project_points(INTR, pose, np.column_stack([xy, np.zeros(len(xy))]))
    np.testing.assert_allclose(back, uv, atol=1e-6)


def test_image_to_ground_with_distortion_inverts_distort():
    intr = CameraIntrinsics(640, 480, INTR.fx, INTR.fy, INTR.cx, INTR.cy, (-0.2, 0.05, 0.001, -0.001, 0.0))
    pose = CameraPose(0.0, 0.0, 100.0, 10.0, 5.0, 0.0)
    ideal = np.array([[100.0, 80.0], [320.0, 240.0], [600.0, 450.0]])
    raw = distort_uv(intr, ideal)
    assert np.abs(raw - ideal).max() > 5  # distortion actually moved the corners
    np.testing.assert_allclose(image_to_ground(intr, pose, raw), image_to_ground(intr, pose, ideal, undistort=False), atol=1e-3)


def test_footprint_nadir_width_and_order():
    for alt, hfov in ((100.0, 70.0), (250.0, 50.0)):
        intr = CameraIntrinsics.from_hfov(hfov, 800, 600)
        fp = footprint(intr, CameraPose(10.0, 20.0, alt))
        width = 2 * alt * math.tan(math.radians(hfov / 2))
        assert fp[1, 0] - fp[0, 0] == pytest.approx(width)  # TL -> TR
        assert fp[0, 1] - fp[3, 1] == pytest.approx(width * 600 / 800)  # TL above BL
        assert fp[:, 0].mean() == pytest.approx(10.0) and fp[:, 1].mean() == pytest.approx(20.0)
    # tilted forward: the far (top) edge is wider than the near (bottom) edge
    fp = footprint(INTR, CameraPose(0.0, 0.0, 100.0, 0.0, 20.0))
    assert (fp[1, 0] - fp[0, 0]) > (fp[2, 0] - fp[3, 0])


def test_horizon_in_view_raises():
    with pytest.raises(CameraError, match="horizon"):
        footprint(INTR, CameraPose(0.0, 0.0, 100.0, 0.0, 70.0))
    with pytest.raises(CameraError):
        image_to_ground(INTR, CameraPose(0.0, 0.0, -5.0), np.array([[1.0, 1.0]]))
    with pytest.raises(CameraError):
        ground_to_image_homography(INTR, CameraPose(float("nan"), 0.0, 100.0))


# ------------------------------------------------------------------ pose recovery
@pytest.mark.parametrize("seed", range(6))
def test_pose_from_homography_recovers_known_pose(seed):
    rng = np.random.default_rng(seed)
    pose = CameraPose(
        float(rng.uniform(3e5, 7e5)), float(rng.uniform(1e6, 6e6)), float(rng.uniform(30, 400)),
        float(rng.uniform(0, 360)), float(rng.uniform(-25, 25)), float(rng.uniform(-15, 15)),
    )
    H = np.linalg.inv(ground_to_image_homography(INTR, pose)) * rng.uniform(-5, 5)  # any scale/sign
    est, info = pose_from_homography(INTR, H)
    assert math.hypot(est.x - pose.x, est.y - pose.y) < 1e-3
    assert abs(est.alt_m - pose.alt_m) < 1e-3
    assert abs((est.heading_deg - pose.heading_deg + 180) % 360 - 180) < 0.1
    assert abs(est.pitch_deg - pose.pitch_deg) < 0.1 and abs(est.roll_deg - pose.roll_deg) < 0.1
    assert info["reproj_rms_px"] < 1e-3 and abs(info["scale_ratio"] - 1) < 1e-6


def test_pose_from_noisy_point_homography():
    """A RANSAC-like H fitted on noisy correspondences still gives the pose to ~1 % of altitude."""
    import cv2

    pose = CameraPose(1000.0, 2000.0, 120.0, 70.0, 12.0, 3.0)
    rng = np.random.default_rng(3)
    uv = np.column_stack([rng.uniform(0, 639, 200), rng.uniform(0, 479, 200)])
    xy = image_to_ground(INTR, pose, uv)
    H, _ = cv2.findHomography(uv + rng.normal(0, 0.5, uv.shape), xy, 0)
    est, info = pose_from_homography(INTR, H)
    assert math.hypot(est.x - pose.x, est.y - pose.y) < 1.5
    assert abs(est.alt_m - pose.alt_m) < 1.5
    assert abs(est.heading_deg - pose.heading_deg) < 0.5
    assert info["reproj_rms_px"] < 2.0


def test_pose_from_homography_rejects_mirrored_and_degenerate():
    H = np.linalg.inv(ground_to_image_homography(INTR, CameraPose(0.0, 0.0, 100.0)))
    with pytest.raises(CameraError, match="mirrored"):
        pose_from_homography(INTR, np.diag([1.0, -1.0, 1.0]) @ H)  # y = pixel rows, not north
    with pytest.raises(CameraError):
        pose_from_homography(INTR, np.zeros((3, 3)))
    with pytest.raises(CameraError):
        pose_from_homography(INTR, np.full((3, 3), np.nan))


# ------------------------------------------------------------------ grid vs true north, OPK poses
def test_grid_and_true_heading():
    f = GeoFrame("EPSG:32632")  # central meridian 9 E
    x, y = f.from_lonlat(9.0, 47.0)
    assert abs(f.true_north_azimuth_deg(x, y)) < 1e-6
    x, y = f.from_lonlat(11.0, 47.0)  # east of the central meridian: true north leans west
    conv = f.true_north_azimuth_deg(x, y)
    assert conv == pytest.approx(-(11.0 - 9.0) * math.sin(math.radians(47.0)), abs=0.02)
    assert f.grid_to_true_heading(0.0, x, y) == pytest.approx(-conv)
    assert f.true_to_grid_heading(f.grid_to_true_heading(123.0, x, y), x, y) == pytest.approx(123.0)


def test_pose_from_opk_conventions():
    # omega tilts the optical axis towards north, phi (negative) towards east; kappa turns the image
    p = pose_from_opk(10.0, 20.0, 150.0, 20.0, 0.0, 0.0, ground_z=50.0)
    assert (p.x, p.y, p.alt_m) == (10.0, 20.0, 100.0)
    assert p.heading_deg == pytest.approx(0.0, abs=1e-9) and p.pitch_deg == pytest.approx(20.0)
    p = pose_from_opk(0.0, 0.0, 100.0, 0.0, -20.0, -90.0)
    assert p.heading_deg == pytest.approx(90.0) and p.pitch_deg == pytest.approx(20.0) and abs(p.roll_deg) < 1e-9


@pytest.mark.shared
def test_pose_from_opk_matches_real_orthority_roll_pitch_yaw(shared_data):
    """The real ODM frames' OPK (x, y, z, omega, phi, kappa) and their gimbal roll/pitch/yaw
    describe the same cameras: our conversion must agree with the independent RPY record."""
    from conftest import require_shared

    opk = require_shared(shared_data, "orthority_odm/io/odm_xyz_opk.csv")
    rpy = require_shared(shared_data, "orthority_odm/io/odm_lla_rpy.csv")
    yaw = {ln.split()[0].split(".")[0]: (float(ln.split()[5]), float(ln.split()[6])) for ln in rpy.read_text().splitlines()[1:] if ln.strip()}
    frame = GeoFrame("EPSG:32651")
    for ln in opk.read_text().replace("'", "").splitlines()[1:]:
        cols = ln.split()
        pose = pose_from_opk(*map(float, cols[1:7]), ground_z=0.0)
        pitch, heading = yaw[cols[0]]
        true_heading = frame.grid_to_true_heading(pose.heading_deg, pose.x, pose.y)
        assert abs((true_heading - heading + 180) % 360 - 180) < 2.0, cols[0]
        assert abs(pose.pitch_deg - pitch) < 2.0 and abs(pose.roll_deg) < 2.0
        lon, lat = frame.to_lonlat(pose.x, pose.y)
        assert abs(lon - 120.9515) < 0.001 and abs(lat - 24.68) < 0.001
