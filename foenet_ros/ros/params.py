"""The node's parameters: one table of specs (name, default, description, range/choices), and the
validation that turns a ``{name: value}`` dict into frozen settings or a :class:`ConfigError` with
the reason. Pure Python (no rclpy) so it is testable on its own; ``node.py`` turns the specs into
``ParameterDescriptor``s and calls :func:`settings_from_values` at start and on every live change.

``localizer.*`` parameters mirror every field of :class:`foenet_ros.localize.LocalizerConfig`
(so a new knob there appears here without edits); ``config/foenet.yaml`` lists them all.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from foenet_ros.codec import topics as names
from foenet_ros.codec.autopilot import GpsInputConfig, PropagationConfig
from foenet_ros.codec.image import DecodeLimits
from foenet_ros.codec.outputs import OutputConfig
from foenet_ros.errors import ConfigError
from foenet_ros.ros.health import HealthLimits

LOCALIZER_PREFIX = "localizer."
# Defaults shared with the bag replay and the codec: one source of truth each.
_OUT, _DEC, _HEALTH, _GPS, _PROP = OutputConfig(), DecodeLimits(), HealthLimits(), GpsInputConfig(), PropagationConfig()


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Attributes:
        name: ROS parameter name (dots = YAML nesting).
        default: default value; its Python type is the parameter type (bool/int/float/str).
        description: shown by ``ros2 param describe``.
        range: ``(min, max)`` inclusive for int/float parameters (enforced by rclpy too).
        choices: allowed values for string parameters.
        read_only: changeable only at start (topics, adapters).
        allow_nan: a float that may be NaN ("unset").
    """

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False
    allow_nan: bool = False


