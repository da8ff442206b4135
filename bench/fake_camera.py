"""A camera driver stand-in: publishes frames from an .npz (or grey frames) as sensor_msgs/Image in its own process.

Used by the cross-process tests (test/test_ros_transport.py) and the benchmarks (bench/soak_node.py,
bench/transport_qos.py) to exercise the real Fast DDS path between two processes.

    python bench/fake_camera.py --topic /camera/image_raw --width 1280 --height 720 --rate 10 --frames 100 \
        --qos best_effort [--frames-npz frames.npz] [--stamps-out sent.txt]

Frames: ``--frames-npz`` holds ``frames`` (N, H, W, 3) uint8 (cycled), else mid-grey frames of the
given size. Stamps start at ``--stamp0`` seconds and step by 1/rate (the recorded capture time);
each published stamp is written to ``--stamps-out``. The publisher waits for a subscriber first.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--topic", default="/camera/image_raw")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=50, help="frames to publish (0 = until killed)")
    p.add_argument("--qos", choices=("reliable", "best_effort"), default="best_effort")
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--frames-npz")
    p.add_argument("--stamp0", type=float, default=1000.0, help="first stamp, s (negative = now, wall clock)")
    p.add_argument("--stamps-out")
    p.add_argument("--wait-s", type=float, default=30.0, help="wait this long for a subscriber")
    args = p.parse_args(argv)

    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    frames = None
    if args.frames_npz:
        frames = np.load(args.frames_npz)["frames"]
        args.height, args.width = frames.shape[1:3]
    rclpy.init()
    node = rclpy.create_node("fake_camera")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth,
                     reliability=ReliabilityPolicy.RELIABLE if args.qos == "reliable" else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image, args.topic, qos)
    t0 = time.monotonic()
    while pub.get_subscription_count() == 0 and time.monotonic() - t0 < args.wait_s:
        time.sleep(0.05)
    time.sleep(1.0)  # let the subscriber match the QoS (foenet_node's camera_qos: auto)
    grey = bytes(np.full((args.height, args.width, 3), 128, np.uint8).tobytes())
    out = open(args.stamps_out, "w") if args.stamps_out else None
    period = 1.0 / args.rate
    if args.stamp0 < 0:
        args.stamp0 = time.time()
    start = time.monotonic()
    i = 0
    try:
        while args.frames == 0 or i < args.frames:
            msg = Image()
            stamp = args.stamp0 + i * period
            msg.header.stamp.sec = int(stamp)
            msg.header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
            msg.header.frame_id = "camera_optical"
            msg.height, msg.width, msg.encoding, msg.step = args.height, args.width, "rgb8", 3 * args.width
            msg.data = frames[i % len(frames)].tobytes() if frames is not None else grey
            pub.publish(msg)
            if out is not None:
                out.write(f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}\n")
                out.flush()
            i += 1
            time.sleep(max(0.0, start + i * period - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        if out is not None:
            out.close()
        time.sleep(0.5)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
