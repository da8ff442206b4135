"""Render a simulated drone flight over a georeferenced map into a rosbag2 (MCAP or sqlite3).

The bag looks like a real drone's recording: camera Image (or CompressedImage) + CameraInfo,
ground-truth NavSatFix and PoseStamped, IMU orientation and relative altitude, on
MAVROS-style topics (see docs/bags.md). Frames have lens distortion, motion blur, exposure
drift and noise; with --appearance they are rendered from another raster of the same place
(e.g. another NAIP year) while the geometry stays the map's. Deterministic for a --seed.
--map also takes a registry name (synthetic, banepa, naip_2019, ...; see foenet_ros/maps.py).
"""

from __future__ import annotations

import argparse
import logging

HELP = "render a simulated drone flight over a map into a rosbag"
EXAMPLES = """
  foenet simulate --map synthetic --out flight --frames 30                 # no data needed
  foenet simulate --map map.tif --out flight --trajectory random --altitude-m 100 --compressed
  foenet simulate --map $FOENET_DATA/naip_nd_5m/m_4709963_se_14_1_20190904.tif \\
      --appearance $FOENET_DATA/naip_nd_5m/m_4709963_se_14_1_20200831.tif \\
      --out naip_flight --altitude-m 1500 --frames 60 --speed-mps 0
  foenet simulate --map map.tif --out flight --trajectory waypoints.csv --camera-info camera.yaml --format sqlite3
"""

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--map", nargs="+", required=True, metavar="RASTER",
                   help="map raster(s) (GeoTIFF, image + sidecar; several = one mosaic) or a registry name")
    p.add_argument("--out", required=True, help="bag directory to create")
    p.add_argument("--appearance", nargs="+", metavar="RASTER", default=[],
                   help="render frames from these rasters of the same place instead (cycled frame by frame)")
    p.add_argument("--trajectory", default="lawnmower",
                   help="lawnmower | random | FILE.csv (lat,lon[,alt] or x,y[,alt]) | FILE.geojson (default: lawnmower)")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--hfov", type=float, default=70.0, help="horizontal field of view, deg (default: 70)")
    cam.add_argument("--camera-info", metavar="YAML", help="camera_calibration YAML (intrinsics + distortion)")
    p.add_argument("--width", type=int, default=640, help="image width with --hfov (default: 640)")
    p.add_argument("--height", type=int, default=480, help="image height with --hfov (default: 480)")
    p.add_argument("--no-distortion", action="store_true", help="an ideal pinhole lens (with --hfov)")
    p.add_argument("--altitude-m", type=float, default=120.0, help="flight height above ground, m (default: 120)")
    p.add_argument("--alt-variation", type=float, default=0.05, help="altitude wave, fraction of --altitude-m (default: 0.05)")
    p.add_argument("--frames", type=int, default=60, help="camera frames (default: 60)")
    p.add_argument("--rate-hz", type=float, default=1.0, help="camera rate, Hz (default: 1)")
    p.add_argument("--speed-mps", type=float, default=15.0,
                   help="ground speed, m/s; 0 = spread the frames over the whole trajectory (default: 15)")
    p.add_argument("--wobble-deg", type=float, default=2.0, help="pitch/roll wobble amplitude, deg (default: 2)")
    p.add_argument("--compressed", action="store_true", help="record CompressedImage (JPEG) on <image>/compressed")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--format", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default: mcap)")
    p.add_argument("--image-topic", help="camera topic (default: /camera/image_raw)")
    p.add_argument("--gt-topic", help="ground-truth NavSatFix topic (default: /mavros/global_position/global)")
    p.add_argument("--no-gt", action="store_true", help="leave out the ground-truth topics (fix and pose)")
    p.add_argument("--no-camera-info", action="store_true", help="leave out CameraInfo")
    p.add_argument("--force", action="store_true", help="overwrite --out")


def load_map_arg(values: list[str], frame=None):
    """``--map`` values -> MapRaster: file paths, or one registry name (``synthetic`` needs no data)."""
    from pathlib import Path

    from ..errors import ConfigError
    from ..geo import read_map

    if len(values) == 1 and not Path(values[0]).exists():
        from .. import maps

        name = values[0]
        if name not in maps.list_maps():
            raise ConfigError(f"--map {name}: no such file, and not a registry map ({', '.join(maps.list_maps())})")
        dm = maps.demo_map(name, crop_frac=None)
        if dm.synthetic:
            return dm.raster
        return read_map([str(p) for p in dm.paths], frame=frame)
    return read_map(values, frame=frame)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..bag import MotionConfig, SimConfig, TopicConfig, simulate_flight
    from ..bag.messages import camera_info_from_yaml
    from ..geo import CameraIntrinsics

    topics = TopicConfig()
    if args.image_topic:
        topics = replace(topics, image=args.image_topic)
    if args.gt_topic:
        topics = replace(topics, gt_fix=args.gt_topic)
    if args.no_gt:
        topics = replace(topics, gt_fix=None, gt_pose=None)
    if args.no_camera_info:
        topics = replace(topics, camera_info=None)
    motion = MotionConfig(alt_m=args.altitude_m, alt_variation=args.alt_variation,
                          speed_mps=args.speed_mps if args.speed_mps > 0 else None,
                          pitch_wobble_deg=args.wobble_deg, roll_wobble_deg=args.wobble_deg)
    cfg = SimConfig(trajectory=args.trajectory, n_frames=args.frames, rate_hz=args.rate_hz, width=args.width,
                    height=args.height, hfov_deg=args.hfov, motion=motion, compressed=args.compressed,
                    fmt=args.format, seed=args.seed, topics=topics)
    if args.no_distortion:
        cfg = replace(cfg, distortion=())
    camera = camera_info_from_yaml(args.camera_info) if args.camera_info else None
    if camera is None:
        camera = CameraIntrinsics.from_hfov(cfg.hfov_deg, cfg.width, cfg.height, dist=tuple(cfg.distortion))
    map_raster = load_map_arg(args.map)
    appearance = [load_map_arg([a], frame=map_raster.frame) for a in args.appearance]
    res = simulate_flight(map_raster, args.out, cfg, appearance=appearance, camera=camera, overwrite=args.force)
    alts = [s.alt_m for s in res.states]
    print(f"wrote {res.bag}: {len(res.states)} frames at {cfg.rate_hz:g} Hz, {camera.width}x{camera.height} "
          f"hfov {camera.hfov_deg:.1f} deg, altitude {min(alts):.0f}-{max(alts):.0f} m over {map_raster.name!r}"
          + (f", appearance from {[a.name for a in appearance]}" if appearance else ""))
    print(f"topics: {', '.join(v for v in cfg.topics.with_compressed(cfg.compressed).as_dict().values() if v)}")
    return 0
