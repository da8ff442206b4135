"""What the Localizer returns: ``GeoEstimate`` (one per frame), ``Candidate`` (one per retrieved tile),
and ``Prior`` (an external position hint such as a GNSS fix)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUSES = ("verified", "retrieval", "tracked", "lost")
STAGES = ("preprocess", "encode", "search", "verify", "track", "total")


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
    """

    tile_id: int
    score: float
    center_xy: tuple[float, float]
    size_m: float
    inliers: int = 0
    matches: int = 0
    position_xy: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tile_id": int(self.tile_id),
            "score": round(float(self.score), 5),
            "center_xy": [round(float(v), 2) for v in self.center_xy],
            "size_m": round(float(self.size_m), 2),
            "inliers": int(self.inliers),
            "matches": int(self.matches),
            "position_xy": None if self.position_xy is None else [round(float(v), 2) for v in self.position_xy],
        }


@dataclass(frozen=True)
class Prior:
    """An external position hint (e.g. a GNSS fix): WGS84 degrees and a 1-sigma radius in metres."""

    lat: float
    lon: float
    sigma_m: float = 50.0

    @classmethod
    def coerce(cls, prior: Any) -> "Prior | None":
        """Accept a Prior, a ``(lat, lon[, sigma_m])`` tuple, a dict, or a GeoEstimate."""
        if prior is None or isinstance(prior, Prior):
            return prior
        if isinstance(prior, GeoEstimate):
            return cls(prior.lat, prior.lon, prior.sigma_m) if prior.has_fix else None
        if isinstance(prior, dict):
            return cls(float(prior["lat"]), float(prior["lon"]), float(prior.get("sigma_m", 50.0)))
        values = [float(v) for v in prior]
        return cls(*values[:3])


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