NODE_PARAMS: tuple[ParamSpec, ...] = (
    # --- what to localise against -------------------------------------------------------------
    ParamSpec("index_dir", "", "Tile index directory (from `foenet build-index`); empty = not configured (ERROR in diagnostics)"),
    ParamSpec("model_path", "", "FOENet checkpoint directory; empty = the bundled default model (must match the index)"),
    ParamSpec("device", "auto", "Inference device: auto | cpu | cuda | cuda:N"),
    ParamSpec("inference", "auto", "FOENet runtime: auto = ONNX Runtime on the CPU when onnxruntime is installed and device is "
              "auto/cpu (no timm and no PyTorch model in the node: ~190 MiB less RSS, docs/ros.md Memory; the model is exported once into the user cache), else "
              "PyTorch | onnx | torch", choices=("auto", "onnx", "torch")),
    ParamSpec("cpu_threads", 1, "CPU threads of the dense stage's torch operations and of the ONNX Runtime encoder (0 = one per "
              "core). 1 by default: on a small companion computer the camera driver and the autopilot bridge share the cores, "
              "and beside one busy process a 2-thread pool made frames 1.5x slower at the median and 6x at p99 "
              "(bench/contention.py; docs/ros.md, Slow frames); alone on the machine 1 thread lost nothing measurable",
              (0, 256), read_only=True),
    ParamSpec("index_retry_s", 5.0, "Seconds between attempts to load a missing/mismatched index", (0.5, 3600.0)),
    # --- inputs ----------------------------------------------------------------------------------
    ParamSpec("image_topic", names.CAMERA_IMAGE, "Camera image topic (relative names follow the namespace)", read_only=True),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image on image_topic; compressed: sensor_msgs/CompressedImage on image_topic + '/compressed'",
              choices=("raw", "compressed"), read_only=True),
    ParamSpec("camera_qos", "auto", "Camera subscription reliability: auto = match the publisher (RELIABLE when every publisher "
              "is reliable, else BEST_EFFORT; re-matched when publishers change); reliable | best_effort = fixed, and then "
              "qos_overrides.<topic>.subscription.{reliability,depth,history} apply. Depth 1 (newest frame wins)",
              choices=("auto", "reliable", "best_effort"), read_only=True),
    ParamSpec("camera_info_topic", names.CAMERA_INFO_TOPIC, "sensor_msgs/CameraInfo topic; empty = none (hfov_deg or no intrinsics)", read_only=True),
    ParamSpec("max_image_megapixels", _DEC.max_megapixels, "Frames with more pixels (from the message / the JPEG/PNG header) "
              "are rejected before decoding and counted as malformed", (0.1, 1000.0)),
    ParamSpec("max_image_side", _DEC.max_side, "Frames with a longer side are downscaled to it once, at decoding (0 = never)",
              (0, 20000)),
    ParamSpec("time_jump_s", 1.0, "A frame stamp this far behind the last one, confirmed by the next frame, is a time jump "
              "(bag loop): the track is reset; smaller steps back are out-of-order frames and dropped", (0.05, 3600.0)),
    ParamSpec("use_cv_bridge", False, "Convert raw images with cv_bridge when it is importable (numpy otherwise)"),
    ParamSpec("hfov_deg", 0.0, "Horizontal field of view used when no valid CameraInfo arrived (0 = none: the image centre is reported)", (0.0, 179.0)),
    ParamSpec("heading_topic", "", "Optional heading source topic; empty = unknown heading (several rotations are searched)", read_only=True),
    ParamSpec("heading_type", "imu", "imu: sensor_msgs/Imu orientation (ENU, REP-103/145); compass: std_msgs/Float64 compass degrees (e.g. /mavros/global_position/compass_hdg)",
              choices=("imu", "compass"), read_only=True),
    ParamSpec("heading_offset_deg", 0.0, "Image-up heading = source heading + this (camera mounting yaw), degrees", (-360.0, 360.0)),
    ParamSpec("use_imu_attitude", False, "Pass the IMU roll/pitch as the camera attitude (only for a camera rigidly fixed nadir on the body)"),
    ParamSpec("heading_timeout_s", 1.0, "A heading older than this is ignored", (0.0, 60.0)),
    ParamSpec("altitude_topic", "", "Optional height above ground topic; empty = estimated from the image", read_only=True),
    ParamSpec("altitude_type", "float64", "float64: std_msgs/Float64 metres (e.g. /mavros/global_position/rel_alt); range: sensor_msgs/Range",
              choices=("float64", "range"), read_only=True),
    ParamSpec("altitude_timeout_s", 1.0, "An altitude older than this is ignored", (0.0, 60.0)),
    ParamSpec("gnss_topic", "", "Optional GNSS sensor_msgs/NavSatFix used as a search prior while healthy (invalid "
              "lat/lon/sigma are ignored with a WARN); empty = none", read_only=True),
    ParamSpec("gnss_max_sigma_m", 30.0, "A GNSS fix is healthy when its 1-sigma horizontal error is at most this (m)", (0.1, 10000.0)),
    ParamSpec("gnss_default_sigma_m", 10.0, "1-sigma assumed for a GNSS fix without covariance (m)", (0.1, 10000.0)),
    ParamSpec("gnss_timeout_s", 2.0, "A GNSS fix older than this is not used", (0.0, 60.0)),
    ParamSpec("sensor_wait_s", 0.5, "A frame that arrives before the first message of a configured sensor (camera_info, "
              "heading, altitude topics) waits up to this long for it: drivers publish a frame just before its "
              "camera_info and the IMU sample of the same instant (0 = no wait; start-up only)", (0.0, 10.0)),
    ParamSpec("max_rate_hz", 0.0, "Most frames localised per second (0 = as fast as inference allows); newer frames replace waiting ones", (0.0, 1000.0)),
    # --- outputs ---------------------------------------------------------------------------------
    ParamSpec("map_frame", "map", "Frame id of the ENU map frame (pose, odometry, path, markers, tiles)"),
    ParamSpec("base_frame", "base_link", "Frame id of the vehicle (Odometry child frame, NavSatFix frame)"),
    ParamSpec("map_origin_lat", math.nan, "Latitude (deg) of the map frame origin; NaN = the centre of the indexed map", (-90.0, 90.0), allow_nan=True),
    ParamSpec("map_origin_lon", math.nan, "Longitude (deg) of the map frame origin; NaN = the centre of the indexed map", (-180.0, 180.0), allow_nan=True),
    ParamSpec("ground_altitude_m", 0.0, "Ellipsoidal (WGS84) height of the map's ground plane, m; added to the height above ground in NavSatFix", (-1000.0, 9000.0)),
    ParamSpec("geoid_separation_m", 0.0, "Ellipsoid minus mean-sea-level height (EGM96 N) at the map, m; for AMSL outputs (GPS_INPUT, PX4)", (-200.0, 200.0)),
    ParamSpec("alt_sigma_m", _OUT.alt_sigma_m, "1-sigma of the reported altitude, m", (0.1, 1000.0)),
    ParamSpec("yaw_sigma_deg", _OUT.yaw_sigma_deg, "1-sigma of the reported yaw, degrees", (0.5, 180.0)),
    ParamSpec("publish_retrieval", _OUT.publish_retrieval, "Opt-in: retrieval-only (unverified, coarse) estimates become a "
              "fix everywhere (NavSatFix STATUS_FIX, pose, TF, a 2D GPS_INPUT fix); false = only verified/tracked are fixes"),
    ParamSpec("publish_lost", True, "Publish a STATUS_NO_FIX NavSatFix for frames without a fix"),
    ParamSpec("publish_odometry", True, "Publish ~/odometry (nav_msgs/Odometry)"),
    ParamSpec("publish_path", True, "Publish ~/path (nav_msgs/Path)"),
    ParamSpec("path_max_length", 2000, "Poses kept in ~/path", (1, 1000000)),
    ParamSpec("publish_candidates", True, "Publish ~/candidates (MarkerArray of the top-k tiles)"),
    ParamSpec("publish_map_tiles", True, "Publish ~/map_tiles (PointCloud2 of tile centres, transient-local, once per index)"),
    ParamSpec("debug_image_max_side", 960, "Longer side of ~/debug_image in pixels (rendered only while subscribed)", (64, 4096)),
    ParamSpec("publish_tf", "off", "TF on /tf (tf2_msgs/TFMessage): off (robot_localization or another node owns the tree) | "
              "map_to_base (map -> base_frame) | map_to_odom (map -> odom, with odom -> base_frame from odom_topic)",
              choices=("off", "map_to_base", "map_to_odom"), read_only=True),
    ParamSpec("odom_topic", "", "nav_msgs/Odometry of the local odometry (odom -> base_frame), needed for publish_tf: map_to_odom",
              read_only=True),
    ParamSpec("diagnostics_period_s", 1.0, "Period of /diagnostics (steady clock)", (0.05, 60.0), read_only=True),
    # --- health ------------------------------------------------------------------------------------
    ParamSpec("frame_timeout_s", _HEALTH.frame_timeout_s, "Diagnostics WARN when no camera frame arrived for this long", (0.1, 600.0)),
    ParamSpec("camera_info_timeout_s", _HEALTH.camera_info_timeout_s, "Diagnostics WARN when camera_info_topic is set but no "
              "valid CameraInfo arrived for this long", (0.1, 600.0)),
    ParamSpec("fix_timeout_s", _HEALTH.fix_timeout_s, "Diagnostics WARN when frames arrive but the last fix is older than this",
              (0.1, 3600.0)),
    ParamSpec("starved_s", _HEALTH.starved_s, "Diagnostics ERROR when frames arrive but none was localised for this long",
              (1.0, 3600.0)),
    ParamSpec("lost_frames_warn", _HEALTH.lost_frames_warn, "Diagnostics WARN when this share of the camera's frames never "
              "arrived (stamp gaps against the stream's rate)", (0.01, 1.0)),
    # --- flight-stack adapters -------------------------------------------------------------------
    ParamSpec("mavlink_url", "", "MAVLink GPS_INPUT output (pymavlink URL: udpout:HOST:PORT, /dev/ttyACM0,921600, ...); empty = off", read_only=True),
    ParamSpec("mavlink_rate_hz", _GPS.rate_hz, "GPS_INPUT messages per second, steady (steady-clock timer; the newest "
              "estimate propagated to the send time); ArduPilot wants >= 5", (1.0, 50.0), read_only=True),
    ParamSpec("mavlink_stale_s", _PROP.stale_s, "GPS_INPUT says NO_FIX when the newest fix's frame is older than this", (0.1, 30.0)),
    ParamSpec("mavlink_gps_id", 0, "GPS_INPUT gps_id (instance)", (0, 255), read_only=True),
    ParamSpec("mavlink_satellites", 10, "satellites_visible reported with a fix (ArduPilot checks want >= 6)", (0, 255), read_only=True),
    ParamSpec("mavlink_source_system", 1, "Our MAVLink system id", (1, 255), read_only=True),
    ParamSpec("mavlink_source_component", 197, "Our MAVLink component id (197 = visual inertial odometry)", (1, 255), read_only=True),
    ParamSpec("px4_aux_global_position", False, "Publish px4_msgs aux global position (needs px4_msgs; logs why when absent)", read_only=True),
    ParamSpec("px4_topic", "/fmu/in/aux_global_position", "PX4 uXRCE-DDS topic of the aux global position", read_only=True),
    ParamSpec("px4_source_id", 1, "AuxGlobalPosition id (one per aux source; EKF2_AGP* parameters of that instance)", (0, 255),
              read_only=True),
)


