"""Bag I/O without ROS: messages, rosbag2 MCAP/sqlite3 writing and reading, ROS 1 reading,
topic auto-detection, broken bags, trajectories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from foenet_ros.bag import BagReader, BagWriter, TopicConfig, detect_topics
from foenet_ros.bag import messages as m
from foenet_ros.bag.io import TopicInfo
from foenet_ros.bag.trajectory import MotionConfig, lawnmower, load_waypoints, sample_flight
from foenet_ros.errors import BagError, ConfigError, ImageError
from foenet_ros.geo import CameraIntrinsics, CameraPose, GeoFrame

T0 = 1_700_000_000 * 10**9


# ------------------------------------------------------------------------------------ messages
@pytest.mark.parametrize("hpr", [(0, 0, 0), (30, 5, -3), (200, -8, 6), (359, 12, 1)])
def test_attitude_quaternion_matches_geo_camera_pose(hpr):
    """The Imu quaternion (FLU body in ENU) is geo.CameraPose's rotation, and inverts exactly."""
    h, p, r = hpr
    x, y, z, w = m.attitude_to_quaternion(h, p, r)
    R = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    R_wb = CameraPose(0, 0, 10, h, p, r).R_world_from_cam @ np.diag([1.0, -1.0, -1.0])  # world <- (right, fwd, up)
    flu_to_rfu = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    np.testing.assert_allclose(R, R_wb @ flu_to_rfu, atol=1e-12)
    h2, p2, r2 = m.quaternion_to_attitude(x, y, z, w)
    assert math.isclose(h2, h % 360, abs_tol=1e-9) and math.isclose(p2, p, abs_tol=1e-9) and math.isclose(r2, r, abs_tol=1e-9)
    # REP-103: heading 0 (north) is ENU yaw +90 deg
    assert math.isclose(m.quaternion_to_attitude(*m.attitude_to_quaternion(0.0))[0], 0.0, abs_tol=1e-9)


def test_image_round_trips_and_errors():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (12, 17, 3), dtype=np.uint8)
    assert np.array_equal(m.image_from_msg(m.image_msg(img, 5)), img)
    mono = img[..., 0].copy()
    assert np.array_equal(m.image_from_msg(m.image_msg(mono, 5)), np.repeat(mono[..., None], 3, 2))  # always RGB
    bgr = m.image_msg(img, 5)
    bgr.encoding, bgr.data = "bgr8", img[..., ::-1].copy().reshape(-1)
    assert np.array_equal(m.image_from_msg(bgr), img)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))[..., None].repeat(3, 2)
    dec = m.image_from_msg(m.compressed_image_msg(smooth, 5, quality=95))
    assert dec.shape == smooth.shape and np.abs(dec.astype(int) - smooth).mean() < 3
    bad = m.image_msg(img, 5)
    bad.encoding = "yuv_weird"
    with pytest.raises(ImageError, match="encoding"):
        m.image_from_msg(bad)
    short = m.image_msg(img, 5)
    short.data = short.data[:10]
    with pytest.raises(ImageError, match="does not match step"):
        m.image_from_msg(short)
    junk = m.compressed_image_msg(img, 5)
    junk.data = np.frombuffer(b"not a jpeg at all", np.uint8)
    with pytest.raises(ImageError, match="neither PNG nor JPEG"):
        m.image_from_msg(junk)


def test_camera_info_round_trip(tmp_path):
    intr = CameraIntrinsics.from_hfov(70, 640, 480, dist=(-0.1, 0.02, 0.001, 0.0, 0.0))
    back = m.intrinsics_from_camera_info(m.camera_info_msg(intr, 0))
    assert back == intr
    yml = tmp_path / "cam.yaml"
    yml.write_text(
        "image_width: 640\nimage_height: 480\ncamera_matrix: {rows: 3, cols: 3, data: [500, 0, 320, 0, 501, 240, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0, 0, 0]}\n"
    )
    cam = m.camera_info_from_yaml(str(yml))
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.dist[0]) == (500, 501, 320, 240, -0.1)


