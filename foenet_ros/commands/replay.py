"""Run the Localizer over the camera frames of a bag and score the run.

Reads rosbag2 (MCAP or sqlite3: a directory, .mcap or .db3) and ROS 1 .bag files without a
ROS installation. Topics are auto-detected (camera Image/CompressedImage, CameraInfo,
ground-truth NavSatFix/pose, IMU, relative altitude) or given. Writes into --out:
metrics.json, trajectory.png, estimates.jsonl and estimates/ (a rosbag2 with the camera stream
and the estimates as NavSatFix, PoseWithCovarianceStamped, Path and markers, for RViz,
Foxglove or Lichtblick), and prints a table. A bag without ground truth is replayed and marked
"no ground truth". By default frames are processed as fast as possible; --realtime paces them
at the recorded rate.
"""

from __future__ import annotations

import argparse

HELP = "run the Localizer over a rosbag and score it (metrics, plot, MCAP)"
EXAMPLES = """
  foenet replay flight --index idx --out runs/flight            # topics auto-detected
  foenet replay flight --index idx --out runs/flight --attitude # strapdown camera (simulated bags)
  foenet replay flight.mcap --index idx --out runs/f --image-topic /cam/image_raw/compressed
  foenet replay recording.bag --index idx --out runs/r --no-heading --realtime   # ROS 1 bag
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", nargs="+", help="rosbag2 directory, .mcap, .db3, or ROS 1 .bag file(s)")
    p.add_argument("--index", required=True, help="tile index directory (foenet build-index)")
    p.add_argument("--out", required=True, help="output directory (created; files inside are replaced)")
    p.add_argument("--model", help="checkpoint directory (default: the index's model = the bundled default)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: auto)")
    t = p.add_argument_group("topics (auto-detected when not given)")
    t.add_argument("--image-topic")
    t.add_argument("--camera-info-topic")
    t.add_argument("--gt-topic", help="ground-truth sensor_msgs/NavSatFix")
    t.add_argument("--gt-pose-topic", help="ground-truth pose (heading; position only in simulated bags)")
    t.add_argument("--imu-topic")
    t.add_argument("--altitude-topic", help="std_msgs/Float64 height above ground, m")
    i = p.add_argument_group("what the Localizer is given")
    i.add_argument("--no-camera-info", action="store_true", help="ignore CameraInfo (image centre is reported)")
    i.add_argument("--no-heading", action="store_true", help="ignore the IMU heading (rotations are searched)")
    i.add_argument("--attitude", action="store_true",
                   help="use the IMU roll/pitch as the camera attitude (camera rigidly fixed nadir on the body, e.g. "
                        "simulated bags; off by default, as in the node's use_imu_attitude)")
    i.add_argument("--no-altitude", action="store_true", help="ignore the altitude topic")
    p.add_argument("--realtime", action="store_true", help="pace frames at the recorded rate")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor with --realtime (default: 1)")
    p.add_argument("--every", type=int, default=1, help="use every N-th frame (default: 1)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--no-bag", action="store_true", help="do not write the estimates bag")


def run(args: argparse.Namespace) -> int:
    from ..bag import AUTO, ReplayConfig, TopicConfig, replay_bag
    from ..errors import ConfigError
    from ..localize import Localizer

    if args.every < 1 or args.rate <= 0:
        raise ConfigError("--every must be >= 1 and --rate > 0")
    topics = TopicConfig(image=args.image_topic, camera_info=args.camera_info_topic, gt_fix=args.gt_topic,
                         gt_pose=args.gt_pose_topic, imu=args.imu_topic, altitude=args.altitude_topic)
    cfg = ReplayConfig(topics=topics if topics != AUTO else AUTO, realtime=args.realtime, rate=args.rate,
                       use_camera_info=not args.no_camera_info, use_heading=not args.no_heading,
                       use_attitude=args.attitude, use_altitude=not args.no_altitude, every_n=args.every,
                       max_frames=args.max_frames, write_bag=not args.no_bag)
    localizer = Localizer.from_paths(args.index, model_path=args.model, device=args.device)
    bag = args.bag[0] if len(args.bag) == 1 else args.bag
    res = replay_bag(bag, localizer, args.out, cfg)
    print(res.table())
    for key, label in (("metrics", "metrics"), ("plot", "plot"), ("estimates_bag", "estimates bag")):
        if key in res.files:
            print(f"{label}: {res.files[key]}")
    return 0
