"""Message conversions: ROS images <-> numpy, CameraInfo -> intrinsics, GeoEstimate -> ROS messages.

No cv_bridge needed: raw ``sensor_msgs/Image`` buffers become numpy *views* (row padding in
``step`` and the big-endian flag honoured), colour conversions that numpy cannot do as a view
(YUV 4:2:2, Bayer demosaicing, compressed JPEG/PNG) go through OpenCV. Where ``cv_bridge`` is
importable it can be used instead (``image_to_rgb(msg, use_cv_bridge=True)``); it is imported lazily.

Conventions (docs/ARCHITECTURE.md):

* images leave this module as ``uint8`` **RGB** ``(H, W, 3)``; OpenCV's BGR never escapes;
* our headings are compass degrees (clockwise from true north, of the image-up direction);
  ROS messages carry REP-103 ENU yaw: ``yaw_enu = pi/2 - radians(heading)``;
* the ``map`` frame is a true-north ENU local tangent plane (east, north, up) whose origin is a
  chosen point of the map (``OutputConfig.origin_xy``, given in the map's metric UTM frame).
  Positions are converted exactly (UTM -> WGS84 -> ECEF -> topocentric ENU, pyproj), so they agree
  with the true-north yaw; the UTM *grid* is turned against true north by the meridian
  convergence (up to ~3 deg at zone edges), so plain UTM offsets would not. Without
  ``OutputConfig.frame`` (tests, legacy callers) the map axes fall back to plain UTM offsets;
* covariances are in m^2, ENU order (east, north, up); the estimate's grid covariance and
  velocity are rotated into the map frame.

Every malformed input raises :class:`~foenet_ros.errors.ImageError` or
:class:`~foenet_ros.errors.CameraError` with the reason, so the node can count and report it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np

from foenet_ros.errors import CameraError, ImageError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Image encodings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoding:
    channels: int
    dtype: str  # numpy base dtype ("u1" or "u2"); the byte order comes from msg.is_bigendian


# Names as in sensor_msgs/image_encodings.hpp.
_ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(3, "u1"),
    "bgr8": _Encoding(3, "u1"),
    "rgba8": _Encoding(4, "u1"),
    "bgra8": _Encoding(4, "u1"),
    "rgb16": _Encoding(3, "u2"),
    "bgr16": _Encoding(3, "u2"),
    "mono8": _Encoding(1, "u1"),
    "8UC1": _Encoding(1, "u1"),
    "8UC3": _Encoding(3, "u1"),  # cv_bridge convention: an 8UC3 image is BGR
    "mono16": _Encoding(1, "u2"),
    "16UC1": _Encoding(1, "u2"),
    "yuv422": _Encoding(2, "u1"),  # UYVY byte order
    "uyvy": _Encoding(2, "u1"),
    "yuv422_yuy2": _Encoding(2, "u1"),  # YUYV byte order
    "yuyv": _Encoding(2, "u1"),
    "bayer_rggb8": _Encoding(1, "u1"),
    "bayer_bggr8": _Encoding(1, "u1"),
    "bayer_gbrg8": _Encoding(1, "u1"),
    "bayer_grbg8": _Encoding(1, "u1"),
    "bayer_rggb16": _Encoding(1, "u2"),
    "bayer_bggr16": _Encoding(1, "u2"),
    "bayer_gbrg16": _Encoding(1, "u2"),
    "bayer_grbg16": _Encoding(1, "u2"),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)


def _bayer_code(encoding: str) -> int:
    """OpenCV demosaicing code (to RGB) for a ROS Bayer encoding.

    OpenCV names Bayer patterns after the 2nd row/2nd column 2x2 block, ROS after the
    top-left one, so ROS ``rggb`` is OpenCV ``BG`` (the same table cv_bridge uses).
    """
    import cv2

    pattern = encoding.split("_")[1][:4]
    return {
        "rggb": cv2.COLOR_BayerBG2RGB,
        "bggr": cv2.COLOR_BayerRG2RGB,
        "gbrg": cv2.COLOR_BayerGR2RGB,
        "grbg": cv2.COLOR_BayerGB2RGB,
    }[pattern]


def _bytes_per_pixel(enc: _Encoding) -> int:
    return enc.channels * (2 if enc.dtype == "u2" else 1)


def image_to_numpy(msg: Any) -> np.ndarray:
    """View a ``sensor_msgs/Image`` as a numpy array in its native encoding.

    Returns ``(H, W)`` for single-channel encodings (mono, Bayer) and ``(H, W, C)`` otherwise
    (YUV 4:2:2 gives ``C = 2``); dtype ``uint8`` or native-endian ``uint16``. The array is a view
    on ``msg.data`` where possible (no copy), so copy it if you keep it after the message.

    Raises:
        ImageError: unknown encoding, zero size, empty data, ``step`` smaller than a row, or a
            data length that is not ``step * height``.
    """
    encoding = str(msg.encoding)
    enc = _ENCODINGS.get(encoding)
    if enc is None:
        raise ImageError(
            f"unknown image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(or publish sensor_msgs/CompressedImage and set image_transport: compressed)"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    data = msg.data
    n_bytes = len(data)
    if n_bytes == 0:
        raise ImageError("image message has empty data")
    row_bytes = width * _bytes_per_pixel(enc)
    if step < row_bytes:
        raise ImageError(
            f"step {step} is smaller than one row ({width} px x {_bytes_per_pixel(enc)} B = {row_bytes} B) "
            f"for encoding {encoding}"
        )
    if n_bytes != step * height:
        raise ImageError(
            f"data length {n_bytes} B does not match step*height = {step}*{height} = {step * height} B"
        )
    if enc.channels == 2 and width % 2:
        raise ImageError(f"{encoding} needs an even width (2 pixels share U and V), got {width}")
    buf = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    if enc.dtype == "u2":
        wire = np.dtype((">" if bool(msg.is_bigendian) else "<") + "u2")
        buf = np.ascontiguousarray(buf).view(wire)
        if wire != np.dtype(np.uint16):
            buf = buf.astype(np.uint16)  # byte-swap into native order (a copy)
    if enc.channels == 1:
        return buf.reshape(height, width)
    return buf.reshape(height, width, enc.channels)


def image_to_rgb(msg: Any, use_cv_bridge: bool = False) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to a contiguous ``uint8`` RGB array ``(H, W, 3)``.

    16-bit data is scaled to 8 bits by dropping the low byte (``v >> 8``). With
    ``use_cv_bridge=True`` and cv_bridge importable, cv_bridge does the conversion instead.

    Raises:
        ImageError: see :func:`image_to_numpy`, or a cv_bridge conversion failure.
    """
    import cv2

    if use_cv_bridge:
        bridge = _cv_bridge()
        if bridge is not None:
            try:
                return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
            except Exception as exc:  # cv_bridge raises CvBridgeError and TypeErrors
                raise ImageError(f"cv_bridge could not convert {msg.encoding!r}: {exc}") from exc
    encoding = str(msg.encoding)
    arr = image_to_numpy(msg)
    if arr.dtype == np.uint16 and not encoding.startswith("bayer"):
        arr = (arr >> 8).astype(np.uint8)
    if encoding == "rgb8" or encoding == "rgb16":
        out = arr
    elif encoding in ("bgr8", "bgr16", "8UC3"):
        out = arr[..., ::-1]
    elif encoding == "rgba8":
        out = arr[..., :3]
    elif encoding == "bgra8":
        out = arr[..., 2::-1]
    elif encoding in ("mono8", "8UC1", "mono16", "16UC1"):
        out = np.repeat(arr[..., None], 3, axis=2)
    elif encoding in ("yuv422", "uyvy"):
        out = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_UYVY)
    elif encoding in ("yuv422_yuy2", "yuyv"):
        out = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_YUY2)
    elif encoding.startswith("bayer_"):
        out = cv2.cvtColor(np.ascontiguousarray(arr), _bayer_code(encoding))
        if out.dtype == np.uint16:
            out = (out >> 8).astype(np.uint8)
    else:  # pragma: no cover - _ENCODINGS and this dispatch are kept in sync
        raise ImageError(f"no RGB conversion for encoding {encoding!r}")
    return np.ascontiguousarray(out)


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

    enc = _ENCODINGS.get(encoding)
    if enc is None:
        raise ImageError(f"unknown image encoding {encoding!r}")
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[..., None]
    height, width, channels = arr.shape
    if channels != enc.channels:
        raise ImageError(f"{encoding} needs {enc.channels} channel(s), array has {channels}")
    dtype = np.dtype((">" if is_bigendian else "<") + enc.dtype)
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
    msg.is_bigendian = bool(is_bigendian) and enc.dtype == "u2"
    msg.data = buf.tobytes()
    return msg


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to ``uint8`` RGB ``(H, W, 3)``.

    Raises:
        ImageError: empty data, a ``compressedDepth`` stream, or bytes OpenCV cannot decode.
    """
    import cv2

    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise ImageError(f"compressedDepth images are not camera frames (format {fmt!r})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError("compressed image message has empty data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"could not decode compressed image (format {fmt!r}, {data.size} B): not JPEG/PNG?")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
# Camera
# --------------------------------------------------------------------------------------------

_DISTORTION_MODELS = ("", "plumb_bob", "rational_polynomial")


def camera_info_to_intrinsics(msg: Any) -> Any:
    """Turn a ``sensor_msgs/CameraInfo`` into a validated ``geo.CameraIntrinsics``.

    Binning divides the image size, focal lengths and principal point; a set ROI crops them.
    ``plumb_bob``/``rational_polynomial`` coefficients are passed through as OpenCV ``dist``.

    Raises:
        CameraError: NaN/inf/zero/negative K entries, a zero image size, or an unsupported
            distortion model (e.g. ``equidistant`` fisheye).
    """
    from foenet_ros.geo import CameraIntrinsics

    k = [float(v) for v in msg.k]
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    width, height = int(msg.width), int(msg.height)
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        raise CameraError(f"CameraInfo K has non-finite entries: fx={fx} fy={fy} cx={cx} cy={cy}")
    if fx <= 0 or fy <= 0:
        raise CameraError(f"CameraInfo K has a zero or negative focal length (fx={fx}, fy={fy}): uncalibrated camera?")
    if width <= 0 or height <= 0:
        raise CameraError(f"CameraInfo has zero image size ({width}x{height})")
    model = str(msg.distortion_model)
    dist = tuple(float(v) for v in msg.d)
    if model not in _DISTORTION_MODELS:
        raise CameraError(f"distortion model {model!r} is not supported; use plumb_bob or rational_polynomial")
    if not all(math.isfinite(v) for v in dist):
        raise CameraError(f"CameraInfo distortion coefficients are not finite: {dist}")
    roi = msg.roi
    if int(roi.width) > 0 and int(roi.height) > 0:
        cx -= float(roi.x_offset)
        cy -= float(roi.y_offset)
        width, height = int(roi.width), int(roi.height)
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    if bx > 1 or by > 1:
        fx, cx, width = fx / bx, cx / bx, width // bx
        fy, cy, height = fy / by, cy / by, height // by
    intr = CameraIntrinsics(width=width, height=height, fx=fx, fy=fy, cx=cx, cy=cy, dist=dist)
    intr.validate()
    return intr


# --------------------------------------------------------------------------------------------
# Headings and orientations
# --------------------------------------------------------------------------------------------


def heading_to_enu_yaw(heading_deg: float) -> float:
    """Compass heading (deg, clockwise from north) -> REP-103 ENU yaw (rad, CCW from east) in (-pi, pi]."""
    a = math.radians(90.0 - float(heading_deg))
    yaw = math.atan2(math.sin(a), math.cos(a))
    return math.pi if yaw <= -math.pi + 1e-12 else yaw  # atan2 may return -pi; keep the half-open range


def enu_yaw_to_heading(yaw_rad: float) -> float:
    """REP-103 ENU yaw (rad, CCW from east) -> compass heading (deg, clockwise from north) in [0, 360)."""
    h = (90.0 - math.degrees(float(yaw_rad))) % 360.0
    return 0.0 if h >= 360.0 else h


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """Quaternion ``(x, y, z, w)`` of intrinsic Z-Y-X (yaw, pitch, roll) Euler angles in radians."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


