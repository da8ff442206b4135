"""The error budget of a fix and its plausibility: what the stated covariance must include.

A fit's own covariance (the spread of refits over its inliers) only says how well the frame was
matched to the map. The position can be wrong by more than that, for reasons the fit cannot see:

* the map's own absolute accuracy (an orthophoto's georeferencing: decimetres for a survey,
  metres for satellite imagery), recorded per index at build time;
* the IMU's roll/pitch error when the position relies on them: the ground point under the camera
  moves by ``alt * tan(sigma_att)``;
* the flat-ground assumption: terrain relief ``r`` within the footprint shifts the matched ground
  by up to ``r * tan(view angle)``;
* the camera calibration (focal length error) scales the altitude, and with the tilt the position.

They add in quadrature. The "sigma floor" is their sum, not a constant. A fix is also checked for
plausibility -- on the map, at an altitude consistent with the sensors, with a tilt consistent with
the IMU -- before it may be called verified.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BudgetTerms:
    """The 1-sigma terms (metres) added to a fit's covariance, for diagnostics (``est.pose["budget"]``)."""

    fit_m: float
    map_m: float
    attitude_m: float
    terrain_m: float
    calibration_m: float

    def to_json(self) -> dict:
        return {k: round(float(v), 3) for k, v in self.__dict__.items()}


def error_budget(cov_fit: np.ndarray, *, sigma_scale: float, map_accuracy_m: float, alt_m: float,
                 attitude_sigma_deg: float | None, tilt_deg: float, hfov_deg: float, terrain_relief_m: float,
                 calibration_sigma_frac: float, floor_m: float) -> tuple[np.ndarray, BudgetTerms]:
    """The stated covariance (m^2) of a fix: the scaled fit covariance plus the independent terms.

    Args:
        cov_fit: [2, 2] the fit's own covariance (bootstrap), m^2.
        sigma_scale: calibration of the fit covariance (measured: errors vs. bootstrap spread).
        map_accuracy_m: the map's absolute horizontal accuracy (1 sigma), from the index.
        alt_m: camera height above ground (NaN: unknown; the altitude-dependent terms then use 0).
        attitude_sigma_deg: roll/pitch 1-sigma when the position relies on the IMU attitude, else None.
        tilt_deg: the camera tilt from nadir (for the terrain and calibration terms).
        hfov_deg: the camera's horizontal field of view (the terrain term looks at the footprint's edge).
        terrain_relief_m: height differences within the footprint (a DSM's, or the configured value).
        calibration_sigma_frac: relative focal-length uncertainty of the camera calibration.
        floor_m: an absolute lower bound on every sigma (never 0: a fix is never exact).
    """
    cov = np.asarray(cov_fit, dtype=np.float64) * sigma_scale**2
    alt = alt_m if math.isfinite(alt_m) else 0.0
    tilt = math.radians(tilt_deg) if math.isfinite(tilt_deg) else 0.0
    att = alt * math.tan(math.radians(attitude_sigma_deg)) if attitude_sigma_deg is not None else 0.0
    # the matched ground is spread over the footprint: relief displaces it by r tan(angle off nadir)
    view = min(math.radians(80.0), tilt + math.radians(hfov_deg) / 4.0)
    terrain = terrain_relief_m * math.tan(view)
    calib = calibration_sigma_frac * alt * math.tan(tilt)
    extra = map_accuracy_m**2 + att**2 + terrain**2 + calib**2
    cov = cov + np.eye(2) * extra
    # the floor: no direction may claim less than floor_m
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    w = np.maximum(w, floor_m**2)
    cov = (V * w) @ V.T
    fit = math.sqrt(max(float(np.linalg.eigvalsh(np.asarray(cov_fit)).max()), 0.0)) * sigma_scale
    return cov, BudgetTerms(fit, map_accuracy_m, att, terrain, calib)


def on_map(xy: np.ndarray, bounds_xy: tuple[float, float, float, float], margin_m: float) -> bool:
    """The position lies on the map (with ``margin_m``; the camera may look at the map from just outside)."""
    xmin, ymin, xmax, ymax = bounds_xy
    x, y = float(xy[0]), float(xy[1])
    return math.isfinite(x) and math.isfinite(y) and xmin - margin_m <= x <= xmax + margin_m and ymin - margin_m <= y <= ymax + margin_m


def altitude_consistent(alt_est: float, alt_sensor: float | None, alt_sigma_m: float, rel_tol: float = 0.25) -> bool:
    """An altitude estimated from the image agrees with the sensor's (or is at least physical)."""
    if not math.isfinite(alt_est):
        return True  # nothing estimated: nothing to contradict
    if not (0.0 < alt_est < 50_000.0):
        return False
    if alt_sensor is None:
        return True
    return abs(alt_est - alt_sensor) <= max(rel_tol * alt_sensor, 4.0 * alt_sigma_m)


def tilt_consistent(tilt_image_deg: float, attitude: tuple[float, float] | None, sigma_deg: float,
                    min_tol_deg: float = 5.0) -> bool:
    """The tilt the image implies agrees with the IMU's roll/pitch (when both are known)."""
    if attitude is None or not math.isfinite(tilt_image_deg):
        return True
    from ..geo import CameraPose

    tilt_imu = CameraPose(0.0, 0.0, 1.0, 0.0, attitude[1], attitude[0]).tilt_deg
    return abs(tilt_image_deg - tilt_imu) <= max(min_tol_deg, 3.0 * sigma_deg)
