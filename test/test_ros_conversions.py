"""Message conversions (no ROS graph needed): every image encoding, malformed inputs, CameraInfo,
headings, and GeoEstimate -> NavSatFix / Pose / Odometry / Path / markers / cloud / diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not installed")

import cv2  # noqa: E402
from sensor_msgs.msg import CameraInfo, Imu, NavSatFix, NavSatStatus  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from foenet_ros.errors import CameraError, ImageError  # noqa: E402
from foenet_ros.ros import conversions as conv  # noqa: E402

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(0)


def _random(shape, dtype=np.uint8):
    hi = 256 if dtype == np.uint8 else 65536
    return RNG.integers(0, hi, size=shape, dtype=np.int64).astype(dtype)


# ---------------------------------------------------------------------------------------- images
RAW_CASES = [
    ("rgb8", (6, 8, 3), np.uint8),
    ("bgr8", (6, 8, 3), np.uint8),
    ("rgba8", (6, 8, 4), np.uint8),
    ("bgra8", (6, 8, 4), np.uint8),
    ("8UC3", (6, 8, 3), np.uint8),
    ("rgb16", (6, 8, 3), np.uint16),
    ("bgr16", (6, 8, 3), np.uint16),
    ("mono8", (6, 8), np.uint8),
    ("8UC1", (6, 8), np.uint8),
    ("mono16", (6, 8), np.uint16),
    ("16UC1", (6, 8), np.uint16),
    ("yuv422", (6, 8, 2), np.uint8),
    ("yuv422_yuy2", (6, 8, 2), np.uint8),
    ("bayer_rggb8", (6, 8), np.uint8),
    ("bayer_bggr8", (6, 8), np.uint8),
    ("bayer_gbrg8", (6, 8), np.uint8),
    ("bayer_grbg8", (6, 8), np.uint8),
    ("bayer_rggb16", (6, 8), np.uint16),
]


@pytest.mark.parametrize("encoding,shape,dtype", RAW_CASES)
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("bigendian", [False, True])
def test_raw_round_trip_every_encoding(encoding, shape, dtype, pad, bigendian):
    arr = _random(shape, dtype)
    bpp = (arr.shape[2] if arr.ndim == 3 else 1) * arr.itemsize
    msg = conv.numpy_to_image(arr, encoding, step=shape[1] * bpp + pad, is_bigendian=bigendian)
    assert msg.step == shape[1] * bpp + pad
    assert msg.is_bigendian == (bigendian and dtype == np.uint16)
    back = conv.image_to_numpy(msg)
    assert back.dtype == dtype and back.shape == shape
    np.testing.assert_array_equal(back, arr)
    rgb = conv.image_to_rgb(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (shape[0], shape[1], 3) and rgb.flags.c_contiguous


def test_rgb_variants_match_expected_channels():
    rgb = _random((4, 6, 3))
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "rgb16": rgb.astype(np.uint16) << 8 | 0x55,
    }
    for enc, arr in cases.items():
        np.testing.assert_array_equal(conv.image_to_rgb(conv.numpy_to_image(arr, enc, step=None)), rgb, err_msg=enc)
    mono = _random((4, 6))
    out = conv.image_to_rgb(conv.numpy_to_image(mono.astype(np.uint16) << 8, "mono16", is_bigendian=True))
    np.testing.assert_array_equal(out, np.repeat(mono[..., None], 3, 2))


def test_big_endian_bytes_on_the_wire():
    arr = np.array([[0x0102, 0x0304]], np.uint16)
    msg = conv.numpy_to_image(arr, "mono16", is_bigendian=True)
    assert bytes(msg.data) == b"\x01\x02\x03\x04"
    np.testing.assert_array_equal(conv.image_to_numpy(msg), arr)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_demosaic_recovers_flat_colour(pattern):
    color = np.array([200, 90, 20], np.uint8)
    h, w = 16, 16
    mosaic = np.zeros((h, w), np.uint8)
    idx = {"r": 0, "g": 1, "b": 2}
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = color[idx[pattern[2 * dy + dx]]]
    rgb = conv.image_to_rgb(conv.numpy_to_image(mosaic, f"bayer_{pattern}8"))
    np.testing.assert_allclose(rgb[4:-4, 4:-4].reshape(-1, 3).mean(0), color, atol=2)


@pytest.mark.parametrize("encoding,order", [("yuv422", "uyvy"), ("yuv422_yuy2", "yuyv")])
def test_yuv422_decodes_colour(encoding, order):
    color = np.array([[[30, 160, 220]]], np.uint8)
    r, g, b = color[0, 0].astype(float)
    # BT.601 video range, as cameras emit UYVY/YUYV (and as OpenCV decodes it)
    y = round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    cb = round(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255)
    cr = round(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255)
    h, w = 4, 8
    pair = {"uyvy": [cb, y, cr, y], "yuyv": [y, cb, y, cr]}[order]
    buf = np.tile(np.array(pair, np.uint8), (h, w // 2)).reshape(h, w, 2)
    rgb = conv.image_to_rgb(conv.numpy_to_image(buf, encoding))
    np.testing.assert_allclose(rgb.reshape(-1, 3).mean(0), color[0, 0], atol=6)


def test_malformed_images_raise_with_reason():
    good = conv.numpy_to_image(_random((4, 6, 3)), "rgb8")
    bad = conv.numpy_to_image(_random((4, 6, 3)), "rgb8")
    bad.encoding = "rgb9"
    with pytest.raises(ImageError, match="unknown image encoding 'rgb9'"):
        conv.image_to_rgb(bad)
    bad = conv.numpy_to_image(_random((4, 6, 3)), "rgb8")
    bad.step = good.step + 3
    with pytest.raises(ImageError, match="does not match step\\*height"):
        conv.image_to_rgb(bad)
    bad.step = 10
    with pytest.raises(ImageError, match="smaller than one row"):
        conv.image_to_numpy(bad)
    bad = conv.numpy_to_image(_random((4, 6, 3)), "rgb8")
    bad.data = b""
    with pytest.raises(ImageError, match="empty data"):
        conv.image_to_rgb(bad)
    bad = conv.numpy_to_image(_random((4, 6, 3)), "rgb8")
    bad.width = 0
    with pytest.raises(ImageError, match="zero size"):
        conv.image_to_rgb(bad)
    odd = conv.numpy_to_image(_random((2, 6, 2)), "yuv422")
    odd.width, odd.step = 5, 10
    odd.data = bytes(20)
    with pytest.raises(ImageError, match="even width"):
        conv.image_to_rgb(odd)


def test_compressed_jpeg_png_and_garbage():
    img = cv2.resize(_random((8, 8, 3)), (64, 48), interpolation=cv2.INTER_CUBIC)
    png = conv.rgb_to_compressed(img, "png")
    assert "png" in png.format
    np.testing.assert_array_equal(conv.compressed_to_rgb(png), img)
    jpg = conv.rgb_to_compressed(img, "jpeg", quality=95)
    dec = conv.compressed_to_rgb(jpg)
    assert dec.shape == img.shape and np.abs(dec.astype(int) - img).mean() < 6
    jpg.data = b"not an image at all"
    with pytest.raises(ImageError, match="neither PNG nor JPEG"):
        conv.compressed_to_rgb(jpg)
    jpg.data = b""
    with pytest.raises(ImageError, match="empty data"):
        conv.compressed_to_rgb(jpg)


def test_cv_bridge_is_optional():
    msg = conv.numpy_to_image(_random((4, 6, 3)), "bgr8")
    # use_cv_bridge falls back to numpy where cv_bridge is not importable; same pixels either way
    np.testing.assert_array_equal(conv.image_to_rgb(msg, use_cv_bridge=True), conv.image_to_rgb(msg))


# ---------------------------------------------------------------------------------------- camera
def _camera_info(k=(500.0, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1), w=640, h=480, model="plumb_bob", d=(0.1, -0.05, 0, 0, 0)):
    msg = CameraInfo()
    msg.width, msg.height = w, h
    msg.k = [float(v) for v in k]
    msg.distortion_model = model
    msg.d = [float(v) for v in d]
    return msg


def test_camera_info_to_intrinsics():
    intr = conv.camera_info_to_intrinsics(_camera_info())
    assert (intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy) == (640, 480, 500.0, 510.0, 320.0, 240.0)
    assert intr.dist[:2] == (0.1, -0.05)
    msg = _camera_info()
    msg.binning_x = msg.binning_y = 2
    half = conv.camera_info_to_intrinsics(msg)
    assert (half.width, half.fx, half.cx, half.cy) == (320, 250.0, 160.0, 120.0)


@pytest.mark.parametrize(
    "k,match",
    [
        ((float("nan"), 0, 320, 0, 500, 240, 0, 0, 1), "non-finite"),
        ((0, 0, 0, 0, 0, 0, 0, 0, 0), "focal length"),
        ((500, 0, 320, 0, -5, 240, 0, 0, 1), "focal length"),
    ],
)
def test_bad_camera_info_raises(k, match):
    with pytest.raises(CameraError, match=match):
        conv.camera_info_to_intrinsics(_camera_info(k=k))


def test_unsupported_distortion_model_raises():
    with pytest.raises(CameraError, match="equidistant"):
        conv.camera_info_to_intrinsics(_camera_info(model="equidistant", d=(0.1, 0, 0, 0)))


# ---------------------------------------------------------------------------------------- headings
@pytest.mark.parametrize("heading,yaw", [(0, math.pi / 2), (90, 0.0), (180, -math.pi / 2), (270, math.pi), (45, math.pi / 4)])
def test_heading_to_enu_yaw(heading, yaw):
    assert math.isclose(conv.heading_to_enu_yaw(heading), yaw, abs_tol=1e-12)


def test_heading_round_trip_and_quaternions():
    for h in np.linspace(0, 359.5, 73):
        yaw = conv.heading_to_enu_yaw(h)
        assert math.isclose(conv.enu_yaw_to_heading(yaw), h, abs_tol=1e-9)
        q = conv.quaternion_from_rpy(0.1, -0.2, yaw)
        r, p, y = conv.rpy_from_quaternion(*q)
        assert math.isclose(r, 0.1, abs_tol=1e-9) and math.isclose(p, -0.2, abs_tol=1e-9)
        assert math.isclose(math.cos(y - yaw), 1.0, abs_tol=1e-9)


def test_imu_orientation():
    imu = Imu()
    qx, qy, qz, qw = conv.quaternion_from_rpy(0.0, math.radians(5), conv.heading_to_enu_yaw(30.0))
    imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = qx, qy, qz, qw
    heading, roll, pitch = conv.imu_orientation(imu)
    assert math.isclose(heading, 30.0, abs_tol=1e-6) and math.isclose(pitch, 5.0, abs_tol=1e-6)
    imu.orientation_covariance[0] = -1.0
    assert conv.imu_orientation(imu) is None


# ---------------------------------------------------------------------------------------- estimates
def _estimate(status="verified", cov=((4.0, 1.0), (1.0, 9.0)), heading=90.0, vel=(2.0, 0.0)):
    from foenet_ros.localize.estimate import Candidate, GeoEstimate

    cands = [
        Candidate(tile_id=3, score=0.9, center_xy=(500_010.0, 3_000_020.0), size_m=100.0),
        Candidate(tile_id=7, score=0.5, center_xy=(500_200.0, 3_000_020.0), size_m=100.0),
    ]
    return GeoEstimate(
        status=status, lat=27.1, lon=85.5, x=500_000.0, y=3_000_000.0, alt_m=120.0, heading_deg=heading,
        cov_xy=np.array(cov), sigma_m=3.0, velocity_xy=vel, score=0.8, inliers=40, candidates=cands,
    )  # fmt: skip


def _header(sec=12, nsec=345):
    h = Header()
    h.stamp.sec, h.stamp.nanosec = sec, nsec
    h.frame_id = "camera"
    return h


CFG = conv.OutputConfig(origin_xy=(499_900.0, 2_999_950.0), ground_altitude_m=1400.0, alt_sigma_m=4.0)


def test_estimate_to_navsatfix():
    fix = conv.estimate_to_navsatfix(_estimate(), _header(), CFG)
    assert fix.status.status == NavSatStatus.STATUS_FIX
    assert (fix.latitude, fix.longitude) == (27.1, 85.5)
    assert fix.altitude == 1520.0
    assert fix.header.stamp.sec == 12 and fix.header.stamp.nanosec == 345 and fix.header.frame_id == "base_link"
    np.testing.assert_allclose(np.reshape(fix.position_covariance, (3, 3)), [[4, 1, 0], [1, 9, 0], [0, 0, 16]])
    assert fix.position_covariance_type == NavSatFix.COVARIANCE_TYPE_APPROXIMATED
    diag = conv.estimate_to_navsatfix(_estimate(cov=((4.0, 0.0), (0.0, 9.0))), _header(), CFG)
    assert diag.position_covariance_type == NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    lost = conv.estimate_to_navsatfix(_estimate(status="lost"), _header(), CFG)
    assert lost.status.status == NavSatStatus.STATUS_NO_FIX
    assert lost.position_covariance_type == NavSatFix.COVARIANCE_TYPE_UNKNOWN and math.isnan(lost.latitude)


def test_estimate_to_pose_and_odometry():
    pose = conv.estimate_to_pose(_estimate(heading=90.0), _header(), CFG)
    assert pose.header.frame_id == "map" and pose.header.stamp.sec == 12
    p = pose.pose.pose.position
    assert (p.x, p.y, p.z) == (100.0, 50.0, 120.0)
    q = pose.pose.pose.orientation
    assert math.isclose(conv.rpy_from_quaternion(q.x, q.y, q.z, q.w)[2], 0.0, abs_tol=1e-12)  # heading east = yaw 0
    cov = np.reshape(pose.pose.covariance, (6, 6))
    np.testing.assert_allclose(cov[:2, :2], [[4, 1], [1, 9]])
    assert cov[2, 2] == 16.0 and cov[3, 3] == conv.UNKNOWN_VARIANCE
    # heading north (yaw pi/2), flying east at 2 m/s: the body sees the velocity on its right (-y)
    odom = conv.estimate_to_odometry(_estimate(heading=0.0, vel=(2.0, 0.0)), _header(), CFG)
    assert odom.child_frame_id == "base_link" and odom.header.frame_id == "map"
    assert math.isclose(odom.twist.twist.linear.x, 0.0, abs_tol=1e-9)
    assert math.isclose(odom.twist.twist.linear.y, -2.0, abs_tol=1e-9)
    from nav_msgs.msg import Path

    path = Path()
    for i in range(5):
        conv.append_to_path(path, conv.estimate_to_pose(_estimate(), _header(sec=i), CFG), max_length=3)
    assert [ps.header.stamp.sec for ps in path.poses] == [2, 3, 4] and path.header.frame_id == "map"


def test_markers_cloud_diagnostics():
    from visualization_msgs.msg import Marker

    est = _estimate()
    arr = conv.candidates_to_markers(est.candidates, _header(), CFG)
    assert arr.markers[0].action == Marker.DELETEALL
    lines = [m for m in arr.markers if m.type == Marker.LINE_STRIP]
    assert len(lines) == 2
    assert lines[0].color.g == 1.0 and lines[0].color.r == 0.0  # best score -> green
    assert lines[1].color.r == 1.0 and lines[1].color.g == 0.0  # worst -> red
    xs = [pt.x for pt in lines[0].points]
    assert len(lines[0].points) == 5 and math.isclose(min(xs), 60.0) and math.isclose(max(xs), 160.0)
    centers = np.array([[500_000.0, 3_000_000.0], [500_100.0, 3_000_050.0]])
    cloud = conv.tile_centers_to_cloud(centers, _header(), CFG, sizes_m=np.array([100.0, 50.0]))
    assert cloud.width == 2 and cloud.header.frame_id == "map"
    np.testing.assert_allclose(conv.cloud_to_xyz(cloud), [[100, 50, 0], [200, 100, 0]])
    diag = conv.make_diagnostic_array(_header().stamp, [("foenet: localizer", "idx", 2, "index missing", {"dropped": 3, "rate_hz": 1.23456})])
    st = diag.status[0]
    assert st.level == b"\x02" and st.message == "index missing"
    assert {kv.key: kv.value for kv in st.values} == {"dropped": "3", "rate_hz": "1.235"}


# ---------------------------------------------------------------------------------------- mailbox / stats
def test_mailbox_newest_wins_and_counts_drops():
    import threading

    from foenet_ros.ros.mailbox import LatestMailbox

    box: LatestMailbox[int] = LatestMailbox()
    assert box.take() is None and not box
    assert box.put(1) is False and box.put(2) is True and box.put(3) is True
    assert box.take() == 3 and box.take() is None
    assert box.stats() == {"received": 3, "dropped": 2, "taken": 1}
    # many producers, one consumer: every item is either taken or counted as dropped, never queued
    taken = []
    stop = threading.Event()

    def consume():
        while not stop.is_set() or box:
            item = box.take()
            if item is not None:
                taken.append(item)

    t = threading.Thread(target=consume)
    t.start()
    producers = [threading.Thread(target=lambda k=k: [box.put(k * 1000 + i) for i in range(500)]) for k in range(4)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    stop.set()
    t.join()
    s = box.stats()
    assert s["received"] == 2003 and s["received"] == s["dropped"] + s["taken"]


def test_rate_and_latency_stats():
    from foenet_ros.ros.stats import RateMeter, StageLatency

    r = RateMeter(window_s=5.0)
    for i in range(11):
        r.tick(now=100.0 + 0.5 * i)
    assert r.rate(now=105.0) == pytest.approx(2.0)
    assert r.rate(now=200.0) == 0.0  # old events leave the window
    lat = StageLatency(n=3)
    for v in (10.0, 20.0, 30.0, 40.0):
        lat.add({"total": v})
    assert lat.summary() == {"latency_total_ms": 30.0, "latency_total_max_ms": 40.0}
