"""``foenet_node``: camera frames in, geo pose out (a thin rclpy adapter around the Localizer).

Threads and callback groups (under a ``MultiThreadedExecutor``)::

    camera Image/CompressedImage ──> one-slot mailbox (newest wins, replaced = dropped)
    CameraInfo, heading, altitude, GNSS ──> latest values (io group, cheap)
    worker (guard condition + slow timer, its own MutuallyExclusiveCallbackGroup) ──> take newest
        frame ──> Localizer.localize
        ──> ~/fix ~/pose ~/odometry ~/path ~/candidates ~/debug_image, GPS_INPUT / PX4 adapters
    /diagnostics timer, ~/reset service, parameter callbacks (default group): never wait for inference

A missing or mismatched index does not stop the node: diagnostics say ERROR with the reason and
the worker retries every ``index_retry_s``. Bad frames (malformed, unknown encoding) and a bad
CameraInfo are counted, warned about (throttled) and reported; later good frames are localised.

Run: ``ros2 run foenet_ros foenet_node --ros-args --params-file config/foenet.yaml`` (or the
``foenet_node`` console script / ``python -m foenet_ros.ros.node``).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path as PathMsg
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, NavSatStatus, PointCloud2, Range
from std_msgs.msg import Float64, Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from foenet_ros.errors import CameraError, ConfigError, FoenetError, ImageError
from foenet_ros.ros import conversions as conv
from foenet_ros.ros.mailbox import LatestMailbox
from foenet_ros.ros.params import LOCALIZER_PREFIX, NodeSettings, ParamSpec, all_param_specs, settings_from_values
from foenet_ros.ros.stats import RateMeter, StageLatency

# Camera: sensor-data QoS with depth 1 -- the DDS layer itself keeps only the newest frame.
CAMERA_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE
)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

_RELOAD_KEYS = {"index_dir", "model_path", "device"}
# The worker wakes on a guard condition triggered by each frame; this slow timer only drives index
# load retries and frames held back by max_rate_hz. (A fast polling timer would cost the executor
# a wait-set rebuild per tick, and GIL time that inference needs.)
_WORKER_PERIOD_S = 0.05
_INPUT_WARN_WINDOW_S = 10.0  # a bad input keeps the "inputs" diagnostic at WARN this long


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None and not spec.allow_nan:  # rclpy's range check rejects NaN
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)]
    elif spec.allow_nan and spec.range is not None:
        desc.additional_constraints = f"NaN, or in [{spec.range[0]}, {spec.range[1]}]"
    return desc


def _stamp_seconds(header: Header) -> float | None:
    t = header.stamp.sec + header.stamp.nanosec * 1e-9
    return t if t > 0 else None


class FoenetNode(Node):
    """The ROS 2 node around :class:`foenet_ros.localize.Localizer` (see the module docstring).

    Raises:
        ConfigError: an invalid parameter value at start (the reason names the parameter).
    """

    def __init__(self, node_name: str = "foenet_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = all_param_specs()
        for spec in self._specs:
            try:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
            except ParameterException as exc:  # out of range, wrong type (e.g. 5 for a float)
                raise ConfigError(f"parameter {spec.name} rejected at start: {exc}") from exc
        self._settings: NodeSettings = settings_from_values({s.name: self.get_parameter(s.name).value for s in self._specs})
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # --- state shared between callbacks (simple assignments; the mailbox has its own lock)
        self._closing = False
        self._mailbox: LatestMailbox[Any] = LatestMailbox()
        self._localizer: Any = None
        self._index_error = "not loaded yet"
        self._next_load = 0.0
        self._reload_pending = True
        self._config_pending = False
        self._reset_pending = False
        self._origin_xy = (0.0, 0.0)
        self._origin_lonlat = (math.nan, math.nan)
        self._camera: Any = None
        self._camera_state = "none received" if self._settings["camera_info_topic"] else "not configured"
        self._heading: tuple[float, float, float, float] | None = None  # (heading, roll, pitch, t)
        self._altitude: tuple[float, float] | None = None  # (m, t)
        self._gnss: tuple[float, float, float, float] | None = None  # (lat, lon, sigma, t)
        self._gnss_state = "not configured" if not self._settings["gnss_topic"] else "none received"
        self._counters = {"processed": 0, "malformed": 0, "camera_info_rejected": 0, "errors": 0,
                          "without_index": 0, "resets": 0, "published_fixes": 0}  # fmt: skip
        self._last_input_error: tuple[str, float] | None = None
        self._last_error = ""
        self._last_error_t = -math.inf
        self._last_est: Any = None
        self._last_start = -math.inf
        self._rate = RateMeter()
        self._input_rate = RateMeter()
        self._latency = StageLatency()
        self._path = PathMsg()

        # --- callback groups: inference alone in one; inputs in another; services/diagnostics default
        self._work_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        s = self._settings

        self._pub_fix = self.create_publisher(NavSatFix, "~/fix", OUTPUT_QOS)
        self._pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", OUTPUT_QOS)
        self._pub_odom = self.create_publisher(Odometry, "~/odometry", OUTPUT_QOS)
        self._pub_path = self.create_publisher(PathMsg, "~/path", OUTPUT_QOS)
        self._pub_markers = self.create_publisher(MarkerArray, "~/candidates", OUTPUT_QOS)
        self._pub_tiles = self.create_publisher(PointCloud2, "~/map_tiles", LATCHED_QOS)
        self._pub_debug = self.create_publisher(Image, "~/debug_image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)

        topic = s["image_topic"]
        if s["image_transport"] == "compressed":
            self._image_sub = self.create_subscription(
                CompressedImage, topic.rstrip("/") + "/compressed", self._on_image, CAMERA_QOS, callback_group=self._io_group
            )
        else:
            self._image_sub = self.create_subscription(Image, topic, self._on_image, CAMERA_QOS, callback_group=self._io_group)
        self._subs = []
        if s["camera_info_topic"]:
            # best effort matches both best-effort (most camera drivers) and reliable publishers
            self._subs.append(self.create_subscription(
                CameraInfo, s["camera_info_topic"], self._on_camera_info, qos_profile_sensor_data, callback_group=self._io_group
            ))  # fmt: skip
        if s["heading_topic"]:
            mtype, cb = (Imu, self._on_imu) if s["heading_type"] == "imu" else (Float64, self._on_compass)
            self._subs.append(self.create_subscription(mtype, s["heading_topic"], cb, qos_profile_sensor_data, callback_group=self._io_group))
        if s["altitude_topic"]:
            mtype, cb = (Float64, self._on_altitude) if s["altitude_type"] == "float64" else (Range, self._on_range)
            self._subs.append(self.create_subscription(mtype, s["altitude_topic"], cb, qos_profile_sensor_data, callback_group=self._io_group))
        if s["gnss_topic"]:
            self._subs.append(self.create_subscription(NavSatFix, s["gnss_topic"], self._on_gnss, qos_profile_sensor_data, callback_group=self._io_group))

        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)
        self._wake = self.create_guard_condition(self._tick, callback_group=self._work_group)
        self._worker = self.create_timer(_WORKER_PERIOD_S, self._tick, callback_group=self._work_group)
        self._diag_timer = self.create_timer(s["diagnostics_period_s"], self._publish_diagnostics)

        self._gps_input = None
        if s["mavlink_url"]:
            from foenet_ros.ros.adapters.mavlink_gps import GpsInputConfig, GpsInputSender

            try:
                self._gps_input = GpsInputSender(GpsInputConfig(
                    url=s["mavlink_url"], rate_hz=s["mavlink_rate_hz"], gps_id=s["mavlink_gps_id"],
                    source_system=s["mavlink_source_system"], source_component=s["mavlink_source_component"],
                    satellites_visible=s["mavlink_satellites"], alt_sigma_m=s["alt_sigma_m"],
                    geoid_separation_m=s["geoid_separation_m"],
                ))  # fmt: skip
            except (OSError, ConfigError) as exc:
                self.get_logger().error(f"GPS_INPUT adapter disabled: cannot open {s['mavlink_url']!r}: {exc}")
        self._px4 = None
        if s["px4_aux_global_position"]:
            from foenet_ros.ros.adapters.px4 import make_px4_publisher

            self._px4 = make_px4_publisher(self, s["px4_topic"])
        self.get_logger().info(
            f"foenet_node up: camera {self.resolve_topic_name(topic)} ({s['image_transport']}), index {s['index_dir'] or '<not set>'}"
        )

    # ============================================================== parameters
    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate a live change against all other values; apply it or reject it with the reason."""
        values = dict(self._settings.values)
        mine = [p for p in params if p.name in values]  # others (use_sim_time, qos overrides) are rclpy's
        if not mine:
            return SetParametersResult(successful=True)
        for p in mine:
            values[p.name] = p.value
        try:
            new = settings_from_values(values)
        except ConfigError as exc:
            self.get_logger().warning(f"parameter change rejected: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        old = self._settings
        changed = {k for k in new.values if not _same(old.values[k], new.values[k])}
        self._settings = new
        if changed & _RELOAD_KEYS:
            self._reload_pending = True
            self._next_load = 0.0
        elif any(k.startswith(LOCALIZER_PREFIX) for k in changed):
            self._config_pending = True
        if {"map_origin_lat", "map_origin_lon"} & changed and self._localizer is not None:
            self._set_origin(self._localizer)
        if changed:
            self.get_logger().info(f"parameters changed: {sorted(changed)}")
        return SetParametersResult(successful=True)

    def _output_config(self) -> conv.OutputConfig:
        s = self._settings
        return conv.OutputConfig(
            map_frame=s["map_frame"], base_frame=s["base_frame"], origin_xy=self._origin_xy,
            # map frame = true-north ENU tangent plane at the origin (consistent with the true-heading yaw)
            frame=self._localizer.index.frame if self._localizer is not None else None,
            ground_altitude_m=s["ground_altitude_m"], alt_sigma_m=s["alt_sigma_m"], yaw_sigma_deg=s["yaw_sigma_deg"],
            publish_retrieval=s["publish_retrieval"],
        )  # fmt: skip

    # ============================================================== inputs (io group: cheap)
    def _on_image(self, msg: Any) -> None:
        self._input_rate.tick()
        self._mailbox.put(msg)
        self._wake.trigger()  # runs _tick in the worker group (later, if inference is busy)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intr = conv.camera_info_to_intrinsics(msg)
        except CameraError as exc:
            self._counters["camera_info_rejected"] += 1
            self._camera = None
            self._camera_state = f"invalid: {exc}"
            self._input_error(f"CameraInfo rejected: {exc}")
            return
        if self._camera != intr:
            self.get_logger().info(f"camera intrinsics: {intr.width}x{intr.height} fx={intr.fx:.1f} fy={intr.fy:.1f}")
        self._camera = intr
        self._camera_state = f"ok {intr.width}x{intr.height} fx={intr.fx:.1f}"

    def _on_imu(self, msg: Imu) -> None:
        o = conv.imu_orientation(msg)
        if o is not None:
            heading, roll, pitch = o
            self._heading = ((heading + self._settings["heading_offset_deg"]) % 360.0, roll, pitch, time.monotonic())

    def _on_compass(self, msg: Float64) -> None:
        if math.isfinite(msg.data):
            self._heading = ((msg.data + self._settings["heading_offset_deg"]) % 360.0, math.nan, math.nan, time.monotonic())

    def _on_altitude(self, msg: Float64) -> None:
        if math.isfinite(msg.data) and msg.data > 0:
            self._altitude = (float(msg.data), time.monotonic())

    def _on_range(self, msg: Range) -> None:
        r = float(msg.range)
        if math.isfinite(r) and msg.min_range <= r <= msg.max_range and r > 0:
            self._altitude = (r, time.monotonic())

    def _on_gnss(self, msg: NavSatFix) -> None:
        s = self._settings
        if msg.status.status < NavSatStatus.STATUS_FIX or not (math.isfinite(msg.latitude) and math.isfinite(msg.longitude)):
            self._gnss, self._gnss_state = None, "unhealthy: no fix"
            return
        if msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_UNKNOWN:
            sigma = s["gnss_default_sigma_m"]
        else:
            sigma = math.sqrt(max(msg.position_covariance[0], msg.position_covariance[4], 0.0))
        if not (math.isfinite(sigma) and sigma <= s["gnss_max_sigma_m"]):
            self._gnss, self._gnss_state = None, f"unhealthy: sigma {sigma:.1f} m > {s['gnss_max_sigma_m']} m"
            return
        self._gnss = (float(msg.latitude), float(msg.longitude), float(sigma), time.monotonic())
        self._gnss_state = f"healthy, sigma {sigma:.1f} m"

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """Drop the track (and the path): the next frame searches the whole map again."""
        self._reset_pending = True
        self._counters["resets"] += 1
        response.success = True
        response.message = "track dropped; the next frame searches the whole map" + (
            "" if self._localizer is not None else " (no index loaded yet)"
        )
        self.get_logger().info("reset requested")
        return response

    def _input_error(self, text: str) -> None:
        self._last_input_error = (text, time.monotonic())
        self.get_logger().warning(text, throttle_duration_sec=5.0)

    # ============================================================== worker (own callback group)
    def _tick(self) -> None:
        # An exception escaping a callback would stop the executor and with it the node; a flight
        # companion must keep running, so anything unexpected is logged, counted and reported.
        if self._closing:
            return
        try:
            self._tick_unguarded()
        except _rclpy_impl.InvalidHandle:
            pass  # the node is being destroyed under a running callback
        except Exception as exc:  # noqa: BLE001 - last-resort guard, see above
            self._counters["errors"] += 1
            self._last_error, self._last_error_t = f"{type(exc).__name__}: {exc}", time.monotonic()
            self.get_logger().error(f"worker error (node keeps running): {self._last_error}", throttle_duration_sec=5.0)

    def _tick_unguarded(self) -> None:
        now = time.monotonic()
        if self._reload_pending or (self._localizer is None and now >= self._next_load):
            self._load_localizer()
            return
        if self._localizer is None:
            if self._mailbox.take() is not None:
                self._counters["without_index"] += 1
            return
        if self._config_pending:
            self._config_pending = False
            self._rebuild_localizer()
        if self._reset_pending:
            self._reset_pending = False
            self._localizer.reset()
            self._path = PathMsg()
        rate = self._settings["max_rate_hz"]
        if rate > 0 and now - self._last_start < 1.0 / rate:
            return  # the waiting frame stays in the mailbox (and may be replaced by a newer one)
        msg = self._mailbox.take()
        if msg is None:
            return
        self._last_start = now
        self._process(msg)

    def _load_localizer(self) -> None:
        from foenet_ros.localize import Localizer

        s = self._settings
        self._reload_pending = False
        self._next_load = time.monotonic() + s["index_retry_s"]
        index_dir = s["index_dir"]
        if not index_dir:
            from foenet_ros.maps import default_index

            default = default_index()
            if default is None:
                self._localizer = None
                self._index_error = (
                    "index_dir is empty and no default index exists: set index_dir to an index built with "
                    "`foenet build-index`, or run `foenet demo` once to build the default demo map's index"
                )
                self.get_logger().error(self._index_error, throttle_duration_sec=30.0)
                return
            index_dir = str(default)
            self.get_logger().info(f"index_dir not set: using the default (demo) index {index_dir}", once=True)
        path = Path(index_dir).expanduser()
        try:
            if not path.is_dir():
                raise FileNotFoundError(f"index directory {path} does not exist")
            loc = Localizer.from_paths(path, s["model_path"] or None, device=s["device"], config=self._settings.localizer)
        except (FoenetError, OSError, ValueError, RuntimeError) as exc:
            self._localizer = None
            self._index_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(
                f"index not loaded ({self._index_error}); retrying every {s['index_retry_s']:.1f} s", throttle_duration_sec=30.0
            )
            return
        self._localizer = loc
        self._index_error = ""
        self._path = PathMsg()
        self._set_origin(loc)
        self.get_logger().info(
            f"index loaded: {path} ({len(loc.index)} tiles, model {loc.encoder.fingerprint}, device {loc.encoder.device})"
        )
        if s["publish_map_tiles"]:
            hdr = Header()
            hdr.stamp = self.get_clock().now().to_msg()
            self._pub_tiles.publish(conv.tile_centers_to_cloud(loc.index.tiles.centers_xy, hdr, self._output_config(), loc.index.tiles.size_m))

    def _rebuild_localizer(self) -> None:
        """Apply new ``localizer.*`` values: same index and encoder, new config (the track restarts)."""
        from foenet_ros.localize import Localizer

        old = self._localizer
        self._localizer = Localizer(old.index, old.encoder, self._settings.localizer)
        self.get_logger().info("localizer settings applied (track restarted)")

    def _set_origin(self, loc: Any) -> None:
        s = self._settings
        frame = loc.index.frame
        if math.isnan(s["map_origin_lat"]):
            c = np.asarray(loc.index.tiles.centers_xy, float)
            ox, oy = (c.min(0) + c.max(0)) / 2.0
        else:
            ox, oy = frame.from_lonlat(s["map_origin_lon"], s["map_origin_lat"])
        self._origin_xy = (float(ox), float(oy))
        lon, lat = frame.to_lonlat(float(ox), float(oy))
        self._origin_lonlat = (float(lon), float(lat))

    def _fresh(self, value: Any, timeout_s: float) -> Any:
        return value if value is not None and time.monotonic() - value[-1] <= timeout_s else None

    def _process(self, msg: Any) -> None:
        s = self._settings
        header = msg.header
        try:
            if isinstance(msg, CompressedImage):
                rgb = conv.compressed_to_rgb(msg)
            else:
                rgb = conv.image_to_rgb(msg, use_cv_bridge=s["use_cv_bridge"])
        except ImageError as exc:
            self._counters["malformed"] += 1
            self._input_error(f"image rejected: {exc}")
            return
        camera = self._camera
        if camera is None and s["hfov_deg"] > 0:
            from foenet_ros.geo import CameraIntrinsics

            camera = CameraIntrinsics.from_hfov(s["hfov_deg"], rgb.shape[1], rgb.shape[0])
        heading = self._fresh(self._heading, s["heading_timeout_s"])
        alt = self._fresh(self._altitude, s["altitude_timeout_s"])
        gnss = self._fresh(self._gnss, s["gnss_timeout_s"])
        attitude = None
        if heading is not None and s["use_imu_attitude"] and math.isfinite(heading[1]):
            attitude = (heading[1], heading[2])
        kwargs = dict(
            prior=(gnss[0], gnss[1], gnss[2]) if gnss else None,
            heading_deg=heading[0] if heading else None,
            altitude_m=alt[0] if alt else None,
            attitude=attitude,
            stamp=_stamp_seconds(header),
        )
        loc = self._localizer
        try:
            try:
                est = loc.localize(rgb, camera=camera, **kwargs)
            except CameraError as exc:
                if camera is None:
                    raise
                # intrinsics that do not fit this stream: report it, still localise without them
                self._camera_state = f"invalid for this stream: {exc}"
                self._input_error(f"camera intrinsics not usable: {exc}")
                est = loc.localize(rgb, camera=None, **kwargs)
        except (ImageError, CameraError) as exc:
            self._counters["malformed"] += 1
            self._input_error(f"frame rejected: {exc}")
            return
        except (FoenetError, RuntimeError, ValueError, OSError) as exc:
            self._counters["errors"] += 1
            self._last_error, self._last_error_t = f"{type(exc).__name__}: {exc}", time.monotonic()
            self.get_logger().error(f"localisation failed: {self._last_error}", throttle_duration_sec=5.0)
            return
        self._counters["processed"] += 1
        self._rate.tick()
        self._latency.add(est.timings_ms)
        self._last_est = est
        self._publish(est, header, rgb, loc)

    # ============================================================== outputs
    def _publish(self, est: Any, header: Header, rgb: np.ndarray, loc: Any) -> None:
        s = self._settings
        cfg = self._output_config()
        usable = conv.estimate_is_usable(est, cfg)

        def hdr() -> Header:  # every message gets its own copy of the input frame's header
            h = Header()
            h.stamp = header.stamp
            h.frame_id = header.frame_id
            return h

        if usable or s["publish_lost"]:
            self._pub_fix.publish(conv.estimate_to_navsatfix(est, hdr(), cfg))
            self._counters["published_fixes"] += int(usable)
        if usable:
            pose = conv.estimate_to_pose(est, hdr(), cfg)
            self._pub_pose.publish(pose)
            if s["publish_odometry"]:
                self._pub_odom.publish(conv.estimate_to_odometry(est, hdr(), cfg))
            if s["publish_path"]:
                conv.append_to_path(self._path, pose, s["path_max_length"])
                self._pub_path.publish(self._path)
            if self._gps_input is not None:
                self._gps_input.send(est, _stamp_seconds(header) or time.time(), s["ground_altitude_m"])
            if self._px4 is not None:
                self._px4.publish(est, s["ground_altitude_m"] - s["geoid_separation_m"], s["alt_sigma_m"])
        elif self._gps_input is not None:
            self._gps_input.send(est, _stamp_seconds(header) or time.time(), s["ground_altitude_m"])  # NO_FIX keeps the link alive
        if s["publish_candidates"]:
            tiles = loc.index.tiles
            polys = [tiles.polygons_xy[c.tile_id] for c in est.candidates] if hasattr(tiles, "polygons_xy") else None
            self._pub_markers.publish(conv.candidates_to_markers(est.candidates, hdr(), cfg, polygons=polys))
        if self._pub_debug.get_subscription_count() > 0:
            from foenet_ros.ros.debug_image import render_debug_image

            img = render_debug_image(rgb, est, loc, max_side=s["debug_image_max_side"])
            self._pub_debug.publish(conv.numpy_to_image(img, "rgb8", header=hdr()))

    def _publish_diagnostics(self) -> None:
        s = self._settings
        now = time.monotonic()
        loc = self._localizer
        values: dict[str, Any] = {
            "index_dir": s["index_dir"] or "<not set>",
            "rate_hz": self._rate.rate(),
            "input_rate_hz": self._input_rate.rate(),
            "frames_received": self._mailbox.received,
            "frames_dropped": self._mailbox.dropped,
            "frames_processed": self._counters["processed"],
            "frames_without_index": self._counters["without_index"],
            "errors": self._counters["errors"],
            "resets": self._counters["resets"],
        }
        if loc is not None:
            manifest = getattr(loc.index, "manifest", {}) or {}
            values.update(
                index_tiles=len(loc.index),
                index_fingerprint=loc.index.fingerprint,
                model_fingerprint=loc.encoder.fingerprint,
                map_name=str((manifest.get("map") or {}).get("name", "")) if isinstance(manifest.get("map"), dict) else "",
                device=str(loc.encoder.device),
                origin_lat=f"{self._origin_lonlat[1]:.7f}",
                origin_lon=f"{self._origin_lonlat[0]:.7f}",
            )
        est = self._last_est
        if est is not None:
            values.update(last_status=est.status, last_sigma_m=float(est.sigma_m), last_score=float(est.score),
                          last_inliers=int(est.inliers), last_search=str(est.pose.get("search", "")))  # fmt: skip
        values.update(self._latency.summary())
        if loc is None:
            level = DiagnosticStatus.ERROR
            message = f"index not loaded: {self._index_error} (retrying every {s['index_retry_s']:.0f} s)"
        elif now - self._last_error_t <= _INPUT_WARN_WINDOW_S:
            level, message = DiagnosticStatus.WARN, f"last localisation error: {self._last_error}"
        elif est is None:
            level, message = DiagnosticStatus.OK, "index loaded; waiting for frames"
        elif est.status == "lost":
            level, message = DiagnosticStatus.WARN, "lost: no position for the last frame"
        else:
            level, message = DiagnosticStatus.OK, f"{est.status}: sigma {est.sigma_m:.1f} m, score {est.score:.2f}"
        if self._last_error:
            values["last_error"] = self._last_error

        inputs: dict[str, Any] = {
            "frames_malformed": self._counters["malformed"],
            "camera_info": self._camera_state,
            "camera_info_rejected": self._counters["camera_info_rejected"],
            "gnss_prior": self._gnss_state,
            "heading": "none" if self._fresh(self._heading, s["heading_timeout_s"]) is None else f"{self._heading[0]:.1f} deg",
            "altitude": "none" if self._fresh(self._altitude, s["altitude_timeout_s"]) is None else f"{self._altitude[0]:.1f} m",
        }
        in_level, in_msg = DiagnosticStatus.OK, "inputs ok"
        if self._last_input_error is not None:
            inputs["last_input_error"] = self._last_input_error[0]
            if now - self._last_input_error[1] <= _INPUT_WARN_WINDOW_S:
                in_level, in_msg = DiagnosticStatus.WARN, self._last_input_error[0]
        name = self.get_fully_qualified_name()
        hw = loc.index.fingerprint if loc is not None else "no index"
        arr = conv.make_diagnostic_array(
            self.get_clock().now().to_msg(),
            [
                (f"{name}: localizer", hw, level[0], message, values),
                (f"{name}: inputs", hw, in_level[0], in_msg, inputs),
            ],
        )
        self._pub_diag.publish(arr)

    def destroy_node(self) -> None:
        self._closing = True
        if self._gps_input is not None:
            self._gps_input.close()
            self._gps_input = None
        super().destroy_node()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def usage() -> str:
    """``foenet_node --help``: how to run it and every parameter with its description."""
    lines = [
        "usage: foenet_node [--help] --ros-args --params-file config/foenet.yaml [-p NAME:=VALUE ...] [-r FROM:=TO ...]",
        "",
        "Camera frames in, geo pose out: FOENet retrieval + geometric verification against a tile index.",
        "Publishes ~/fix ~/pose ~/odometry ~/path ~/candidates ~/map_tiles ~/debug_image /diagnostics; service ~/reset.",
        "Example: foenet_node --ros-args --params-file config/foenet.yaml -p index_dir:=/path/to/index "
        "-r camera/image_raw:=/cam0/image",
        "",
        "parameters:",
    ]
    for spec in all_param_specs():
        lines.append(f"  {spec.name} (default {spec.default!r}): {spec.description}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``foenet_node``: spin a FoenetNode on a MultiThreadedExecutor; always clean up."""
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in own or "--help" in own:
        print(usage())
        return 0
    rclpy.init(args=args)
    node = None
    rc = 0
    try:
        node = FoenetNode()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except ConfigError as exc:
        rclpy.logging.get_logger("foenet_node").fatal(f"invalid configuration: {exc}")
        rc = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy_impl.RCLError:
        # SIGINT shuts the context down under a running executor, which may then fail to build
        # its wait set: that is a normal exit. With the context still up it is a real error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
