"""Simulated drone flights over a georeferenced map, written as a rosbag2 a real drone would record.

Each frame is the map rendered through a pinhole camera with lens distortion
(``geo.render_view``) at the true pose, then degraded like a real camera: motion blur along
the direction of travel, exposure (gain / gamma) drift, sensor noise. With ``appearance``
maps the frames are rendered from *another* raster of the same place (e.g. another NAIP
year) while the geometry stays that of the map, so the query and the index differ as in life.

Topics (names in :class:`~foenet_ros.bag.topics.TopicConfig`, all configurable):

=====================================  ===========================  ========================================
``/camera/image_raw`` (``/compressed``)  Image rgb8 / CompressedImage  the camera
``/camera/camera_info``                 CameraInfo                    intrinsics + plumb_bob distortion
``/mavros/global_position/global``      NavSatFix                     ground truth lat/lon, alt above ground
``/ground_truth/pose``                  PoseStamped (frame ``map``)   x = easting, y = northing (map UTM frame);
                                                                      orientation from the TRUE heading
``/mavros/imu/data``                    Imu                           orientation (FLU body in ENU, true north), noisy
``/mavros/global_position/rel_alt``     Float64                       altitude above the ground, m
=====================================  ===========================  ========================================

The IMU carries a compass bias and noise (``SimConfig.imu_*``): like a real one it is no ground truth.
The bag's metadata (``custom_data["foenet_sim"]``) records the map frame, camera, maps and
seed, so the run can be reproduced and replayed without guessing.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..errors import ConfigError, RasterError
from . import messages as m
from .io import BagWriter
from .topics import TopicConfig
from .trajectory import FlightState, MotionConfig, lawnmower, load_waypoints, random_smooth, sample_flight, shrink

log = logging.getLogger(__name__)

# rosbag2 timestamps start here (2024-01-01T00:00:00Z) so bags are reproducible byte for byte
T0_NS = 1_704_067_200 * 1_000_000_000
MAX_PLAUSIBLE_SPEED_MPS = 40.0  # faster than a survey multicopter/fixed-wing: warn


@dataclass(frozen=True)
class CameraEffects:
    """Image degradations applied after rendering (all deterministic given the seed).

    ``exposure_s`` with the ground speed gives the motion-blur length; ``blur_jitter_px`` adds
    random extra blur (vibration). ``gain_sigma`` (log-gain) and ``gamma_sigma`` drift smoothly
    across frames; ``noise_sigma`` is additive Gaussian noise in 8-bit levels.
    """

    exposure_s: float = 1.0 / 120.0
    blur_jitter_px: float = 1.5
    gain_sigma: float = 0.12
    gamma_sigma: float = 0.08
    noise_sigma: float = 2.0
    vignetting: float = 0.15


@dataclass(frozen=True)
class SimConfig:
    """A simulated flight. ``trajectory``: ``"lawnmower"``, ``"random"`` or a CSV/GeoJSON path."""

    trajectory: str = "lawnmower"
    n_frames: int = 60
    rate_hz: float = 2.0
    width: int = 640
    height: int = 480
    hfov_deg: float = 70.0
    distortion: tuple[float, ...] = (-0.08, 0.02, 0.0, 0.0, 0.0)
    motion: MotionConfig = field(default_factory=MotionConfig)
    effects: CameraEffects = field(default_factory=CameraEffects)
    lane_overlap: float = 0.3  # lawn-mower: side overlap of neighbouring lanes' footprints
    compressed: bool = False
    jpeg_quality: int = 90
    fmt: str = "mcap"
    seed: int = 0
    topics: TopicConfig = field(default_factory=TopicConfig)
    camera_frame_id: str = "camera_optical"
    # the IMU is not ground truth: a compass bias + noise on the heading, noise on roll/pitch (deg, 1 sigma)
    imu_heading_bias_deg: float = 2.0
    imu_heading_noise_deg: float = 1.0
    imu_tilt_noise_deg: float = 0.3


@dataclass
class SimResult:
    """What :func:`simulate_flight` wrote: the bag path, the true states and the camera used."""

    bag: Path
    states: list[FlightState]
    camera: Any
    frame: Any
    valid_fraction: list[float]


def _valid_bounds(raster: Any) -> tuple[float, float, float, float]:
    """Bounding box (map frame metres) of the raster's valid pixels."""
    rows = np.flatnonzero(raster.valid.any(axis=1))
    cols = np.flatnonzero(raster.valid.any(axis=0))
    if rows.size == 0:
        raise RasterError(f"map {raster.name!r} has no valid pixels")
    x0, y0 = raster.pixel_to_xy(cols[0], rows[-1] + 1)
    x1, y1 = raster.pixel_to_xy(cols[-1] + 1, rows[0])
    return float(min(x0, x1)), float(min(y0, y1)), float(max(x0, x1)), float(max(y0, y1))