def rpy_from_quaternion(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    """(roll, pitch, yaw) in radians (Z-Y-X convention) from a quaternion; normalises it first.

    Raises:
        ValueError: a zero-length or non-finite quaternion.
    """
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError(f"invalid quaternion ({x}, {y}, {z}, {w})")
    x, y, z, w = x / n, y / n, z / n, w / n
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return roll, pitch, yaw


def imu_orientation(msg: Any) -> tuple[float, float, float] | None:
    """``(heading_deg, roll_deg, pitch_deg)`` of the body from a ``sensor_msgs/Imu`` in ENU (REP-103/145).

    ``heading_deg`` is the compass heading of the body x (forward) axis; roll and pitch follow
    REP-103 FLU (positive pitch = nose down). Returns ``None`` when the IMU says it has no
    orientation (``orientation_covariance[0] == -1``) or the quaternion is invalid.
    """
    if len(msg.orientation_covariance) and float(msg.orientation_covariance[0]) == -1.0:
        return None
    q = msg.orientation
    try:
        roll, pitch, yaw = rpy_from_quaternion(q.x, q.y, q.z, q.w)
    except ValueError:
        return None
    return enu_yaw_to_heading(yaw), math.degrees(roll), math.degrees(pitch)


# --------------------------------------------------------------------------------------------
# GeoEstimate -> ROS messages
# --------------------------------------------------------------------------------------------

# Variance reported for a quantity we do not estimate (roll/pitch in a pose): large, not -1,
# because MAVROS and robot_localization treat any value >= 0 as a variance.
UNKNOWN_VARIANCE = 1.0e6

_GOOD_STATUSES = ("verified", "tracked")


@dataclass(frozen=True)
class OutputConfig:
    """How estimates become messages (filled from node parameters).

    Attributes:
        map_frame: frame id of the ENU map frame (REP-105 ``map``).
        base_frame: frame id of the vehicle (``child_frame_id`` of Odometry; NavSatFix frame).
        origin_xy: ``(x, y)`` in the index's metric (UTM) frame, metres, of the map frame origin.
        frame: the index's :class:`~foenet_ros.geo.GeoFrame`; with it the map frame is the
            true-north ENU tangent plane at ``origin_xy`` (see the module docstring), without it
            plain UTM offsets from ``origin_xy`` (grid axes: exact only on the zone's central meridian).
        ground_altitude_m: ellipsoidal height (WGS84, m) of the map's ground plane; the estimate's
            height above ground is added to it for NavSatFix altitudes.
        alt_sigma_m: 1-sigma of the altitude (m) when the altitude is known.
        yaw_sigma_deg: 1-sigma of the yaw when the estimate does not carry its own.
        publish_retrieval: publish fixes of ``retrieval`` status (unverified best tile) or not.
    """

    map_frame: str = "map"
    base_frame: str = "base_link"
    origin_xy: tuple[float, float] = (0.0, 0.0)
    ground_altitude_m: float = 0.0
    alt_sigma_m: float = 5.0
    yaw_sigma_deg: float = 10.0
    publish_retrieval: bool = True
    frame: Any = None


@lru_cache(maxsize=8)
def _enu_transformer(frame: Any, origin_xy: tuple[float, float]) -> Any:
    """pyproj pipeline WGS84 lon/lat/h (deg, m) -> topocentric ENU (m) at the origin (on the ellipsoid)."""
    from pyproj import Transformer

    lon0, lat0 = frame.to_lonlat(float(origin_xy[0]), float(origin_xy[1]))
    return Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad +step +proj=cart +ellps=WGS84 "
        f"+step +proj=topocentric +ellps=WGS84 +lon_0={lon0!r} +lat_0={lat0!r} +h_0=0"
    )


