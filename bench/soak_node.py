"""Soak benchmark: foenet_node in its own process fed by a camera process at 30 Hz for 10 minutes.

    PYTHONPATH=. python bench/soak_node.py --minutes 10 --rate 30 --out soak.json [--index DIR]

Checks what a long flight needs: the node's RSS stays flat after warm-up (within 5 %: the spread
(max - min) / median of the one-minute medians after ``--warmup-min``; the spread of the raw 5 s
samples, which includes transient per-frame buffers, is reported too), no output is out of order (stamps strictly
increasing) or stale (published more than ``--stale-s`` after its frame's capture stamp; the
camera stamps frames with this machine's clock), and the node keeps localising (outputs per
minute). RSS is sampled every ``--sample-s`` (1 s): a frame's search holds a few hundred MiB
for a moment, so a one-minute median needs tens of samples to say where the memory sits rather than
which frame was in flight (12 samples a minute scattered the medians by +-4 % with no trend); the
least-squares slope of the samples after warm-up (MiB per minute) is reported too: a leak's sign.
Without ``--index`` a synthetic map and its index are built first (~20 s). Frames are
640x480 (``--frame-size``) rgb8 renders of that map, cycled; both processes use config/fastdds_large_frames.xml.
Not a CI test; its result and command are in docs/ros.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    return rss_parts_mib(pid).get("VmRSS", float("nan"))


def rss_parts_mib(pid: int) -> dict[str, float]:
    """``VmRSS`` and its parts (``RssAnon``: heap, the part a leak grows; ``RssFile``: mapped files such
    as the index's memory-mapped features and shared libraries, reclaimable page cache; ``RssShmem``:
    the DDS shared-memory segments), MiB."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(line.split()[1]) / 1024.0
    return out


