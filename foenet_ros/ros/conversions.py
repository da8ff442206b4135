"""rclpy messages <-> our types: a thin layer over :mod:`foenet_ros.codec` (which the bag replay uses too).

Decoding (images, CameraInfo, IMU) and the GeoEstimate -> output *fields* rules live in the
ROS-free codec; this module only builds and reads rclpy message objects around them, so the
node and the replay publish the same numbers for the same estimate. Also here: the builders
only the node needs (Image/CompressedImage for tests and the debug image, markers, the tile
cloud, diagnostics, TF).

Conventions (docs/ARCHITECTURE.md): images leave as ``uint8`` RGB ``(H, W, 3)``; headings are
compass degrees, ROS carries REP-103 ENU yaw; the ``map`` frame is a true-north ENU tangent plane
at ``OutputConfig.origin_xy``; covariances are m^2 in ENU order.

Every malformed input raises :class:`~foenet_ros.errors.ImageError` or
:class:`~foenet_ros.errors.CameraError` with the reason, so the node can count and report it.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Sequence

import numpy as np

from foenet_ros.codec import outputs as _out
from foenet_ros.codec.camera import camera_info_to_intrinsics  # noqa: F401  (re-exported)
from foenet_ros.codec.image import (  # noqa: F401  (re-exported)
    NO_LIMITS,
    SUPPORTED_ENCODINGS,
    DecodeLimits,
    compressed_to_rgb as _compressed_to_rgb,
    encoding_info,
    image_to_numpy,
    image_to_rgb as _image_to_rgb,
)
from foenet_ros.codec.imu import (  # noqa: F401  (re-exported)
    enu_yaw_to_heading,
    heading_to_enu_yaw,
    quaternion_from_rpy,
    rpy_from_quaternion,
)
from foenet_ros.codec.outputs import (  # noqa: F401  (re-exported)
    UNKNOWN_VARIANCE,
    OutputConfig,
    estimate_altitude,
    map_jacobian,
    map_xy,
)
from foenet_ros.errors import ImageError

log = logging.getLogger(__name__)


def image_to_rgb(msg: Any, use_cv_bridge: bool = False, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    """A ``sensor_msgs/Image`` -> contiguous ``uint8`` RGB ``(H, W, 3)`` (:func:`foenet_ros.codec.image.image_to_rgb`).

    With ``use_cv_bridge=True`` and cv_bridge importable, cv_bridge converts instead (after the
    same pixel-budget check).

    Raises:
        ImageError: malformed message, unknown encoding, over the pixel budget, cv_bridge failure.
    """
    if use_cv_bridge:
        bridge = _cv_bridge()
        if bridge is not None:
            limits.check(int(msg.width), int(msg.height), "image")
            try:
                return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
            except Exception as exc:  # cv_bridge raises CvBridgeError and TypeErrors
                raise ImageError(f"cv_bridge could not convert {msg.encoding!r}: {exc}") from exc
    return _image_to_rgb(msg, limits)


def compressed_to_rgb(msg: Any, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` -> ``uint8`` RGB (:func:`foenet_ros.codec.image.compressed_to_rgb`)."""
    return _compressed_to_rgb(msg, limits)


def numpy_to_image(
    array: np.ndarray,
    encoding: str,
    header: Any = None,
    step: int | None = None,
    is_bigendian: bool = False,
) -> Any:
    """Build a ``sensor_msgs/Image`` from an array already in ``encoding``'s layout.

    Args:
        array: ``(H, W)`` or ``(H, W, C)`` ``uint8``/``uint16`` matching ``encoding``
            (YUV 4:2:2 is ``(H, W, 2)``, Bayer is ``(H, W)``).
        encoding: a name from :data:`SUPPORTED_ENCODINGS`.
        header: ``std_msgs/Header`` to copy into the message (default: empty).
        step: row stride in bytes; larger than a row pads each row with zeros (as some drivers do).
        is_bigendian: write 16-bit samples big-endian and set the flag.
    """
    from sensor_msgs.msg import Image

    encoding, n_channels, bps = encoding_info(encoding)
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    height, width, channels = arr.shape
    if channels != n_channels:
        raise ImageError(f"{encoding} needs {n_channels} channel(s), array has {channels}")
    dtype = np.dtype((">" if is_bigendian else "<") + ("u2" if bps == 2 else "u1"))
    row = np.ascontiguousarray(arr.astype(dtype, copy=False)).reshape(height, -1).view(np.uint8)
    row_bytes = row.shape[1]
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageError(f"step {step} is smaller than one row ({row_bytes} B)")
    buf = np.zeros((height, step), np.uint8)
    buf[:, :row_bytes] = row
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.step = height, width, step
    msg.encoding = encoding
    msg.is_bigendian = bool(is_bigendian) and bps == 2
    msg.data = buf.tobytes()
    return msg


