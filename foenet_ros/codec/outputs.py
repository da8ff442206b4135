"""GeoEstimate -> output fields: NavSatFix, pose, odometry twist, TF, and which estimates are a fix.

The node builds rclpy messages and the replay builds rosbags messages *from these fields*, so
both publish the same numbers for the same estimate (test_codec_parity.py).

Status policy (what a consumer can act on):

============ ================= ===================== =================== ================
status       NavSatFix status  pose/odometry/path/TF GPS_INPUT fix_type  PX4 aux position
============ ================= ===================== =================== ================
verified     STATUS_FIX        published             3D (2D w/o height)  published
tracked      STATUS_FIX        published             3D (2D w/o height)  published
retrieval    STATUS_NO_FIX     not published         NO_FIX              not published
lost         STATUS_NO_FIX     not published         NO_FIX              not published
============ ================= ===================== =================== ================

``publish_retrieval`` (opt-in, default off) turns a retrieval-only estimate into a 2D fix with
its (large) covariance on every output: useful to see coarse positions in RViz, dangerous to
fuse. A NO_FIX NavSatFix has NaN latitude/longitude/altitude and covariance type UNKNOWN.

The ``map`` frame is a true-north ENU local tangent plane (east, north, up) whose origin is a
chosen point of the map (``OutputConfig.origin_xy``, in the map's metric UTM frame). Positions
are converted exactly (UTM -> WGS84 -> ECEF -> topocentric ENU, pyproj), so they agree with the
true-north yaw; grid covariances and velocities are rotated by :func:`map_jacobian`. Without
``OutputConfig.frame`` (tests) the map axes are plain UTM offsets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .imu import heading_to_enu_yaw, quaternion_from_rpy, quaternion_multiply

# Variance reported for a quantity we do not estimate (roll/pitch in a pose): large, not -1,
# because MAVROS and robot_localization treat any value >= 0 as a variance.
UNKNOWN_VARIANCE = 1.0e6

# sensor_msgs/NavSatStatus and NavSatFix constants (spelled out: no message import here)
STATUS_NO_FIX = -1
STATUS_FIX = 0
COVARIANCE_TYPE_UNKNOWN = 0
COVARIANCE_TYPE_APPROXIMATED = 1
COVARIANCE_TYPE_DIAGONAL_KNOWN = 2

FIX_STATUSES = ("verified", "tracked")


@dataclass(frozen=True)
class OutputConfig:
    """How estimates become messages (node parameters; replay uses the same defaults).

    Attributes:
        map_frame: frame id of the ENU map frame (REP-105 ``map``).
        base_frame: frame id of the vehicle (``child_frame_id`` of Odometry and TF; NavSatFix frame).
        origin_xy: ``(x, y)`` in the index's metric (UTM) frame, metres, of the map frame origin.
        frame: the index's :class:`~foenet_ros.geo.GeoFrame` (true-north ENU map frame); None =
            plain UTM offsets from ``origin_xy``.
        ground_altitude_m: ellipsoidal height (WGS84, m) of the map's ground plane; the estimate's
            height above ground is added to it for NavSatFix altitudes.
        alt_sigma_m: 1-sigma of the altitude (m) when the altitude is known.
        yaw_sigma_deg: 1-sigma of the yaw when the estimate does not carry its own.
        publish_retrieval: retrieval-only estimates are fixes too (opt-in; see the module docstring).
    """

    map_frame: str = "map"
    base_frame: str = "base_link"
    origin_xy: tuple[float, float] = (0.0, 0.0)
    ground_altitude_m: float = 0.0
    alt_sigma_m: float = 5.0
    yaw_sigma_deg: float = 10.0
    publish_retrieval: bool = False
    frame: Any = None


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def has_position(est: Any) -> bool:
    """Whether the estimate carries a finite position (any status but ``lost``)."""
    return str(getattr(est, "status", "lost")) != "lost" and all(
        _finite(getattr(est, k, None)) for k in ("lat", "lon", "x", "y")
    )


def is_fix(est: Any, cfg: OutputConfig = OutputConfig()) -> bool:
    """Whether an estimate is published as a position fix (the status policy of the module docstring)."""
    status = str(getattr(est, "status", "lost"))
    if not has_position(est):
        return False
    return status in FIX_STATUSES or (status == "retrieval" and cfg.publish_retrieval)


# --------------------------------------------------------------------------- the map frame


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


# --------------------------------------------------------------------------- fields


def cov_xy(est: Any) -> np.ndarray:
    """The estimate's 2x2 grid covariance (m^2), symmetric; ``sigma_m^2 I`` (or 1e6 I) when not finite."""
    raw = getattr(est, "cov_xy", None)
    cov = np.full((2, 2), np.nan) if raw is None else np.asarray(raw, float)
    if cov.shape != (2, 2) or not np.all(np.isfinite(cov)):
        sigma = float(getattr(est, "sigma_m", math.nan))
        sigma = sigma if math.isfinite(sigma) else 1.0e3
        cov = np.diag([sigma**2, sigma**2])
    return 0.5 * (cov + cov.T)  # symmetric by construction, never by luck


