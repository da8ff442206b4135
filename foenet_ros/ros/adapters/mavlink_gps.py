"""MAVLink ``GPS_INPUT``: feed GeoEstimates to an autopilot as if they came from a GPS receiver.

ArduPilot: set ``GPS1_TYPE = 14`` (MAV) and route the link to the flight controller (e.g.
``SERIALn_PROTOCOL = 2``); EKF3 then fuses it like a GPS (it needs a 3D fix, enough "satellites"
and a horizontal accuracy under its limits). PX4: GPS_INPUT is handled by the ``mavlink``
module into ``sensor_gps`` (set ``EKF2_GPS_CTRL`` as for a GPS).

Field mapping (one message per estimate, at most ``rate_hz``):

* ``fix_type``: 3 (3D) for verified/tracked estimates with a known height, 2 (2D) without a
  height and for coarse ``retrieval`` estimates (autopilots that need a 3D fix ignore those),
  1 (no fix) when lost;
* ``lat``/``lon`` in 1e-7 deg; ``alt`` = AMSL metres (ellipsoidal altitude minus the geoid
  separation);
* ``horiz_accuracy`` = sqrt of the larger eigenvalue of ``cov_xy`` (1-sigma along the worst
  axis, metres); ``vert_accuracy`` = the altitude sigma; ``hdop``/``vdop`` = accuracy / UERE;
* ``vn``/``ve`` from the tracker velocity (``vd`` ignored); the ``ignore_flags`` mark every field
  we do not know;
* ``time_usec`` = the frame stamp (Unix us); ``time_week``/``time_week_ms`` = GPS time of it.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# GPS epoch (1980-01-06) in Unix seconds, and GPS - UTC leap seconds (constant since 2017).
_GPS_EPOCH_UNIX = 315_964_800
GPS_LEAP_SECONDS = 18

# MAVLink GPS_INPUT_IGNORE_FLAG bits (common.xml), spelled out so this module imports without pymavlink.
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
    """Settings of the GPS_INPUT sender (node parameters ``mavlink_*``).

    Attributes:
        url: pymavlink connection string: ``udpout:HOST:PORT`` (to a flight controller or a
            MAVLink router), ``udpin:0.0.0.0:PORT``, ``tcp:HOST:PORT`` or a serial device
            ``/dev/ttyACM0,921600`` (``,BAUD`` optional).
        rate_hz: most messages per second (ArduPilot expects 5-10 Hz from a GPS).
        gps_id: instance id (0 for GPS1).
        source_system, source_component: our MAVLink ids (default: the vehicle's system 1,
            component 197 = MAV_COMP_ID_VISUAL_INERTIAL_ODOMETRY).
        satellites_visible: reported with a fix (ArduPilot's pre-arm/EKF checks want >= 6);
            0 without one.
        uere_m: user-equivalent range error used to turn accuracies into DOPs (hdop = hacc / uere).
        alt_sigma_m: 1-sigma of the altitude when known (m).
        geoid_separation_m: ellipsoid minus MSL height (EGM96 ``N``) at the map, metres.
        speed_accuracy_mps: reported speed accuracy when the tracker gives a velocity.
        send_yaw: also send the heading (GPS yaw); leave off unless the camera is fixed to the body.
        yaw_offset_deg: body heading = image-up heading + this (used with ``send_yaw``).
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


def gps_time(unix_s: float) -> tuple[int, int]:
    """``(week, ms_of_week)`` GPS time of a Unix timestamp (seconds)."""
    gps_s = float(unix_s) - _GPS_EPOCH_UNIX + GPS_LEAP_SECONDS
    week = int(gps_s // 604_800)
    return week, int(round((gps_s - week * 604_800) * 1000.0)) % 604_800_000


def horizontal_accuracy_m(cov_xy: Any) -> float:
    """1-sigma horizontal accuracy (m): sqrt of the larger eigenvalue of a 2x2 covariance (inf if unknown)."""
    cov = np.asarray(cov_xy, float) if cov_xy is not None else np.full((2, 2), np.nan)
    if cov.shape != (2, 2) or not np.all(np.isfinite(cov)):
        return math.inf
    return float(math.sqrt(max(0.0, float(np.linalg.eigvalsh(0.5 * (cov + cov.T)).max()))))


def gps_input_fields(est: Any, stamp_unix_s: float, cfg: GpsInputConfig, ground_altitude_m: float = 0.0) -> dict[str, Any]:
    """Keyword arguments of ``mav.gps_input_send`` for one GeoEstimate.

    Args:
        est: a ``localize.GeoEstimate``.
        stamp_unix_s: the frame's time, Unix seconds.
        cfg: sender settings.
        ground_altitude_m: ellipsoidal height of the map's ground plane (the node's
            ``ground_altitude_m`` parameter); the estimate's height above ground is added.
    """
    status = str(getattr(est, "status", "lost"))
    lat, lon = float(getattr(est, "lat", math.nan)), float(getattr(est, "lon", math.nan))
    has_pos = status != "lost" and math.isfinite(lat) and math.isfinite(lon)
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
    ignore = IGNORE_VEL_VERT
    if not has_pos:
        fields["ignore_flags"] = 0xFF
        return fields
    hacc = horizontal_accuracy_m(getattr(est, "cov_xy", None))
    if not math.isfinite(hacc):
        sigma = float(getattr(est, "sigma_m", math.inf))
        hacc = sigma if math.isfinite(sigma) else 1.0e3
    alt_above_ground = float(getattr(est, "alt_m", math.nan))
    has_alt = math.isfinite(alt_above_ground)
    fields.update(
        lat=int(round(lat * 1e7)),
        lon=int(round(lon * 1e7)),
        horiz_accuracy=float(hacc),
        hdop=float(min(99.99, hacc / cfg.uere_m)),
        satellites_visible=int(cfg.satellites_visible),
        fix_type=FIX_3D if (has_alt and status in ("verified", "tracked")) else FIX_2D,
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


class GpsInputSender:
    """Rate-limited GPS_INPUT sender over a pymavlink connection.

    ``send()`` returns whether a message went out (False when rate limited). Close it with
    ``close()`` (or use it as a context manager).
    """

    def __init__(self, cfg: GpsInputConfig = GpsInputConfig(), connection: Any = None) -> None:
        if cfg.rate_hz <= 0:
            from foenet_ros.errors import ConfigError

            raise ConfigError(f"mavlink rate_hz must be > 0, got {cfg.rate_hz}")
        self.cfg = cfg
        if connection is None:
            # GPS_INPUT's yaw is a MAVLink 2 extension field: ask pymavlink for the v2 dialect
            # (ArduPilot and PX4 both speak MAVLink 2). pymavlink reads this process-wide setting.
            os.environ.setdefault("MAVLINK20", "1")
            from pymavlink import mavutil

            connection = mavutil.mavlink_connection(
                cfg.url, source_system=cfg.source_system, source_component=cfg.source_component,
                autoreconnect=True, dialect="common",
            )  # fmt: skip
        self._conn = connection
        # a MAVLink 1 dialect has no extension fields: send only what this dialect knows
        send = connection.mav.gps_input_send
        try:
            self._known = set(inspect.signature(send).parameters)
        except (TypeError, ValueError):
            self._known = None
        self._last_sent = -math.inf
        self.sent = 0
        self.skipped = 0
        log.info("GPS_INPUT -> %s at <= %.1f Hz (gps_id %d)", cfg.url, cfg.rate_hz, cfg.gps_id)

    def send(self, est: Any, stamp_unix_s: float, ground_altitude_m: float = 0.0, now: float | None = None) -> bool:
        """Send one GPS_INPUT for ``est`` unless the last one went out less than ``1/rate_hz`` ago."""
        now = time.monotonic() if now is None else now
        if now - self._last_sent < 1.0 / self.cfg.rate_hz:
            self.skipped += 1
            return False
        fields = gps_input_fields(est, stamp_unix_s, self.cfg, ground_altitude_m)
        if self._known is not None and "kwargs" not in self._known:
            fields = {k: v for k, v in fields.items() if k in self._known}
        self._conn.mav.gps_input_send(**fields)
        self._last_sent = now
        self.sent += 1
        return True

    def close(self) -> None:
        """Close the MAVLink connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "GpsInputSender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
