"""MAVLink ``GPS_INPUT``: feed GeoEstimates to an autopilot as if they came from a GPS receiver.

ArduPilot: set ``GPS1_TYPE = 14`` (MAV) and route the link to the flight controller (e.g.
``SERIALn_PROTOCOL = 2``); EKF3 then fuses it like a GPS (it needs a 3D fix, enough "satellites"
and a horizontal accuracy under its limits; ``GPS1_DELAY_MS`` up to 250 ms). PX4: GPS_INPUT is
handled by the ``mavlink`` module into ``sensor_gps`` (``EKF2_GPS_CTRL``, ``EKF2_GPS_DELAY``).

The node calls :meth:`GpsInputSender.send` from a steady timer at ``mavlink_rate_hz`` with the
newest estimate propagated to the send time; the field mapping and the propagation are the
ROS-free :mod:`foenet_ros.codec.autopilot` (re-exported here).
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from typing import Any

from foenet_ros.codec.autopilot import (  # noqa: F401  (re-exported: the adapter's public names)
    FIX_2D,
    FIX_3D,
    FIX_NONE,
    GPS_LEAP_SECONDS,
    IGNORE_ALT,
    IGNORE_HDOP,
    IGNORE_HORIZONTAL_ACCURACY,
    IGNORE_SPEED_ACCURACY,
    IGNORE_VDOP,
    IGNORE_VEL_HORIZ,
    IGNORE_VEL_VERT,
    IGNORE_VERTICAL_ACCURACY,
    GpsInputConfig,
    gps_input_fields,
    gps_time,
    horizontal_accuracy_m,
)

log = logging.getLogger(__name__)


class GpsInputSender:
    """GPS_INPUT sender over a pymavlink connection.

    The caller paces it (the node: a steady-clock timer at ``cfg.rate_hz``); ``send()`` only
    refuses a message less than half a period after the previous one (a burst guard that timer
    jitter never trips) and returns whether it went out. Close it with ``close()`` (or use it as
    a context manager).
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
        """Send one GPS_INPUT for ``est`` (valid at ``stamp_unix_s``) unless the last one went out
        less than half a period ago."""
        now = time.monotonic() if now is None else now
        if now - self._last_sent < 0.5 / self.cfg.rate_hz:
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
