"""The live part of ``foenet demo``: the simulated bag played into a real ``FoenetNode``.

In the ros room (not bag/) because it needs the node; bag/ never imports ros/ (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from foenet_ros.codec import topics as names


def run_live(bag: Path, index_dir: Path, duration_s: float, *, device: str = "auto", timeout_s: float = 120.0,
             domain_id: int | None = None) -> dict[str, Any]:
    """Play the first ``duration_s`` of ``bag`` into a real ``FoenetNode``; count the fixes it publishes.

    Returns ``{"available": False, "reason": ...}`` when rclpy or the node cannot be imported.
    """
    try:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import NavSatFix, PointCloud2

        from foenet_ros.ros.node import FoenetNode
    except ImportError as exc:
        return {"available": False, "reason": f"rclpy / the node cannot be imported: {exc}"}
    from foenet_ros.bag.live import PlayConfig, play_bag

    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    rclpy.init()
    fixes: list[int] = []
    ready = threading.Event()
    node = listener = player = None
    executor = MultiThreadedExecutor(num_threads=4)
    spin = None
    try:
        params = [
            Parameter("index_dir", value=str(index_dir)), Parameter("device", value=device),
            Parameter("image_topic", value=names.BAG_IMAGE), Parameter("camera_info_topic", value=names.BAG_CAMERA_INFO),
            Parameter("heading_topic", value=names.BAG_IMU), Parameter("use_imu_attitude", value=True),
            # the simulated bag's ground-truth clock is not this machine's: 1 s frames, a long timeout
            Parameter("heading_timeout_s", value=30.0), Parameter("altitude_timeout_s", value=30.0),
            Parameter("altitude_topic", value=names.BAG_ALTITUDE),
        ]
        node = FoenetNode(parameter_overrides=params)
        listener = rclpy.create_node("foenet_demo_listener")
        player = rclpy.create_node("foenet_bag_player")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        fqn = "/foenet_node"
        listener.create_subscription(PointCloud2, names.node_topic(fqn, names.MAP_TILES), lambda _m: ready.set(), latched)
        listener.create_subscription(NavSatFix, names.node_topic(fqn, names.FIX), lambda m: fixes.append(int(m.status.status)), 10)
        for n in (node, listener, player):
            executor.add_node(n)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        if not ready.wait(timeout_s):
            return {"available": True, "ok": False, "reason": f"the node did not load {index_dir} within {timeout_s:.0f} s"}
        t0 = time.perf_counter()
        sent = play_bag(bag, PlayConfig(duration_s=duration_s, start_delay_s=1.0,
                                        topics=(names.BAG_IMAGE, names.BAG_CAMERA_INFO, names.BAG_IMU, names.BAG_ALTITUDE)),
                        node=player, progress=False)
        # the node may still be working on the last frames: wait until fixes stop coming (3 s quiet)
        deadline = time.monotonic() + 30.0
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(fixes) != seen:
                seen, quiet_since = len(fixes), time.monotonic()
            elif fixes and time.monotonic() - quiet_since > 3.0:
                break
            time.sleep(0.1)
        good = sum(s >= 0 for s in fixes)
        return {"available": True, "ok": len(fixes) > 0, "messages_played": sent, "fixes_received": len(fixes),
                "fixes_with_position": good, "wall_s": round(time.perf_counter() - t0, 2)}
    finally:
        executor.shutdown(timeout_sec=5.0)
        if spin is not None:  # the executor thread must be gone before its nodes are destroyed
            spin.join(timeout=5.0)
        for n in (player, listener, node):
            if n is not None:
                n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def add_live(result: Any, cfg: Any) -> Any:
    """Run the live part for a :class:`foenet_ros.bag.demo.DemoResult` (when ``cfg.live``) and record it in its metrics."""
    from foenet_ros.utils import write_json_atomic

    if not (cfg.live and cfg.live_frames > 0):
        return result
    t = time.perf_counter()
    result.live = run_live(Path(result.files["bag"]), Path(result.files["index"]), cfg.live_frames / cfg.rate_hz,
                           device=cfg.device)
    result.timings_s["live"] = time.perf_counter() - t
    result.metrics.setdefault("demo", {})["live"] = result.live
    write_json_atomic(result.files["metrics"], result.metrics)
    return result