# Safety envelope of the localizer.* parameters: bounds that keep integrity on (a verified fix needs
# real evidence; the covariance never collapses; the gate stays a gate). Fields not listed get a
# generic range; LocalizerConfig validates its own invariants on top.
LOCALIZER_RANGES: dict[str, tuple[float, float]] = {
    "unknown_heading_rotations": (1, 36),
    "upright_hypotheses": (0, 64),
    "sigma_scale": (0.5, 100.0),
    "fine_sigma_scale": (0.5, 100.0),
    "bootstrap": (4, 1000),
    "fine_bootstrap": (4, 1000),
    "no_intrinsics_sigma_frac": (0.05, 1.0),
    "unknown_tilt_sigma_deg": (1.0, 60.0),
    "retrieval_max_sigma_m": (1.0, 100000.0),
    "retrieval_min_margin": (0.0, 1.0),
    "verified_max_sigma_m": (1.0, 10000.0),
    "dedup_frac": (0.0, 1.0),
    "gate_sigmas": (1.0, 100.0),
    "max_misses": (1, 1000),
    "max_track_sigma_m": (1.0, 100000.0),
    "accel_sigma": (0.1, 100.0),
    "coast_accel_sigma": (0.1, 100.0),
    "refused_fix_weight": (0.0, 1.0),
    "fine_min_score": (0.5, 1.0),
    "fine_strong_score": (0.5, 1.0),
    "global_every": (0, 100000),  # 0 = re-search the whole map only after a miss
    "track_max_radius_footprints": (0.0, 1000.0),  # 0 = always scan the tracking window
    "frame_budget_ms": (0.0, 600000.0),  # 0 = no budget
    "frame_budget_max_factor": (1.0, 64.0),  # 1 = a fixed budget
    "fine_polish_cells": (0, 16),  # 0 = off
    "keypoint_screen": (0, 100000),  # 0 = off: every candidate fitted in rank order
    "keypoint_screen_min": (0, 100000),
    "keypoint_hint_min_inliers": (0, 100000),  # 0 = off
    "mount_sigma_deg": (0.0, 30.0),  # 0 = the IMU's attitude is the camera's
}