def plan_states(map_raster: Any, camera: Any, cfg: SimConfig, rng: np.random.Generator,
                bounds: tuple[float, float, float, float] | None = None) -> list[FlightState]:
    """The true flight: waypoints (per ``cfg.trajectory``) sampled into ``cfg.n_frames`` states."""
    from ..geo import CameraPose, footprint

    alt = cfg.motion.alt_m * (1 + cfg.motion.alt_variation)
    fp = footprint(camera, CameraPose(0.0, 0.0, alt))
    half_diag = float(np.max(np.linalg.norm(fp, axis=1)))
    width_m = float(np.linalg.norm(fp[1] - fp[0]))
    bounds = bounds or _valid_bounds(map_raster)
    traj = cfg.trajectory
    wp_alt = None
    if traj == "lawnmower":
        # keep the whole (rotating) footprint on the map: margin = half its diagonal (+ wobble)
        inner = shrink(bounds, half_diag * 1.05)
        wp = lawnmower(inner, spacing_m=max(width_m * (1 - cfg.lane_overlap), 1.0))
    elif traj == "random":
        inner = shrink(bounds, half_diag * 1.05)
        wp = random_smooth(inner, rng)
    elif Path(traj).suffix.lower() in (".csv", ".geojson", ".json"):
        wp, wp_alt = load_waypoints(traj, map_raster.frame)
    else:
        raise ConfigError(f"unknown trajectory {traj!r}: use lawnmower, random, or a .csv/.geojson waypoint file")
    return sample_flight(wp, cfg.n_frames, cfg.rate_hz, cfg.motion, rng, waypoint_alt=wp_alt)