def rgb_to_compressed(image: np.ndarray, fmt: str = "jpeg", header: Any = None, quality: int = 90) -> Any:
    """Encode an RGB ``(H, W, 3)`` (or mono ``(H, W)``) ``uint8`` image as a ``CompressedImage``.

    ``format`` follows image_transport's convention (``"rgb8; jpeg compressed bgr8"``).
    """
    import cv2
    from sensor_msgs.msg import CompressedImage

    fmt = fmt.lower()
    if fmt not in ("jpeg", "jpg", "png"):
        raise ImageError(f"unsupported compression {fmt!r}; use 'jpeg' or 'png'")
    img = np.asarray(image)
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ext, params = (".png", []) if fmt == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    ok, enc = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {img.shape} image as {fmt}")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    name = "png" if fmt == "png" else "jpeg"
    msg.format = f"{'mono8' if img.ndim == 2 else 'rgb8'}; {name} compressed {'mono8' if img.ndim == 2 else 'bgr8'}"
    msg.data = enc.tobytes()
    return msg


_CV_BRIDGE: Any = None
_CV_BRIDGE_TRIED = False


def _cv_bridge() -> Any:
    """A cached ``cv_bridge.CvBridge`` or ``None`` when cv_bridge is not importable."""
    global _CV_BRIDGE, _CV_BRIDGE_TRIED
    if not _CV_BRIDGE_TRIED:
        _CV_BRIDGE_TRIED = True
        try:
            from cv_bridge import CvBridge  # type: ignore[import-not-found]

            _CV_BRIDGE = CvBridge()
        except ImportError as exc:
            log.info("cv_bridge not importable (%s); using the numpy image conversion", exc)
    return _CV_BRIDGE


def cv_bridge_available() -> bool:
    """Whether cv_bridge can be imported here."""
    return _cv_bridge() is not None



# --------------------------------------------------------------------------------------------
# Orientations and GeoEstimate -> ROS messages (fields from foenet_ros.codec)
# --------------------------------------------------------------------------------------------


def imu_orientation(msg: Any) -> tuple[float, float, float] | None:
    """``(heading_deg, roll_deg, pitch_deg)`` of the body from a ``sensor_msgs/Imu`` (REP-103 roll/pitch:
    positive pitch = nose down), ``None`` without an orientation. The node itself uses
    :func:`foenet_ros.codec.imu.imu_reading` (camera attitude convention)."""
    from foenet_ros.codec.imu import imu_reading

    r = imu_reading(msg)
    return None if r is None else (r.heading_deg, r.roll_deg, -r.pitch_deg)


def estimate_is_usable(est: Any, cfg: OutputConfig = OutputConfig()) -> bool:
    """Whether an estimate is published as a fix (:func:`foenet_ros.codec.outputs.is_fix`)."""
    return _out.is_fix(est, cfg)


def estimate_to_navsatfix(est: Any, header: Any, cfg: OutputConfig = OutputConfig()) -> Any:
    """``sensor_msgs/NavSatFix`` from a GeoEstimate (:func:`foenet_ros.codec.outputs.navsatfix_fields`)."""
    from sensor_msgs.msg import NavSatFix

    f = _out.navsatfix_fields(est, cfg)
    msg = NavSatFix()
    msg.header = header
    msg.header.frame_id = cfg.base_frame
    msg.status.status = f.status
    msg.status.service = 0  # not a satellite service
    msg.latitude, msg.longitude, msg.altitude = f.latitude, f.longitude, f.altitude
    msg.position_covariance = list(f.position_covariance)
    msg.position_covariance_type = f.position_covariance_type
    return msg


def _pose(f: _out.PoseFields) -> Any:
    from geometry_msgs.msg import Pose

    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = f.position
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = f.orientation
    return pose


def estimate_to_pose(est: Any, header: Any, cfg: OutputConfig = OutputConfig()) -> Any:
    """``geometry_msgs/PoseWithCovarianceStamped`` in the map frame (:func:`foenet_ros.codec.outputs.pose_fields`)."""
    from geometry_msgs.msg import PoseWithCovarianceStamped

    f = _out.pose_fields(est, cfg)
    msg = PoseWithCovarianceStamped()
    msg.header = header
    msg.header.frame_id = cfg.map_frame
    msg.pose.pose = _pose(f)
    msg.pose.covariance = list(f.covariance)
    return msg


