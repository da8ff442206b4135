"""What the flight controller gives the Localizer, validated at the boundary, as ``localize()`` kwargs.

One function builds the keyword arguments of ``Localizer.localize`` for the node and the replay
alike (:func:`localize_kwargs`), so both hand the Localizer the same inputs for the same
messages. It is also *the* place where optional Localizer arguments are wired: the IMU's
``attitude_sigma_deg`` / ``heading_sigma_deg`` are passed only when the installed Localizer's
signature has them (``inspect.signature``), so this code works before and after they exist.

A GNSS prior is checked by the project's one validation layer (:func:`foenet_ros.geo.validate.check_prior`:
latitude in [-90, 90], longitude in [-180, 180], finite, 0 < sigma <= 100 km) through
:func:`gnss_prior`. A bad one raises :class:`~foenet_ros.errors.PriorError`; the node then
ignores it with a WARN and localises without a prior.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .imu import ImuReading

OPTIONAL_SIGMA_ARGS = ("attitude_sigma_deg", "heading_sigma_deg")


@dataclass(frozen=True)
class GnssPrior:
    """A validated GNSS position hint: WGS84 degrees and a 1-sigma radius (m)."""

    lat: float
    lon: float
    sigma_m: float


def gnss_prior(lat: Any, lon: Any, sigma_m: Any) -> GnssPrior:
    """Validate a GNSS fix as a search prior (:func:`foenet_ros.geo.validate.check_prior`).

    Raises:
        PriorError: one line naming the bad value (non-numeric, non-finite, out of range, bad sigma).
    """
    from ..geo.validate import check_prior

    return GnssPrior(*check_prior(lat, lon, sigma_m))


@lru_cache(maxsize=16)
def _accepted(fn: Callable[..., Any]) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


def localize_kwargs(localize: Callable[..., Any], *, stamp: float | None, imu: ImuReading | None = None,
                    compass_deg: float | None = None, use_heading: bool = True, use_attitude: bool = False,
                    altitude_m: float | None = None, prior: GnssPrior | None = None) -> dict[str, Any]:
    """Keyword arguments of ``localize(frame, camera=..., **kwargs)`` for one frame.

    Args:
        localize: the bound ``Localizer.localize`` (its signature decides the optional arguments).
        stamp: the frame's capture time, seconds (None = unstamped).
        imu: the latest fresh IMU reading (heading, camera attitude, sigmas), or None.
        compass_deg: a heading from a compass topic (used when there is no IMU reading).
        use_heading: pass the heading (IMU or compass).
        use_attitude: pass the IMU roll/pitch as the camera attitude (a camera rigidly fixed
            nadir on the body only; gimballed cameras: leave off).
        altitude_m: height above ground, metres, or None.
        prior: a validated GNSS prior, or None.
    """
    kw: dict[str, Any] = {"stamp": stamp, "prior": None, "heading_deg": None, "altitude_m": None, "attitude": None}
    if prior is not None:
        kw["prior"] = (prior.lat, prior.lon, prior.sigma_m)
    if use_heading:
        if imu is not None:
            kw["heading_deg"] = imu.heading_deg
        elif compass_deg is not None and math.isfinite(compass_deg):
            kw["heading_deg"] = float(compass_deg) % 360.0
    if altitude_m is not None and math.isfinite(altitude_m) and altitude_m > 0:
        kw["altitude_m"] = float(altitude_m)
    if use_attitude and imu is not None and math.isfinite(imu.roll_deg) and math.isfinite(imu.pitch_deg):
        kw["attitude"] = imu.attitude
    accepted = _accepted(getattr(localize, "__func__", localize))
    if imu is not None:  # wired only where the Localizer takes them
        if "attitude_sigma_deg" in accepted and kw["attitude"] is not None and math.isfinite(imu.attitude_sigma_deg):
            kw["attitude_sigma_deg"] = imu.attitude_sigma_deg
        if "heading_sigma_deg" in accepted and kw["heading_deg"] is not None and math.isfinite(imu.heading_sigma_deg):
            kw["heading_sigma_deg"] = imu.heading_sigma_deg
    return kw
