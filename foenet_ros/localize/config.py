"""``LocalizerConfig``: every knob of the query side, frozen, with measured defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

FEATURES = ("sift", "orb")


@dataclass(frozen=True)
class LocalizerConfig:
    """Settings of :class:`foenet_ros.localize.Localizer` (defaults tuned on rendered Banepa views).

    Retrieval:
        top_k: candidates verified per frame (after removing near-duplicate tiles).
        search_k: tiles fetched from the index before de-duplication.
        dedup_frac: two candidates closer than this fraction of the smaller tile are one place.
        unknown_heading_rotations: without a heading, the query is encoded this many times, rotated
            by 360/n degrees each, and the best score per tile kept (1 = assume north-up).
        upright_hypotheses: heading unknown and nothing verified: retry upright at this many rotations (0 = off).
            Upright SIFT + the 3-DOF model at the query rotations retrieval liked best; rescues
            north-aligned drone photos vs. satellite maps (upright SIFT tolerates ~10 deg).
    Verification:
        feature: "sift" (default; robust across sources) or "orb" (faster, weaker).
        max_features: keypoints per image.
        ratio: Lowe ratio test threshold.
        ransac_px: RANSAC reprojection threshold in verification-image pixels.
        min_inliers: a candidate with fewer homography inliers is not verified.
        min_inliers_upright: with a known heading, a candidate whose homography fails may still be
            verified by a north-up scale+translation model (3 DOF) with at least this many inliers
            (cross-season / cross-sensor pairs); it reports the image centre, with a wider sigma.
        strong_inliers: stop verifying further candidates once one has this many inliers.
        min_spread: inliers must spread over the frame (std >= this fraction of its width/height).
        verify_max_side: the frame is resized so its longer side is at most this for features.
        crop_factor: the map crop verified against a tile is this many times the tile size.
    Position / covariance:
        sigma_floor_m: error floor added in quadrature (map georeference, flat-ground assumption).
        sigma_scale: multiplies the bootstrap spread of the pose (calibrated for 2-sigma ~ 90 %).
        bootstrap: homography refits on resampled inliers used to estimate the pose spread.
        no_intrinsics_sigma_frac: without intrinsics the image centre is reported; its error
            (unknown tilt) is modelled as this fraction of the footprint width (1 sigma).
        ambiguity_frac: a second verified place with at least this share of the winner's inliers
            makes the fix ambiguous (covariance widened over both, score lowered).
        retrieval_max_sigma_m: a retrieval-only answer wider than this is reported as "lost".
        retrieval_min_margin: ... and so is one whose best score exceeds the mean of the other
            candidates' by less than this (no distinct place: e.g. a frame from off the map).
    Tracking / gating:
        gating_radius_m: minimum search radius around the track or a prior.
        gate_sigmas: search radius = max(gating_radius_m, gate_sigmas * track sigma).
        global_fallback: when a gated search verifies nothing, also search the whole map.
        accel_sigma: tracker process noise (m/s^2, white acceleration) of smooth flight between fixes.
        coast_accel_sigma: manoeuvre process noise (m/s^2) while coasting without an accepted fix.
            The open-loop prediction must allow for a turn or brake it cannot see (~0.5 g).
        refused_fix_weight: probability (0-1) that a fix refused by the gate is right (coast sigma).
            The coasted covariance about the prediction is widened to cover that hypothesis.
        gate_chi2: Mahalanobis gate on fixes (chi-square, 2 dof; 13.8 = 99.9 %).
        max_misses: frames without an accepted fix before the track is lost.
        max_track_sigma_m: the track is lost when its predicted sigma grows beyond this.
        default_dt_s: frame interval assumed when frames carry no stamp.
    """

    top_k: int = 5
    search_k: int = 30
    dedup_frac: float = 0.5
    unknown_heading_rotations: int = 4
    upright_hypotheses: int = 2

    feature: str = "sift"
    max_features: int = 2000
    ratio: float = 0.8
    ransac_px: float = 4.0
    min_inliers: int = 20
    min_inliers_upright: int = 10
    strong_inliers: int = 80
    min_spread: float = 0.1
    verify_max_side: int = 640
    crop_factor: float = 1.6

    sigma_floor_m: float = 1.0
    sigma_scale: float = 3.0
    bootstrap: int = 12
    no_intrinsics_sigma_frac: float = 0.15
    ambiguity_frac: float = 0.6
    retrieval_max_sigma_m: float = 150.0
    retrieval_min_margin: float = 0.05

    gating_radius_m: float = 150.0
    gate_sigmas: float = 4.0
    global_fallback: bool = True
    accel_sigma: float = 2.0
    coast_accel_sigma: float = 5.0
    refused_fix_weight: float = 0.5
    gate_chi2: float = 13.8
    max_misses: int = 10
    max_track_sigma_m: float = 150.0
    default_dt_s: float = 1.0

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ConfigError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        for name in ("top_k", "search_k", "unknown_heading_rotations", "max_features", "min_inliers", "min_inliers_upright",
                     "strong_inliers", "verify_max_side", "max_misses"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.search_k < self.top_k:
            raise ConfigError(f"search_k ({self.search_k}) must be >= top_k ({self.top_k})")
        if not (0.0 < self.ratio < 1.0):
            raise ConfigError(f"ratio must be in (0, 1), got {self.ratio}")
        if self.min_inliers < 4:
            raise ConfigError(f"min_inliers must be >= 4 (a homography needs 4 points), got {self.min_inliers}")
        for name in ("ransac_px", "crop_factor", "sigma_scale", "gating_radius_m", "gate_sigmas", "accel_sigma",
                     "gate_chi2", "max_track_sigma_m", "default_dt_s", "retrieval_max_sigma_m"):
            if not (getattr(self, name) > 0):
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not (self.coast_accel_sigma >= self.accel_sigma):
            raise ConfigError(f"coast_accel_sigma ({self.coast_accel_sigma}) must be >= accel_sigma ({self.accel_sigma})")
        if not (0.0 <= self.refused_fix_weight <= 1.0):
            raise ConfigError(f"refused_fix_weight must be in [0, 1], got {self.refused_fix_weight}")
        if self.upright_hypotheses < 0:
            raise ConfigError(f"upright_hypotheses must be >= 0, got {self.upright_hypotheses}")
        if self.sigma_floor_m < 0 or self.bootstrap < 0:
            raise ConfigError("sigma_floor_m and bootstrap must be >= 0")

    def replace(self, **changes) -> "LocalizerConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