# ------------------------------------------------------------------------------------ rosbag2
def _write_small(path: Path, fmt: str, n: int = 5) -> list[np.ndarray]:
    imgs = [np.full((8, 10, 3), i * 20, np.uint8) for i in range(n)]
    with BagWriter(path, fmt, custom_data={"foenet_sim": json.dumps({"hello": 1})}) as bag:
        for i, img in enumerate(imgs):
            ns = T0 + i * 10**8
            bag.write("/cam/image_raw", ns, m.image_msg(img, ns))
            bag.write("/gps/fix", ns, m.navsatfix_msg(ns, 47.0 + i * 1e-5, 8.0, 100.0))
    return imgs


@pytest.mark.parametrize("fmt", ["mcap", "sqlite3"])
def test_write_and_read_rosbag2(tmp_path, fmt):
    imgs = _write_small(tmp_path / "b", fmt)
    assert not any(p.name.startswith(".b.") for p in tmp_path.iterdir()), "temporary directory left behind"
    with BagReader(tmp_path / "b") as bag:
        assert {(t.name, t.msgtype, t.count) for t in bag.topics} == {
            ("/cam/image_raw", m.IMAGE, 5), ("/gps/fix", m.NAVSATFIX, 5)}
        assert bag.sim_info() == {"hello": 1}
        got = [(bm.ns, m.image_from_msg(bm.msg)) for bm in bag.messages(["/cam/image_raw"])]
        fixes = [bm.msg.latitude for bm in bag.messages(["/gps/fix"])]
    assert [ns for ns, _ in got] == [T0 + i * 10**8 for i in range(5)]
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, imgs))
    np.testing.assert_allclose(fixes, [47.0 + i * 1e-5 for i in range(5)])
    # the storage file alone opens too (Foxglove-style)
    storage = next((tmp_path / "b").glob("b.*[!l]"))
    with BagReader(storage) as bag:
        assert sum(1 for _ in bag.messages()) == 10


def test_writer_refuses_existing_and_keeps_partial_on_error(tmp_path):
    _write_small(tmp_path / "b", "mcap")
    with pytest.raises(BagError, match="exists"):
        BagWriter(tmp_path / "b")
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path / "partial") as bag:
            bag.write("/x", T0, m.float64_msg(1.0))
            bag.write("/x", T0 + 1, m.float64_msg(2.0))
            raise RuntimeError("crash half-way")
    with BagReader(tmp_path / "partial") as bag:  # finalised, valid, with what was written
        assert [bm.msg.data for bm in bag.messages()] == [1.0, 2.0]


def test_truncated_and_missing_bags_raise_bag_error(tmp_path):
    _write_small(tmp_path / "b", "mcap")
    f = tmp_path / "b" / "b.mcap"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(BagError, match="truncated or corrupt"):
        BagReader(tmp_path / "b").open()
    with pytest.raises(BagError, match="not found"):
        BagReader(tmp_path / "nope")
    (tmp_path / "junk.mcap").write_bytes(b"\x89MCAP0\r\n garbage")
    with pytest.raises(BagError):
        BagReader(tmp_path / "junk.mcap").open()