def map_xy(cfg: OutputConfig, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Metric (UTM) frame ``x, y`` (m, scalars or arrays) -> map frame east/north (m) per ``cfg``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if cfg.frame is None:
        return x - cfg.origin_xy[0], y - cfg.origin_xy[1]
    lon, lat = cfg.frame.to_lonlat(x, y)
    e, n, _ = _enu_transformer(cfg.frame, tuple(float(v) for v in cfg.origin_xy)).transform(
        np.asarray(lon, np.float64), np.asarray(lat, np.float64), np.zeros(np.shape(lon)))
    return np.asarray(e), np.asarray(n)


def map_jacobian(cfg: OutputConfig, x: float, y: float) -> np.ndarray:
    """``(2, 2)`` d(east, north)/d(x, y) at a metric-frame point: rotates grid vectors (covariances,
    velocities) into the map frame (the meridian convergence, and the UTM scale factor)."""
    if cfg.frame is None or not (math.isfinite(x) and math.isfinite(y)):
        return np.eye(2)
    e, n = map_xy(cfg, np.array([x, x + 1.0, x]), np.array([y, y, y + 1.0]))
    return np.array([[e[1] - e[0], e[2] - e[0]], [n[1] - n[0], n[2] - n[0]]])


def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(float(v))


def estimate_is_usable(est: Any, cfg: OutputConfig = OutputConfig()) -> bool:
    """Whether an estimate carries a position worth publishing (not ``lost``, finite lat/lon)."""
    status = str(getattr(est, "status", "lost"))
    if status == "lost" or not (_finite(getattr(est, "lat", None)) and _finite(getattr(est, "lon", None))):
        return False
    return status in _GOOD_STATUSES or (status == "retrieval" and cfg.publish_retrieval)


def _cov_xy(est: Any) -> np.ndarray:
    raw = getattr(est, "cov_xy", None)
    cov = np.full((2, 2), np.nan) if raw is None else np.asarray(raw, float)
    if cov.shape != (2, 2) or not np.all(np.isfinite(cov)):
        sigma = float(getattr(est, "sigma_m", float("nan")))
        sigma = sigma if math.isfinite(sigma) else 1.0e3
        cov = np.diag([sigma**2, sigma**2])
    return 0.5 * (cov + cov.T)  # symmetric by construction, never by luck


def _yaw_sigma_rad(est: Any, cfg: OutputConfig) -> float:
    s = getattr(est, "heading_sigma_deg", None)
    return math.radians(float(s) if _finite(s) else cfg.yaw_sigma_deg)


def estimate_altitude(est: Any, cfg: OutputConfig) -> float:
    """Ellipsoidal altitude (m) of the estimate, NaN when its height above ground is unknown."""
    alt = getattr(est, "alt_m", None)
    return cfg.ground_altitude_m + float(alt) if _finite(alt) else float("nan")


def estimate_to_navsatfix(est: Any, header: Any, cfg: OutputConfig = OutputConfig()) -> Any:
    """``sensor_msgs/NavSatFix`` from a GeoEstimate.

    * status: ``STATUS_FIX`` for verified/tracked/retrieval estimates, ``STATUS_NO_FIX`` when lost;
    * altitude: ellipsoidal (``ground_altitude_m`` + height above ground), NaN when unknown;
    * covariance: ENU m^2, row-major, E/N block from the estimate's ``cov_xy``; type
      ``DIAGONAL_KNOWN`` when the E/N block is diagonal, ``APPROXIMATED`` otherwise (it is a
      filter estimate), ``UNKNOWN`` for a lost estimate.
    """
    from sensor_msgs.msg import NavSatFix, NavSatStatus

    msg = NavSatFix()
    msg.header = header
    msg.header.frame_id = cfg.base_frame
    usable = estimate_is_usable(est, cfg)
    msg.status.status = NavSatStatus.STATUS_FIX if usable else NavSatStatus.STATUS_NO_FIX
    msg.status.service = 0  # not a satellite service
    if not usable:
        msg.latitude = msg.longitude = msg.altitude = float("nan")
        msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
        return msg
    msg.latitude, msg.longitude = float(est.lat), float(est.lon)
    msg.altitude = estimate_altitude(est, cfg)
    cov = _cov_xy(est)
    alt_var = cfg.alt_sigma_m**2 if math.isfinite(msg.altitude) else UNKNOWN_VARIANCE
    msg.position_covariance = [
        float(cov[0, 0]), float(cov[0, 1]), 0.0,
        float(cov[1, 0]), float(cov[1, 1]), 0.0,
        0.0, 0.0, float(alt_var),
    ]  # fmt: skip
    diagonal = abs(cov[0, 1]) <= 1e-9 * max(1.0, abs(cov[0, 0]), abs(cov[1, 1]))
    msg.position_covariance_type = (
        NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN if diagonal else NavSatFix.COVARIANCE_TYPE_APPROXIMATED
    )
    return msg


def _pose_and_cov(est: Any, cfg: OutputConfig) -> tuple[Any, list[float]]:
    from geometry_msgs.msg import Pose

    pose = Pose()
    e, n = map_xy(cfg, float(est.x), float(est.y))
    pose.position.x, pose.position.y = float(e), float(n)
    alt = getattr(est, "alt_m", None)
    pose.position.z = float(alt) if _finite(alt) else 0.0
    heading = getattr(est, "heading_deg", None)
    yaw = heading_to_enu_yaw(float(heading)) if _finite(heading) else 0.0
    qx, qy, qz, qw = quaternion_from_rpy(0.0, 0.0, yaw)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    J = map_jacobian(cfg, float(est.x), float(est.y))
    cov_xy = J @ _cov_xy(est) @ J.T  # grid axes -> true-north map axes
    cov = np.zeros((6, 6))
    cov[:2, :2] = cov_xy
    cov[2, 2] = cfg.alt_sigma_m**2 if _finite(alt) else UNKNOWN_VARIANCE
    cov[3, 3] = cov[4, 4] = UNKNOWN_VARIANCE  # roll, pitch: not estimated
    cov[5, 5] = _yaw_sigma_rad(est, cfg) ** 2 if _finite(heading) else UNKNOWN_VARIANCE
    return pose, [float(v) for v in cov.ravel()]


def estimate_to_pose(est: Any, header: Any, cfg: OutputConfig = OutputConfig()) -> Any:
    """``geometry_msgs/PoseWithCovarianceStamped`` in the ENU map frame.

    Position: east/north in the map frame (true-north ENU at ``origin_xy``, see the module
    docstring), z = height above the map's ground plane.
    Orientation: yaw = ENU yaw of the image-up direction (roll = pitch = 0 with unknown variance).
    Covariance (6x6, x y z roll pitch yaw): E/N block from ``cov_xy``.
    """
    from geometry_msgs.msg import PoseWithCovarianceStamped

    msg = PoseWithCovarianceStamped()
    msg.header = header
    msg.header.frame_id = cfg.map_frame
    msg.pose.pose, msg.pose.covariance = _pose_and_cov(est, cfg)
    return msg


def estimate_to_odometry(est: Any, header: Any, cfg: OutputConfig = OutputConfig()) -> Any:
    """``nav_msgs/Odometry``: the pose as in :func:`estimate_to_pose`, twist from the tracker.

    The twist is expressed in ``child_frame_id`` (the body frame, per nav_msgs), so the map-frame
    velocity is rotated by the yaw; an unknown velocity gets zero twist with unknown variance.
    """
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.header = header
    msg.header.frame_id = cfg.map_frame
    msg.child_frame_id = cfg.base_frame
    msg.pose.pose, msg.pose.covariance = _pose_and_cov(est, cfg)
    vel = getattr(est, "velocity_xy", None)
    tcov = np.zeros((6, 6))
    tcov[2, 2] = tcov[3, 3] = tcov[4, 4] = tcov[5, 5] = UNKNOWN_VARIANCE
    if vel is not None and np.all(np.isfinite(np.asarray(vel, float))):
        # the tracker's velocity is along the UTM grid axes: rotate it into the true-north map axes
        J = map_jacobian(cfg, float(est.x), float(est.y))
        ve, vn = (float(v) for v in J @ np.asarray(vel, float)[:2])
        heading = getattr(est, "heading_deg", None)
        yaw = heading_to_enu_yaw(float(heading)) if _finite(heading) else 0.0
        c, s = math.cos(yaw), math.sin(yaw)
        msg.twist.twist.linear.x = c * ve + s * vn
        msg.twist.twist.linear.y = -s * ve + c * vn
        vcov = getattr(est, "cov_velocity", None)
        vcov = np.asarray(vcov, float) if vcov is not None else None
        if vcov is not None and vcov.shape == (2, 2) and np.all(np.isfinite(vcov)):
            rot = np.array([[c, s], [-s, c]])
            tcov[:2, :2] = rot @ J @ vcov @ J.T @ rot.T
        else:
            tcov[0, 0] = tcov[1, 1] = UNKNOWN_VARIANCE
    else:
        tcov[0, 0] = tcov[1, 1] = UNKNOWN_VARIANCE
    msg.twist.covariance = [float(v) for v in tcov.ravel()]
    return msg


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
