"""What the Localizer returns: ``GeoEstimate`` (one per frame), ``Candidate`` (one per retrieved tile),
and ``Prior`` (an external position hint such as a GNSS fix)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUSES = ("verified", "retrieval", "tracked", "lost")
STAGES = ("preprocess", "encode", "search", "fine", "refine", "verify", "track", "total")  # verify = fine + refine


@dataclass
class Candidate:
    """One retrieved tile and (when verified) its geometric evidence.

    Attributes:
        tile_id: row in the index's tile table.
        score: descriptor cosine similarity (retrieval score), higher is better.
        center_xy: tile centre in the local frame, metres.
        size_m: tile side on the ground, metres.
        inliers: RANSAC homography inliers against the map crop (0 = not verified / failed).
        matches: ratio-test matches before RANSAC.
        position_xy: the drone position this candidate implies (None when verification failed).
        votes: the keypoint screen's votes for this tile (-1: not screened; see ``keypoint_screen``).
    """

    tile_id: int
    score: float
    center_xy: tuple[float, float]
    size_m: float
    inliers: int = 0
    matches: int = 0
    position_xy: tuple[float, float] | None = None
    votes: int = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "tile_id": int(self.tile_id),
            "score": round(float(self.score), 5),
            "center_xy": [round(float(v), 2) for v in self.center_xy],
            "size_m": round(float(self.size_m), 2),
            "inliers": int(self.inliers),
            "matches": int(self.matches),
            "votes": int(self.votes),
            "position_xy": None if self.position_xy is None else [round(float(v), 2) for v in self.position_xy],
        }


@dataclass(frozen=True)
class Prior:
    """An external position hint (e.g. a GNSS fix): WGS84 degrees and a 1-sigma radius in metres."""

    lat: float
    lon: float
    sigma_m: float = 50.0

    @classmethod
    def coerce(cls, prior: Any, *, strict: bool = False) -> "Prior | None":
        """Accept a Prior, a ``(lat, lon[, sigma_m])`` tuple, a dict, or a GeoEstimate, validated
        (:func:`foenet_ros.geo.validate.check_prior`: WGS84 range, finite, 0 < sigma <= 100 km).

        An invalid prior raises :class:`PriorError` with ``strict=True``; otherwise it is logged
        (WARNING, at most every 10 s) and ignored (``None``): a faulty or spoofed GNSS fix must
        never stop localization. ``None`` and a GeoEstimate without a fix give ``None``.
        """
        from ..errors import PriorError
        from ..geo.validate import check_prior

        try:
            if prior is None:
                return None
            if isinstance(prior, GeoEstimate):
                if not prior.has_fix:
                    return None
                values = [prior.lat, prior.lon, prior.sigma_m]
            elif isinstance(prior, Prior):
                values = [prior.lat, prior.lon, prior.sigma_m]
            elif isinstance(prior, dict):
                if "lat" not in prior or "lon" not in prior:
                    raise PriorError("a prior dict needs 'lat' and 'lon' (and optionally 'sigma_m'), got "
                                     f"{sorted(map(str, prior))}")
                values = [prior["lat"], prior["lon"], prior.get("sigma_m", 50.0)]
            else:
                try:
                    values = list(prior)
                except TypeError:
                    raise PriorError(
                        f"a prior is a Prior, (lat, lon[, sigma_m]) or a dict, got {type(prior).__name__}") from None
                if len(values) not in (2, 3):
                    raise PriorError(f"a prior is (lat, lon[, sigma_m]), got {len(values)} values")
                values = values + [50.0] * (3 - len(values))
            return cls(*check_prior(*values))
        except PriorError as exc:
            if strict:
                raise
            _warn_ignored_prior(exc)
            return None


def validate_prior(prior: Any) -> "Prior | None":
    """The lenient check the Localizer uses: a valid :class:`Prior`, or ``None`` (logged) when invalid."""
    return Prior.coerce(prior, strict=False)


def validate_prior_strict(prior: Any) -> "Prior | None":
    """The strict check (CLI, configuration): a valid :class:`Prior` (or ``None`` for no prior); raises PriorError."""
    return Prior.coerce(prior, strict=True)


_ignored_prior = {"last": -math.inf, "suppressed": 0}


def _warn_ignored_prior(exc: Exception) -> None:
    """WARNING for an ignored prior, rate-limited (a bad GNSS stream would otherwise log at frame rate)."""
    import logging
    import time

    now = time.monotonic()
    if now - _ignored_prior["last"] < 10.0:
        _ignored_prior["suppressed"] += 1
        return
    more = f" ({_ignored_prior['suppressed']} more since the last warning)" if _ignored_prior["suppressed"] else ""
    logging.getLogger(__name__).warning("ignoring an invalid position prior: %s%s", exc, more)
    _ignored_prior.update(last=now, suppressed=0)


@dataclass
class GeoEstimate:
    """The Localizer's answer for one frame.

    Attributes:
        status: "verified" (geometric match), "retrieval" (descriptor match only, coarse),
            "tracked" (no fix this frame: the tracker's prediction), "lost" (no usable position).
        lat, lon: WGS84 degrees of the drone (camera centre), NaN when lost.
        x, y: the same position in the index's local metric frame (UTM), metres.
        alt_m: camera height above the map's ground plane, metres (NaN when unknown).
        heading_deg: compass heading of the image-up direction, degrees clockwise from north (NaN unknown).
        cov_xy: 2x2 position covariance in the local frame (east, north), m^2.
        sigma_m: 1-sigma horizontal error radius, metres (sqrt of the larger covariance eigenvalue).
        velocity_xy: tracker velocity (east, north), m/s, or None.
        score: confidence in [0, 1] (inlier evidence x retrieval margin; 0 when lost).
        inliers: RANSAC inliers of the winning candidate.
        candidates: the retrieved tiles with their verification evidence.
        timings_ms: per stage: preprocess, encode, search, verify, track, total.
        stamp: the caller's timestamp (seconds), if given.
        pose: extra diagnostics (tilt, reprojection error, winning tile, search mode...).
    """

    status: str
    lat: float = math.nan
    lon: float = math.nan
    x: float = math.nan
    y: float = math.nan
    alt_m: float = math.nan
    heading_deg: float = math.nan
    cov_xy: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))
    sigma_m: float = math.inf
    velocity_xy: tuple[float, float] | None = None
    score: float = 0.0
    inliers: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    stamp: float | None = None
    pose: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def has_fix(self) -> bool:
        """True when the estimate carries a position (any status but "lost")."""
        return self.status != "lost" and math.isfinite(self.x) and math.isfinite(self.y)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN/inf become null)."""

        def num(v: float, nd: int) -> float | None:
            return round(float(v), nd) if v is not None and math.isfinite(float(v)) else None

        return {
            "status": self.status,
            "lat": num(self.lat, 8),
            "lon": num(self.lon, 8),
            "x": num(self.x, 2),
            "y": num(self.y, 2),
            "alt_m": num(self.alt_m, 2),
            "heading_deg": num(self.heading_deg, 2),
            "sigma_m": num(self.sigma_m, 2),
            "cov_xy": None if not np.all(np.isfinite(self.cov_xy)) else np.round(self.cov_xy, 3).tolist(),
            "velocity_xy": None if self.velocity_xy is None else [round(float(v), 3) for v in self.velocity_xy],
            "score": round(float(self.score), 4),
            "inliers": int(self.inliers),
            "candidates": [c.to_json() for c in self.candidates],
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings_ms.items()},
            "stamp": self.stamp,
            "pose": {k: (num(v, 4) if isinstance(v, float) else v) for k, v in self.pose.items()},
        }