def estimate_to_odometry(est: Any, header: Any, cfg: OutputConfig = OutputConfig()) -> Any:
    """``nav_msgs/Odometry``: the pose as in :func:`estimate_to_pose`, twist in the body frame from the tracker."""
    from nav_msgs.msg import Odometry

    f = _out.pose_fields(est, cfg)
    tw = _out.twist_fields(est, cfg)
    msg = Odometry()
    msg.header = header
    msg.header.frame_id = cfg.map_frame
    msg.child_frame_id = cfg.base_frame
    msg.pose.pose = _pose(f)
    msg.pose.covariance = list(f.covariance)
    msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = tw.linear
    msg.twist.covariance = list(tw.covariance)
    return msg


def transform_to_msg(tf: _out.TransformFields, stamp: Any) -> Any:
    """``geometry_msgs/TransformStamped`` from transform fields."""
    from geometry_msgs.msg import TransformStamped

    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = tf.parent
    msg.child_frame_id = tf.child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = tf.translation
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = tf.rotation
    return msg


def odometry_to_transform(msg: Any) -> _out.TransformFields:
    """``odom -> base_link`` from a ``nav_msgs/Odometry`` of the local odometry source."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    return _out.TransformFields(str(msg.header.frame_id) or "odom", str(msg.child_frame_id) or "base_link",
                                (float(p.x), float(p.y), float(p.z)), (float(q.x), float(q.y), float(q.z), float(q.w)))


def append_to_path(path_msg: Any, pose_msg: Any, max_length: int) -> Any:
    """Append a PoseWithCovarianceStamped's pose to a ``nav_msgs/Path`` (keeping the newest ``max_length``)."""
    from geometry_msgs.msg import PoseStamped

    ps = PoseStamped()
    ps.header = pose_msg.header
    ps.pose = pose_msg.pose.pose
    path_msg.header.frame_id = pose_msg.header.frame_id
    path_msg.header.stamp = pose_msg.header.stamp
    poses = list(path_msg.poses)
    poses.append(ps)
    if max_length > 0 and len(poses) > max_length:
        poses = poses[-max_length:]
    path_msg.poses = poses
    return path_msg


def score_color(t: float) -> tuple[float, float, float]:
    """Red (t=0) -> yellow (0.5) -> green (1) for a score normalised to [0, 1]."""
    t = min(1.0, max(0.0, float(t))) if math.isfinite(float(t)) else 0.0
    return (min(1.0, 2.0 * (1.0 - t)), min(1.0, 2.0 * t), 0.0)


def candidate_polygon(cand: Any, polygon_xy: Any = None) -> np.ndarray:
    """Ground outline ``(4, 2)`` (metric frame, m) of a candidate tile.

    Uses ``polygon_xy`` when given (e.g. ``index.tiles.polygons_xy[tile_id]``), else the
    candidate's own ``polygon_xy`` attribute, else the north-up square of ``size_m`` around
    ``center_xy`` (how tiles are cut).
    """
    poly = polygon_xy if polygon_xy is not None else getattr(cand, "polygon_xy", None)
    if poly is not None:
        return np.asarray(poly, float).reshape(-1, 2)
    cx, cy = (float(v) for v in np.asarray(getattr(cand, "center_xy"), float)[:2])
    h = 0.5 * float(getattr(cand, "size_m"))
    return np.array([[cx - h, cy + h], [cx + h, cy + h], [cx + h, cy - h], [cx - h, cy - h]])


