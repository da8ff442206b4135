"""``LocalizerConfig``: every knob of the query side, frozen, with measured defaults and a safety envelope."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

#: local features used for refinement (the index caches SIFT keypoints of the map)
FEATURES = ("sift",)
#: ``refine`` policies
REFINE_POLICIES = ("auto", "always", "never")
#: ``fine_patches`` policies
PATCH_POLICIES = ("auto", "always")


@dataclass(frozen=True)
class LocalizerConfig:
    """Settings of :class:`foenet_ros.localize.Localizer`.

    Preprocessing:
        work_max_side: a frame is downscaled once, first, so its longer side is at most this (pixels).
        verify_max_side: the frame is downscaled further to this longer side for keypoints.
    Retrieval:
        top_k: candidate tiles examined per frame (after removing near-duplicate tiles).
        top_k_more: when none of the top_k gives a fix, the candidates up to this rank are examined too.
        search_k: tiles fetched from the index before de-duplication.
        dedup_frac: two candidates closer than this fraction of the smaller tile are one place.
        unknown_heading_rotations: without a heading, the query is encoded this many times, rotated
            by 360/n degrees each, and the best score per tile kept (1 = assume north-up).
        upright_hypotheses: heading unknown and rotation-invariant keypoints found nothing: upright keypoints
            at this many of the rotations retrieval liked best (drone photo vs. satellite map), before the sweep;
            at the keypoint hint's heading alone when there is one (``keypoint_hint_min_inliers``).
        crop_factor: a candidate's search region is this many times its tile size.
    Fine stage (dense overlap estimation on the precomputed map features):
        fine_methods: dense feature methods to correlate (those the index stores; "cfog", "foenet").
        fine_coarse_cells: the coarse heatmap's template is about this many cells wide.
        fine_patch_level_cells: the patch refinement's template is about this many cells wide.
        fine_patch_cells: side of a refinement patch, cells.
        fine_patch_search_cells: a patch is searched this many cells around its predicted place (at least 2 coarse cells).
        fine_patch_min_z: a patch counts when its peak is this many robust sigmas above its neighbourhood.
        fine_patch_tol_cells: a patch agrees with the fitted transform within this many cells.
        fine_patches: "auto" searches the patches only where they can change the outcome; "always" on every fix.
            Where: a homography (tilt) to fit, or a dense score not yet strong without them (their
            weights in the score are positive: no agreeing patch is the least they can add).
            "always" for plots that show them and for calibration.
        fine_polish_cells: re-place the fine peak at the next finer index level within this many cells (0 = off).
            When the index has a finer level, the winning hypothesis is correlated there once more
            near the peak: the position to a third of the finer cell.
        fine_homography_min: without IMU attitude, this many agreeing patches allow a homography (tilt).
        fine_heading_step_deg: heading bins of the coarse heatmap, degrees apart.
        fine_max_heading_bins: at most this many heading bins (they span +-2 sigma of the heading).
        fine_scale_step: scale bins, log-spaced by this step.
        fine_max_scale_bins: at most this many scale bins (they span +-2 sigma of the altitude).
        fine_unknown_scale_range: without an altitude, scale bins span +- this (log) around the tile's footprint.
        fine_stats_cells: a search box smaller than this many cells (the tracker's gate) is widened to it
            for the heatmap's statistics and rival peak; the peak itself stays in the box.
        fine_min_overlap: placements covering less of the frame's projection are not considered.
        fine_beta: heatmap sharpness (p ~ exp(beta * z)) for the covariance of the coarse peak.
        fine_line_search: refine the fine pass's heading, then scale, between the bins and place the fix there.
            A line search: the template turned and zoomed on the ground in half-bin steps, a parabola
            through the best step's correlation and its neighbours'. The polish level is then not
            used. Off: the fine pass's bins (and the polish level) place the fix.
        fine_bootstrap: refits over resampled patches for the fine covariance.
        fine_score_weights: logistic weights (bias, z_peak, margin, log(1+patches), patch share, fine z) of the
            probability that a dense fix found the right place (fitted by bench/calibrate_fine.py on training places).
        fine_min_score: a dense fix needs at least this probability ...
        fine_strong_score: ... and with this much it is trusted without keypoints confirming it.
        fine_min_z: a hard floor: no dense fix from a coarse peak below this z-score.
        fine_decisive_z: a region whose coarse peak has this z-score ...
        fine_decisive_margin: ... and this margin ends the search (lower-ranked regions are skipped).
        fine_sigma_scale: multiplies the dense fit's bootstrap spread (calibrated on held-out views).
        fine_sweep_step_deg: heading unknown: the coarse sweep's heading step, degrees.
        fine_sweep_cells: heading unknown: the sweep's template is about this many cells wide.
        fine_sweep_candidates: heading unknown: the sweep runs on this many best retrieved tiles.
    Keypoint refinement (frame SIFT vs. the index's cached map keypoints):
        refine: "auto" (where it pays: no IMU attitude, or not tracking), "always", "never".
        max_features: keypoints per frame.
        keypoint_screen: strongest frame keypoints that vote for the candidates (heading unknown; 0 = off).
            When the best candidate gave no keypoint fix, they are searched against all the other
            candidates' map keypoints at once (the top_k_more, not only the top_k), which are then fitted
            in the order of their votes; without it every candidate is fitted in rank order.
        keypoint_screen_min: candidates with fewer screen votes are not fitted.
        keypoint_hint_min_inliers: heading unknown: a keypoint fit with this many inliers, short of min_inliers, hints the dense stage.
            A rotation-invariant fit refused only for too few inliers (sane, spread) gives the dense
            stage its heading, scale and place to search first, before the upright retries and the
            heading sweep; the dense fix there must pass the dense stage's own calibrated score (0 = off).
            When it does not, the upright retry is at the hint's heading only (a measured heading instead
            of retrieval's quarter turns; the sweep that follows does not use the hint).
        ratio: Lowe ratio test threshold.
        ransac_px: RANSAC reprojection threshold in keypoint-image pixels.
        min_inliers: a keypoint fix needs this many distinct, well-spread inliers.
        min_inliers_3dof: unguided upright matching whose homography fails may still give a fix from
            a north-up scale + translation model with this many inliers (the image centre, wider sigma).
        min_spread: inliers must spread over the frame (std >= this fraction of its width/height).
        guided_radius_m: guided matching radius around the dense prediction, metres (at least 4 dense sigmas).
    Sensors (1-sigma errors assumed when a value is given without one):
        heading_sigma_deg: of a given compass heading.
        altitude_sigma_frac: of a given altitude, as a fraction of it.
        attitude_sigma_deg: of a given roll/pitch.
        mount_sigma_deg: camera-to-IMU/compass orientation error (boresight, mount flex, gimbal pointing), deg 1-sigma.
            Added in quadrature to the sigma of every given roll/pitch and heading (stated or
            assumed), so it reaches the fix covariance (the attitude term), the IMU tilt check and
            the heading bins. 0 = the IMU's attitude is the camera's.
    Error budget (see foenet_ros.localize.budget):
        sigma_scale: multiplies the keypoint fit's bootstrap spread (calibrated on held-out views).
        bootstrap: homography refits on resampled inliers for the keypoint covariance.
        map_accuracy_m: the map's absolute accuracy when the index does not record it (1 sigma, metres).
        terrain_relief_m: height differences within the footprint (flat-ground error), metres.
        calibration_sigma_frac: relative focal-length uncertainty of the camera calibration.
        sigma_floor_m: no stated sigma is ever below this (metres, > 0).
        unknown_tilt_sigma_deg: without IMU attitude, a dense fix that assumed a nadir camera is off by
            alt * tan(tilt): the tilt's 1-sigma assumed here (a keypoint homography measures it instead).
        no_intrinsics_sigma_frac: without intrinsics the image centre is reported; its error
            (unknown tilt) is modelled as this fraction of the footprint width (1 sigma).
        plausible_margin_m: a verified fix must lie within this distance of the map.
        verified_max_sigma_m: a fix whose stated 1-sigma exceeds this is not reported as verified.
        min_orientations: a frame needs gradients in at least this many effective orientations (of 9;
            ground from the air: 8.1-8.9, stripes / checkerboards / a covered lens: 0-2.3) to give a fix.
        retrieval_max_sigma_m: a retrieval-only answer wider than this is reported as "lost".
        retrieval_min_margin: ... and so is one whose best score exceeds the mean of the other
            candidates' by less than this (no distinct place: e.g. a frame from off the map).
    Tracking / gating:
        track_radius_m: the tracking window is at least this radius around the prediction, metres.
        track_max_radius_footprints: a wider tracking window (radius in frame footprints) is searched by retrieval; 0 = never.
            A track coasted through misses has a wide gate: scanning all of it densely costs more than
            ranking the tiles inside it by retrieval (``pose["search"]`` = "gate").
        frame_budget_ms: wall-time budget of one frame's search (0 = none): once spent, no further search
            step starts (the next candidates, heading hypotheses, the sweep, the whole-map fallback) and
            the frame ends with what it has (often ``lost``; ``pose["budget_stopped_ms"]`` says so). The
            node's default is 1500 (a hard cold start must not hold up the frames behind it); off here
            so that offline evaluation and replays do not depend on the machine's speed.
        frame_budget_max_factor: stopped frames double the next one's budget, up to this x frame_budget_ms:
            after a frame the budget stopped without a verified fix, the next frame's budget is twice
            the last one's; back to ``frame_budget_ms`` after a frame that was not stopped or was
            verified, and on reset(). Without it a machine
            too slow (or too loaded) to finish a cold start within the budget would stop every frame at
            the same step and never localise; with it the frame rate drops until one finishes.
            1 = a fixed budget.
        global_every: while tracking, search the whole map again every this many frames (0 = only after a miss).
        gating_radius_m: minimum retrieval radius around a prior.
        gate_sigmas: search radius = max(minimum radius, gate_sigmas * sigma of the track or prior).
        global_fallback: when a gated search verifies nothing, also search the whole map.
        accel_sigma: tracker process noise (m/s^2, white acceleration) of smooth flight between fixes.
        coast_accel_sigma: manoeuvre process noise (m/s^2) while coasting without an accepted fix.
        refused_fix_weight: probability (0-1) that a fix refused by the gate is right (coast sigma).
        gate_chi2: Mahalanobis gate on fixes (chi-square, 2 dof; 13.8 = 99.9 %).
        max_misses: frames without an accepted fix before the track is lost.
        max_track_sigma_m: the track is lost when its predicted sigma grows beyond this.
        default_dt_s: frame interval assumed when frames carry no stamp.
    """

    work_max_side: int = 960
    verify_max_side: int = 640

    top_k: int = 8
    top_k_more: int = 32
    search_k: int = 64
    dedup_frac: float = 0.5
    unknown_heading_rotations: int = 4
    upright_hypotheses: int = 4  # every retrieval rotation (unknown_heading_rotations): the aero-vloc photo needs its 3rd
    crop_factor: float = 1.6

    fine_methods: tuple[str, ...] = ("cfog",)
    fine_coarse_cells: int = 64
    fine_patch_level_cells: int = 128
    fine_patch_cells: int = 24
    fine_patch_search_cells: int = 4
    fine_patch_min_z: float = 3.0
    fine_patch_tol_cells: float = 1.5
    fine_homography_min: int = 12
    fine_polish_cells: int = 2
    fine_patches: str = "auto"
    fine_heading_step_deg: float = 2.5
    fine_max_heading_bins: int = 9
    fine_scale_step: float = 0.05
    fine_max_scale_bins: int = 5
    fine_unknown_scale_range: float = 0.3
    fine_stats_cells: int = 32
    fine_min_overlap: float = 0.5
    fine_beta: float = 1.0
    fine_line_search: bool = True
    fine_bootstrap: int = 24
    # fitted by `bench/calibrate_fine.py --samples 120` on NAIP 2010/2016, 2014/2017, 2016/2012-NIR and the
    # OAM Zanzibar / Nairobi / Kampala blocks (720 samples, 495 positive, 115 frames that show no ground; at
    # p >= 0.9: 0 wrong accepted, recall 98.6 %). The coarse peak's z gets ~0 weight: a test pattern can
    # reach z ~ 3000 against regular map structure; the margin, agreeing patches and fine z carry the score.
    fine_score_weights: tuple[float, ...] = (-15.09, -0.071, 1.341, 3.547, 0.066, 2.986)  # bench/results/calibration.json
    fine_min_score: float = 0.9
    fine_strong_score: float = 0.99
    fine_min_z: float = 5.0
    fine_decisive_z: float = 10.0
    fine_decisive_margin: float = 4.0
    fine_sigma_scale: float = 0.5  # calibrate_fine.py fits 0.45 (90 % of training-place errors within 2 sigma); 0.5 = SAFETY_MIN
    fine_sweep_step_deg: float = 10.0
    fine_sweep_cells: int = 32
    fine_sweep_candidates: int = 3

    refine: str = "auto"
    max_features: int = 2000
    keypoint_screen: int = 128
    keypoint_screen_min: int = 2
    keypoint_hint_min_inliers: int = 10
    ratio: float = 0.8
    ransac_px: float = 4.0
    min_inliers: int = 20
    min_inliers_3dof: int = 10
    min_spread: float = 0.1
    guided_radius_m: float = 6.0

    heading_sigma_deg: float = 3.0
    altitude_sigma_frac: float = 0.05
    attitude_sigma_deg: float = 1.0
    mount_sigma_deg: float = 0.5

    sigma_scale: float = 3.0
    bootstrap: int = 12
    map_accuracy_m: float = 0.5
    terrain_relief_m: float = 2.0
    calibration_sigma_frac: float = 0.01
    sigma_floor_m: float = 0.1
    unknown_tilt_sigma_deg: float = 10.0
    no_intrinsics_sigma_frac: float = 0.15
    plausible_margin_m: float = 100.0
    verified_max_sigma_m: float = 150.0
    min_orientations: float = 4.0
    retrieval_max_sigma_m: float = 150.0
    retrieval_min_margin: float = 0.05

    track_radius_m: float = 30.0
    track_max_radius_footprints: float = 1.0
    global_every: int = 0
    frame_budget_ms: float = 0.0
    frame_budget_max_factor: float = 4.0
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

    #: hard lower bounds that keep integrity on (a verified fix needs real evidence; sigmas never
    #: collapse; the gate stays a gate). ``__post_init__`` refuses anything below them.
    SAFETY_MIN = {
        "min_inliers": 12, "min_inliers_3dof": 8, "min_spread": 0.05, "fine_min_score": 0.5, "fine_min_z": 3.0,
        "fine_patch_min_z": 2.0, "sigma_floor_m": 0.05, "sigma_scale": 0.5, "fine_sigma_scale": 0.5,
        "map_accuracy_m": 0.0, "terrain_relief_m": 0.0, "calibration_sigma_frac": 0.0, "heading_sigma_deg": 0.1,
        "altitude_sigma_frac": 0.001, "attitude_sigma_deg": 0.01, "mount_sigma_deg": 0.0, "gate_chi2": 5.99, "fine_min_overlap": 0.2,
        "min_orientations": 3.0,
    }
    #: upper bounds with the same purpose (a ratio test that accepts everything is no test)
    SAFETY_MAX = {"ratio": 0.9, "ransac_px": 10.0, "fine_patch_tol_cells": 3.0, "guided_radius_m": 100.0}
    CHOICES = {"refine": REFINE_POLICIES, "fine_patches": PATCH_POLICIES}

    def __post_init__(self) -> None:
        # the safety bounds first: a value that would disable integrity says so, whatever else is wrong
        for name, lo in self.SAFETY_MIN.items():
            if not (getattr(self, name) >= lo):
                raise ConfigError(f"{name}={getattr(self, name)} is below its safety bound {lo}: it would let weak or "
                                  "wrong fixes through as verified, or state a sigma that cannot hold")
        for name, hi in self.SAFETY_MAX.items():
            if not (getattr(self, name) <= hi):
                raise ConfigError(f"{name}={getattr(self, name)} is above its safety bound {hi}: it would let weak or "
                                  "wrong fixes through as verified")
        for name in ("top_k", "search_k", "unknown_heading_rotations", "max_features", "min_inliers", "verify_max_side",
                     "work_max_side", "max_misses", "fine_coarse_cells", "fine_patch_level_cells", "fine_patch_cells",
                     "fine_patch_search_cells", "fine_max_heading_bins", "fine_max_scale_bins", "fine_sweep_cells",
                     "fine_sweep_candidates", "fine_homography_min", "fine_stats_cells"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (0 <= self.fine_polish_cells <= 16):
            raise ConfigError(f"fine_polish_cells must be in 0..16, got {self.fine_polish_cells}")
        if self.keypoint_screen < 0 or self.keypoint_screen_min < 0 or self.keypoint_hint_min_inliers < 0:
            raise ConfigError("keypoint_screen, keypoint_screen_min and keypoint_hint_min_inliers must be >= 0")
        if self.search_k < self.top_k:
            raise ConfigError(f"search_k ({self.search_k}) must be >= top_k ({self.top_k})")
        if not (0.0 < self.ratio < 1.0):
            raise ConfigError(f"ratio must be in (0, 1), got {self.ratio}")
        for name in ("ransac_px", "crop_factor", "sigma_scale", "fine_sigma_scale", "gating_radius_m", "gate_sigmas",
                     "accel_sigma", "gate_chi2", "max_track_sigma_m", "default_dt_s", "retrieval_max_sigma_m",
                     "fine_heading_step_deg", "fine_scale_step", "fine_beta", "fine_sweep_step_deg", "track_radius_m",
                     "guided_radius_m", "sigma_floor_m", "fine_patch_tol_cells", "verified_max_sigma_m"):
            if not (getattr(self, name) > 0):
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.refine not in REFINE_POLICIES:
            raise ConfigError(f"refine must be one of {REFINE_POLICIES}, got {self.refine!r}")
        if self.fine_patches not in PATCH_POLICIES:
            raise ConfigError(f"fine_patches must be one of {PATCH_POLICIES}, got {self.fine_patches!r}")
        if not self.fine_methods or any(m not in ("cfog", "foenet") for m in self.fine_methods):
            raise ConfigError(f"fine_methods must name 'cfog' and/or 'foenet', got {self.fine_methods!r}")
        if not (self.coast_accel_sigma >= self.accel_sigma):
            raise ConfigError(f"coast_accel_sigma ({self.coast_accel_sigma}) must be >= accel_sigma ({self.accel_sigma})")
        if not (0.0 <= self.refused_fix_weight <= 1.0):
            raise ConfigError(f"refused_fix_weight must be in [0, 1], got {self.refused_fix_weight}")
        if not (0.0 < self.fine_min_score <= self.fine_strong_score <= 1.0):
            raise ConfigError(f"need 0 < fine_min_score <= fine_strong_score <= 1, got {self.fine_min_score}, {self.fine_strong_score}")
        if len(self.fine_score_weights) != 6 or not all(isinstance(v, (int, float)) for v in self.fine_score_weights):
            raise ConfigError(f"fine_score_weights needs 6 numbers, got {self.fine_score_weights!r}")
        if not (0.0 <= self.fine_min_overlap <= 1.0):
            raise ConfigError(f"fine_min_overlap must be in [0, 1], got {self.fine_min_overlap}")
        if not (self.track_max_radius_footprints >= 0):
            raise ConfigError(f"track_max_radius_footprints must be >= 0 (0 = always scan), got {self.track_max_radius_footprints}")
        if not (self.frame_budget_ms >= 0):
            raise ConfigError(f"frame_budget_ms must be >= 0 (0 = no budget), got {self.frame_budget_ms}")
        if not (1.0 <= self.frame_budget_max_factor <= 64.0):
            raise ConfigError(f"frame_budget_max_factor must be in [1, 64] (1 = a fixed budget), got {self.frame_budget_max_factor}")
        if self.bootstrap < 0 or self.fine_bootstrap < 0 or self.global_every < 0 or self.upright_hypotheses < 0:
            raise ConfigError("bootstrap, fine_bootstrap, global_every and upright_hypotheses must be >= 0")

    def replace(self, **changes) -> "LocalizerConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