def minute_medians(samples: list[tuple[float, float]], warmup_min: float) -> list[float]:
    """Median RSS of each whole minute after the warm-up (``samples``: (seconds, MiB))."""
    by_min: dict[int, list[float]] = {}
    for t, r in samples:
        if t >= warmup_min * 60:
            by_min.setdefault(int(t // 60), []).append(r)
    full = max((len(v) for v in by_min.values()), default=0)
    # whole minutes only: a last partial minute of a few samples says little
    return [statistics.median(v) for _, v in sorted(by_min.items()) if len(v) >= max(6, full // 2)]


def slope_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MiB)`` samples, MiB per minute (None with fewer than 3)."""
    if len(samples) < 3:
        return None
    t = np.array([s[0] for s in samples]) / 60.0
    r = np.array([s[1] for s in samples])
    return float(np.polyfit(t, r, 1)[0])


def build_world(tmp: Path, size: tuple[int, int] = (640, 480)) -> tuple[Path, Path]:
    """A synthetic map, its index (``tmp/index``) and 8 frames of ``size`` (w, h) along a line (``tmp/frames.npz``)."""
    from foenet_ros.geo import CameraIntrinsics, CameraPose, render_view, synthetic_map
    from foenet_ros.index import IndexConfig, build_index
    from foenet_ros.model import Encoder, load_default_model

    raster = synthetic_map(size_m=(360.0, 270.0), gsd_m=0.4, seed=11)
    build_index(raster, Encoder(load_default_model(), device="cpu", batch_size=16), tmp / "index",
                IndexConfig(scales_m=(90.0,)), progress=False)
    xmin, ymin, xmax, ymax = raster.bounds_xy
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    intr = CameraIntrinsics.from_hfov(70.0, *size)
    frames = [render_view(raster, intr, CameraPose(cx - 60 + 15 * i, cy - 20 + 5 * i, 90.0), distort=False)[0] for i in range(8)]
    np.savez(tmp / "frames.npz", frames=np.stack(frames))
    return tmp / "index", tmp / "frames.npz"


def world_dir(path: str | None, prefix: str = "foenet_world_") -> Path:
    """A folder with the soak's world (``index/``, ``frames.npz``): ``path``, built there when it has none,
    or a new temp dir (e.g. for bench/contention.py and bench/executor_wakeups.py)."""
    world = Path(path) if path else Path(tempfile.mkdtemp(prefix=prefix))
    if not (world / "frames.npz").exists():
        world.mkdir(parents=True, exist_ok=True)
        build_world(world)
    return world


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--warmup-min", type=float, default=2.0)
    p.add_argument("--stale-s", type=float, default=3.0)
    p.add_argument("--sample-s", type=float, default=1.0, help="RSS sampling interval, seconds")
    p.add_argument("--index")
    p.add_argument("--frames-npz")
    p.add_argument("--frame-size", default="640x480", help="WxH of the rendered frames (without --frames-npz), e.g. 1280x960")
    p.add_argument("--out", default="soak.json")
    p.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra node parameter, e.g. --param cpu_threads:=0 (repeatable)")
    args = p.parse_args(argv)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import NavSatFix

    tmp = Path(tempfile.mkdtemp(prefix="foenet_soak_"))
    size = tuple(int(v) for v in args.frame_size.lower().split("x"))
    index, npz = (Path(args.index), Path(args.frames_npz)) if args.index else build_world(tmp, size)
    env = dict(os.environ, FASTRTPS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_large_frames.xml"),
               ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(60 + os.getpid() % 30)),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONPATH=str(REPO))
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTRTPS_DEFAULT_PROFILES_FILE")})
    log = open(tmp / "node.log", "w")
    node_proc = subprocess.Popen([sys.executable, "-m", "foenet_ros.ros.node", "--ros-args", "--params-file",
                                  str(REPO / "config" / "foenet.yaml"), "-p", f"index_dir:={index}",
                                  "-p", "camera_info_topic:=''", "-p", "hfov_deg:=70.0",
                                  "-p", "localizer.unknown_heading_rotations:=1",
                                  *[a for kv in args.param for a in ("-p", kv)]],
                                 env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    rclpy.init()
    node = rclpy.create_node("soak_listener")
    outputs: list[tuple[float, float, int]] = []  # (wall receive time, stamp, status)
    diag: dict[str, str] = {}

    def on_fix(m: NavSatFix) -> None:
        outputs.append((time.time(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, m.status.status))

    def on_diag(m: DiagnosticArray) -> None:
        for st in m.status:
            if st.name.endswith("foenet_node: localizer"):
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})

    node.create_subscription(NavSatFix, "/foenet_node/fix", on_fix, 100)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    t_wait = time.monotonic()
    while "index_tiles" not in diag and time.monotonic() - t_wait < 300:
        time.sleep(0.5)
    n_frames = int(args.minutes * 60 * args.rate)
    cam = subprocess.Popen([sys.executable, str(REPO / "bench" / "fake_camera.py"), "--frames-npz", str(npz),
                            "--rate", str(args.rate), "--frames", str(n_frames), "--stamp0", "-1", "--qos", "best_effort"],
                           env=env)  # fmt: skip
    t0, t0_wall = time.monotonic(), time.time()
    samples: list[tuple[float, float]] = []
    parts: list[tuple[float, dict[str, float]]] = []
    while cam.poll() is None:
        now, part = time.monotonic() - t0, rss_parts_mib(node_proc.pid)
        samples.append((now, part.get("VmRSS", float("nan"))))
        parts.append((now, part))
        time.sleep(args.sample_s)
    time.sleep(5.0)
    final_diag = dict(diag)
    node_proc.send_signal(signal.SIGINT)
    rc = node_proc.wait(timeout=60)
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()

    after = [r for t, r in samples if t >= args.warmup_min * 60]
    med = statistics.median(after) if after else float("nan")
    minutes = minute_medians(samples, args.warmup_min)
    stamps = [s for _, s, _ in outputs]
    out_of_order = sum(1 for a, b in zip(stamps, stamps[1:]) if b <= a)
    stale = sum(1 for t, s, _ in outputs if t - s > args.stale_s)
    result = {
        "command": "PYTHONPATH=. python bench/soak_node.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": args.minutes, "rate_hz": args.rate, "frames_published": n_frames,
        "frames_received": int(final_diag.get("frames_received", 0)),
        "frames_processed": int(final_diag.get("frames_processed", 0)),
        "outputs": len(outputs), "fixes": sum(st >= 0 for _, _, st in outputs),
        "out_of_order_outputs": out_of_order, "stale_outputs": stale,
        "latency_s_median": statistics.median([t - s for t, s, _ in outputs]) if outputs else None,
        "latency_s_p99": float(np.percentile([t - s for t, s, _ in outputs], 99)) if outputs else None,
        "stale_latencies_s": sorted(round(t - s, 2) for t, s, _ in outputs if t - s > args.stale_s),
        # when they happened (s after the camera started): at the start = warm-up, later = a slow search
        "stale_at_s": [round(t - t0_wall, 1) for t, s, _ in outputs if t - s > args.stale_s],
        "rss_mib_after_warmup": {"min": min(after) if after else None, "max": max(after) if after else None, "median": med},
        "rss_minute_medians": [round(v, 1) for v in minutes],
        "rss_flat_within": (max(minutes) - min(minutes)) / statistics.median(minutes) if minutes else None,
        "rss_raw_spread": (max(after) - min(after)) / med if after else None,
        "rss_slope_mib_per_min": slope_per_min([(t, r) for t, r in samples if t >= args.warmup_min * 60]),
        "rss_parts_minute_medians": {k: [round(v, 1) for v in minute_medians([(t, p.get(k, float("nan"))) for t, p in parts],
                                                                             args.warmup_min)]
                                     for k in ("RssAnon", "RssFile", "RssShmem")},
        "rss_samples": [(round(t, 1), round(r, 1)) for t, r in samples],
        "node_exit_code": rc,
        "slow_frames": int(final_diag.get("slow_frames", 0)),
        # the node's WARN line for each frame published > 2 s after it arrived: wait, stages, search mode
        "slow_frame_log": [ln.split("slow frame: ", 1)[1].strip() for ln in
                           (tmp / "node.log").read_text(errors="replace").splitlines() if "slow frame: " in ln][:50],
    }
    result["pass"] = bool(result["rss_flat_within"] is not None and result["rss_flat_within"] <= 0.05
                          and out_of_order == 0 and stale == 0 and rc == 0)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
