"""One path from message to fix: the node and the bag replay publish the same fields for the same estimate,
and the replay's numbers on a simulated flight are what the live node publishes for the same frames.

* field parity: GeoEstimates of every status go through the node's rclpy conversions and through the
  replay's estimates-bag writer (read back from the MCAP); NavSatFix and pose fields are identical;
* run parity: a simulated flight is replayed (``replay_bag``) and played live into a real FoenetNode
  (slowly enough that it processes every frame); per frame, status and position agree.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from foenet_ros.bag import BagReader, ReplayConfig, SimConfig, replay_bag, simulate_flight
from foenet_ros.bag.replay import OUT_TOPICS, _OutputBag
from foenet_ros.bag.trajectory import MotionConfig
from foenet_ros.codec.outputs import OutputConfig
from foenet_ros.geo import GeoFrame
from foenet_ros.localize.estimate import GeoEstimate

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-jazzy-rclpy wheels) not installed")

from std_msgs.msg import Header  # noqa: E402

from foenet_ros.ros import conversions as conv  # noqa: E402


def _estimates(frame: GeoFrame) -> list[GeoEstimate]:
    x0, y0 = frame.from_lonlat(85.52, 27.63)
    out = []
    for i, (status, alt, heading) in enumerate([("verified", 120.0, 30.0), ("tracked", math.nan, 200.0),
                                                ("retrieval", 110.0, math.nan), ("lost", math.nan, math.nan),
                                                ("verified", 95.0, 359.0)]):  # fmt: skip
        x, y = x0 + 17.0 * i, y0 - 9.0 * i
        lon, lat = frame.to_lonlat(x, y)
        cov = np.array([[9.0, 2.5], [2.5, 4.0]]) * (1 + i)
        out.append(GeoEstimate(status=status, lat=lat, lon=lon, x=x, y=y, alt_m=alt, heading_deg=heading, cov_xy=cov,
                               sigma_m=float(np.sqrt(np.linalg.eigvalsh(cov).max())), velocity_xy=(1.0, -2.0))
                   if status != "lost" else GeoEstimate(status="lost"))  # fmt: skip
    return out


@pytest.mark.parametrize("publish_retrieval", [False, True])
def test_node_and_replay_publish_identical_fields(tmp_path, publish_retrieval):
    frame = GeoFrame.for_lonlat(85.52, 27.63)
    origin = frame.from_lonlat(85.521, 27.631)
    cfg = OutputConfig(origin_xy=origin, frame=frame, ground_altitude_m=1300.0, alt_sigma_m=4.0, yaw_sigma_deg=7.0,
                       publish_retrieval=publish_retrieval)  # fmt: skip
    ests = _estimates(frame)
    writer = _OutputBag(tmp_path / "est", cfg, {}, path_max=100)
    for i, est in enumerate(ests):
        writer.estimate(1_000 + i, 5_000_000_000 + i, est)
    writer.bag.close()
    with BagReader(tmp_path / "est") as bag:
        fixes = [bm.msg for bm in bag.messages([OUT_TOPICS["fix"]])]
        poses = [bm.msg for bm in bag.messages([OUT_TOPICS["pose"]])]
    assert len(fixes) == len(ests)
    n_fix = 0
    for est, bag_fix in zip(ests, fixes):
        node_fix = conv.estimate_to_navsatfix(est, Header(), cfg)
        assert node_fix.status.status == bag_fix.status.status
        for a, b in ((node_fix.latitude, bag_fix.latitude), (node_fix.longitude, bag_fix.longitude),
                     (node_fix.altitude, bag_fix.altitude)):  # fmt: skip
            assert (math.isnan(a) and math.isnan(b)) or a == b
        assert list(node_fix.position_covariance) == list(bag_fix.position_covariance)
        assert node_fix.position_covariance_type == bag_fix.position_covariance_type
        assert bag_fix.header.frame_id == node_fix.header.frame_id == cfg.base_frame
        if conv.estimate_is_usable(est, cfg):
            node_pose = conv.estimate_to_pose(est, Header(), cfg)
            bag_pose = poses[n_fix]
            n_fix += 1
            p, q = node_pose.pose.pose, bag_pose.pose.pose
            assert (p.position.x, p.position.y, p.position.z) == (q.position.x, q.position.y, q.position.z)
            assert (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) == \
                (q.orientation.x, q.orientation.y, q.orientation.z, q.orientation.w)  # fmt: skip
            assert list(node_pose.pose.covariance) == list(bag_pose.pose.covariance)
    assert len(poses) == n_fix == (4 if publish_retrieval else 3)


@pytest.mark.slow
@pytest.mark.ros
def test_replay_metrics_equal_the_live_node_on_the_same_frames(tmp_path):
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import NavSatFix

    from foenet_ros.bag.live import PlayConfig, play_bag
    from foenet_ros.geo import synthetic_map
    from foenet_ros.index import IndexConfig, build_index
    from foenet_ros.localize import Localizer
    from foenet_ros.model import Encoder, load_default_model
    from foenet_ros.ros.node import FoenetNode

    raster = synthetic_map(size_m=(360.0, 270.0), gsd_m=0.4, seed=11)
    enc = Encoder(load_default_model(), device="cpu", batch_size=16)
    build_index(raster, enc, tmp_path / "index", IndexConfig(scales_m=(90.0,)), progress=False)
    simulate_flight(raster, tmp_path / "flight", SimConfig(n_frames=6, rate_hz=1.0, width=480, height=360,
                    motion=MotionConfig(alt_m=90.0, speed_mps=8.0)), progress=False)  # fmt: skip
    res = replay_bag(tmp_path / "flight", Localizer.from_paths(tmp_path / "index", device="cpu"), tmp_path / "replay",
                     ReplayConfig(progress=False, plot=False))  # the node's defaults
    with BagReader(tmp_path / "replay" / "estimates") as bag:
        replayed = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in (bm.msg for bm in bag.messages([OUT_TOPICS["fix"]]))}

    import os

    os.environ["ROS_DOMAIN_ID"] = str(30 + os.getpid() % 60)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    live: dict = {}
    node = FoenetNode(context=ctx, parameter_overrides=[
        Parameter("index_dir", value=str(tmp_path / "index")), Parameter("device", value="cpu"),
        Parameter("image_topic", value="/camera/image_raw"), Parameter("camera_info_topic", value="/camera/camera_info"),
        Parameter("heading_topic", value="/mavros/imu/data"), Parameter("altitude_topic", value="/mavros/global_position/rel_alt"),
        Parameter("heading_timeout_s", value=30.0), Parameter("altitude_timeout_s", value=30.0),
        # the replay's Localizer has the library's default, no time budget: the node's must match
        Parameter("localizer.frame_budget_ms", value=0.0)])  # fmt: skip
    helper = rclpy.create_node("parity_helper", context=ctx)
    helper.create_subscription(NavSatFix, "/foenet_node/fix",
                               lambda m: live.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), 50)
    ex = MultiThreadedExecutor(num_threads=4, context=ctx)
    ex.add_node(node)
    ex.add_node(helper)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 120
        while node._localizer is None and time.monotonic() < deadline:
            time.sleep(0.2)
        player = rclpy.create_node("foenet_bag_player", context=ctx)
        ex.add_node(player)
        # 4x slower than recorded: the node processes every frame (no newest-frame drops)
        play_bag(tmp_path / "flight", PlayConfig(rate=0.25, clock=False, start_delay_s=1.5,
                 topics=("/camera/image_raw", "/camera/camera_info", "/mavros/imu/data", "/mavros/global_position/rel_alt")),
                 node=player, progress=False)  # fmt: skip
        deadline = time.monotonic() + 30
        while len(live) < len(replayed) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        ex.shutdown(timeout_sec=5)
        spin.join(timeout=5)
        node.destroy_node()
        helper.destroy_node()
        rclpy.shutdown(context=ctx)
    assert set(live) == set(replayed), (sorted(live), sorted(replayed))
    for k, rep in replayed.items():
        got = live[k]
        assert got.status.status == rep.status.status, k
        if rep.status.status >= 0:
            # The same numbers, to a few % of sigma. The node localises a frame with the newest sensor samples it
            # has; the bag holds each image just before the CameraInfo, IMU and altitude of the same instant, and
            # the simulated IMU runs at 1 Hz, so a frame can meet the previous second's heading in the node and
            # its own in the replay (a real IMU at >= 50 Hz makes that moot). The first frame once came out
            # 1.5-1.6 m apart (sigma 1.3 m; CI and local runs): the node had localised it before any sensor
            # message arrived, without intrinsics or heading; it now waits for them (sensor_wait_s), and the
            # first frame is held to the same tolerance as the others.
            sigma = math.sqrt(max(rep.position_covariance[0], rep.position_covariance[4]))
            tol = max(1e-7, 0.05 * sigma / 111_000.0)
            assert abs(got.latitude - rep.latitude) < tol and abs(got.longitude - rep.longitude) < 2 * tol, (k, sigma)
            assert np.allclose(got.position_covariance, rep.position_covariance, rtol=1e-6 if tol == 1e-7 else 0.1), k
    assert res.metrics["frames"] == len(live)
