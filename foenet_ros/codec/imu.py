"""Orientations: ``sensor_msgs/Imu`` -> heading + camera attitude (+ their 1-sigma), and the angle helpers.

Conventions (docs/ARCHITECTURE.md):

* our headings are compass degrees (clockwise from TRUE north) of the image-up / body-forward
  direction; ROS messages carry REP-103 ENU yaw: ``yaw_enu = pi/2 - radians(heading)``;
* IMU orientations are the FLU body (x forward = image-up for a strapdown nadir camera,
  y left, z up) in ENU (REP-103/145). The camera looks along body -z;
* the camera attitude handed to the Localizer is ``(roll_deg, pitch_deg)`` of
  :class:`~foenet_ros.geo.CameraPose`: a positive ``pitch_deg`` tilts the view forward, which is a
  nose-*up*, i.e. negative REP-103, pitch of the strapdown body; roll is the REP-103 roll.
  :func:`attitude_to_quaternion` and :func:`quaternion_to_attitude` are exact inverses, and the
  simulator writes its IMU with the former (tested against ``CameraPose.R_world_from_cam``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence


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


def quaternion_multiply(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """Hamilton product ``a * b`` of ``(x, y, z, w)`` quaternions."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def attitude_to_quaternion(heading_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> tuple[float, float, float, float]:
    """ENU quaternion ``(x, y, z, w)`` of the FLU body for a true compass heading and camera pitch/roll.

    ``q = Rz(yaw) * Ry(pitch_rep103) * Rx(roll)`` with ``yaw = 90 - heading``, ``pitch_rep103 = -pitch_deg``.
    """
    return quaternion_from_rpy(math.radians(roll_deg), math.radians(-pitch_deg), math.radians(90.0 - heading_deg))


def quaternion_to_attitude(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    """Inverse of :func:`attitude_to_quaternion`: ``(heading_deg in [0, 360), pitch_deg, roll_deg)``.

    Raises:
        ValueError: a zero-length or non-finite quaternion.
    """
    roll, pitch, yaw = rpy_from_quaternion(x, y, z, w)
    return enu_yaw_to_heading(yaw), -math.degrees(pitch), math.degrees(roll)


@dataclass(frozen=True)
class ImuReading:
    """What an ``Imu`` message tells the Localizer.

    Attributes:
        heading_deg: true compass heading of the body x axis, [0, 360).
        pitch_deg, roll_deg: camera attitude of a strapdown nadir camera (see the module docstring).
        attitude_sigma_deg: 1-sigma of roll/pitch from ``orientation_covariance`` (the larger of
            the two), NaN when the IMU does not state it (all zeros, negative, NaN).
        heading_sigma_deg: 1-sigma of the yaw, NaN when unknown.
    """

    heading_deg: float
    pitch_deg: float
    roll_deg: float
    attitude_sigma_deg: float = math.nan
    heading_sigma_deg: float = math.nan

    @property
    def attitude(self) -> tuple[float, float]:
        """``(roll_deg, pitch_deg)`` as ``Localizer.localize(attitude=...)`` takes it."""
        return (self.roll_deg, self.pitch_deg)


def _sigma_deg(var_rad2: float) -> float:
    return math.degrees(math.sqrt(var_rad2)) if math.isfinite(var_rad2) and var_rad2 > 0 else math.nan


def imu_sigmas(cov: Sequence[float]) -> tuple[float, float]:
    """``(attitude_sigma_deg, heading_sigma_deg)`` from a row-major 3x3 ``orientation_covariance`` (rad^2).

    NaN for whatever is unknown: ``cov[0] == -1`` (no orientation at all), an all-zero matrix
    ("covariance unknown" per sensor_msgs/Imu), non-positive or non-finite variances.
    """
    c = [float(v) for v in cov] if cov is not None and len(cov) == 9 else []
    if not c or c[0] == -1.0 or not any(v != 0.0 for v in c):
        return math.nan, math.nan
    roll_s, pitch_s = _sigma_deg(c[0]), _sigma_deg(c[4])
    att = max(roll_s, pitch_s) if math.isfinite(roll_s) and math.isfinite(pitch_s) else math.nan
    return att, _sigma_deg(c[8])


def imu_reading(msg: Any) -> ImuReading | None:
    """Heading, camera attitude and their sigmas from a ``sensor_msgs/Imu`` (ENU, REP-103/145).

    Returns ``None`` when the IMU says it has no orientation (``orientation_covariance[0] == -1``)
    or the quaternion is zero / not finite.
    """
    cov = list(msg.orientation_covariance) if getattr(msg, "orientation_covariance", None) is not None else []
    if cov and float(cov[0]) == -1.0:
        return None
    q = msg.orientation
    try:
        heading, pitch, roll = quaternion_to_attitude(float(q.x), float(q.y), float(q.z), float(q.w))
    except (ValueError, TypeError):
        return None
    att_sigma, hdg_sigma = imu_sigmas(cov)
    return ImuReading(heading, pitch, roll, att_sigma, hdg_sigma)