def test_read_ros1_bag(tmp_path):
    """ROS 1 bags (recorded with rosbag on Noetic) are read through the same reader."""
    from rosbags.rosbag1 import Writer as Writer1
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    Image, Header, Time = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    img = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    path = tmp_path / "old.bag"
    with Writer1(path) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for i in range(3):
            msg = Image(header=Header(seq=i, stamp=Time(sec=100 + i, nanosec=0), frame_id="cam"), height=6, width=4,
                        encoding="rgb8", is_bigendian=0, step=12, data=img.reshape(-1))
            w.write(conn, (100 + i) * 10**9, ts.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    with BagReader(path) as bag:
        assert bag.is_ros1
        topics = detect_topics(bag.topics)
        assert topics.image == "/camera/image_raw" and topics.gt_fix is None
        frames = [m.image_from_msg(bm.msg) for bm in bag.messages([topics.image])]
    assert len(frames) == 3 and all(np.array_equal(f, img) for f in frames)


# ------------------------------------------------------------------------------------ topics
def test_detect_topics_ranks_names_and_checks_given():
    avail = [
        TopicInfo("/camera/depth/image_raw", m.IMAGE, 10), TopicInfo("/camera/image_raw/compressed", m.COMPRESSED_IMAGE, 10),
        TopicInfo("/camera/camera_info", m.CAMERA_INFO, 10), TopicInfo("/foenet_node/fix", m.NAVSATFIX, 10),
        TopicInfo("/mavros/global_position/raw/fix", m.NAVSATFIX, 10), TopicInfo("/ground_truth/fix", m.NAVSATFIX, 10),
        TopicInfo("/mavros/imu/data", m.IMU, 10), TopicInfo("/mavros/imu/data_raw", m.IMU, 10),
        TopicInfo("/mavros/global_position/rel_alt", m.FLOAT64, 10),
    ]
    t = detect_topics(avail)
    assert t.image == "/camera/image_raw/compressed"  # never the depth camera
    assert t.gt_fix == "/ground_truth/fix"  # an explicit ground truth beats a GPS fix; our own output never
    assert (t.camera_info, t.imu, t.altitude, t.gt_pose) == (
        "/camera/camera_info", "/mavros/imu/data", "/mavros/global_position/rel_alt", None)
    with pytest.raises(BagError, match="not in the bag"):
        detect_topics(avail, TopicConfig(image="/nope", camera_info=None, gt_fix=None, gt_pose=None, imu=None, altitude=None))
    with pytest.raises(BagError, match="needs one of"):
        detect_topics(avail, TopicConfig(image="/camera/camera_info", camera_info=None, gt_fix=None, gt_pose=None,
                                         imu=None, altitude=None))
    with pytest.raises(BagError, match="no camera topic"):
        detect_topics([TopicInfo("/mavros/imu/data", m.IMU, 3)])


# ------------------------------------------------------------------------------------ trajectories
def test_lawnmower_and_sampling_speed():
    wp = lawnmower((0, 0, 400, 200), spacing_m=50)
    assert wp[:, 0].min() == 0 and wp[:, 0].max() == 400 and wp[:, 1].min() == 0 and wp[:, 1].max() == 200
    assert len(wp) == 2 * 5  # lines at y = 0, 50, ..., 200
    rng = np.random.default_rng(0)
    st = sample_flight(wp, 20, 2.0, MotionConfig(alt_m=100, speed_mps=10, yaw_noise_deg=0), rng)
    steps = [math.hypot(b.x - a.x, b.y - a.y) for a, b in zip(st, st[1:])]
    np.testing.assert_allclose(steps, 5.0, atol=1e-6)  # 10 m/s at 2 Hz along the first straight line
    assert all(abs(s.heading_deg - 90.0) < 1e-6 for s in st[2:-2])  # flying east
    assert all(90 < s.alt_m < 110 for s in st)
    with pytest.raises(ConfigError):
        sample_flight(wp, 0, 1.0, MotionConfig(), rng)


def test_waypoint_files(tmp_path):
    frame = GeoFrame.for_lonlat(8.54, 47.37)
    x0, y0 = frame.from_lonlat(8.54, 47.37)
    (tmp_path / "w.csv").write_text("lat,lon,alt\n47.37,8.54,100\n47.371,8.54,120\n")
    xy, alt = load_waypoints(tmp_path / "w.csv", frame)
    assert np.allclose(xy[0], (x0, y0), atol=1e-6) and xy[1, 1] - xy[0, 1] == pytest.approx(111.2, abs=0.5)
    assert list(alt) == [100, 120]
    (tmp_path / "w.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[8.54, 47.37], [8.541, 47.37]]}}]}))
    xy, alt = load_waypoints(tmp_path / "w.geojson", frame)
    assert alt is None and xy[1, 0] - xy[0, 0] == pytest.approx(75.4, abs=0.5)
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(ConfigError, match="lat,lon"):
        load_waypoints(tmp_path / "bad.csv", frame)