def candidates_to_markers(
    candidates: Sequence[Any],
    header: Any,
    cfg: OutputConfig = OutputConfig(),
    ns: str = "candidates",
    polygons: Sequence[Any] | None = None,
) -> Any:
    """``visualization_msgs/MarkerArray``: one closed LINE_STRIP per candidate tile, plus its score as text.

    Starts with a DELETEALL so outlines of the previous frame vanish. Colours: scores are
    normalised across the candidates (best = green, worst = red); the best is drawn thicker.
    ``polygons[i]`` (optional) is candidate ``i``'s ground outline ``(4, 2)``; see
    :func:`candidate_polygon`.
    """
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.header.frame_id = cfg.map_frame
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    if not candidates:
        return out
    scores = np.array([float(getattr(c, "score", 0.0)) for c in candidates])
    lo, hi = float(np.nanmin(scores)), float(np.nanmax(scores))
    best = int(np.nanargmax(scores))
    for i, cand in enumerate(candidates):
        t = 1.0 if hi - lo < 1e-12 else (scores[i] - lo) / (hi - lo)
        r, g, b = score_color(t)
        poly = candidate_polygon(cand, None if polygons is None else polygons[i])
        line = Marker()
        line.header = header
        line.header.frame_id = cfg.map_frame
        line.ns, line.id = ns, 2 * i
        line.type, line.action = Marker.LINE_STRIP, Marker.ADD
        line.pose.orientation.w = 1.0
        line.scale.x = 3.0 if i == best else 1.0  # metres: visible at map scale
        line.color.r, line.color.g, line.color.b, line.color.a = r, g, b, 1.0
        ring = np.vstack([poly, poly[:1]])
        for px, py in zip(*map_xy(cfg, ring[:, 0], ring[:, 1])):
            line.points.append(Point(x=float(px), y=float(py), z=0.0))
        out.markers.append(line)
        text = Marker()
        text.header = header
        text.header.frame_id = cfg.map_frame
        text.ns, text.id = ns, 2 * i + 1
        text.type, text.action = Marker.TEXT_VIEW_FACING, Marker.ADD
        cx, cy = (float(v) for v in np.asarray(getattr(cand, "center_xy"), float)[:2])
        tx, ty = map_xy(cfg, cx, cy)
        text.pose.position.x, text.pose.position.y, text.pose.position.z = float(tx), float(ty), 5.0
        text.pose.orientation.w = 1.0
        text.scale.z = max(2.0, 0.08 * float(getattr(cand, "size_m", 50.0)))
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        text.text = f"#{i + 1} tile {int(getattr(cand, 'tile_id', -1))}: {scores[i]:.3f}"
        out.markers.append(text)
    return out


def tile_centers_to_cloud(
    centers_xy: np.ndarray, header: Any, cfg: OutputConfig = OutputConfig(), sizes_m: np.ndarray | None = None
) -> Any:
    """``sensor_msgs/PointCloud2`` of tile centres in the map frame (fields x, y, z[, size] float32).

    Built with ``sensor_msgs_py.point_cloud2`` where importable, with numpy otherwise (same bytes).
    """
    from sensor_msgs.msg import PointCloud2, PointField

    centers = np.asarray(centers_xy, np.float64).reshape(-1, 2)
    n = centers.shape[0]
    names = ["x", "y", "z"] + (["size"] if sizes_m is not None else [])
    fields = [PointField(name=nm, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, nm in enumerate(names)]
    pts = np.zeros((n, len(names)), np.float32)
    pts[:, 0], pts[:, 1] = map_xy(cfg, centers[:, 0], centers[:, 1])
    if sizes_m is not None:
        pts[:, 3] = np.asarray(sizes_m, np.float32).reshape(-1)
    hdr = header
    hdr.frame_id = cfg.map_frame
    try:
        from sensor_msgs_py import point_cloud2  # type: ignore[import-not-found]

        return point_cloud2.create_cloud(hdr, fields, [tuple(p) for p in pts.tolist()])
    except ImportError:
        pass
    msg = PointCloud2()
    msg.header = hdr
    msg.height, msg.width = 1, n
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * n
    msg.is_dense = True
    msg.data = pts.astype("<f4").tobytes()
    return msg


def cloud_to_xyz(msg: Any) -> np.ndarray:
    """``(N, 3)`` float32 x, y, z of a PointCloud2 with float32 x/y/z fields (for tests and tools)."""
    offs = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(msg.data, np.uint8).reshape(-1, msg.point_step)
    return np.stack(
        [raw[:, offs[k] : offs[k] + 4].copy().view("<f4" if not msg.is_bigendian else ">f4")[:, 0] for k in "xyz"], 1
    ).astype(np.float32)


def make_diagnostic_array(stamp: Any, statuses: Iterable[tuple[str, str, int, str, dict[str, Any]]]) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` from ``(name, hardware_id, level, message, values)`` tuples.

    ``level`` is a ``DiagnosticStatus`` level (OK=0, WARN=1, ERROR=2, STALE=3); values are
    formatted with ``str`` (floats to 4 significant digits).
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    arr = DiagnosticArray()
    arr.header.stamp = stamp
    for name, hw, level, message, values in statuses:
        st = DiagnosticStatus()
        st.level = bytes([int(level)])
        st.name, st.hardware_id, st.message = name, hw, message
        for k, v in values.items():
            st.values.append(KeyValue(key=str(k), value=f"{v:.4g}" if isinstance(v, float) else str(v)))
        arr.status.append(st)
    return arr
