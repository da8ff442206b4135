"""Publish a bag on live ROS 2 topics at its recorded rate, with /clock (no rosbag2 install needed).

Plays rosbag2 (MCAP/sqlite3) and ROS 1 bags through rclpy so a running foenet_node (or any
node) sees exactly what it would in flight. Run the node with use_sim_time:=true to follow the
bag's clock. Where rosbag2 is installed, `ros2 bag play BAG --clock` does the same job
(launch/replay.launch.py wires it up); see docs/bags.md.
"""

from __future__ import annotations

import argparse

HELP = "publish a bag on live ROS topics at its recorded rate (with /clock)"
EXAMPLES = """
  foenet play flight                              # all topics, recorded rate, /clock
  foenet play flight --rate 2 --loop              # twice as fast, forever (Ctrl-C stops)
  foenet play flight --topics /camera/image_raw /camera/camera_info --remap /camera/image_raw:=/image
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", nargs="+", help="rosbag2 directory, .mcap, .db3, or ROS 1 .bag file(s)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: 1)")
    p.add_argument("--loop", action="store_true", help="start again at the end")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate, Hz (default: 100)")
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish a bag topic under another name")
    p.add_argument("--delay", type=float, default=1.0, help="seconds to wait for subscribers first (default: 1)")


def run(args: argparse.Namespace) -> int:
    from ..bag.live import PlayConfig, play_bag
    from ..errors import ConfigError

    remap = []
    for r in args.remap:
        if ":=" not in r:
            raise ConfigError(f"--remap {r!r}: expected FROM:=TO")
        a, b = r.split(":=", 1)
        remap.append((a, b))
    cfg = PlayConfig(rate=args.rate, loop=args.loop, clock=not args.no_clock, clock_hz=args.clock_hz,
                     topics=tuple(args.topics) if args.topics else None, remap=tuple(remap), start_delay_s=args.delay)
    n = play_bag(args.bag[0] if len(args.bag) == 1 else args.bag, cfg)
    print(f"published {n} messages")
    return 0