def estimate_altitude(est: Any, cfg: OutputConfig) -> float:
    """Ellipsoidal altitude (m) of the estimate, NaN when its height above ground is unknown."""
    alt = getattr(est, "alt_m", None)
    return cfg.ground_altitude_m + float(alt) if _finite(alt) else math.nan


@dataclass(frozen=True)
class NavSatFixFields:
    """The fields of a ``sensor_msgs/NavSatFix`` (header aside; frame id = ``cfg.base_frame``)."""

    status: int
    latitude: float
    longitude: float
    altitude: float
    position_covariance: tuple[float, ...]
    position_covariance_type: int


def navsatfix_fields(est: Any, cfg: OutputConfig = OutputConfig()) -> NavSatFixFields:
    """NavSatFix fields of a GeoEstimate.

    * status ``STATUS_FIX`` for a fix (:func:`is_fix`), else ``STATUS_NO_FIX`` with NaN position;
    * altitude ellipsoidal (``ground_altitude_m`` + height above ground), NaN when unknown;
    * covariance ENU m^2, row-major, E/N block from the estimate's grid ``cov_xy`` rotated into
      true-north axes; type ``DIAGONAL_KNOWN`` when that block is diagonal, ``APPROXIMATED``
      otherwise, ``UNKNOWN`` for no fix.
    """
    if not is_fix(est, cfg):
        nan = math.nan
        return NavSatFixFields(STATUS_NO_FIX, nan, nan, nan, (0.0,) * 9, COVARIANCE_TYPE_UNKNOWN)
    alt = estimate_altitude(est, cfg)
    J = map_jacobian(cfg, float(est.x), float(est.y))
    cov = J @ cov_xy(est) @ J.T
    cov = 0.5 * (cov + cov.T)
    alt_var = cfg.alt_sigma_m**2 if math.isfinite(alt) else UNKNOWN_VARIANCE
    covariance = (float(cov[0, 0]), float(cov[0, 1]), 0.0, float(cov[1, 0]), float(cov[1, 1]), 0.0, 0.0, 0.0, float(alt_var))
    diagonal = abs(cov[0, 1]) <= 1e-9 * max(1.0, abs(cov[0, 0]), abs(cov[1, 1]))
    return NavSatFixFields(
        STATUS_FIX, float(est.lat), float(est.lon), alt, covariance,
        COVARIANCE_TYPE_DIAGONAL_KNOWN if diagonal else COVARIANCE_TYPE_APPROXIMATED,
    )  # fmt: skip