def _localizer_range(name: str, default) -> tuple[float, float] | None:
    """The envelope of ``localizer.<name>``: LocalizerConfig's own safety bounds, then the table above."""
    from foenet_ros.localize.config import LocalizerConfig

    lo, hi = LOCALIZER_RANGES.get(name, (None, None))
    if name in LocalizerConfig.SAFETY_MIN:
        lo = max(LocalizerConfig.SAFETY_MIN[name], lo if lo is not None else -math.inf)
    if name in LocalizerConfig.SAFETY_MAX:
        hi = min(LocalizerConfig.SAFETY_MAX[name], hi if hi is not None else math.inf)
    if lo is None and hi is None:
        return None
    lo = lo if lo is not None else (1 if isinstance(default, int) else 0.0)
    hi = hi if hi is not None and math.isfinite(hi) else (100000 if isinstance(default, int) else 1.0e6)
    return lo, hi


#: where the node's default differs from the library's (LocalizerConfig), and why
NODE_LOCALIZER_DEFAULTS: dict[str, Any] = {
    # a live node must not spend 15 s on one hard cold start while the frames behind it go stale;
    # offline evaluation and replays keep the library's 0 (no budget: results independent of speed)
    "frame_budget_ms": 1500.0,
}


def _localizer_specs() -> tuple[ParamSpec, ...]:
    """One ``localizer.<field>`` spec per LocalizerConfig field, described from its docstring."""
    from foenet_ros.localize.config import LocalizerConfig

    doc = LocalizerConfig.__doc__ or ""
    specs = []
    for f in dataclasses.fields(LocalizerConfig):
        default = NODE_LOCALIZER_DEFAULTS.get(f.name, f.default)
        if not isinstance(default, (bool, int, float, str)):
            continue  # only scalar knobs become ROS parameters; the rest keep their defaults
        desc = _field_doc(doc, f.name) or f"LocalizerConfig.{f.name}"
        choices = LocalizerConfig.CHOICES.get(f.name)
        rng: tuple[float, float] | None = None
        if isinstance(default, bool):
            pass
        elif (lim := _localizer_range(f.name, default)) is not None:
            lo, hi = lim
            # never a range that excludes the (lead-owned) default: widen to it, loudly in the tests
            lo, hi = min(lo, default), max(hi, default)
            rng = (int(lo), int(hi)) if isinstance(default, int) else (float(lo), float(hi))
        elif isinstance(default, int):
            rng = (min(1, default), max(100000, default))
        elif isinstance(default, float):
            rng = (0.0, 1.0e6)
        specs.append(ParamSpec(LOCALIZER_PREFIX + f.name, default, desc, rng, choices))
    return tuple(specs)


