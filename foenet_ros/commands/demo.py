"""The end-to-end demo: the bundled default model, a real demo map (Banepa, Nepal, 0.15 m
orthomosaic, CC BY 4.0), a tile index (cached), a simulated drone flight over the map, the
replay of that flight through the Localizer, and (when rclpy imports) a few frames through the
live ROS 2 node. Prints the metrics table and where the plot and the bags are.

The map comes from the data registry: $FOENET_DATA, then ~/.cache/foenet, then the network
(OpenAerialMap tiles from github:hotosm/fAIr-models, stitched locally). Without any of them a
procedurally generated map is used, and the output says so loudly.
"""

from __future__ import annotations

import argparse

HELP = "end-to-end demo: index a map, simulate a flight, replay it, print metrics"
EXAMPLES = """
  foenet demo                                   # Banepa (part), 40 frames, a few minutes on 2 CPU cores
  foenet demo --map synthetic --frames 20       # no data needed at all
  foenet demo --full-map --frames 120 --out runs/banepa_full
  FOENET_DATA=/path/to/shared/data foenet demo --no-live
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="foenet_demo", help="output directory (default: ./foenet_demo)")
    p.add_argument("--map", default="banepa", help="registry map: banepa | naip_2019 | ... | synthetic (default: banepa)")
    p.add_argument("--full-map", action="store_true", help="use the whole map instead of a central part")
    p.add_argument("--crop", type=float, default=0.35, help="part of the map used (fraction of each side; default: 0.35)")
    p.add_argument("--frames", type=int, default=40, help="simulated camera frames (default: 40)")
    p.add_argument("--rate-hz", type=float, default=1.0, help="camera rate (default: 1)")
    p.add_argument("--speed-mps", type=float, default=20.0, help="ground speed; 0 = spread over the whole survey (default: 20)")
    p.add_argument("--altitude-m", type=float, default=120.0, help="flight height above ground (default: 120)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: auto)")
    p.add_argument("--no-live", action="store_true", help="skip the live ROS 2 node part")
    p.add_argument("--live-frames", type=int, default=5, help="frames played into the live node (default: 5)")
    p.add_argument("--rebuild-index", action="store_true", help="ignore the cached index")
    p.add_argument("--offline", action="store_true", help="never download (use $FOENET_DATA, the cache, or synthetic)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..bag.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out_dir=Path(args.out), map_name=args.map, crop_frac=None if args.full_map else (args.crop, args.crop),
        map_max_side_px=None if args.full_map else 3000, frames=args.frames, rate_hz=args.rate_hz,
        speed_mps=args.speed_mps, altitude_m=args.altitude_m, seed=args.seed, device=args.device,
        live=not args.no_live, live_frames=args.live_frames, rebuild_index=args.rebuild_index,
        download=not args.offline,
    )
    res = run_demo(cfg)
    if cfg.live:
        from ..ros.demo_live import add_live  # the live node part (rclpy); bag/ never imports ros/

        res = add_live(res, cfg)
    if res.map_synthetic:
        print("!" * 78)
        print("!! SYNTHETIC MAP: the real demo map was not available; these are not real-imagery results")
        print("!" * 78)
    print(f"map: {res.map_label}")
    print(res.table)
    if res.live is not None:
        if not res.live.get("available"):
            print(f"live node: skipped ({res.live.get('reason')})")
        else:
            print(f"live node: {res.live.get('fixes_received', 0)} fixes received "
                  f"({res.live.get('fixes_with_position', 0)} with a position) from {res.live.get('messages_played', 0)} "
                  f"messages played" + ("" if res.live.get("ok") else f" -- FAILED: {res.live.get('reason', '')}"))
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings_s.items()))
    print(f"plot: {res.files.get('plot')}")
    print(f"metrics: {res.files.get('metrics')}")
    print(f"bags: {res.files.get('bag')} (simulated flight), {res.files.get('estimates_bag')} (estimates, for RViz/Foxglove)")
    return 0
