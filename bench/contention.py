"""The node's Localizer under CPU contention: frame times with 1 or N compute threads, with and without
busy processes beside it (standing for a camera driver or an autopilot bridge on a small companion).

    PYTHONPATH=. python bench/contention.py --threads 1 2 --busy 0 1 --seconds 45 [--out contention.json]

Frames: the soak's synthetic world (``bench/soak_node.py``: 8 renders of a 360 x 270 m map, cycled
at 10 Hz: tracking, coasting and re-searches). Each setting runs the ONNX Runtime Localizer the node
uses (``cpu_threads`` -> torch and ONNX Runtime threads) in this thread, always on the newest frame
of the cycle, like the node, with the node's 1500 ms frame budget; ``--busy`` processes spin
(``while True: pass``) meanwhile. Prints per setting: frames done, median / p99 / max ms, frames over
1 s, and the same split into frames that encoded (retrieval) and tracking-only frames. Settings run
one after the other in one process: compare them side by side, not across runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(loc, frames, cam, seconds: float, busy: int) -> list[tuple[float, float, str]]:
    """``(ms, encode ms, search mode)`` per frame for ``seconds`` with ``busy`` spinning processes."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    rows = []
    try:
        loc.reset()
        t0 = time.monotonic()
        while (el := time.monotonic() - t0) < seconds:
            i = int(el * 10) % len(frames)
            ts = time.perf_counter()
            est = loc.localize(frames[i], cam, stamp=el)
            rows.append(((time.perf_counter() - ts) * 1000.0, est.timings_ms.get("encode", 0.0), str(est.pose.get("search"))))
    finally:
        for p in spinners:
            p.kill()
    return rows


def summary(rows) -> dict:
    def stats(a):
        a = np.asarray(a, float)
        return {"n": int(a.size), "p50": round(float(np.median(a)), 1), "p99": round(float(np.percentile(a, 99)), 1),
                "max": round(float(a.max()), 1), "over_1s": int((a > 1000).sum())} if a.size else {"n": 0}

    return {"all": stats([r[0] for r in rows]), "encoded": stats([r[0] for r in rows if r[1] > 0]),
            "tracking_only": stats([r[0] for r in rows if r[1] == 0])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="cpu_threads settings to compare")
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="numbers of spinning processes beside it")
    p.add_argument("--seconds", type=float, default=45.0, help="per setting")
    p.add_argument("--world", help="a folder from an earlier run (index/ and frames.npz); default: built in a temp dir")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)

    from soak_node import world_dir

    from foenet_ros.geo import CameraIntrinsics
    from foenet_ros.localize import LocalizerConfig
    from foenet_ros.ros.params import NODE_LOCALIZER_DEFAULTS
    from foenet_ros.ros.runtime import onnx_localizer, set_cpu_threads

    world = world_dir(args.world, "foenet_contention_")
    frames = np.load(world / "frames.npz")["frames"]
    cam = CameraIntrinsics.from_hfov(70.0, frames.shape[2], frames.shape[1])
    cfg = LocalizerConfig(unknown_heading_rotations=1, **NODE_LOCALIZER_DEFAULTS)
    results = []
    for threads in args.threads:
        set_cpu_threads(threads)
        loc = onnx_localizer(world / "index", None, cfg, threads=threads)
        for busy in args.busy:
            s = summary(run(loc, frames, cam, args.seconds, busy))
            results.append({"cpu_threads": threads, "busy_processes": busy, **s})
            a, e, t = s["all"], s["encoded"], s["tracking_only"]
            print(f"cpu_threads {threads}, busy {busy}: {a['n']} frames, p50 {a['p50']:.0f} p99 {a['p99']:.0f} max "
                  f"{a['max']:.0f} ms, {a['over_1s']} over 1 s | encoded {e.get('p50', 0):.0f}/{e.get('p99', 0):.0f} | "
                  f"tracking {t.get('p50', 0):.0f}/{t.get('p99', 0):.0f} ms", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "PYTHONPATH=. python bench/contention.py " + " ".join(
            argv if argv is not None else sys.argv[1:]), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
