"""Autopilot feeds: a GeoEstimate propagated to "now", and its MAVLink ``GPS_INPUT`` / PX4 fields.

Autopilots want a GNSS-like stream at a steady rate (ArduPilot treats a GPS as healthy only
with an average interval under ~215 ms; 5 Hz is the default here), while fixes arrive at the
inference rate (0.5-5 Hz) and ~0.2-1 s late. So the node sends at a fixed rate, each message
carrying the newest estimate *propagated to the send time* with a constant-velocity model, and
the propagation's uncertainty added to the covariance (:func:`propagate`):

    x(now) = x(t_capture) + v * age        P(now) = P + age^2 * P_v + q(age) * I

with ``q(age) = sigma_a^2 age^4 / 4`` (white acceleration) and, without a velocity from the
tracker, ``P_v = (unknown_speed_sigma)^2 I``. Older than ``stale_s``: NO_FIX.

GPS_INPUT field mapping (:func:`gps_input_fields`):

* ``fix_type``: 3 (3D) for verified/tracked estimates with a known height, 2 (2D) without a
  height (and for retrieval-only estimates when ``send_retrieval`` is opted in), 1 (NO_FIX) when
  lost, retrieval-only (by default) or stale;
* ``lat``/``lon`` in 1e-7 deg; ``alt`` = AMSL metres (ellipsoidal altitude minus the geoid separation);
* ``horiz_accuracy`` = sqrt of the larger eigenvalue of the propagated covariance (1-sigma along
  the worst axis, m); ``vert_accuracy`` = the altitude sigma; ``hdop``/``vdop`` = accuracy / UERE;
* ``vn``/``ve`` from the tracker velocity (``vd`` ignored); ``ignore_flags`` mark what is unknown;
* ``time_usec`` = the time the position is valid for (capture stamp + age, Unix us);
  ``time_week``/``time_week_ms`` = its GPS time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .outputs import FIX_STATUSES, cov_xy, has_position

# GPS epoch (1980-01-06) in Unix seconds, and GPS - UTC leap seconds (constant since 2017).
_GPS_EPOCH_UNIX = 315_964_800
GPS_LEAP_SECONDS = 18

# MAVLink GPS_INPUT_IGNORE_FLAG bits (common.xml), spelled out so nothing here imports pymavlink.
IGNORE_ALT = 1
IGNORE_HDOP = 2
IGNORE_VDOP = 4
IGNORE_VEL_HORIZ = 8
IGNORE_VEL_VERT = 16
IGNORE_SPEED_ACCURACY = 32
IGNORE_HORIZONTAL_ACCURACY = 64
IGNORE_VERTICAL_ACCURACY = 128

FIX_NONE = 1  # GPS_FIX_TYPE_NO_FIX (0 would mean "no GPS connected")
FIX_2D = 2
FIX_3D = 3


@dataclass(frozen=True)
class GpsInputConfig:
    """Settings of the GPS_INPUT stream (node parameters ``mavlink_*``).

    Attributes:
        url: pymavlink connection string: ``udpout:HOST:PORT`` (to a flight controller or a
            MAVLink router), ``udpin:0.0.0.0:PORT``, ``tcp:HOST:PORT`` or a serial device
            ``/dev/ttyACM0,921600``.
        rate_hz: messages per second, steady (ArduPilot wants >= 5 Hz from a GPS).
        gps_id: instance id (0 for GPS1).
        source_system, source_component: our MAVLink ids (default: the vehicle's system 1,
            component 197 = MAV_COMP_ID_VISUAL_INERTIAL_ODOMETRY).
        satellites_visible: reported with a fix (ArduPilot's pre-arm/EKF checks want >= 6); 0 without.
        uere_m: user-equivalent range error used to turn accuracies into DOPs (hdop = hacc / uere).
        alt_sigma_m: 1-sigma of the altitude when known (m).
        geoid_separation_m: ellipsoid minus MSL height (EGM96 ``N``) at the map, metres.
        speed_accuracy_mps: reported speed accuracy when the tracker gives a velocity.
        send_yaw: also send the heading (GPS yaw); leave off unless the camera is fixed to the body.
        yaw_offset_deg: body heading = image-up heading + this (used with ``send_yaw``).
        send_retrieval: retrieval-only estimates become a 2D fix (opt-in; default NO_FIX).
    """

    url: str = "udpout:127.0.0.1:14550"
    rate_hz: float = 5.0
    gps_id: int = 0
    source_system: int = 1
    source_component: int = 197
    satellites_visible: int = 10
    uere_m: float = 1.0
    alt_sigma_m: float = 5.0
    geoid_separation_m: float = 0.0
    speed_accuracy_mps: float = 1.0
    send_yaw: bool = False
    yaw_offset_deg: float = 0.0
    send_retrieval: bool = False


@dataclass(frozen=True)
class PropagationConfig:
    """How an estimate is carried forward to the send time.

    Attributes:
        accel_sigma: white-acceleration noise of the flight (m/s^2; the Localizer's coast value).
        unknown_speed_sigma_mps: 1-sigma speed assumed when the tracker gives no velocity.
        stale_s: an estimate older than this is not sent as a fix (NO_FIX instead).
    """

    accel_sigma: float = 5.0
    unknown_speed_sigma_mps: float = 10.0
    stale_s: float = 2.0


@dataclass(frozen=True)
class Propagated:
    """A GeoEstimate carried forward by ``age_s`` seconds (duck-types the GeoEstimate fields the
    GPS_INPUT and PX4 field builders read)."""

    status: str
    lat: float
    lon: float
    x: float
    y: float
    alt_m: float
    heading_deg: float
    cov_xy: np.ndarray
    sigma_m: float
    velocity_xy: tuple[float, float] | None
    age_s: float
    stale: bool


def propagate(est: Any, age_s: float, cfg: PropagationConfig = PropagationConfig(), frame: Any = None) -> Propagated:
    """Carry ``est`` forward by ``age_s`` seconds (see the module docstring).

    Args:
        est: a GeoEstimate (any object with its fields).
        age_s: now minus the frame's capture time, seconds (negative is treated as 0).
        cfg: noise model and staleness.
        frame: the index's GeoFrame, to turn the moved grid position back into lat/lon exactly;
            without it a local spherical approximation is used.
    """
    age = max(0.0, float(age_s)) if math.isfinite(float(age_s)) else math.inf
    status = str(getattr(est, "status", "lost"))
    nan = math.nan
    if not has_position(est):
        return Propagated(status, nan, nan, nan, nan, nan, nan, np.full((2, 2), nan), math.inf, None, age, True)
    x, y = float(est.x), float(est.y)
    P = cov_xy(est)
    vel = getattr(est, "velocity_xy", None)
    v = np.asarray(vel, float)[:2] if vel is not None and np.all(np.isfinite(np.asarray(vel, float))) else None
    stale = not age <= cfg.stale_s
    a = min(age, cfg.stale_s) if math.isfinite(age) else cfg.stale_s
    if v is not None:
        Pv = np.asarray(getattr(est, "cov_velocity", None) if getattr(est, "cov_velocity", None) is not None
                        else np.diag([1.0, 1.0]), float)  # fmt: skip
        if Pv.shape != (2, 2) or not np.all(np.isfinite(Pv)):
            Pv = np.eye(2)
        dx, dy = float(v[0]) * a, float(v[1]) * a
    else:
        Pv = np.eye(2) * cfg.unknown_speed_sigma_mps**2
        dx = dy = 0.0
    P = P + a * a * Pv + np.eye(2) * (cfg.accel_sigma**2 * a**4 / 4.0)
    lat, lon = float(est.lat), float(est.lon)
    if dx or dy:
        if frame is not None:
            lo, la = frame.to_lonlat(x + dx, y + dy)
            lon, lat = float(lo), float(la)
        else:  # local sphere: metres -> degrees (grid ~ true north)
            lat += math.degrees(dy / 6_378_137.0)
            lon += math.degrees(dx / (6_378_137.0 * max(1e-6, math.cos(math.radians(lat)))))
    sigma = float(math.sqrt(max(0.0, float(np.linalg.eigvalsh(P).max()))))
    return Propagated(status, lat, lon, x + dx, y + dy, float(getattr(est, "alt_m", nan)), float(getattr(est, "heading_deg", nan)),
                      P, sigma, None if v is None else (float(v[0]), float(v[1])), age, stale)  # fmt: skip


def gps_time(unix_s: float) -> tuple[int, int]:
    """``(week, ms_of_week)`` GPS time of a Unix timestamp (seconds)."""
    gps_s = float(unix_s) - _GPS_EPOCH_UNIX + GPS_LEAP_SECONDS
    week = int(gps_s // 604_800)
    return week, int(round((gps_s - week * 604_800) * 1000.0)) % 604_800_000


def horizontal_accuracy_m(cov: Any) -> float:
    """1-sigma horizontal accuracy (m): sqrt of the larger eigenvalue of a 2x2 covariance (inf if unknown)."""
    c = np.asarray(cov, float) if cov is not None else np.full((2, 2), np.nan)
    if c.shape != (2, 2) or not np.all(np.isfinite(c)):
        return math.inf
    return float(math.sqrt(max(0.0, float(np.linalg.eigvalsh(0.5 * (c + c.T)).max()))))


def fix_type(est: Any, send_retrieval: bool = False) -> int:
    """GPS_INPUT ``fix_type`` of an estimate (or a :class:`Propagated` one): see the module docstring."""
    status = str(getattr(est, "status", "lost"))
    if getattr(est, "stale", False) or not has_position(est):
        return FIX_NONE
    has_alt = math.isfinite(float(getattr(est, "alt_m", math.nan)))
    if status in FIX_STATUSES:
        return FIX_3D if has_alt else FIX_2D
    if status == "retrieval" and send_retrieval:
        return FIX_2D
    return FIX_NONE


def gps_input_fields(est: Any, stamp_unix_s: float, cfg: GpsInputConfig = GpsInputConfig(),
                     ground_altitude_m: float = 0.0) -> dict[str, Any]:
    """Keyword arguments of ``mav.gps_input_send`` for one (propagated) estimate.

    Args:
        est: a GeoEstimate or a :class:`Propagated` one.
        stamp_unix_s: the time the position is valid for, Unix seconds.
        cfg: stream settings.
        ground_altitude_m: ellipsoidal height of the map's ground plane (node parameter
            ``ground_altitude_m``); the estimate's height above ground is added.
    """
    week, week_ms = gps_time(stamp_unix_s)
    fields: dict[str, Any] = {
        "time_usec": int(round(stamp_unix_s * 1e6)),
        "gps_id": int(cfg.gps_id),
        "ignore_flags": 0,
        "time_week_ms": week_ms,
        "time_week": week,
        "fix_type": FIX_NONE,
        "lat": 0,
        "lon": 0,
        "alt": 0.0,
        "hdop": 99.99,
        "vdop": 99.99,
        "vn": 0.0,
        "ve": 0.0,
        "vd": 0.0,
        "speed_accuracy": 0.0,
        "horiz_accuracy": 0.0,
        "vert_accuracy": 0.0,
        "satellites_visible": 0,
        "yaw": 0,
    }
    ftype = fix_type(est, cfg.send_retrieval)
    if ftype == FIX_NONE:
        fields["ignore_flags"] = 0xFF
        return fields
    ignore = IGNORE_VEL_VERT
    hacc = horizontal_accuracy_m(getattr(est, "cov_xy", None))
    if not math.isfinite(hacc):
        sigma = float(getattr(est, "sigma_m", math.inf))
        hacc = sigma if math.isfinite(sigma) else 1.0e3
    alt_above_ground = float(getattr(est, "alt_m", math.nan))
    has_alt = math.isfinite(alt_above_ground)
    fields.update(
        lat=int(round(float(est.lat) * 1e7)),
        lon=int(round(float(est.lon) * 1e7)),
        horiz_accuracy=float(hacc),
        hdop=float(min(99.99, hacc / cfg.uere_m)),
        satellites_visible=int(cfg.satellites_visible),
        fix_type=ftype,
    )
    if has_alt:
        fields["alt"] = float(ground_altitude_m + alt_above_ground - cfg.geoid_separation_m)
        fields["vert_accuracy"] = float(cfg.alt_sigma_m)
        fields["vdop"] = float(min(99.99, cfg.alt_sigma_m / cfg.uere_m))
    else:
        ignore |= IGNORE_ALT | IGNORE_VDOP | IGNORE_VERTICAL_ACCURACY
    vel = getattr(est, "velocity_xy", None)
    if vel is not None and np.all(np.isfinite(np.asarray(vel, float))):
        ve, vn = (float(v) for v in np.asarray(vel, float)[:2])
        fields.update(ve=ve, vn=vn, speed_accuracy=float(cfg.speed_accuracy_mps))
    else:
        ignore |= IGNORE_VEL_HORIZ | IGNORE_SPEED_ACCURACY
    heading = getattr(est, "heading_deg", None)
    if cfg.send_yaw and heading is not None and math.isfinite(float(heading)):
        cdeg = int(round(((float(heading) + cfg.yaw_offset_deg) % 360.0) * 100.0))
        fields["yaw"] = 36000 if cdeg == 0 else cdeg  # 0 means "unknown" in GPS_INPUT
    fields["ignore_flags"] = ignore
    return fields


def px4_aux_fields(est: Any, timestamp_us: int, timestamp_sample_us: int, ground_altitude_amsl_m: float,
                   alt_sigma_m: float, source_id: int, source: int = 2) -> dict[str, Any]:
    """Fields of PX4 ``AuxGlobalPosition`` (>= 1.17; ``VehicleGlobalPosition`` in 1.16) for an estimate.

    ``timestamp`` is the publish time, ``timestamp_sample`` the frame's *capture* time (what EKF2
    uses to fuse the measurement at the right point of its delayed horizon), both in the
    node clock's microseconds. Unknowns are NaN.
    """
    alt = float(getattr(est, "alt_m", math.nan))
    sigma = float(getattr(est, "sigma_m", math.nan))
    return {
        "timestamp": int(timestamp_us),
        "timestamp_sample": int(timestamp_sample_us),
        "id": int(source_id),
        "source": int(source),
        "lat": float(est.lat),
        "lon": float(est.lon),
        "alt": ground_altitude_amsl_m + alt if math.isfinite(alt) else math.nan,
        "eph": sigma if math.isfinite(sigma) else math.nan,
        "epv": float(alt_sigma_m) if math.isfinite(alt) else math.nan,
        # VehicleGlobalPosition-only fields
        "lat_lon_valid": True,
        "alt_valid": math.isfinite(alt),
    }
