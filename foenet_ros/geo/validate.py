"""Validation of the values that enter from outside: priors, intrinsics, distortion, attitude,
altitude and headings. ROS-free, numpy-only, one function per kind of input.

Every ``check_*`` function returns the value normalised (floats, wrapped angles) or raises a
specific :class:`~foenet_ros.errors.FoenetError` subclass with one actionable line. The bounds
are physical, not tuning knobs:

=====================  =====================================  ==========================================
input                  accepted                               why
=====================  =====================================  ==========================================
latitude / longitude   [-90, 90] / [-180, 180] deg, finite    WGS84 (NavSatFix's convention)
prior sigma            (0, 100 km]                            a prior wider than 100 km says nothing
                                                              about a drone's flight area
fx, fy                 [0.05, 20] x image width, finite       hfov 2.9..168.6 deg; narrower is a
                                                              telescope, wider is not a pinhole camera
principal point        inside the image (half-pixel margin)   outside: intrinsics of another resolution
distortion k1..k6      |k| <= 1000, finite                    rational models reach tens; 1e3 is absurd
tangential p1, p2      |p| <= 0.1                             real decentering is ~1e-3
thin prism s1..s4      |s| <= 0.1 ; tilt taux, tauy |t|<=0.5  same order as tangential; tilt in radians
radial mapping         increasing from the centre to the      a fold-over means two rays hit one pixel:
                       image corners; corner scale in         no lens does that; a scale beyond 10x is
                       [0.1, 10]                              a unit error (e.g. k1 = 1e6)
roll, pitch            finite, |angle| <= 80 deg              the optical axis must point at the ground
altitude above ground  (0, 20 000] m, finite                  above any drone's ceiling is garbage
heading                finite, |h| <= 36 000 deg; wrapped     larger values are garbage, not turns
                       to [0, 360)
=====================  =====================================  ==========================================
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import (
    AltitudeError,
    AttitudeError,
    DistortionError,
    HeadingError,
    IntrinsicsError,
    PriorError,
)

MAX_PRIOR_SIGMA_M = 100_000.0
FOCAL_RANGE_X_WIDTH = (0.05, 20.0)
MAX_RADIAL_COEFF = 1000.0
MAX_TANGENTIAL_COEFF = 0.1
MAX_PRISM_COEFF = 0.1
MAX_TILT_RAD = 0.5
CORNER_SCALE_RANGE = (0.1, 10.0)
MAX_TILT_DEG = 80.0
MAX_ALTITUDE_M = 20_000.0
MAX_HEADING_ABS_DEG = 36_000.0
DIST_LENGTHS = (0, 4, 5, 8, 12, 14)  # OpenCV: k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [taux tauy]]]]


def _number(value: Any, name: str, error: type[Exception]) -> float:
    """``value`` as a finite float, or ``error`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise error(f"{name} must be a number, got {value!r:.40}")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise error(f"{name} must be a number, got {type(value).__name__}") from None
    if not math.isfinite(out):
        raise error(f"{name} must be finite (not NaN/inf), got {out}")
    return out


# ---------------------------------------------------------------------- position prior
def check_latlon(lat: Any, lon: Any, what: str = "prior") -> tuple[float, float]:
    """WGS84 ``(lat, lon)`` in degrees, finite and in range; :class:`PriorError` otherwise."""
    lat = _number(lat, f"{what} latitude", PriorError)
    lon = _number(lon, f"{what} longitude", PriorError)
    if not -90.0 <= lat <= 90.0:
        raise PriorError(f"{what} latitude {lat} is outside [-90, 90] degrees (latitude and longitude swapped?)")
    if not -180.0 <= lon <= 180.0:
        raise PriorError(f"{what} longitude {lon} is outside [-180, 180] degrees")
    return lat, lon


def check_prior(lat: Any, lon: Any, sigma_m: Any) -> tuple[float, float, float]:
    """A position prior ``(lat, lon, sigma_m)``: valid WGS84 degrees, 0 < sigma <= 100 km.

    Raises:
        PriorError: one line naming the bad value.
    """
    lat, lon = check_latlon(lat, lon)
    sigma = _number(sigma_m, "prior sigma_m", PriorError)
    if not 0.0 < sigma <= MAX_PRIOR_SIGMA_M:
        raise PriorError(
            f"prior sigma_m must be in (0, {MAX_PRIOR_SIGMA_M:.0f}] metres (a 1-sigma radius), got {sigma}"
        )
    return lat, lon, sigma


# ---------------------------------------------------------------------- camera
def check_intrinsics(width: Any, height: Any, fx: Any, fy: Any, cx: Any, cy: Any) -> None:
    """Pinhole intrinsics that a real camera can have.

    Raises:
        IntrinsicsError: NaN/inf, an image size that is not an integer >= 2, fx/fy outside
            [0.05, 20] x width, or a principal point outside the image.
    """
    for name, v in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        _number(v, f"camera {name}", IntrinsicsError)
    w, h = _number(width, "image width", IntrinsicsError), _number(height, "image height", IntrinsicsError)
    if int(w) != w or int(h) != h or w < 2 or h < 2:
        raise IntrinsicsError(f"bad image size {width}x{height}: width and height must be integers >= 2")
    lo, hi = FOCAL_RANGE_X_WIDTH
    for name, f in (("fx", float(fx)), ("fy", float(fy))):
        if f <= 0:
            raise IntrinsicsError(
                f"focal lengths must be positive (fx={fx}, fy={fy}); an all-zero CameraInfo means the camera "
                "is uncalibrated: pass --hfov (or the hfov_deg parameter) instead"
            )
        if not lo * w <= f <= hi * w:
            hfov = math.degrees(2 * math.atan(w / 2 / f))
            raise IntrinsicsError(
                f"{name}={f:.6g} px is {f / w:.3g} x the image width {w:.0f}; a camera has {name} in "
                f"[{lo}, {hi}] x width (horizontal field of view {_hfov(hi):.1f}-{_hfov(lo):.1f} deg, this is "
                f"{hfov:.3g} deg): check the focal length, --hfov, or the CameraInfo's resolution"
            )
    if not (-0.5 <= float(cx) <= w - 0.5 and -0.5 <= float(cy) <= h - 0.5):
        raise IntrinsicsError(
            f"principal point ({cx}, {cy}) lies outside the {w:.0f}x{h:.0f} image; "
            "are the intrinsics for another resolution? (use CameraIntrinsics.scaled)"
        )


def _hfov(f_over_w: float) -> float:
    return math.degrees(2 * math.atan(0.5 / f_over_w))


def check_distortion(dist: Sequence[Any], width: float, height: float, fx: float, fy: float, cx: float,
                     cy: float) -> tuple[float, ...]:
    """OpenCV distortion coefficients that a real lens can have (call after :func:`check_intrinsics`).

    Beyond per-coefficient bounds, the radial mapping ``r_d = r * (1 + k1 r^2 + k2 r^4 + k3 r^6) /
    (1 + k4 r^2 + k5 r^4 + k6 r^6)`` (normalised radii) must increase from the image centre until it
    reaches the image corners, with a corner scale ``r_d / r`` in [0.1, 10]. Otherwise undistortion
    is undefined (fold-over) or the coefficients are in the wrong units.

    Raises:
        DistortionError: one line naming the coefficient or the failed property.
    """
    d = [_number(v, f"distortion coefficient {i}", DistortionError) for i, v in enumerate(dist)]
    if len(d) not in DIST_LENGTHS:
        raise DistortionError(f"OpenCV distortion needs 4, 5, 8, 12 or 14 coefficients, got {len(d)}")
    if not d or not any(d):
        return tuple(d)
    names = ["k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6", "s1", "s2", "s3", "s4", "taux", "tauy"]
    bounds = {"p1": MAX_TANGENTIAL_COEFF, "p2": MAX_TANGENTIAL_COEFF, "taux": MAX_TILT_RAD, "tauy": MAX_TILT_RAD}
    for name, v in zip(names, d):
        bound = bounds.get(name, MAX_PRISM_COEFF if name.startswith("s") else MAX_RADIAL_COEFF)
        if abs(v) > bound:
            raise DistortionError(
                f"distortion {name}={v:.6g} is beyond |{name}| <= {bound:g}, which no real lens reaches: "
                "check the calibration (OpenCV order k1 k2 p1 p2 k3 [k4 k5 k6])"
            )
    full = d + [0.0] * (8 - len(d)) if len(d) < 8 else d
    k1, k2, _, _, k3, k4, k5, k6 = full[:8]
    # normalised radius of the farthest image corner (distorted coordinates, as the pixels are)
    corners = [(-0.5, -0.5), (width - 0.5, -0.5), (-0.5, height - 0.5), (width - 0.5, height - 0.5)]
    r_corner = max(math.hypot((u - cx) / fx, (v - cy) / fy) for u, v in corners)
    # scan the undistorted radius (by ray angle, 0..89.5 deg) until the distorted one reaches the corner
    r = np.tan(np.radians(np.linspace(0.0, 89.5, 20_001)[1:]))
    r2 = r * r
    num = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    with np.errstate(all="ignore"):
        rd = r * num / den
    reach = np.flatnonzero(rd >= r_corner)
    end = int(reach[0]) + 1 if len(reach) else len(r)
    if np.any(den[:end] <= 0) or not np.all(np.isfinite(rd[:end])):
        raise DistortionError(
            f"distortion {tuple(d)}: the rational model's denominator reaches zero inside the image; "
            "check the calibration"
        )
    if not len(reach):
        raise DistortionError(
            f"distortion {tuple(d)} never maps a ray to the image corners (radius {r_corner:.3f}): the coefficients "
            "fold the image over; check the calibration"
        )
    if np.any(np.diff(rd[:end]) <= 0):
        raise DistortionError(
            f"distortion {tuple(d)} folds over inside the image (the radial mapping is not increasing up to "
            "the corners): two viewing directions would land on one pixel; check the calibration"
        )
    scale = float(rd[end - 1] / r[end - 1])
    lo, hi = CORNER_SCALE_RANGE
    if not lo <= scale <= hi:
        raise DistortionError(
            f"distortion {tuple(d)} scales the image corners by {scale:.3g}x (a real lens: {lo}-{hi}x): "
            "coefficients in the wrong units?"
        )
    return tuple(d)


def check_attitude(roll_deg: Any, pitch_deg: Any, max_deg: float = MAX_TILT_DEG) -> tuple[float, float]:
    """Camera ``(roll, pitch)`` in degrees (pitch = tilt from nadir), finite and within ``max_deg``.

    Raises:
        AttitudeError: not two finite numbers, or beyond the limit (the camera would not see the ground).
    """
    roll = _number(roll_deg, "attitude roll_deg", AttitudeError)
    pitch = _number(pitch_deg, "attitude pitch_deg", AttitudeError)
    for name, v in (("roll", roll), ("pitch", pitch)):
        if abs(v) > max_deg:
            raise AttitudeError(
                f"attitude {name} {v:g} deg is beyond +-{max_deg:g} deg from nadir: the camera must look at the "
                "ground (pitch is the tilt from straight down, not from the horizon)"
            )
    return roll, pitch


def check_attitude_pair(attitude: Any) -> tuple[float, float]:
    """``attitude`` as a ``(roll_deg, pitch_deg)`` sequence; see :func:`check_attitude`."""
    try:
        values = list(attitude)
    except TypeError:
        raise AttitudeError(f"attitude must be (roll_deg, pitch_deg), got {type(attitude).__name__}") from None
    if len(values) != 2:
        raise AttitudeError(f"attitude must be two numbers (roll_deg, pitch_deg), got {len(values)} values")
    return check_attitude(*values)


def check_altitude(altitude_m: Any) -> float:
    """Height above the ground in metres: finite, > 0, <= 20 km.

    Raises:
        AltitudeError: with the value and the accepted range.
    """
    alt = _number(altitude_m, "altitude_m", AltitudeError)
    if not 0.0 < alt <= MAX_ALTITUDE_M:
        raise AltitudeError(
            f"altitude_m must be a height above ground in (0, {MAX_ALTITUDE_M:.0f}] metres, got {alt:g} "
            "(an altitude above sea level? subtract the ground elevation)"
        )
    return alt


def check_heading(heading_deg: Any) -> float:
    """A compass heading in degrees, wrapped to [0, 360).

    Raises:
        HeadingError: not finite, or so large that it cannot be a real angle (|h| > 36000).
    """
    h = _number(heading_deg, "heading_deg", HeadingError)
    if abs(h) > MAX_HEADING_ABS_DEG:
        raise HeadingError(f"heading_deg {h:g} is not an angle (|h| > {MAX_HEADING_ABS_DEG:.0f}); expected 0-360")
    return h % 360.0


def validate_heading(heading_deg: Any) -> float | None:
    """Lenient :func:`check_heading`: ``None`` (heading unknown) instead of an error."""
    if heading_deg is None:
        return None
    try:
        return check_heading(heading_deg)
    except HeadingError:
        return None
