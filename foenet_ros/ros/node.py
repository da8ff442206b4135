"""``foenet_node``: camera frames in, geo pose out (a thin rclpy adapter around the Localizer).

Threads and callback groups (under a ``MultiThreadedExecutor``)::

    camera Image/CompressedImage ──> stamp checks (out of order: dropped; time jump: track reset)
        ──> one-slot mailbox (newest wins, replaced = dropped)
    CameraInfo, IMU/compass, altitude, GNSS, odometry ──> latest values (io group, cheap)
    worker (guard condition + slow steady timer, its own MutuallyExclusiveCallbackGroup) ──> take
        newest frame ──> codec decode ──> Localizer.localize ──> ~/fix ~/pose ~/odometry ~/path
        ~/candidates ~/debug_image, /tf, PX4 aux global position
    GPS_INPUT timer (steady clock, mavlink_rate_hz): the newest estimate propagated to "now"
    /diagnostics timer, camera QoS matching, ~/reset, parameter callbacks: never wait for inference

Every timer runs on the steady clock, so with ``use_sim_time`` nothing waits for ``/clock`` and
nothing stops when a bag ends; outputs carry the frame's header stamp.

Decoding and the GeoEstimate -> message fields are the ROS-free :mod:`foenet_ros.codec` (the
bag replay uses the same functions). A missing or refused index does not stop the node:
diagnostics say ERROR with the reason, the last good index stays in use, and the worker retries
while none is loaded. Bad inputs (malformed frames, frames over the pixel budget, a bad
CameraInfo, an invalid GNSS prior) are counted, warned about (throttled) and reported.

Run: ``ros2 run foenet_ros foenet_node --ros-args --params-file config/foenet.yaml`` (or the
``foenet_node`` console script / ``python -m foenet_ros.ros.node``).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
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
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Imu, NavSatFix, NavSatStatus, PointCloud2, Range
from std_msgs.msg import Float64, Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from foenet_ros.codec import outputs as out_fields, topics as names
from foenet_ros.codec.aiding import GnssPrior, gnss_prior, localize_kwargs
from foenet_ros.codec.autopilot import PropagationConfig, propagate
from foenet_ros.codec.image import DecodeLimits, decode_image
from foenet_ros.ros.heap import limit_malloc_arenas, release_free_heap
from foenet_ros.codec.imu import imu_reading
from foenet_ros.codec.timeline import JUMP, OUT_OF_ORDER, FrameTimeline
from foenet_ros.errors import CameraError, ConfigError, FoenetError, ImageError, IndexMismatchError, InputError
from foenet_ros.ros import conversions as conv
from foenet_ros.ros.health import HealthLimits, HealthState, assess
from foenet_ros.ros.mailbox import LatestMailbox
from foenet_ros.ros.runtime import set_cpu_threads
from foenet_ros.ros.params import LOCALIZER_PREFIX, NodeSettings, ParamSpec, all_param_specs, settings_from_values
from foenet_ros.ros.stats import RateMeter, StageLatency

LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

_RELOAD_KEYS = {"index_dir", "model_path", "device", "inference"}
# The worker wakes on a guard condition triggered by each frame; this slow timer only drives index
# load retries and frames held back by max_rate_hz. (A fast polling timer would cost the executor
# a wait-set rebuild per tick, and GIL time that inference needs.)
_WORKER_PERIOD_S = 0.05
_TRIM_PERIOD_S = 1.0  # give freed heap back to the OS at most this often (release_free_heap)
_QOS_MATCH_PERIOD_S = 0.5
# a frame published this long after it arrived is reported (WARN, with its stages): the output is
# already stale for a moving drone, and the stage times say which step overran the frame budget
_SLOW_FRAME_S = 2.0
_INPUT_WARN_WINDOW_S = 10.0  # a bad input keeps the "inputs" diagnostic at WARN this long


def camera_qos(reliable: bool) -> QoSProfile:
    """Depth-1 camera subscription profile: the DDS reader itself keeps only the newest frame."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)  # fmt: skip


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


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def _age(now: float, t: float | None) -> float:
    return math.inf if t is None else max(0.0, now - t)


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
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        s = self._settings

        # --- state shared between callbacks (simple assignments; the mailbox has its own lock)
        self._closing = False
        self._t_start = time.monotonic()
        self._mailbox: LatestMailbox[Any] = LatestMailbox()
        self._localizer: Any = None
        self._loaded_index = ""
        self._index_error = "not loaded yet"
        self._next_load = 0.0
        self._reload_pending = True
        self._config_pending = False
        self._reset_pending = False
        self._origin_xy = (0.0, 0.0)
        self._origin_lonlat = (math.nan, math.nan)
        self._camera: Any = None
        self._camera_state = "none received" if s["camera_info_topic"] else "not configured"
        self._t_camera_info: float | None = None
        self._sensor_wait_over = False  # the start-up wait for the first sensor messages expired once
        self._imu: tuple[Any, float] | None = None  # (ImuReading, t)
        self._compass: tuple[float, float] | None = None  # (heading deg, t)
        self._altitude: tuple[float, float] | None = None  # (m, t)
        self._gnss: tuple[GnssPrior, float] | None = None
        self._gnss_state = "not configured" if not s["gnss_topic"] else "none received"
        self._odom_tf: Any = None
        self._counters = {"processed": 0, "malformed": 0, "camera_info_rejected": 0, "errors": 0, "without_index": 0,
                          "resets": 0, "published_fixes": 0, "gnss_rejected": 0, "time_jump_resets": 0,
                          "slow_frames": 0}  # fmt: skip
        self._timeline = FrameTimeline(jump_s=s["time_jump_s"])
        self._disorder: tuple[str, float] | None = None
        self._t_frame: float | None = None
        self._t_processed: float | None = None
        self._t_trimmed = -math.inf
        self._t_fix: float | None = None
        self._last_input_error: tuple[str, float] | None = None
        self._last_error = ""
        self._last_error_t = -math.inf
        self._last_est: Any = None
        self._autopilot: tuple[Any, float | None, float, float] | None = None  # (est, stamp, t_ref, age at t_ref)
        self._stamp_clock = "unknown"
        self._last_start = -math.inf
        self._rate = RateMeter()
        self._input_rate = RateMeter()
        self._gps_rate = RateMeter(window_s=10.0)
        self._latency = StageLatency()
        self._path = PathMsg()
        self._limits = DecodeLimits(s["max_image_megapixels"], s["max_image_side"])

        # --- callback groups: inference alone in one; inputs in another; services/diagnostics default
        self._work_group = MutuallyExclusiveCallbackGroup()
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._gps_group = MutuallyExclusiveCallbackGroup()

        self._pub_fix = self.create_publisher(NavSatFix, names.FIX, OUTPUT_QOS)
        self._pub_pose = self.create_publisher(PoseWithCovarianceStamped, names.POSE, OUTPUT_QOS)
        self._pub_odom = self.create_publisher(Odometry, names.ODOM, OUTPUT_QOS)
        self._pub_path = self.create_publisher(PathMsg, names.PATH_TOPIC, OUTPUT_QOS)
        self._pub_markers = self.create_publisher(MarkerArray, names.CANDIDATES, OUTPUT_QOS)
        self._pub_tiles = self.create_publisher(PointCloud2, names.MAP_TILES, LATCHED_QOS)
        self._pub_debug = self.create_publisher(Image, names.DEBUG_IMAGE, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self._pub_diag = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS, OUTPUT_QOS)
        self._pub_tf, self._tf_state = self._make_tf_publisher()

        # --- camera: fixed QoS now, or matched to the publishers as they appear (camera_qos: auto)
        self._compressed = s["image_transport"] == "compressed"
        topic = s["image_topic"]
        self._camera_topic = names.compressed_topic(topic) if self._compressed else topic
        self._camera_resolved = self.resolve_topic_name(self._camera_topic)
        self._image_sub: Any = None
        self._image_sub_reliable: bool | None = None
        self._camera_publishers = 0
        self._camera_matched = s["camera_qos"] != "auto"
        if s["camera_qos"] == "auto":
            # best effort connects to any publisher until the first match says whether all are reliable
            self._subscribe_camera(False)
            self._qos_timer = self.create_timer(_QOS_MATCH_PERIOD_S, self._match_camera_qos, clock=self._steady)
            self._match_camera_qos()
        else:
            self._subscribe_camera(s["camera_qos"] == "reliable", overridable=True)
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
        if s["odom_topic"]:
            self._subs.append(self.create_subscription(Odometry, s["odom_topic"], self._on_odom, qos_profile_sensor_data, callback_group=self._io_group))

        self._reset_srv = self.create_service(Trigger, names.RESET_SERVICE, self._on_reset)
        self._wake = self.create_guard_condition(self._tick, callback_group=self._work_group)
        self._worker = self.create_timer(_WORKER_PERIOD_S, self._tick, callback_group=self._work_group, clock=self._steady)
        self._diag_timer = self.create_timer(s["diagnostics_period_s"], self._publish_diagnostics, clock=self._steady)

        self._gps_input = None
        self._gps_timer = None
        if s["mavlink_url"]:
            self._start_gps_input()
        self._px4 = None
        if s["px4_aux_global_position"]:
            from foenet_ros.ros.adapters.px4 import make_px4_publisher

            self._px4 = make_px4_publisher(self, s["px4_topic"], s["px4_source_id"])
        self.get_logger().info(
            f"foenet_node up: camera {self._camera_resolved} ({s['image_transport']}, QoS {s['camera_qos']}), "
            f"index {s['index_dir'] or '<default>'}"
        )

    # ============================================================== setup helpers
    def _make_tf_publisher(self) -> tuple[Any, str]:
        mode = self._settings["publish_tf"]
        if mode == "off":
            return None, "off"
        try:
            from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]
        except ImportError as exc:
            reason = f"publish_tf: {mode} needs tf2_msgs, which is not importable here ({exc}); no TF is published"
            self.get_logger().error(reason)
            return None, reason
        return self.create_publisher(TFMessage, names.TF, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)), mode

    def _start_gps_input(self) -> None:
        from foenet_ros.ros.adapters.mavlink_gps import GpsInputConfig, GpsInputSender

        s = self._settings
        try:
            self._gps_input = GpsInputSender(GpsInputConfig(
                url=s["mavlink_url"], rate_hz=s["mavlink_rate_hz"], gps_id=s["mavlink_gps_id"],
                source_system=s["mavlink_source_system"], source_component=s["mavlink_source_component"],
                satellites_visible=s["mavlink_satellites"], alt_sigma_m=s["alt_sigma_m"],
                geoid_separation_m=s["geoid_separation_m"], send_retrieval=s["publish_retrieval"],
            ))  # fmt: skip
        except (OSError, ConfigError) as exc:
            self.get_logger().error(f"GPS_INPUT adapter disabled: cannot open {s['mavlink_url']!r}: {exc}")
            return
        self._gps_timer = self.create_timer(1.0 / s["mavlink_rate_hz"], self._send_gps_input,
                                            callback_group=self._gps_group, clock=self._steady)  # fmt: skip

    def _subscribe_camera(self, reliable: bool, overridable: bool = False) -> None:
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
        mtype = CompressedImage if self._compressed else Image
        kw: dict[str, Any] = {"callback_group": self._io_group}
        if overridable:  # fixed QoS: qos_overrides.<topic>.subscription.* parameters apply
            kw["qos_overriding_options"] = QoSOverridingOptions.with_default_policies()
        self._image_sub = self.create_subscription(mtype, self._camera_topic, self._on_image, camera_qos(reliable), **kw)
        self._image_sub_reliable = self._image_sub.qos_profile.reliability == ReliabilityPolicy.RELIABLE

    def _match_camera_qos(self) -> None:
        """camera_qos auto: RELIABLE when every publisher offers it (every frame arrives), else BEST_EFFORT
        (the only one that connects to a best-effort driver)."""
        try:
            infos = self.get_publishers_info_by_topic(self._camera_resolved)
        except Exception as exc:  # noqa: BLE001 - graph queries fail while shutting down
            self.get_logger().debug(f"camera QoS matching skipped: {exc}")
            return
        self._camera_publishers = len(infos)
        # several publishers: stamps from different clocks interleave; never take that for a time jump
        self._timeline.jumps_allowed = len(infos) <= 1
        if not infos:
            return
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        first = not self._camera_matched
        self._camera_matched = True
        changed = self._image_sub_reliable != reliable
        if changed:
            self._subscribe_camera(reliable)
        if first or changed:
            self.get_logger().info(
                f"camera QoS matched to {len(infos)} publisher(s) on {self._camera_resolved}: "
                f"{'RELIABLE' if reliable else 'BEST_EFFORT'}, depth 1"
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
        if {"max_image_megapixels", "max_image_side"} & changed:
            self._limits = DecodeLimits(new["max_image_megapixels"], new["max_image_side"])
        if "time_jump_s" in changed:
            self._timeline.jump_s = new["time_jump_s"]
        if {"map_origin_lat", "map_origin_lon"} & changed and self._localizer is not None:
            self._set_origin(self._localizer)
        if changed:
            self.get_logger().info(f"parameters changed: {sorted(changed)}")
        return SetParametersResult(successful=True)

    def _output_config(self) -> out_fields.OutputConfig:
        s = self._settings
        return out_fields.OutputConfig(
            map_frame=s["map_frame"], base_frame=s["base_frame"], origin_xy=self._origin_xy,
            # map frame = true-north ENU tangent plane at the origin (consistent with the true-heading yaw)
            frame=self._localizer.index.frame if self._localizer is not None else None,
            ground_altitude_m=s["ground_altitude_m"], alt_sigma_m=s["alt_sigma_m"], yaw_sigma_deg=s["yaw_sigma_deg"],
            publish_retrieval=s["publish_retrieval"],
        )  # fmt: skip

    # ============================================================== inputs (io group: cheap)
    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self._t_frame = now
        self._input_rate.tick(now)
        verdict = self._timeline.observe(_stamp_seconds(msg.header))
        if verdict == OUT_OF_ORDER:
            text = (f"camera frame stamp {_stamp_seconds(msg.header)} is not newer than the last one: dropped "
                    f"({self._timeline.out_of_order} so far; two publishers on the topic, or time went back)")  # fmt: skip
            self._disorder = (text, now)
            self.get_logger().warning(text, throttle_duration_sec=5.0)
            return
        if verdict == JUMP:
            text = f"time jumped back to {_stamp_seconds(msg.header):.3f} s (bag loop / clock reset): track reset"
            self._disorder = (text, now)
            self._reset_pending = True
            self._counters["time_jump_resets"] += 1
            self.get_logger().warning(text)
        self._mailbox.put((msg, now))
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
        self._t_camera_info = time.monotonic()
        self._camera_state = f"ok {intr.width}x{intr.height} fx={intr.fx:.1f}"

    def _on_imu(self, msg: Imu) -> None:
        r = imu_reading(msg)
        if r is not None:
            from dataclasses import replace

            r = replace(r, heading_deg=(r.heading_deg + self._settings["heading_offset_deg"]) % 360.0)
            self._imu = (r, time.monotonic())

    def _on_compass(self, msg: Float64) -> None:
        if math.isfinite(msg.data):
            self._compass = ((msg.data + self._settings["heading_offset_deg"]) % 360.0, time.monotonic())

    def _on_altitude(self, msg: Float64) -> None:
        if math.isfinite(msg.data) and msg.data > 0:
            self._altitude = (float(msg.data), time.monotonic())

    def _on_range(self, msg: Range) -> None:
        r = float(msg.range)
        if math.isfinite(r) and msg.min_range <= r <= msg.max_range and r > 0:
            self._altitude = (r, time.monotonic())

    def _on_odom(self, msg: Odometry) -> None:
        self._odom_tf = conv.odometry_to_transform(msg)

    def _on_gnss(self, msg: NavSatFix) -> None:
        s = self._settings
        if msg.status.status < NavSatStatus.STATUS_FIX:
            self._gnss, self._gnss_state = None, "unhealthy: no fix"
            return
        if msg.position_covariance_type == NavSatFix.COVARIANCE_TYPE_UNKNOWN:
            sigma = s["gnss_default_sigma_m"]
        else:
            sigma = math.sqrt(max(msg.position_covariance[0], msg.position_covariance[4], 0.0))
            sigma = sigma if sigma > 0 else s["gnss_default_sigma_m"]
        try:
            prior = gnss_prior(msg.latitude, msg.longitude, sigma)
        except InputError as exc:  # a faulty or spoofed receiver: localise without it
            self._counters["gnss_rejected"] += 1
            self._gnss, self._gnss_state = None, f"invalid, ignored: {exc}"
            self._input_error(f"GNSS prior ignored: {exc}")
            return
        if not prior.sigma_m <= s["gnss_max_sigma_m"]:
            self._gnss, self._gnss_state = None, f"unhealthy: sigma {prior.sigma_m:.1f} m > {s['gnss_max_sigma_m']} m"
            return
        self._gnss = (prior, time.monotonic())
        self._gnss_state = f"healthy, sigma {prior.sigma_m:.1f} m"

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
            self._record_error(f"worker error (node keeps running): {type(exc).__name__}: {exc}")

    def _record_error(self, text: str) -> None:
        self._counters["errors"] += 1
        self._last_error, self._last_error_t = text, time.monotonic()
        self.get_logger().error(text, throttle_duration_sec=5.0)

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
            self._autopilot = None
        rate = self._settings["max_rate_hz"]
        if rate > 0 and now - self._last_start < 1.0 / rate:
            return  # the waiting frame stays in the mailbox (and may be replaced by a newer one)
        item = self._mailbox.take()
        if item is None:
            return
        self._await_first_sensors(item[1])
        self._last_start = now
        self._process(*item)

    def _missing_sensors(self) -> list[str]:
        """The configured sensor streams that have not delivered a usable message yet."""
        s = self._settings
        missing = []
        if s["camera_info_topic"] and self._t_camera_info is None:
            missing.append(s["camera_info_topic"])
        if s["heading_topic"] and self._imu is None and self._compass is None:
            missing.append(s["heading_topic"])
        if s["altitude_topic"] and self._altitude is None:
            missing.append(s["altitude_topic"])
        return missing

    def _await_first_sensors(self, t_rx: float) -> None:
        """Start-up: a frame received before the first message of a configured sensor waits for it, up
        to ``sensor_wait_s`` after the frame arrived (once: after a wait that expired, never again).

        Drivers publish a frame just before its CameraInfo and the autopilot's IMU sample of the same
        instant; without the wait the first frame was localised without intrinsics or heading (another
        search, another fix than a replay of the same bag gives). The sensor callbacks run in their own
        callback group, so they arrive meanwhile."""
        wait_s = self._settings["sensor_wait_s"]
        if wait_s <= 0 or self._sensor_wait_over or not self._missing_sensors():
            return
        t0 = time.monotonic()
        while self._missing_sensors() and time.monotonic() < t_rx + wait_s and not self._closing:
            time.sleep(0.005)
        missing = self._missing_sensors()
        if missing:  # once: a sensor that is configured but silent must not delay every frame
            self._sensor_wait_over = True
            self.get_logger().warning(f"no message on {', '.join(missing)} within sensor_wait_s={wait_s:g} s of the first "
                                      "frame: localising without it (no further waits)")
        else:
            self.get_logger().info(f"first frame waited {(time.monotonic() - t0) * 1e3:.0f} ms for its sensors", once=True)

    def _index_path(self) -> Path | None:
        index_dir = self._settings["index_dir"]
        if index_dir:
            return Path(index_dir).expanduser()
        from foenet_ros.utils import default_index

        default = default_index()
        if default is not None:
            self.get_logger().info(f"index_dir not set: using the default (demo) index {default}", once=True)
        return default

    def _load_localizer(self) -> None:
        """Load the configured index; keep the last good one when the new one does not load and verify."""
        from foenet_ros.localize import Localizer

        s = self._settings
        self._reload_pending = False
        self._next_load = time.monotonic() + s["index_retry_s"]
        path = self._index_path()
        try:
            if path is None:
                raise FileNotFoundError(
                    "index_dir is empty and no default index exists: set index_dir to an index built with "
                    "`foenet build-index`, or run `foenet demo` once to build the default demo map's index"
                )
            if not path.is_dir():
                raise FileNotFoundError(f"index directory {path} does not exist")
            set_cpu_threads(s["cpu_threads"])
            loc = self._onnx_localizer(path) if s["inference"] != "torch" and s["device"] in ("auto", "cpu") else None
            if loc is None:
                loc = Localizer.from_paths(path, s["model_path"] or None, device=s["device"], config=s.localizer)
        except (FoenetError, OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._index_error = reason.splitlines()[0]
            if self._localizer is None:
                self.get_logger().error(f"index not loaded ({self._index_error}); retrying every {s['index_retry_s']:.1f} s",
                                        throttle_duration_sec=30.0)  # fmt: skip
            else:
                self.get_logger().error(f"index {path} refused ({self._index_error}); still localising against "
                                        f"the last good index {self._loaded_index}")  # fmt: skip
            return
        old, self._localizer = self._localizer, loc
        del old  # the previous index and model go before anything else is allocated
        self._loaded_index = str(path)
        self._index_error = ""
        self._path = PathMsg()
        self._autopilot = None
        self._set_origin(loc)
        self.get_logger().info(
            f"index loaded: {path} ({len(loc.index)} tiles, model {loc.encoder.fingerprint}, device {loc.encoder.device})"
        )
        if s["publish_map_tiles"]:
            hdr = Header()
            hdr.stamp = self.get_clock().now().to_msg()
            self._pub_tiles.publish(conv.tile_centers_to_cloud(loc.index.tiles.centers_xy, hdr, self._output_config(), loc.index.tiles.size_m))

    def _onnx_localizer(self, path: Path) -> Any:
        """The ONNX Runtime Localizer (no torch in this process), or None to fall back to PyTorch (auto)."""
        from foenet_ros.ros.runtime import onnx_localizer

        s = self._settings
        try:
            return onnx_localizer(path, s["model_path"] or None, s.localizer, threads=s["cpu_threads"])
        except ImportError as exc:
            reason = f"onnxruntime not importable ({exc})"
        except (FoenetError, OSError, ValueError, RuntimeError) as exc:
            if s["inference"] == "onnx" or isinstance(exc, IndexMismatchError):
                raise
            reason = f"{type(exc).__name__}: {exc}"
        if s["inference"] == "onnx":
            raise FoenetError(f"inference: onnx unavailable: {reason}")
        self.get_logger().warning(f"ONNX runtime not used ({reason}); loading the model with PyTorch")
        return None

    def _rebuild_localizer(self) -> None:
        """Apply new ``localizer.*`` values: same index and encoder, new config (the track restarts)."""
        from foenet_ros.localize import Localizer

        old = self._localizer
        self._localizer = Localizer(old.index, old.encoder, self._settings.localizer)
        self._autopilot = None
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
        return value[0] if value is not None and time.monotonic() - value[-1] <= timeout_s else None

    def _aiding(self, stamp: float | None) -> dict[str, Any]:
        s = self._settings
        gnss = self._fresh(self._gnss, s["gnss_timeout_s"])
        return localize_kwargs(
            self._localizer.localize, stamp=stamp, imu=self._fresh(self._imu, s["heading_timeout_s"]),
            compass_deg=self._fresh(self._compass, s["heading_timeout_s"]), use_attitude=s["use_imu_attitude"],
            altitude_m=self._fresh(self._altitude, s["altitude_timeout_s"]), prior=gnss,
        )  # fmt: skip

    def _decode(self, msg: Any) -> np.ndarray | None:
        try:
            if self._settings["use_cv_bridge"] and not isinstance(msg, CompressedImage):
                return conv.image_to_rgb(msg, use_cv_bridge=True, limits=self._limits)
            return decode_image(msg, self._limits)
        except ImageError as exc:
            self._counters["malformed"] += 1
            self._input_error(f"image rejected: {exc}")
            return None

    def _process(self, msg: Any, t_rx: float) -> None:
        t_start = time.monotonic()
        header = msg.header
        rgb = self._decode(msg)
        if rgb is None:
            return
        camera = self._camera
        if camera is None and self._settings["hfov_deg"] > 0:
            from foenet_ros.geo import CameraIntrinsics

            camera = CameraIntrinsics.from_hfov(self._settings["hfov_deg"], rgb.shape[1], rgb.shape[0])
        loc = self._localizer
        kwargs = self._aiding(_stamp_seconds(header))
        # OpenMP's thread count belongs to the calling thread, and the executor's threads take turns: set
        # it in the thread that localises (~0.2 us)
        set_cpu_threads(self._settings["cpu_threads"])
        try:
            est = self._localize(loc, rgb, camera, kwargs)
        except (ImageError, CameraError) as exc:
            self._counters["malformed"] += 1
            self._input_error(f"frame rejected: {exc}")
            return
        except (FoenetError, RuntimeError, ValueError, OSError) as exc:
            self._record_error(f"localisation failed: {type(exc).__name__}: {exc}")
            return
        now = time.monotonic()
        self._counters["processed"] += 1
        self._t_processed = now
        self._rate.tick(now)
        self._latency.add(est.timings_ms)
        self._last_est = est
        self._publish(est, header, rgb, loc, t_rx)
        self._check_slow(est, t_rx, t_start)
        if now - self._t_trimmed >= _TRIM_PERIOD_S:
            # the frames' transient buffers (~65 MiB each), kept by malloc, would make RSS wander by
            # hundreds of MiB; a trim costs ~7 ms, so at most once a second, after publishing
            release_free_heap()
            self._t_trimmed = time.monotonic()

    def _check_slow(self, est: Any, t_rx: float, t_start: float) -> None:
        """Count and report a frame whose output left more than ``_SLOW_FRAME_S`` after it arrived:
        how long it waited in the mailbox, and the Localizer's stage times (ms)."""
        now = time.monotonic()
        if now - t_rx <= _SLOW_FRAME_S:
            return
        self._counters["slow_frames"] += 1
        stages = ", ".join(f"{k} {v:.0f}" for k, v in est.timings_ms.items() if v >= 1.0)
        self.get_logger().warning(
            f"slow frame: published {now - t_rx:.2f} s after it arrived (waited {(t_start - t_rx) * 1e3:.0f} ms, "
            f"processed {(now - t_start) * 1e3:.0f} ms; search {est.pose.get('search', '')}, "
            f"budget stop {est.pose.get('budget_stopped_ms', 0):.0f} ms; stages ms: {stages})"
        )

    def _localize(self, loc: Any, rgb: np.ndarray, camera: Any, kwargs: dict[str, Any]) -> Any:
        """``loc.localize`` with graceful degradation: intrinsics that do not fit the stream and a prior
        the Localizer refuses are reported and dropped, and the frame is localised without them."""
        try:
            return loc.localize(rgb, camera=camera, **kwargs)
        except CameraError as exc:
            if camera is None:
                raise
            self._camera_state = f"invalid for this stream: {exc}"
            self._input_error(f"camera intrinsics not usable: {exc}")
            return self._localize(loc, rgb, None, kwargs)
        except (FoenetError, ValueError) as exc:
            if kwargs.get("prior") is None or isinstance(exc, ImageError):
                raise
            self._counters["gnss_rejected"] += 1
            self._gnss, self._gnss_state = None, f"refused by the Localizer, ignored: {exc}"
            self._input_error(f"GNSS prior ignored: {exc}")
            return loc.localize(rgb, camera=camera, **dict(kwargs, prior=None))

    # ============================================================== outputs
    def _publish(self, est: Any, header: Header, rgb: np.ndarray, loc: Any, t_rx: float) -> None:
        s = self._settings
        cfg = self._output_config()
        fix = out_fields.is_fix(est, cfg)

        def hdr() -> Header:  # every message gets its own copy of the input frame's header
            h = Header()
            h.stamp = header.stamp
            h.frame_id = header.frame_id
            return h

        stamp = _stamp_seconds(header)
        if fix or s["publish_lost"]:
            self._pub_fix.publish(conv.estimate_to_navsatfix(est, hdr(), cfg))
        if fix:
            self._counters["published_fixes"] += 1
            self._t_fix = time.monotonic()
            pose = conv.estimate_to_pose(est, hdr(), cfg)
            self._pub_pose.publish(pose)
            if s["publish_odometry"]:
                self._pub_odom.publish(conv.estimate_to_odometry(est, hdr(), cfg))
            if s["publish_path"]:
                conv.append_to_path(self._path, pose, s["path_max_length"])
                self._pub_path.publish(self._path)
            self._publish_tf(est, header.stamp, cfg)
            if self._px4 is not None:
                sample_us = int(round(stamp * 1e6)) if stamp is not None else None
                self._px4.publish(est, s["ground_altitude_m"] - s["geoid_separation_m"], s["alt_sigma_m"], sample_us)
        self._hand_to_autopilot(est, stamp, t_rx)
        if s["publish_candidates"]:
            tiles = loc.index.tiles
            polys = [tiles.polygons_xy[c.tile_id] for c in est.candidates] if hasattr(tiles, "polygons_xy") else None
            self._pub_markers.publish(conv.candidates_to_markers(est.candidates, hdr(), cfg, polygons=polys))
        if self._pub_debug.get_subscription_count() > 0:
            from foenet_ros.ros.debug_image import render_debug_image

            img = render_debug_image(rgb, est, loc, max_side=s["debug_image_max_side"])
            self._pub_debug.publish(conv.numpy_to_image(img, "rgb8", header=hdr()))

    def _publish_tf(self, est: Any, stamp: Any, cfg: out_fields.OutputConfig) -> None:
        if self._pub_tf is None:
            return
        from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]

        pose = out_fields.pose_fields(est, cfg)
        if self._tf_state == "map_to_odom":
            if self._odom_tf is None:
                self._input_error(f"publish_tf: map_to_odom waits for odometry on {self._settings['odom_topic']}")
                return
            tf = out_fields.map_to_odom_transform(pose, self._odom_tf, cfg)
        else:
            tf = out_fields.map_to_base_transform(pose, cfg)
        self._pub_tf.publish(TFMessage(transforms=[conv.transform_to_msg(tf, stamp)]))

    def _hand_to_autopilot(self, est: Any, stamp: float | None, t_rx: float) -> None:
        """Remember the newest estimate for the GPS_INPUT timer, with its age on the steady clock."""
        if self._gps_input is None:
            return
        now = time.monotonic()
        self._autopilot = (est, stamp, now, self._frame_age(stamp, t_rx, now))

    def _frame_age(self, stamp: float | None, t_rx: float, now: float) -> float:
        """Seconds since the frame's capture: ROS "now" minus its stamp (sim or wall time alike) when the
        stamp is in this node's clock; else (unstamped, or a camera clock not synchronised with ours)
        the time since it arrived, a lower bound, and diagnostics say so. From the hand-over on the
        steady clock adds to it, so a paused /clock never freezes the age of a fix."""
        since_rx = max(0.0, now - t_rx)
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        if stamp is not None and now_ros > 0:
            age = now_ros - stamp
            if -0.5 <= age <= 60.0:
                self._stamp_clock = "synchronised"
                return max(age, since_rx)
            self._stamp_clock = f"camera stamps {age:+.1f} s off this node's clock: ages counted from arrival"
        return since_rx

    def _send_gps_input(self) -> None:
        """Steady-rate GPS_INPUT: the newest estimate propagated to now; NO_FIX when none or stale."""
        sender = self._gps_input
        if sender is None or self._closing:
            return
        s = self._settings
        try:
            latest = self._autopilot
            loc = self._localizer
            if latest is None:
                from foenet_ros.localize import GeoEstimate

                est, stamp, age = GeoEstimate(status="lost"), None, 0.0
            else:
                est, stamp, t_ref, age0 = latest
                age = age0 + (time.monotonic() - t_ref)
            accel = float(getattr(getattr(loc, "config", None), "coast_accel_sigma", PropagationConfig.accel_sigma))
            prop = propagate(est, age, PropagationConfig(accel_sigma=accel, stale_s=s["mavlink_stale_s"]),
                             loc.index.frame if loc is not None else None)  # fmt: skip
            # the time the propagated position is valid for: capture + age in the camera's clock when it is
            # ours, else now (ROS clock; wall time before /clock)
            now_ros = self.get_clock().now().nanoseconds * 1e-9
            synced = stamp is not None and self._stamp_clock == "synchronised"
            valid_at = stamp + age if synced else (now_ros if now_ros > 0 else time.time())
            if sender.send(prop, valid_at, s["ground_altitude_m"]):
                self._gps_rate.tick()
        except Exception as exc:  # noqa: BLE001 - a broken link must not stop the node
            self._record_error(f"GPS_INPUT not sent: {type(exc).__name__}: {exc}")

    # ============================================================== diagnostics
    def _health(self, now: float) -> HealthState:
        s = self._settings
        est = self._last_est
        disorder = self._disorder
        return HealthState(
            index_loaded=self._localizer is not None, index_error=self._index_error, index_retry_s=s["index_retry_s"],
            uptime_s=now - self._t_start, frame_age_s=_age(now, self._t_frame), processed_age_s=_age(now, self._t_processed),
            camera_info_expected=bool(s["camera_info_topic"]), camera_info_age_s=_age(now, self._t_camera_info),
            fix_age_s=_age(now, self._t_fix), error_age_s=_age(now, self._last_error_t if self._last_error else None),
            last_error=self._last_error, loss_ratio=self._timeline.loss_ratio(),
            disorder_age_s=_age(now, disorder[1] if disorder else None), disorder=disorder[0] if disorder else "",
            publishers=self._camera_publishers, last_status=est.status if est is not None else "",
            last_sigma_m=float(est.sigma_m) if est is not None else math.nan,
            last_score=float(est.score) if est is not None else math.nan,
        )  # fmt: skip

    def _health_limits(self) -> HealthLimits:
        s = self._settings
        return HealthLimits(frame_timeout_s=s["frame_timeout_s"], camera_info_timeout_s=s["camera_info_timeout_s"],
                            fix_timeout_s=s["fix_timeout_s"], starved_s=s["starved_s"],
                            error_window_s=_INPUT_WARN_WINDOW_S, lost_frames_warn=s["lost_frames_warn"])  # fmt: skip

    def _localizer_values(self) -> dict[str, Any]:
        s = self._settings
        loc = self._localizer
        values: dict[str, Any] = {
            "index_dir": s["index_dir"] or "<default>",
            "index_in_use": self._loaded_index or "<none>",
            "rate_hz": self._rate.rate(),
            "input_rate_hz": self._input_rate.rate(),
            "frames_received": self._mailbox.received,
            "frames_dropped": self._mailbox.dropped,
            "frames_processed": self._counters["processed"],
            "frames_without_index": self._counters["without_index"],
            "published_fixes": self._counters["published_fixes"],
            "errors": self._counters["errors"],
            "resets": self._counters["resets"],
            "time_jump_resets": self._counters["time_jump_resets"],
            "slow_frames": self._counters["slow_frames"],
            "rss_mib": rss_mib(),
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
        if self._last_error:
            values["last_error"] = self._last_error
        if self._gps_input is not None:
            values.update(gps_input_sent=self._gps_input.sent, gps_input_rate_hz=self._gps_rate.rate())
        return values

    def _inputs_status(self, now: float) -> tuple[int, str, dict[str, Any]]:
        s = self._settings
        imu, compass, alt = self._fresh(self._imu, s["heading_timeout_s"]), self._fresh(self._compass, s["heading_timeout_s"]), \
            self._fresh(self._altitude, s["altitude_timeout_s"])  # fmt: skip
        heading = imu.heading_deg if imu is not None else compass
        inputs: dict[str, Any] = {
            "camera_topic": self._camera_resolved,
            "camera_qos": s["camera_qos"] + ("" if self._image_sub_reliable is None else
                                             (" -> RELIABLE" if self._image_sub_reliable else " -> BEST_EFFORT")),
            "camera_publishers": self._camera_publishers,
            "frames_malformed": self._counters["malformed"],
            "frames_out_of_order": self._timeline.out_of_order,
            "frames_lost_in_transport": self._timeline.missed_total,
            "frame_period_s": self._timeline.period_s(),
            "camera_info": self._camera_state,
            "camera_info_rejected": self._counters["camera_info_rejected"],
            "gnss_prior": self._gnss_state,
            "gnss_rejected": self._counters["gnss_rejected"],
            "heading": "none" if heading is None else f"{heading:.1f} deg",
            "altitude": "none" if alt is None else f"{alt:.1f} m",
            "tf": self._tf_state,
            "frame_stamps": self._stamp_clock,
            "max_image_megapixels": s["max_image_megapixels"],
        }
        level, message = DiagnosticStatus.OK[0], "inputs ok"
        if self._last_input_error is not None:
            inputs["last_input_error"] = self._last_input_error[0]
            if now - self._last_input_error[1] <= _INPUT_WARN_WINDOW_S:
                level, message = DiagnosticStatus.WARN[0], self._last_input_error[0]
        return level, message, inputs

    def _publish_diagnostics(self) -> None:
        if self._closing:
            return
        now = time.monotonic()
        level, message = assess(self._health(now), self._health_limits())
        in_level, in_msg, inputs = self._inputs_status(now)
        name = self.get_fully_qualified_name()
        hw = self._localizer.index.fingerprint if self._localizer is not None else "no index"
        arr = conv.make_diagnostic_array(
            self.get_clock().now().to_msg(),
            [(f"{name}: localizer", hw, level, message, self._localizer_values()), (f"{name}: inputs", hw, in_level, in_msg, inputs)],
        )
        self._pub_diag.publish(arr)

    def create_subscription(self, *args: Any, **kwargs: Any) -> Any:
        """Every subscription of this node is made without rclpy's default QoS-event handlers.

        With rmw_fastrtps (Jazzy), any event handler on a subscription whose reader receives a stream
        (the camera's, even the incompatible-QoS one alone) made the executor's wait return ~1,500-2,400
        times a second with nothing ready: the MultiThreadedExecutor's main thread rebuilt its wait set
        in Python that often, 40-70 % of a core and GIL time that the Localizer's thread needs (the
        soak's 2-4 s frames). Without them ~54 wait sets a second (docs/ros.md, Slow frames). What is
        lost is rclpy's log line for a publisher with incompatible QoS; ``camera_qos: auto`` matches
        the camera's reliability, and a silent camera is a diagnostics WARN.
        """
        kwargs.setdefault("event_callbacks", SubscriptionEventCallbacks(use_default_callbacks=False))
        return super().create_subscription(*args, **kwargs)

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
        "Large raw frames from a best-effort camera driver: export FASTRTPS_DEFAULT_PROFILES_FILE="
        "config/fastdds_large_frames.xml for the driver and the node (docs/ros.md, Transport).",
        "",
        "parameters:",
    ]
    for spec in all_param_specs():
        lines.append(f"  {spec.name} (default {spec.default!r}): {spec.description}")
    return "\n".join(lines)


def _ignore_signals_while_closing() -> None:
    """Under ``ros2 launch`` a Ctrl-C reaches the node twice (the terminal's SIGINT and launch's own):
    the second must not interrupt the cleanup with a KeyboardInterrupt traceback."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def main(args: list[str] | None = None) -> int:
    """Entry point of ``foenet_node``: spin a FoenetNode on a MultiThreadedExecutor; always clean up."""
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in own or "--help" in own:
        print(usage())
        return 0
    limit_malloc_arenas(2)  # before rclpy and DDS start their threads (see foenet_ros/ros/heap.py)
    try:
        rclpy.init(args=args)
    except _rclpy_impl.RCLError as exc:  # malformed --ros-args: one line, no traceback
        print(f"foenet_node: invalid ROS arguments: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    node = None
    executor = None
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
        _ignore_signals_while_closing()
        try:
            if executor is not None:
                executor.shutdown(timeout_sec=2.0)
            if node is not None:
                node.destroy_node()
            if rclpy.ok():
                rclpy.shutdown()
        except (KeyboardInterrupt, ExternalShutdownException, _rclpy_impl.RCLError):
            pass
    return rc


if __name__ == "__main__":
    sys.exit(main())
