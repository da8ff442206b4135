"""Live replay over real rclpy/Fast DDS: ``play_bag`` publishes a bag at its recorded rate with /clock,
and drives the real ``foenet_node`` until its estimates arrive. Each run uses its own ROS_DOMAIN_ID."""

from __future__ import annotations

import os
import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")

from foenet_ros.bag import MotionConfig, SimConfig, simulate_flight  # noqa: E402
from foenet_ros.bag.live import PlayConfig, play_bag  # noqa: E402

pytestmark = pytest.mark.ros
ALT = 60.0


@pytest.fixture()
def domain_id(monkeypatch):
    """A ROS domain of our own so parallel test runs and other nodes never cross-talk."""
    did = 20 + os.getpid() % 80
    monkeypatch.setenv("ROS_DOMAIN_ID", str(did))
    return did


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from foenet_ros.geo import synthetic_map

    root = tmp_path_factory.mktemp("live")
    mp = synthetic_map(size_m=(300.0, 240.0), seed=3)
    cfg = SimConfig(n_frames=6, rate_hz=2.0, width=320, height=240, motion=MotionConfig(alt_m=ALT, speed_mps=10.0), seed=1)
    simulate_flight(mp, root / "flight", cfg, progress=False)
    return {"map": mp, "root": root, "bag": root / "flight"}


def test_play_publishes_at_recorded_rate_with_clock(small, domain_id):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, NavSatFix

    rclpy.init()
    node = rclpy.create_node("bag_listener")
    images, fixes, clocks = [], [], []
    node.create_subscription(Image, "/camera/image_raw", lambda m: images.append((time.monotonic(), m)), qos_profile_sensor_data)
    node.create_subscription(NavSatFix, "/mavros/global_position/global", fixes.append, 10)
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec + m.clock.nanosec * 1e-9), 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        n = play_bag(small["bag"], PlayConfig(rate=2.0, start_delay_s=1.0), progress=False)
        time.sleep(0.5)
    finally:
        ex.shutdown(timeout_sec=2.0)
        th.join(timeout=5.0)
        node.destroy_node()
        rclpy.shutdown()
    assert n == 6 * 6  # six topics, six frames
    assert len(images) == 6 and len(fixes) == 6
    assert images[0][1].width == 320 and images[0][1].encoding == "rgb8"
    # 6 frames at 2 Hz = 2.5 s of bag time, played at rate 2 -> ~1.25 s of wall time
    span = images[-1][0] - images[0][0]
    assert 0.9 < span < 2.5, span
    # /clock carries bag time (2024-01-01 epoch) and advances with it
    assert clocks and 1_704_067_199 < clocks[0] <= clocks[-1] < 1_704_067_200 + 10


@pytest.mark.slow
def test_live_play_drives_the_real_node_and_estimates_arrive(small, domain_id):
    pytest.importorskip("foenet_ros.ros.node", reason="the ROS node is not available")
    from foenet_ros.ros.demo_live import run_live
    from foenet_ros.index import IndexConfig, build_index
    from foenet_ros.model import Encoder, load_default_model

    index_dir = small["root"] / "index"
    build_index(small["map"], Encoder(load_default_model(), device="cpu"), index_dir,
                IndexConfig(hfov_deg=70.0, image_size=(320, 240), alt_range_m=(ALT * 0.9, ALT * 1.1)), progress=False)
    res = run_live(small["bag"], index_dir, duration_s=2.5, device="cpu", timeout_s=90.0)
    assert res["available"] and res["ok"], res
    assert res["fixes_received"] >= 2 and res["fixes_with_position"] >= 1, res


def test_ros1_messages_convert_to_rclpy_classes():
    """ROS 1 messages (rosbags typestore) become rclpy messages: seq dropped, K/D matched to k/d."""
    import numpy as np
    from rosbags.typesys import Stores, get_typestore

    from foenet_ros.bag.live import rclpy_class, to_rclpy

    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    hdr = T["std_msgs/msg/Header"](seq=7, stamp=T["builtin_interfaces/msg/Time"](sec=5, nanosec=6), frame_id="cam")
    img = T["sensor_msgs/msg/Image"](header=hdr, height=2, width=3, encoding="rgb8", is_bigendian=0, step=9,
                                     data=np.arange(18, dtype=np.uint8))
    out = to_rclpy(img, rclpy_class("sensor_msgs/msg/Image"))
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (5, 6, "cam")
    assert (out.height, out.width, out.encoding) == (2, 3, "rgb8") and bytes(out.data) == bytes(range(18))
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = T["sensor_msgs/msg/CameraInfo"](header=hdr, height=480, width=640, distortion_model="plumb_bob",
                                           D=np.array([0.1, 0, 0, 0, 0.0]), K=np.arange(9.0), R=np.eye(3).ravel(),
                                           P=np.zeros(12), binning_x=0, binning_y=0, roi=roi)
    ci = to_rclpy(info, rclpy_class("sensor_msgs/msg/CameraInfo"))
    assert list(ci.k) == list(np.arange(9.0)) and list(ci.d) == [0.1, 0, 0, 0, 0]
    with pytest.raises(Exception, match="not available to rclpy"):
        rclpy_class("no_such_pkg/msg/Thing")
