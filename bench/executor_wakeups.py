"""How often the node's executor wakes, and for what, while a camera streams.

    PYTHONPATH=. python bench/executor_wakeups.py [--seconds 15] [--rate 10] [--default-event-handlers]

A FoenetNode runs in this process on a MultiThreadedExecutor (as ``foenet_node`` does) over the
soak's synthetic index (``bench/soak_node.py``, built in a temp dir); ``bench/fake_camera.py``
publishes its frames from another process. rclpy's ``WaitSet`` is wrapped by a counter, so the
output says how many wait sets the executor built per second, how many of their waits returned
within 1 ms, and which entities were ready (per second). Every wait set is a rebuild in Python on
the executor's main thread, holding the GIL that the Localizer's thread needs.

``--default-event-handlers`` gives the node's subscriptions rclpy's default QoS-event handlers back
(what the node had before): with rmw_fastrtps ~1,500-2,400 wait sets a second, nearly all returning
at once with nothing ready, against ~54 without (docs/ros.md, Slow frames).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    p.add_argument("--world", help="a folder from an earlier run (index/ and frames.npz); default: built in a temp dir")
    p.add_argument("--default-event-handlers", action="store_true",
                   help="subscriptions with rclpy's default QoS-event handlers (the node's behaviour before)")
    args = p.parse_args(argv)

    os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 20))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_large_frames.xml")
    import rclpy
    import rclpy.executors as executors
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from soak_node import world_dir

    from foenet_ros.ros.node import FoenetNode

    world = world_dir(args.world, "foenet_wakeups_")

    counts: collections.Counter = collections.Counter()
    real = executors._rclpy

    class CountingWaitSet:
        """rclpy's WaitSet, counting what the executor does with it."""

        def __init__(self, *a) -> None:
            self._w = real.WaitSet(*a)
            counts["wait sets"] += 1

        def __getattr__(self, name):
            return getattr(self._w, name)

        def wait(self, timeout):
            t0 = time.perf_counter()
            out = self._w.wait(timeout)
            if time.perf_counter() - t0 < 1e-3:
                counts["waits returning within 1 ms"] += 1
            return out

        def get_ready_entities(self, kind):
            ready = self._w.get_ready_entities(kind)
            if ready:
                counts[f"ready: {kind}"] += 1
            return ready

    class Impl:
        def __getattr__(self, name):
            return CountingWaitSet if name == "WaitSet" else getattr(real, name)

    executors._rclpy = Impl()
    if args.default_event_handlers:
        FoenetNode.create_subscription = Node.create_subscription  # rclpy's own: default event handlers
    rclpy.init(args=["--ros-args", "--params-file", str(REPO / "config" / "foenet.yaml"), "-p", f"index_dir:={world / 'index'}",
                     "-p", "camera_info_topic:=''", "-p", "hfov_deg:=70.0", "-p", "localizer.unknown_heading_rotations:=1"])
    node = FoenetNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    deadline = time.monotonic() + 120
    while node._localizer is None and time.monotonic() < deadline:
        time.sleep(0.2)
    cam = subprocess.Popen([sys.executable, str(REPO / "bench" / "fake_camera.py"), "--frames-npz", str(world / "frames.npz"),
                            "--rate", str(args.rate), "--frames", "0", "--stamp0", "-1", "--qos", "best_effort"],
                           env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    try:
        time.sleep(3.0)  # discovery and the camera QoS match
        counts.clear()
        processed0, t0 = node._counters["processed"], time.monotonic()
        time.sleep(args.seconds)
        dt = time.monotonic() - t0
        processed = node._counters["processed"] - processed0
    finally:
        cam.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    handlers = "rclpy's default event handlers" if args.default_event_handlers else "no event handlers (the node's)"
    print(f"subscriptions with {handlers}; camera {args.rate:g} Hz for {dt:.0f} s; frames localised {processed / dt:.1f}/s")
    for key, n in counts.most_common():
        print(f"  {key}: {n / dt:.1f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
