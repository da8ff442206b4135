"""Which camera QoS delivers frames across processes: a publisher process and a subscriber process.

    PYTHONPATH=. python bench/transport_qos.py --frames 30 --rate 10 --out transport_qos.json

For 640x480 and 1280x720 rgb8 and every publisher/subscriber reliability pair, with and without
config/fastdds_large_frames.xml (in both processes, and in the subscriber only), counts the frames
that arrive. Fast DDS's default shared-memory segment is 512 KiB: best-effort samples larger than
that mostly never arrive; a RELIABLE subscription does not connect to a BEST_EFFORT publisher at
all. docs/ros.md (Transport) has the table this prints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_large_frames.xml"

_SUB = """
import sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("qos_probe")
got = set()
rel = ReliabilityPolicy.RELIABLE if sys.argv[1] == "reliable" else ReliabilityPolicy.BEST_EFFORT
last = [time.time()]
def cb(m):
    got.add((m.header.stamp.sec, m.header.stamp.nanosec))
    last[0] = time.time()
node.create_subscription(Image, "/camera/image_raw", cb, QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=rel))
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end and not (got and time.time() - last[0] > 3.0):
    rclpy.spin_once(node, timeout_sec=0.05)
print(len(got), flush=True)
"""


def run(w: int, h: int, pub: str, sub: str, frames: int, rate: float, profile: str, domain: int) -> int:
    base = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    base.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    with_profile = dict(base, FASTRTPS_DEFAULT_PROFILES_FILE=str(PROFILE))
    sub_env = with_profile if profile in ("both", "subscriber") else base
    pub_env = with_profile if profile == "both" else base
    s = subprocess.Popen([sys.executable, "-c", _SUB, sub, str(frames / rate + 60)], env=sub_env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    assert s.stdout.readline().strip() == "ready"  # the subscription exists before the first frame
    # the camera waits (up to 30 s) until it sees the subscriber, as a driver that is up first would not:
    # what is measured is delivery, not discovery
    subprocess.run([sys.executable, str(REPO / "bench" / "fake_camera.py"), "--width", str(w), "--height", str(h),
                    "--qos", pub, "--frames", str(frames), "--rate", str(rate), "--wait-s", "30"],
                   env=pub_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    out, _ = s.communicate(timeout=120)
    return int(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--out", default="transport_qos.json")
    args = p.parse_args(argv)
    rows = []
    domain = 40 + os.getpid() % 40
    for profile in ("none", "subscriber", "both"):
        for w, h in ((640, 480), (1280, 720)):
            for pub, sub in (("best_effort", "best_effort"), ("reliable", "best_effort"), ("reliable", "reliable"),
                             ("best_effort", "reliable")):
                n = run(w, h, pub, sub, args.frames, args.rate, profile, domain)
                rows.append({"size": f"{w}x{h}", "publisher": pub, "subscriber": sub, "profile": profile,
                             "received": n, "sent": args.frames})
                print(f"{w}x{h} pub={pub:11s} sub={sub:11s} profile={profile:10s}: {n}/{args.frames}", flush=True)
    Path(args.out).write_text(json.dumps({"command": "PYTHONPATH=. python bench/transport_qos.py "
                                          + " ".join(argv if argv is not None else sys.argv[1:]), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
