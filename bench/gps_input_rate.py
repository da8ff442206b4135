"""GPS_INPUT rate and age over 60 s: foenet_node (own process) -> MAVLink on 127.0.0.1 -> a pymavlink listener.

    PYTHONPATH=. python bench/gps_input_rate.py --seconds 60 --out gps_input.json

A camera process publishes rendered frames of a synthetic map at ``--camera-hz`` (default 2 Hz,
stamped with this machine's clock); the node sends GPS_INPUT at mavlink_rate_hz (5 Hz) from a
steady-clock timer with the newest estimate propagated to the send time. Reported: the rate over
the window (messages - 1) / span, the inter-message interval p50/p99/max, the share of 3D fixes,
the position age (receive wall time - time_usec) p50/p99, and that NO_FIX follows within
mavlink_stale_s (2 s) + one period when the camera stops. docs/ros.md has the result.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--camera-hz", type=float, default=2.0)
    p.add_argument("--out", default="gps_input.json")
    args = p.parse_args(argv)
    from pymavlink import mavutil

    from soak_node import build_world

    tmp = Path(tempfile.mkdtemp(prefix="foenet_gps_"))
    index, npz = build_world(tmp)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mav = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    got: list[tuple[float, float, object]] = []  # (monotonic, wall, msg)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            m = mav.recv_match(type="GPS_INPUT", blocking=True, timeout=0.2)
            if m is not None:
                got.append((time.monotonic(), time.time(), m))

    threading.Thread(target=read, daemon=True).start()
    env = dict(os.environ, FASTRTPS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_large_frames.xml"),
               ROS_DOMAIN_ID=str(60 + os.getpid() % 30), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONPATH=str(REPO))
    log = open(tmp / "node.log", "w")
    node = subprocess.Popen([sys.executable, "-m", "foenet_ros.ros.node", "--ros-args", "--params-file",
                             str(REPO / "config" / "foenet.yaml"), "-p", f"index_dir:={index}", "-p", "camera_info_topic:=''",
                             "-p", "hfov_deg:=70.0", "-p", "localizer.unknown_heading_rotations:=1",
                             "-p", f"mavlink_url:=udpout:127.0.0.1:{port}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    while not got and node.poll() is None:
        time.sleep(0.5)  # the node is up once GPS_INPUT (NO_FIX until a fix) flows
    n_frames = int((args.seconds + 15) * args.camera_hz)
    cam = subprocess.Popen([sys.executable, str(REPO / "bench" / "fake_camera.py"), "--frames-npz", str(npz), "--rate",
                            str(args.camera_hz), "--frames", str(n_frames), "--stamp0", "-1", "--qos", "reliable"], env=env)
    while not any(m.fix_type == 3 for _, _, m in got) and cam.poll() is None:
        time.sleep(0.2)
    t0 = time.monotonic()
    time.sleep(args.seconds)
    window = [(t, w, m) for t, w, m in got if t0 <= t <= t0 + args.seconds]
    cam.wait(timeout=120)
    t_stop = time.monotonic()
    time.sleep(4.0)
    after = [(t, m) for t, _, m in got if t > t_stop]
    first_nofix = next((t - t_stop for t, m in after if m.fix_type == 1), None)
    stop.set()
    node.send_signal(2)
    node.wait(timeout=30)
    ts = np.array([t for t, _, _ in window])
    dt = np.diff(ts)
    fixes = [(w, m) for _, w, m in window if m.fix_type == 3]
    ages = np.array([w - m.time_usec / 1e6 for w, m in fixes])
    result = {
        "command": "PYTHONPATH=. python bench/gps_input_rate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "window_s": round(float(ts[-1] - ts[0]), 2), "messages": len(window),
        "rate_hz": round((len(window) - 1) / float(ts[-1] - ts[0]), 3),
        "interval_ms": {"p50": round(float(np.median(dt)) * 1e3, 1), "p99": round(float(np.percentile(dt, 99)) * 1e3, 1),
                        "max": round(float(dt.max()) * 1e3, 1)},
        "share_3d_fix": round(len(fixes) / len(window), 3),
        "position_age_ms": {"p50": round(float(np.median(ages)) * 1e3, 1), "p99": round(float(np.percentile(ages, 99)) * 1e3, 1)},
        "no_fix_after_camera_stop_s": None if first_nofix is None else round(first_nofix, 2),
        "camera_hz": args.camera_hz,
    }
    result["pass"] = bool(4.5 <= result["rate_hz"] <= 5.5)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