@dataclass(frozen=True)
class PoseFields:
    """A pose in the map frame: position (m), orientation quaternion ``(x, y, z, w)``, 6x6 covariance
    (x, y, z, rotX, rotY, rotZ) row-major."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    covariance: tuple[float, ...]


def _yaw_sigma_rad(est: Any, cfg: OutputConfig) -> float:
    s = getattr(est, "heading_sigma_deg", None)
    return math.radians(float(s) if _finite(s) else cfg.yaw_sigma_deg)


def pose_fields(est: Any, cfg: OutputConfig = OutputConfig()) -> PoseFields:
    """Map-frame pose of an estimate that has a position.

    Position: east/north in the map frame, z = height above the map's ground plane (0 when unknown,
    with variance 1e6). Orientation: yaw = ENU yaw of the image-up direction (roll = pitch = 0 with
    variance 1e6); yaw variance from the estimate or ``yaw_sigma_deg`` (1e6 when the heading is unknown).
    """
    e, n = map_xy(cfg, float(est.x), float(est.y))
    alt = getattr(est, "alt_m", None)
    heading = getattr(est, "heading_deg", None)
    yaw = heading_to_enu_yaw(float(heading)) if _finite(heading) else 0.0
    J = map_jacobian(cfg, float(est.x), float(est.y))
    cov = np.zeros((6, 6))
    cov[:2, :2] = J @ cov_xy(est) @ J.T  # grid axes -> true-north map axes
    cov[:2, :2] = 0.5 * (cov[:2, :2] + cov[:2, :2].T)
    cov[2, 2] = cfg.alt_sigma_m**2 if _finite(alt) else UNKNOWN_VARIANCE
    cov[3, 3] = cov[4, 4] = UNKNOWN_VARIANCE  # roll, pitch: not estimated
    cov[5, 5] = _yaw_sigma_rad(est, cfg) ** 2 if _finite(heading) else UNKNOWN_VARIANCE
    return PoseFields(
        (float(e), float(n), float(alt) if _finite(alt) else 0.0),
        quaternion_from_rpy(0.0, 0.0, yaw),
        tuple(float(v) for v in cov.ravel()),
    )


@dataclass(frozen=True)
class TwistFields:
    """Odometry twist in the body frame (``child_frame_id``): linear x/y (m/s), 6x6 covariance."""

    linear: tuple[float, float, float]
    covariance: tuple[float, ...]


def twist_fields(est: Any, cfg: OutputConfig = OutputConfig()) -> TwistFields:
    """The tracker velocity rotated into the body frame (nav_msgs convention); unknown = zero with variance 1e6."""
    tcov = np.zeros((6, 6))
    tcov[2, 2] = tcov[3, 3] = tcov[4, 4] = tcov[5, 5] = UNKNOWN_VARIANCE
    vel = getattr(est, "velocity_xy", None)
    lin = (0.0, 0.0, 0.0)
    if vel is not None and np.all(np.isfinite(np.asarray(vel, float))):
        J = map_jacobian(cfg, float(est.x), float(est.y))
        ve, vn = (float(v) for v in J @ np.asarray(vel, float)[:2])
        heading = getattr(est, "heading_deg", None)
        yaw = heading_to_enu_yaw(float(heading)) if _finite(heading) else 0.0
        c, s = math.cos(yaw), math.sin(yaw)
        lin = (c * ve + s * vn, -s * ve + c * vn, 0.0)
        vcov = getattr(est, "cov_velocity", None)
        vcov = np.asarray(vcov, float) if vcov is not None else None
        if vcov is not None and vcov.shape == (2, 2) and np.all(np.isfinite(vcov)):
            rot = np.array([[c, s], [-s, c]])
            tcov[:2, :2] = rot @ J @ vcov @ J.T @ rot.T
        else:
            tcov[0, 0] = tcov[1, 1] = UNKNOWN_VARIANCE
    else:
        tcov[0, 0] = tcov[1, 1] = UNKNOWN_VARIANCE
    return TwistFields(lin, tuple(float(v) for v in tcov.ravel()))


# --------------------------------------------------------------------------- TF


@dataclass(frozen=True)
class TransformFields:
    """A ``geometry_msgs/TransformStamped``: ``parent`` -> ``child``, translation (m), rotation (x, y, z, w)."""

    parent: str
    child: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]


def _quat_conj(q: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return (-q[0], -q[1], -q[2], q[3])


def _rotate(q: tuple[float, float, float, float], v: tuple[float, float, float]) -> tuple[float, float, float]:
    p = quaternion_multiply(quaternion_multiply(q, (v[0], v[1], v[2], 0.0)), _quat_conj(q))
    return (p[0], p[1], p[2])


def normalize_quaternion(q: Any) -> tuple[float, float, float, float]:
    """Unit quaternion; raises ValueError for a zero or non-finite one."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if not math.isfinite(n) or n < 1e-9:
        raise ValueError(f"invalid quaternion ({x}, {y}, {z}, {w})")
    return (x / n, y / n, z / n, w / n)


def map_to_base_transform(pose: PoseFields, cfg: OutputConfig) -> TransformFields:
    """REP-105 ``map -> base_link`` from a map-frame pose (the pose itself)."""
    return TransformFields(cfg.map_frame, cfg.base_frame, pose.position, pose.orientation)


def map_to_odom_transform(pose: PoseFields, odom_to_base: TransformFields, cfg: OutputConfig) -> TransformFields:
    """REP-105 ``map -> odom`` = ``map -> base`` * inverse(``odom -> base``).

    ``odom_to_base`` comes from the odometry source that owns ``odom -> base_link`` (e.g. a local
    robot_localization EKF): with it the map frame corrects the drift of odom, as REP-105 asks.
    """
    q_mb = normalize_quaternion(pose.orientation)
    q_ob = normalize_quaternion(odom_to_base.rotation)
    q_bo = _quat_conj(q_ob)
    t_bo = _rotate(q_bo, tuple(-v for v in odom_to_base.translation))  # base -> odom translation
    q_mo = quaternion_multiply(q_mb, q_bo)
    rt = _rotate(q_mb, t_bo)
    t_mo = tuple(float(p + r) for p, r in zip(pose.position, rt))
    return TransformFields(cfg.map_frame, odom_to_base.parent, t_mo, normalize_quaternion(q_mo))