def _motion_blur(img: np.ndarray, length_px: float, angle_rad: float) -> np.ndarray:
    """Linear motion blur of ``length_px`` along the image direction ``angle_rad`` (0 = +u, right)."""
    if length_px < 1.0:
        return img
    k = int(math.ceil(length_px)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    dx, dy = math.cos(angle_rad), math.sin(angle_rad)
    for s in np.linspace(-length_px / 2, length_px / 2, max(2, int(length_px * 2))):
        kernel[int(round(c + s * dy)), int(round(c + s * dx))] += 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


class _Degrader:
    """Applies :class:`CameraEffects` frame by frame with smooth exposure drift."""

    def __init__(self, eff: CameraEffects, shape: tuple[int, int], rng: np.random.Generator) -> None:
        self.eff, self.rng = eff, rng
        h, w = shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        self.vignette = (1.0 - eff.vignetting * r2)[..., None]
        self.log_gain = 0.0
        self.gamma = 1.0

    def __call__(self, img: np.ndarray, speed_px: float, travel_angle: float) -> np.ndarray:
        e, rng = self.eff, self.rng
        img = _motion_blur(img, speed_px + rng.uniform(0, e.blur_jitter_px), travel_angle)
        # exposure drifts (auto-exposure hunting, clouds): AR(1) process on log gain and gamma
        self.log_gain = 0.8 * self.log_gain + 0.6 * e.gain_sigma * rng.standard_normal()
        self.gamma = 1.0 + 0.8 * (self.gamma - 1.0) + 0.6 * e.gamma_sigma * rng.standard_normal()
        x = img.astype(np.float32) / 255.0
        x = np.power(np.clip(x, 0, 1), max(self.gamma, 0.3)) * math.exp(self.log_gain) * self.vignette
        x = x * 255.0 + rng.normal(0.0, e.noise_sigma, x.shape).astype(np.float32)
        return np.clip(x, 0, 255).astype(np.uint8)


def simulate_flight(map_raster: Any, out: str | Path, cfg: SimConfig = SimConfig(), *,
                    appearance: Sequence[Any] = (), camera: Any = None, progress: bool = True,
                    overwrite: bool = False) -> SimResult:
    """Render ``cfg.n_frames`` frames over ``map_raster`` into a rosbag2 at ``out``.

    Args:
        map_raster: ``geo.MapRaster`` giving the geometry (and the appearance unless ``appearance``).
        out: bag directory to create.
        cfg: trajectory, camera, effects, format, seed, topic names.
        appearance: other ``MapRaster``s of the same place in the same frame; frames are rendered
            from them (cycled frame by frame when several), so the map and the frames differ.
        camera: ``geo.CameraIntrinsics`` overriding ``cfg.width/height/hfov_deg/distortion``.

    Returns a :class:`SimResult`; deterministic for a given ``cfg.seed``.
    """
    from tqdm import tqdm

    from ..geo import CameraIntrinsics, CameraPose, render_view

    rng = np.random.default_rng(cfg.seed)
    if camera is None:
        camera = CameraIntrinsics.from_hfov(cfg.hfov_deg, cfg.width, cfg.height, dist=tuple(cfg.distortion))
    camera.validate()
    frame = map_raster.frame
    sources = list(appearance) or [map_raster]
    for a in sources:
        if a.frame != frame:
            raise ConfigError(f"appearance raster {a.name!r} is in {a.frame}, the map in {frame}; read it with frame=map.frame")
    bounds = _valid_bounds(map_raster)
    for a in appearance:  # fly where every source has data
        b = _valid_bounds(a)
        bounds = (max(bounds[0], b[0]), max(bounds[1], b[1]), min(bounds[2], b[2]), min(bounds[3], b[3]))
    states = plan_states(map_raster, camera, cfg, rng, bounds)
    if len(states) > 1:
        steps = [math.hypot(b.x - a.x, b.y - a.y) for a, b in zip(states, states[1:])]
        speed = float(np.median(steps)) * cfg.rate_hz
        if speed > MAX_PLAUSIBLE_SPEED_MPS:
            log.warning("the frames imply a ground speed of %.0f m/s (frames %.0f m apart at %g Hz): a tracker will not "
                        "believe it; lower --rate-hz or set --speed-mps", speed, float(np.median(steps)), cfg.rate_hz)
    topics = cfg.topics.with_compressed(cfg.compressed)
    degrade = _Degrader(cfg.effects, (camera.height, camera.width), rng)
    info = {
        "frame": frame.to_json(), "camera": camera.to_json(), "map": map_raster.name,
        "appearance": [a.name for a in appearance], "seed": cfg.seed, "n_frames": cfg.n_frames,
        "rate_hz": cfg.rate_hz, "trajectory": str(cfg.trajectory), "motion": asdict(cfg.motion),
        "effects": asdict(cfg.effects), "topics": topics.as_dict(), "ground_elevation_m": 0.0,
    }
    valid_fracs: list[float] = []
    period_ns = int(round(1e9 / cfg.rate_hz))
    imu_bias = float(rng.normal(0.0, cfg.imu_heading_bias_deg)) if cfg.imu_heading_bias_deg > 0 else 0.0
    with BagWriter(out, cfg.fmt, overwrite=overwrite, custom_data={"foenet_sim": json.dumps(info)}) as bag:
        # fixed topic order in the bag (readers list them in this order)
        for role, mtype in (("image", m.COMPRESSED_IMAGE if cfg.compressed else m.IMAGE), ("camera_info", m.CAMERA_INFO),
                            ("gt_fix", m.NAVSATFIX), ("gt_pose", m.POSE_STAMPED), ("imu", m.IMU), ("altitude", m.FLOAT64)):
            name = getattr(topics, role)
            if name:
                bag.add_topic(name, mtype)
        prev: FlightState | None = None
        for i, st in enumerate(tqdm(states, desc="simulate", unit="frame", disable=not progress)):
            ns = T0_NS + i * period_ns
            pose = CameraPose(st.x, st.y, st.alt_m, st.heading_deg, st.pitch_deg, st.roll_deg)
            src = sources[i % len(sources)]
            img, valid = render_view(src, camera, pose, distort=camera.has_distortion)
            valid_fracs.append(float(np.mean(valid)))
            # ground speed in image pixels during the exposure, and its direction in the image
            speed_px, angle = 0.0, -math.pi / 2
            if prev is not None:
                vx, vy = (st.x - prev.x) * cfg.rate_hz, (st.y - prev.y) * cfg.rate_hz
                gsd = st.alt_m / camera.fx
                speed_px = math.hypot(vx, vy) * cfg.effects.exposure_s / max(gsd, 1e-6)
                travel = math.degrees(math.atan2(vx, vy))  # compass direction of travel
                # image up = camera heading; a direction rel = travel - heading points at angle -90 + rel in the image
                angle = math.radians(-90.0 + (travel - st.heading_deg))
            img = degrade(img, speed_px, angle)
            img[~valid] = 0
            lon, lat = frame.to_lonlat(st.x, st.y)
            # st.heading_deg is from the map frame's UTM grid north (what the renderer needs); bags carry
            # TRUE compass headings / ENU orientations (grid + meridian convergence, up to ~3 deg)
            heading_true = float(frame.grid_to_true_heading(st.heading_deg, st.x, st.y))
            q = m.attitude_to_quaternion(heading_true, st.pitch_deg, st.roll_deg)
            if topics.image:
                msg = (m.compressed_image_msg(img, ns, cfg.camera_frame_id, cfg.jpeg_quality) if cfg.compressed
                       else m.image_msg(img, ns, cfg.camera_frame_id))
                bag.write(topics.image, ns, msg)
            if topics.camera_info:
                bag.write(topics.camera_info, ns, m.camera_info_msg(camera, ns, cfg.camera_frame_id))
            if topics.gt_fix:
                bag.write(topics.gt_fix, ns, m.navsatfix_msg(ns, float(lat), float(lon), st.alt_m,
                                                             np.diag([0.01, 0.01, 0.04]), frame_id="base_link"))
            if topics.gt_pose:
                bag.write(topics.gt_pose, ns, m.pose_stamped_msg(ns, st.x, st.y, st.alt_m, q, frame_id="map"))
            if topics.imu:
                h_imu = (heading_true + imu_bias + rng.normal(0.0, cfg.imu_heading_noise_deg)) % 360.0
                p_imu = st.pitch_deg + rng.normal(0.0, cfg.imu_tilt_noise_deg)
                r_imu = st.roll_deg + rng.normal(0.0, cfg.imu_tilt_noise_deg)
                sigma = math.hypot(cfg.imu_heading_bias_deg, cfg.imu_heading_noise_deg) or 0.5
                bag.write(topics.imu, ns, m.imu_msg(ns, h_imu, p_imu, r_imu, sigma_deg=sigma))
            if topics.altitude:
                bag.write(topics.altitude, ns, m.float64_msg(st.alt_m))
            prev = st
    low = sum(v < 0.9 for v in valid_fracs)
    if low:
        log.warning("%d of %d frames see less than 90%% valid map (map edge / no-data)", low, len(valid_fracs))
    return SimResult(Path(out), states, camera, frame, valid_fracs)