def _field_doc(doc: str, name: str) -> str:
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith(name + ":"):
            return s[len(name) + 1 :].strip()
    return ""


def all_param_specs() -> tuple[ParamSpec, ...]:
    """Node parameters followed by the ``localizer.*`` ones."""
    return NODE_PARAMS + _localizer_specs()


def default_values() -> dict[str, Any]:
    return {p.name: p.default for p in all_param_specs()}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values (a snapshot; replaced whole on a live change)."""

    values: dict[str, Any]
    localizer: Any  # LocalizerConfig

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


_DEVICE_OK = ("auto", "cpu", "cuda")


def settings_from_values(values: dict[str, Any]) -> NodeSettings:
    """Validate a full ``{name: value}`` dict (node + localizer.*) into :class:`NodeSettings`.

    Raises:
        ConfigError: the first problem found, naming the parameter, the value and what is allowed.
    """
    specs = {p.name: p for p in all_param_specs()}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; see config/foenet.yaml for the list")
    vals = {**default_values(), **values}
    for name, spec in specs.items():
        v = vals[name]
        want = type(spec.default)
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = vals[name] = float(v)
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise ConfigError(f"parameter {name} must be a {want.__name__}, got {v!r}")
        if want is float and math.isnan(v):
            if not spec.allow_nan:
                raise ConfigError(f"parameter {name} must be a number, got NaN")
            continue
        if spec.range is not None and want in (int, float) and not (spec.range[0] <= v <= spec.range[1]):
            raise ConfigError(f"parameter {name} = {v} is out of range [{spec.range[0]}, {spec.range[1]}]")
        if spec.choices is not None and v not in spec.choices:
            raise ConfigError(f"parameter {name} = {v!r} must be one of {list(spec.choices)}")
    dev = vals["device"]
    if not (dev in _DEVICE_OK or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"parameter device = {dev!r} must be auto, cpu, cuda or cuda:N")
    if math.isnan(vals["map_origin_lat"]) != math.isnan(vals["map_origin_lon"]):
        raise ConfigError("map_origin_lat and map_origin_lon must be both set or both NaN (= map centre)")
    for name in ("image_topic", "map_frame", "base_frame"):
        if not vals[name].strip():
            raise ConfigError(f"parameter {name} must not be empty")
    if vals["publish_tf"] == "map_to_odom" and not vals["odom_topic"].strip():
        raise ConfigError("publish_tf: map_to_odom needs odom_topic (nav_msgs/Odometry of odom -> base_frame)")
    if vals["max_image_side"] and vals["max_image_side"] < 64:
        raise ConfigError(f"parameter max_image_side = {vals['max_image_side']} must be 0 (off) or >= 64")
    from foenet_ros.localize.config import LocalizerConfig

    loc_kwargs = {k[len(LOCALIZER_PREFIX) :]: v for k, v in vals.items() if k.startswith(LOCALIZER_PREFIX)}
    try:
        loc = LocalizerConfig(**loc_kwargs)
    except ConfigError as exc:
        raise ConfigError(f"localizer parameters rejected: {exc}") from exc
    return NodeSettings(values=vals, localizer=loc)


# --------------------------------------------------------------------------------------------
# config/foenet.yaml is generated from the specs above (then free to be edited by hand):
#   python -m foenet_ros.ros.params > config/foenet.yaml
_SECTIONS = {
    "index_dir": "What to localise against",
    "image_topic": "Inputs (topic names are relative: they follow the node's namespace; remap in the launch file)",
    "map_frame": "Outputs: frames, altitude, covariance, what to publish",
    "frame_timeout_s": "Health: when /diagnostics goes WARN / ERROR (steady clock)",
    "mavlink_url": "Flight-stack adapters (optional; see docs/ros.md for ArduPilot/PX4/MAVROS recipes)",
}


def _yaml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return ".nan" if math.isnan(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    return '"%s"' % v


def params_yaml() -> str:
    """The text of ``config/foenet.yaml``: every parameter with its default and a comment."""
    import textwrap

    out = [
        "# foenet_node parameters. Every parameter the node declares is listed here with its default.",
        "# Load with: ros2 run foenet_ros foenet_node --ros-args --params-file config/foenet.yaml",
        "# (or launch/foenet.launch.py params_file:=...). Floats must keep their decimal point (typed params).",
        "# Ranges/choices are enforced at start and on live change (`ros2 param set` gets the reason back);",
        "# parameters marked [start only] are read-only after start.",
        "# Regenerate after adding a parameter: python -m foenet_ros.ros.params > config/foenet.yaml",
        "/**/foenet_node:",
        "  ros__parameters:",
        "    # ROS built-in: take time from /clock (replay.launch.py sets it to true)",
        "    use_sim_time: false",
    ]
    for p in NODE_PARAMS:
        if p.name in _SECTIONS:
            out += ["", "    # ---- " + _SECTIONS[p.name]]
        extra = []
        if p.range is not None and not isinstance(p.default, bool):
            extra.append(f"range [{p.range[0]}, {p.range[1]}]" + (" or NaN" if p.allow_nan else ""))
        if p.choices:
            extra.append("one of " + " | ".join(p.choices))
        if p.read_only:
            extra.append("[start only]")
        comment = p.description + (" (" + "; ".join(extra) + ")" if extra else "")
        out += ["    # " + line for line in textwrap.wrap(comment, 96)]
        out.append(f"    {p.name}: {_yaml_value(p.default)}")
    out += ["", "    # ---- Localizer (foenet_ros.localize.LocalizerConfig); changing one restarts the track", "    localizer:"]
    for p in _localizer_specs():
        comment = p.description + (" (one of " + " | ".join(p.choices) + ")" if p.choices else "")
        out += ["      # " + line for line in textwrap.wrap(comment, 94)]
        out.append(f"      {p.name[len(LOCALIZER_PREFIX):]}: {_yaml_value(p.default)}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(params_yaml(), end="")
