"""``Localizer``: camera frame -> ``GeoEstimate`` (retrieval, fine overlap estimation, refinement, tracking).

Per frame::

    preprocess  validate, downscale once to the working size, undistort, the sensors' pose prior
    search      tracking: a window around the predicted position (no retrieval at all);
                otherwise FOENet descriptors (4 rotations when the heading is unknown) -> the best
                tiles of the whole map (or near a GNSS prior) -> one search region per tile
    fine        dense overlap estimation on the index's precomputed map features
                (foenet_ros.localize.fine): a coarse heatmap over each region for heading x scale
                hypotheses, then patch refinement of the best peak -> position, heading, altitude,
                covariance; heading unknown: a heading sweep on the best regions first
    refine      where it pays (no IMU attitude, or a cold start): the frame's SIFT keypoints vs.
                the index's cached map keypoints, guided by the dense fix -> a homography ->
                camera centre, tilt, sub-metre; with nothing dense, unguided matching per region
    decide      error budget (map accuracy, attitude, terrain, calibration), plausibility (on the
                map, altitude and tilt consistent with the sensors), the tracker's gate

Plain Python: no rclpy here (the node, the bag replay, the benchmarks and the tests drive it).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..errors import CameraError
from ..features import dense_extractor
from ..features.local import Keypoints, SiftDetector
from ..geo.validate import check_altitude, check_attitude_pair, validate_heading
from ..utils import channel_max
from .budget import altitude_consistent, error_budget, on_map, tilt_consistent
from .config import LocalizerConfig
from .estimate import Candidate, GeoEstimate, Prior, validate_prior
from .fine import FineFix, FineStage, Region, Sensors, camera_or_pseudo, footprint_width
from .fine_score import dense_score
from .overlap import apply_h
from .pose import PoseFix, homography_fix, pnp_fix
from .preprocess import (camera_for_frame, check_frame, north_up_transform, orientation_diversity, retrieval_queries,
                         working_frame)
from .refine import fit_keypoints, frame_gsd, screen_windows
from .retrieval import search_candidates
from .tracker import Tracker

log = logging.getLogger(__name__)


class Localizer:
    """Absolute visual localisation of camera frames against a :class:`~foenet_ros.index.TileIndex`.

    Args:
        index: the tile index of the flight area (with its fine-stage map features).
        encoder: the FOENet encoder that built the index (checked: :class:`IndexMismatchError` otherwise).
        config: query-side settings.
    """

    def __init__(self, index, encoder, config: LocalizerConfig = LocalizerConfig()) -> None:
        from ..index.fine import FineStore

        index.check_encoder(encoder)
        self.index = index
        self.encoder = encoder
        self.config = config
        self.map = index.map_raster()
        self.store = FineStore.for_index(index)
        self.dsm = self.store.dsm()  # heights of the area (None: flat ground)
        methods = [m for m in config.fine_methods if m in self.store.methods] or list(self.store.methods[:1])
        self.extractors = [dense_extractor(m, getattr(encoder, "model", None)) for m in methods]
        self.fine = FineStage(self.store, self.extractors, methods, config, device=_fft_device(encoder))
        self.detector = SiftDetector(config.max_features)
        self.tracker = Tracker(config.accel_sigma, config.gate_chi2, config.max_misses, config.max_track_sigma_m,
                               coast_accel_sigma=config.coast_accel_sigma, refused_fix_weight=config.refused_fix_weight)
        m = index.manifest.get("map", {})
        self.bounds = tuple(float(v) for v in m.get("bounds_xy", self.map.bounds_xy))
        acc = m.get("accuracy_m")
        self.map_accuracy_m = float(acc) if isinstance(acc, (int, float)) and math.isfinite(acc) and acc >= 0 else config.map_accuracy_m
        self._map_center = ((self.bounds[0] + self.bounds[2]) / 2.0, (self.bounds[1] + self.bounds[3]) / 2.0)
        self.last_debug: dict[str, Any] = {}
        self.reset()

    @classmethod
    def from_paths(cls, index_dir: str | Path, model_path: str | Path | None = None, device: str = "auto",
                   config: LocalizerConfig = LocalizerConfig(), batch_size: int = 8) -> "Localizer":
        """Load an index directory and a model checkpoint (default: the bundled default model)."""
        from ..index import TileIndex
        from ..model import Encoder, load_checkpoint, load_default_model

        model = load_default_model() if model_path is None else load_checkpoint(model_path)
        encoder = Encoder(model, device=device, batch_size=batch_size)
        index = TileIndex.load(index_dir, expect_fingerprint=encoder.fingerprint)
        return cls(index, encoder, config)

    def reset(self) -> None:
        """Forget the track (e.g. after a teleport or when a new flight starts)."""
        self.tracker.reset()
        self._last_t: float | None = None
        self._last_heading = math.nan  # true heading of the last fix
        self._last_heading_grid = math.nan
        self._last_alt = math.nan
        self._turn_ref_grid = math.nan  # the last heading seen (compass or fix): turns are measured from it
        self._structure = 9.0  # effective gradient orientations of the current frame (orientation_diversity)
        self._since_global = 0
        self._deadline = math.inf  # perf_counter() after which this frame starts no further search step
        self._budget_spent_ms = 0.0  # when the budget stopped the search: the time it had taken (else 0)
        self._budget_factor = 1.0  # this frame's budget / frame_budget_ms (grows after stopped frames)
        self._kp_cache: dict[tuple, tuple] = {}  # this frame's detected keypoints, by (flavour, heading)
        self._kp_done: set[tuple] = set()  # this frame's (flavour, heading, tile) already matched or screened out
        self._hint = None  # this frame's best keypoint fit refused for too few inliers (a KeypointFit)

    # ------------------------------------------------------------------ main entry
    def localize(self, frame: np.ndarray, camera=None, prior: Any = None, heading_deg: float | None = None,
                 altitude_m: float | None = None, attitude: Sequence[float] | None = None,
                 stamp: float | None = None, *, heading_sigma_deg: float | None = None,
                 attitude_sigma_deg: float | None = None, altitude_sigma_m: float | None = None) -> GeoEstimate:
        """Localise one camera frame.

        Args:
            frame: [H,W,3] uint8 RGB (or [H,W] mono) camera image, any size (downscaled once, first).
            camera: :class:`~foenet_ros.geo.CameraIntrinsics` of the frame (rescaled if the frame was
                resized uniformly); with it the drone's position (camera centre), altitude and
                attitude come out; without it the image centre is reported.
            prior: a position hint: :class:`Prior`, ``(lat, lon[, sigma_m])`` or a GeoEstimate (an
                invalid one is ignored with a warning).
            heading_deg: TRUE compass heading of the image-up direction (clockwise from true north), if
                known (e.g. the autopilot's yaw). Unknown: a heading sweep / rotation-invariant keypoints.
            altitude_m: camera height above the map's ground plane, metres (sets the scale).
            attitude: ``(roll_deg, pitch_deg)`` of the camera (see :class:`~foenet_ros.geo.CameraPose`),
                e.g. from the IMU and gimbal: the frame is projected with it, and its error is budgeted.
            stamp: time in seconds (for the tracker); consecutive frames ``default_dt_s`` apart when omitted.
            heading_sigma_deg, attitude_sigma_deg, altitude_sigma_m: 1-sigma errors of those sensors
                (defaults from the config), e.g. from the IMU message's covariance.

        Raises:
            ImageError: wrong dtype/shape. CameraError: invalid intrinsics, attitude or altitude.
        """
        cfg = self.config
        t0 = time.perf_counter()
        timings: dict[str, float] = {"encode": 0.0, "search": 0.0, "fine": 0.0, "refine": 0.0}
        rgb = check_frame(frame)
        cam = camera_for_frame(camera, rgb.shape)
        # the boundary checks of geo.validate: AttitudeError / AltitudeError (CameraErrors) for values no
        # drone can have; an unusable heading counts as unknown; an invalid prior is ignored (WARNING)
        attitude = None if attitude is None else check_attitude_pair(attitude)
        heading_deg = validate_heading(heading_deg)
        altitude_m = None if altitude_m is None else check_altitude(altitude_m)
        prior = validate_prior(prior)
        t = float(stamp) if stamp is not None else (self._last_t + cfg.default_dt_s if self._last_t is not None else 0.0)
        self._last_t = t
        self._deadline = t0 + self._budget_factor * cfg.frame_budget_ms / 1000.0 if cfg.frame_budget_ms > 0 else math.inf
        self._budget_spent_ms = 0.0
        self._kp_cache, self._kp_done, self._hint = {}, set(), None

        # Headings in and out are TRUE compass headings; the map is north-up in the frame's UTM
        # *grid*, which is turned by the meridian convergence (up to ~3 deg at zone edges).
        heading_grid = None if heading_deg is None else self._true_to_grid(float(heading_deg), prior)
        work, cam_w = working_frame(rgb, cam, cfg.work_max_side)
        self._structure = orientation_diversity(work)
        h_w, w_w = work.shape[:2]
        s_w = w_w / rgb.shape[1]
        cam_f, pseudo = camera_or_pseudo(cam_w, w_w, h_w)
        # the sensors measure the body (or the gimbal's base): the camera's mount adds its own error
        sensors = Sensors(
            heading_grid,
            math.hypot(_sig(heading_sigma_deg, cfg.heading_sigma_deg), cfg.mount_sigma_deg),
            float(altitude_m) if altitude_m is not None else None,
            _sig(altitude_sigma_m, cfg.altitude_sigma_frac * (altitude_m or 0.0) + 0.5),
            attitude if not pseudo else None,
            math.hypot(_sig(attitude_sigma_deg, cfg.attitude_sigma_deg), cfg.mount_sigma_deg),
        )
        timings["preprocess"] = _ms(t0)

        # ---- where to look: the track's window, or retrieval (near a prior, else everywhere)
        self.tracker.predict(t)
        if sensors.heading_grid_deg is not None:  # a compass: a turn widens the track's gate before the search
            self._turned(sensors.heading_grid_deg, sensors.heading_sigma_deg)
        tracking = self.tracker.healthy and (cfg.global_every == 0 or self._since_global < cfg.global_every)
        if tracking and sensors.heading_grid_deg is None and math.isfinite(self._last_heading_grid):
            # no compass: the heading of the last fix, with a margin for the turn since
            sensors = _with(sensors, heading_grid_deg=self._last_heading_grid, heading_sigma_deg=max(8.0, sensors.heading_sigma_deg))
        if tracking and sensors.alt_m is None and math.isfinite(self._last_alt) and self._last_alt > 0:
            # no altimeter: the height of the last fix (a track window has no tile size to guess the scale
            # from), with 10 % for the climb since
            sensors = _with(sensors, alt_m=self._last_alt, alt_sigma_m=0.1 * self._last_alt)
        gate = self._track_gate() if tracking and sensors.heading_grid_deg is not None else None
        if gate is not None and self._gate_too_wide(gate[1], cam_f, sensors):
            # a coasted track's gate spans several footprints: scanning all of it densely costs more than
            # a retrieval, so the retrieval ranks the tiles inside the gate (at the track's heading)
            mode, cands, rotation, regions = self._retrieve(work, sensors.heading_grid_deg, None, timings, near=gate)
        elif gate is not None:
            mode = "track"
            cands: list[Candidate] = []
            rotation: dict[int, int] = {}
            (x, y), r = gate
            regions = [Region((x - r, y - r, x + r, y + r), -1, None)]
        else:
            mode, cands, rotation, regions = self._retrieve(work, heading_grid, prior, timings)
        self._since_global = self._since_global + 1 if mode == "track" else 0

        # ---- fine stage (+ refinement) on the best candidates; the next ones only when they found nothing
        k = len(regions) if mode == "track" else cfg.top_k
        # (with the keypoint screen on, the rotation-invariant keypoints cover the candidates beyond top_k too)
        extra = (regions[k:], cands[k:]) if cfg.keypoint_screen else ((), ())
        fix, dense, coarse = self._fix(work, cam_f, pseudo, sensors, regions[:k], cands[:k], rotation, mode, timings,
                                       screen=extra)
        if fix is None and len(regions) > k and not self._out_of_time():
            # the next candidates, cheaply: dense with a known heading, rotation-invariant keypoints without
            fix, d2, c2 = self._fix(work, cam_f, pseudo, sensors, regions[k:], cands[k:], rotation, mode, timings,
                                    thorough=False)
            dense, coarse = (d2, c2) if d2 is not None else (dense, coarse)
            mode += "+more"
        if fix is None and mode in ("track", "gate", "prior") and cfg.global_fallback and not self._out_of_time():
            m2, c2, r2, reg2 = self._retrieve(work, heading_grid, None, timings)
            seen = {c.tile_id for c in cands}
            keep = [i for i, c in enumerate(c2) if c.tile_id not in seen][: cfg.top_k]
            if keep:
                fix, dense, coarse = self._fix(work, cam_f, pseudo, sensors, [reg2[i] for i in keep],
                                               [c2[i] for i in keep], r2, "global", timings)
                cands = cands + [c2[i] for i in keep]
                rotation.update(r2)
            mode += "+global"
            self._since_global = 0
        timings["verify"] = timings["fine"] + timings["refine"]
        self._kp_cache, self._kp_done, self._hint = {}, set(), None
        self.last_debug = {"frame_small": work, "s_v": 1.0, "fixes": [_DebugFix(fix, cands)] if fix else [],
                           "mode": mode, "dense": dense, "coarse": coarse, "scale": s_w}

        # ---- decide: budget, plausibility, tracker
        t4 = time.perf_counter()
        est = self._decide(fix, cands, t, mode, sensors, cam_f, pseudo)
        timings["track"] = _ms(t4)
        timings["total"] = _ms(t0)
        est.timings_ms = timings
        est.stamp = stamp
        self._grow_budget(est)
        return est

    def _grow_budget(self, est: GeoEstimate) -> None:
        """The next frame's budget: doubled (up to ``frame_budget_max_factor``) after a frame the budget
        stopped without a verified fix, so that a slow machine still finishes a cold start (at a lower
        frame rate) instead of stopping every frame at the same step; the base budget otherwise."""
        if self._budget_spent_ms and est.status != "verified":
            self._budget_factor = min(2.0 * self._budget_factor, self.config.frame_budget_max_factor)
        else:
            self._budget_factor = 1.0

    # ------------------------------------------------------------------ search regions
    def _track_gate(self) -> tuple[np.ndarray, float]:
        """The track's search disk: predicted position (frame metres) and radius (m)."""
        cfg = self.config
        return np.asarray(self.tracker.position, float), max(cfg.track_radius_m, cfg.gate_sigmas * self.tracker.sigma_m)

    def _gate_too_wide(self, radius_m: float, cam, sensors: Sensors) -> bool:
        """Whether the track's gate radius exceeds ``track_max_radius_footprints`` ground widths of the
        frame (the dense scan's cost grows with the window's area in frame-sized cells)."""
        if self.config.track_max_radius_footprints <= 0 or sensors.alt_m is None:
            return False
        return radius_m > self.config.track_max_radius_footprints * footprint_width(cam, sensors.alt_m)

    def _retrieve(self, work, heading_grid, prior, timings, near: tuple[np.ndarray, float] | None = None,
                  ) -> tuple[str, list[Candidate], dict[int, int], list[Region]]:
        """Encode the frame, search the index, one region per candidate: near a prior when there is one
        (mode "prior"), inside ``near`` = (centre xy, radius m), the track's gate (mode "gate"), else everywhere."""
        cfg = self.config
        t1 = time.perf_counter()
        queries = retrieval_queries(work, heading_grid, cfg.unknown_heading_rotations)
        descs = self.encoder.encode(queries, branch="drone")
        timings["encode"] += _ms(t1)
        t2 = time.perf_counter()
        centre, radius, mode = None, None, "global"
        if prior is not None:
            centre = self.index.frame.from_lonlat(prior.lon, prior.lat)
            radius = max(cfg.gating_radius_m, cfg.gate_sigmas * prior.sigma_m)
            mode = "prior"
        elif near is not None:
            (centre, radius), mode = near, "gate"
        cands, rotation = search_candidates(self.index, descs, k=cfg.search_k, top_k=max(cfg.top_k, cfg.top_k_more),
                                            dedup_frac=cfg.dedup_frac, near=centre, radius=radius)
        regions = []
        for c in cands:
            h = cfg.crop_factor * c.size_m / 2.0
            regions.append(Region((c.center_xy[0] - h, c.center_xy[1] - h, c.center_xy[0] + h, c.center_xy[1] + h),
                                  c.tile_id, c.size_m))
        timings["search"] += _ms(t2)
        return mode, cands, rotation, regions

    # ------------------------------------------------------------------ fine + refine
    def _fix(self, work, cam, pseudo, sensors, regions, cands, rotation, mode, timings, thorough: bool = True,
             screen: tuple[list, list] = ((), ())):
        """The best accepted fix for these regions: ``(PoseFix or None, FineFix or None, coarse results)``.

        Order: the dense overlap estimation (a heading sweep first when the heading is unknown, after
        cheap rotation-invariant keypoints); a *strong* dense fix is refined by guided keypoints where
        that pays; a *weak* one yields to unguided upright keypoints if those verify, and is taken
        only when they do not. ``thorough=False`` (candidates beyond top_k): no sweep, no upright retries.
        ``screen``: further (regions, candidates) that the rotation-invariant keypoints cover as well (their
        step is cheap across many candidates, see :meth:`_unguided`): a retrieval rank of 10-20 then costs
        one screen instead of the sweep, the upright retries and a second round.
        """
        if not regions:
            return None, None, []
        kcam = cam if not pseudo else None
        dense, coarse, fix = None, [], None
        t3 = time.perf_counter()
        if sensors.heading_grid_deg is None:
            # heading unknown: rotation-invariant keypoints first (cheap; same-source maps), then a sweep
            fix = self._timed(timings, "refine", self._unguided, work, kcam, sensors, [*regions, *screen[0]],
                              [*cands, *screen[1]], "oriented")
            if fix is None and thorough:
                # too few keypoint inliers may still say where to look: the dense stage there, on its own score
                dense, coarse = self._timed(timings, "fine", self._hinted, work, cam, pseudo, sensors,
                                            [*regions, *screen[0]])
                if dense is not None and self._dense_grade(dense) == "none":
                    dense, coarse = None, []
                t3 = time.perf_counter()  # the hint's time is counted
            if fix is None and thorough and dense is None:
                # drone photo vs. satellite: upright descriptors at the rotations retrieval liked best, or
                # at the heading a keypoint fit short of inliers measured (then the retries at retrieval's
                # quarter turns cost 3 more descriptions and fits for a heading already known better)
                hyps = [self._hint_view(work)[1]] if self._hint is not None and self.config.keypoint_hint_min_inliers \
                    else self._heading_hypotheses(cands, rotation)
                for h in hyps[: self.config.upright_hypotheses]:
                    if self._out_of_time():
                        break
                    fix = self._timed(timings, "refine", self._unguided, work, kcam, _with(sensors, heading_grid_deg=h),
                                      regions, cands, "upright")
                    if fix is not None:
                        fix.info["search_heading"] = f"upright_hypothesis_{h:.0f}"
                        break
            if fix is not None or not thorough or (dense is None and self._out_of_time()):
                return fix, None, []
            if dense is None:
                t3 = time.perf_counter()
                dense, coarse = self._sweep(work, cam, pseudo, sensors, regions, cands, rotation)
        else:
            dense, coarse = self.fine.run(work, cam, sensors, regions, keep_heat=True, allow_homography=not pseudo,
                                          stop=self._out_of_time)
        timings["fine"] += _ms(t3)
        grade = "none"
        if dense is not None:
            self._note_dense(dense, regions, cands)
            grade = self._dense_grade(dense)
            if grade != "none":
                fix = self._dense_fix(dense, cam, pseudo, sensors, regions, work.shape[1::-1])
            else:
                dense.info["refused"] = (f"dense evidence too weak: score {dense.info['score']:.2f} (z {dense.coarse.z_peak:.1f}, "
                                         f"margin {dense.margin:.1f}, {dense.inliers} patches)")
        t5 = time.perf_counter()
        if fix is not None and grade == "strong" and not pseudo and self._refine_pays(mode, sensors):
            better = self._guided(work, cam, sensors, fix, dense)
            fix = better if better is not None else fix
        elif grade != "strong" and cands and thorough and not self._out_of_time():
            # no strong dense fix: upright keypoints against each candidate's cached map keypoints (at
            # the sweep's heading when the compass is unknown); they win over a weak dense fix
            s = sensors if sensors.heading_grid_deg is not None or dense is None else \
                _with(sensors, heading_grid_deg=dense.hyp.heading_grid_deg)
            if s.heading_grid_deg is not None:
                kfix = self._unguided(work, kcam, s, regions, cands, "upright")
                if kfix is not None and (fix is None or kfix.model == "homography" or self._agree(kfix, fix)):
                    fix = kfix  # a full homography, or weak keypoints that confirm the weak dense fix
        timings["refine"] += _ms(t5)
        return fix, dense, coarse

    def _out_of_time(self) -> bool:
        """Whether this frame's ``frame_budget_ms`` is spent: no further search step starts (a step
        under way finishes, so a frame may overrun by one step, a few hundred ms at most)."""
        now = time.perf_counter()
        if now <= self._deadline:
            return False
        if not self._budget_spent_ms:
            self._budget_spent_ms = (now - self._deadline) * 1000.0 + self._budget_factor * self.config.frame_budget_ms
        return True

    @staticmethod
    def _timed(timings: dict, stage: str, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[stage] += _ms(t)

    def _note_dense(self, dense: FineFix, regions, cands) -> None:
        """Record the dense stage's evidence on its candidate and in its diagnostics."""
        tag = regions[dense.region].tag if 0 <= dense.region < len(regions) else -2
        for c in cands:
            if c.tile_id == tag:
                c.inliers = dense.inliers
                c.position_xy = (float(dense.xy[0]), float(dense.xy[1]))
        dense.info.update(z_peak=dense.coarse.z_peak, rival_z=dense.rival_z, margin=dense.margin)

    def _refine_pays(self, mode: str, sensors: Sensors) -> bool:
        pol = self.config.refine
        if pol == "never":
            return False
        if pol == "always":
            return True
        return sensors.attitude is None or not mode.startswith("track")

    def _agree(self, a: PoseFix, b: PoseFix) -> bool:
        """Two fixes of the same frame agree within their (scaled) covariances."""
        d = a.xy - b.xy
        S = a.cov * self.config.sigma_scale**2 + b.cov * self.config.fine_sigma_scale**2 + np.eye(2)
        return float(d @ np.linalg.solve(S, d)) <= self.config.gate_chi2

    def _dense_grade(self, d: FineFix) -> str:
        """"strong" (trusted alone), "weak" (taken when no keypoint fix contradicts it) or "none", from
        the calibrated probability that the dense fix found the right place (``d.info["score"]``)."""
        cfg = self.config
        p = dense_score(d, cfg.fine_score_weights)
        d.info["score"] = p
        if d.coarse.z_peak < cfg.fine_min_z or p < cfg.fine_min_score:
            return "none"
        return "strong" if p >= cfg.fine_strong_score else "weak"

    def _dense_fix(self, d: FineFix, cam, pseudo, sensors, regions, wh) -> PoseFix | None:
        """A PoseFix from an accepted dense fit (a homography fit: the camera centre and tilt from it)."""
        score = float(d.info.get("score", 0.0))
        info = dict(d.info, z_peak=d.coarse.z_peak, rival_z=d.rival_z, margin=d.margin,
                    position_of="image_centre" if pseudo else "camera_centre")
        from ..geo.camera import ground_to_image_homography
        from .pose import position_from_h

        # the patch correspondences as frame pixels (for plots): template ground -> working frame
        Hgi = ground_to_image_homography(cam, d.hyp.pose())
        pts_frame = apply_h(Hgi, d.src) if len(d.src) else np.zeros((0, 2))
        tag = regions[d.region].tag if 0 <= d.region < len(regions) else -1
        xy, heading, alt, tilt, from_imu = d.xy, d.heading_grid_deg, d.alt_m, _tilt(sensors.attitude), sensors.attitude is not None
        if d.model == "homography" and not pseudo:
            try:
                xy, heading, alt, pinfo = position_from_h(d.H_img_to_map, cam, None, sensors.alt_m, wh)
            except CameraError as exc:
                log.debug("dense homography pose failed: %s", exc)
                return None
            tilt, from_imu = float(pinfo.get("tilt_deg", 0.0)), False
            info.update(tilt_deg=tilt, reproj_rms_px=pinfo.get("reproj_rms_px", math.nan))
        elif sensors.alt_m is not None and not pseudo:
            xy, alt = self._fuse_altitude(d, cam, sensors, info)
        if pseudo:
            alt = sensors.alt_m if sensors.alt_m is not None else math.nan
        return PoseFix(np.asarray(xy, float), d.cov, float(heading), float(alt), "dense", d.model, d.inliers, score,
                       pts_frame, d.dst, info, tag, attitude_from_imu=from_imu, tilt_deg=tilt)

    def _fuse_altitude(self, d: FineFix, cam, sensors: Sensors, info: dict) -> tuple[np.ndarray, float]:
        """A dense (template) fix's altitude is the scale bin that correlated best: known to about
        ``fine_scale_step / sqrt(12)`` (a uniform error within the bin), often coarser than the
        altimeter. Fuse the two (inverse variance, in log altitude) and move the nadir accordingly:
        what the correlation pins down is the ground under the frame's content, about the image
        centre; the nadir lies ``alt * u`` from it (``u``: the centre's ground offset per metre of
        height for this attitude), so a different altitude moves the nadir by ``(alt_d - alt) * u``.
        Returns ``(xy [2], alt)``."""
        alt_d = float(d.alt_m)
        if not (math.isfinite(alt_d) and alt_d > 0 and sensors.alt_m > 0):
            return np.asarray(d.xy, float), alt_d
        var_d = (self.config.fine_scale_step / math.sqrt(12.0)) ** 2
        var_s = (max(float(sensors.alt_sigma_m), 1e-3) / float(sensors.alt_m)) ** 2
        log_alt = (math.log(alt_d) / var_d + math.log(float(sensors.alt_m)) / var_s) / (1.0 / var_d + 1.0 / var_s)
        alt = math.exp(log_alt)
        from ..geo.camera import ground_to_image_homography

        try:
            H_g = np.linalg.inv(ground_to_image_homography(cam, d.hyp.pose()))
            centre = apply_h(H_g, np.array([[cam.cx, cam.cy]]))[0]  # image centre, ground metres from the nadir
        except (CameraError, np.linalg.LinAlgError):
            return np.asarray(d.xy, float), alt_d
        if not np.all(np.isfinite(centre)):
            return np.asarray(d.xy, float), alt_d
        xy = np.asarray(d.xy, float) + centre * (1.0 - alt / alt_d)
        info.update(alt_scale_bin_m=alt_d, alt_fused_m=alt, nadir_shift_m=float(np.hypot(*(xy - d.xy))))
        return xy, alt

    def _guided(self, work, cam, sensors, fix: PoseFix, dense: FineFix) -> PoseFix | None:
        """Keypoint refinement of a dense fix: guided matching, homography, pose; None if it does not hold."""
        cfg = self.config
        (w_kp, h_kp), T, kp = self._frame_keypoints(work, "upright", fix.heading_grid_deg)
        h, w = work.shape[:2]
        gsd_kp = frame_gsd(dense.H_img_to_map @ np.linalg.inv(T), w_kp, h_kp)
        # the dense fit predicts where each ground point of the frame lies to within its residual,
        # even when the camera position itself is uncertain (an unknown tilt): guide by that
        radius = max(cfg.guided_radius_m, 3.0 * dense.rms_m + 2.0 * float(dense.info.get("fine_cell_m", 1.0)))
        box = _box_around(apply_h(dense.H_img_to_map, _corners(w, h)), radius)
        kf = fit_keypoints(kp, "upright", self.store, box, gsd_kp, (w, h), H_pred=dense.H_img_to_map,
                           radius_m=radius, ratio=cfg.ratio, ransac_px=cfg.ransac_px,
                           min_inliers=cfg.min_inliers, min_spread=cfg.min_spread, T_frame=T)
        if kf.H is None:
            fix.info["refine"] = kf.reason
            return None
        kfix = self._keypoint_pose(kf, cam, sensors, (w, h))
        if kfix is None:
            fix.info["refine"] = "keypoint pose failed"
            return None
        # the keypoint fit must agree with the dense one it was guided by: where the frame's centre lands
        c = np.array([[(w - 1) / 2.0, (h - 1) / 2.0]])
        d = float(np.hypot(*(apply_h(kf.H, c)[0] - apply_h(dense.H_img_to_map, c)[0])))
        if d > radius:
            fix.info["refine"] = f"keypoint fit puts the frame centre {d:.1f} m from the dense fit: kept the dense fix"
            return None
        if not tilt_consistent(kfix.tilt_deg, sensors.attitude, sensors.attitude_sigma_deg):
            fix.info["refine"] = f"keypoint tilt {kfix.tilt_deg:.1f} deg disagrees with the IMU: kept the dense fix"
            return None
        kfix.score = min(1.0, kf.inliers / (kf.inliers + 2.0 * cfg.min_inliers))
        kfix.info.update(fix.info, refine="guided", keypoint_matches=kf.matches, keypoint_inliers=kf.inliers,
                         dense_xy=[float(fix.xy[0]), float(fix.xy[1])])
        kfix.tile_id = fix.tile_id
        kfix.inliers = kf.inliers
        return kfix

    def _keypoint_pose(self, kf, cam, sensors, wh) -> PoseFix | None:
        """The pose of a keypoint fit: PnP on 3D map points when the index has a surface model (no
        flat-ground error over hills), else from the homography (camera centre, or with an IMU attitude
        walked back from the principal ray; a 3-DOF fit without attitude reports the image centre)."""
        cfg = self.config
        if cam is not None and kf.model == "homography" and kf.z_map is not None and np.isfinite(kf.z_map).sum() >= 6:
            f = pnp_fix(kf.pts_frame, kf.pts_map, kf.z_map, cam, wh, bootstrap=cfg.bootstrap, dsm=self.dsm,
                        reproj_px=cfg.ransac_px * max(wh) / cfg.verify_max_side)
            if f is not None:
                return f
        weak = kf.model == "scale_translation" and sensors.attitude is None
        try:
            f = homography_fix(kf.H, kf.pts_frame, kf.pts_map, None if weak else cam, sensors.attitude, sensors.alt_m,
                               wh, bootstrap=cfg.bootstrap, no_intrinsics_sigma_frac=cfg.no_intrinsics_sigma_frac)
        except CameraError:
            return None
        f.model = kf.model
        return f

    def _unguided(self, work, cam, sensors, regions, cands, flavour: str) -> PoseFix | None:  # noqa: PLR0913
        """Keypoints against each candidate region's cached map keypoints (no dense fix to guide them).

        The best candidate is fitted first; when it gives no strong fix and ``keypoint_screen`` is on, the
        others are screened (:func:`~foenet_ros.localize.refine.screen_windows`: the frame's strongest
        keypoints against all their map keypoints at once) and fitted in the order of their votes, those
        with fewer than ``keypoint_screen_min`` votes not at all. Candidates matched (or screened out)
        earlier in this frame with the same keypoints are skipped.
        """
        cfg = self.config
        h, w = work.shape[:2]
        heading = sensors.heading_grid_deg if flavour == "upright" else None
        key = (flavour, None if heading is None else round(float(heading), 6))
        _, T, kp = self._frame_keypoints(work, flavour, heading)
        if len(kp) < cfg.min_inliers:
            return None
        # keypoint-view pixels per working pixel: the north-up turn keeps the scale (its canvas is larger
        # than the frame, so the canvas size does not give it)
        k_scale = math.sqrt(abs(float(np.linalg.det(T[:2, :2]))))

        def gsd_of(cand) -> float:
            # the keypoints' GSD from the altitude, else from the tile: the tile spans about the frame's footprint
            if cam is not None and sensors.alt_m is not None:
                return sensors.alt_m / (cam.fx * k_scale)
            return cand.size_m / (k_scale * math.sqrt(h * w))

        def order():  # the first candidate, then (only if the loop asks for more) the rest, screened
            todo = [j for j, c in enumerate(cands) if (key, c.tile_id) not in self._kp_done]
            yield from todo[:1]
            rest = todo[1:]
            if cfg.keypoint_screen and len(rest) > 1 and not self._out_of_time():
                rest = self._screened(kp, flavour, key, regions, cands, rest, gsd_of)
            yield from rest

        best = None
        for pos, j in enumerate(order()):
            if pos > 0 and self._out_of_time():
                break
            reg, cand = regions[j], cands[j]
            self._kp_done.add((key, cand.tile_id))
            gsd = gsd_of(cand)
            kf = fit_keypoints(kp, flavour, self.store, reg.box, gsd, (w, h), ratio=cfg.ratio,
                               ransac_px=cfg.ransac_px, min_inliers=cfg.min_inliers, min_spread=cfg.min_spread, T_frame=T,
                               min_inliers_3dof=cfg.min_inliers_3dof,
                               # only the rotation-invariant pass feeds _hinted; upright fits keep their 3-DOF fallback
                               hint_min_inliers=cfg.keypoint_hint_min_inliers if flavour == "oriented" else 0)
            if kf.H is None and kf.H_weak is not None and (self._hint is None or kf.inliers > self._hint.inliers):
                self._hint = kf  # the best weak fit of this frame (see _hinted)
            cand.matches = kf.matches
            if kf.H is None:
                continue
            f = self._keypoint_pose(kf, cam, sensors, (w, h))
            if f is None:
                continue
            cand.inliers = kf.inliers
            cand.position_xy = (float(f.xy[0]), float(f.xy[1]))
            f.tile_id, f.inliers = cand.tile_id, kf.inliers
            f.score = min(1.0, kf.inliers / (kf.inliers + 2.0 * cfg.min_inliers))
            f.info.update(refine=f"unguided-{flavour}", keypoint_matches=kf.matches, keypoint_rank=j)
            if best is None or f.inliers > best.inliers:
                best = f
            if f.inliers >= 4 * cfg.min_inliers:
                break
        return best

    def _screened(self, kp, flavour: str, key: tuple, regions, cands, rest: list[int], gsd_of) -> list[int]:
        """The candidates ``rest`` worth a keypoint fit, most votes first (see :meth:`_unguided`); the
        others are marked done for this frame."""
        cfg = self.config
        votes = screen_windows(kp, flavour, self.store, [regions[i].box for i in rest], [gsd_of(cands[i]) for i in rest],
                               ratio=cfg.ratio, strongest=cfg.keypoint_screen)
        for i, v in zip(rest, votes):
            cands[i].votes = int(v)
            if v < cfg.keypoint_screen_min:
                self._kp_done.add((key, cands[i].tile_id))
        return sorted((i for i in rest if cands[i].votes >= cfg.keypoint_screen_min), key=lambda i: -cands[i].votes)

    def _sweep(self, work, cam, pseudo, sensors, regions, cands, rotation) -> tuple[FineFix | None, list]:
        """Heading unknown: sweep headings on the best regions with a small template, then the fine
        stage with heading bins around the sweep's best heading."""
        cfg = self.config
        n_rot = max(1, cfg.unknown_heading_rotations)
        best = None
        order = list(range(len(regions)))[: cfg.fine_sweep_candidates]
        for i in order:
            if best is not None and self._out_of_time():
                break
            reg = regions[i]
            # around the query rotation that retrieval liked best for this tile, else all round
            if cands and reg.tag in rotation and n_rot > 1:
                h0 = 360.0 * rotation[reg.tag] / n_rot
                half = 180.0 / n_rot + cfg.fine_sweep_step_deg
                heads = [h0 + d for d in np.arange(-half, half + 1e-6, cfg.fine_sweep_step_deg)]
            else:
                heads = list(np.arange(0.0, 360.0, cfg.fine_sweep_step_deg))
            _, scales, alt0 = self.fine.hypotheses(sensors, cam, reg, headings=[0.0])
            hyps = self.fine._hyps([float(h) % 360.0 for h in heads], scales[len(scales) // 2 : len(scales) // 2 + 1],
                                   alt0, sensors)
            res = self.fine.coarse(work, cam, hyps, reg.box, cells=cfg.fine_sweep_cells)
            if res is not None and (best is None or res.z_peak > best[1].z_peak):
                best = (i, res)
        if best is None:
            return None, []
        i, res = best
        s = _with(sensors, heading_grid_deg=res.hyp.heading_grid_deg, heading_sigma_deg=cfg.fine_sweep_step_deg / 2.0)
        if sensors.alt_m is None:
            s = _with(s, alt_m=res.hyp.alt_m, alt_sigma_m=0.1 * res.hyp.alt_m)
        dense, coarse = self.fine.run(work, cam, s, [regions[i]], keep_heat=True, allow_homography=not pseudo)
        if dense is not None:
            dense.region = i
            dense.info["sweep_heading_grid_deg"] = res.hyp.heading_grid_deg
        return dense, coarse

    def _hinted(self, work, cam, pseudo, sensors, regions) -> tuple[FineFix | None, list]:
        """Heading unknown, no keypoint fix: the dense stage where this frame's best keypoint fit refused
        for too few inliers (``keypoint_hint_min_inliers``) puts the frame, at the heading and scale it
        implies (one region and a few heading bins instead of a sweep over retrieval's tiles). The keypoints
        only say where to look; the fix must pass the dense stage's calibrated score. ``(None, [])``
        without a hint."""
        cfg, kf = self.config, self._hint
        if kf is None or not cfg.keypoint_hint_min_inliers:
            return None, []
        (x, y), heading, fp = self._hint_view(work)
        # the nadir lies within half a footprint of the image centre for tilts up to the half field of view
        r = 0.5 * fp
        inside = [i for i, reg in enumerate(regions) if reg.box[0] <= x <= reg.box[2] and reg.box[1] <= y <= reg.box[3]]
        region = Region((x - r, y - r, x + r, y + r), regions[inside[0]].tag if inside else -1, fp)
        s = _with(sensors, heading_grid_deg=heading, heading_sigma_deg=cfg.fine_sweep_step_deg / 2.0)
        if s.alt_m is None and not pseudo:
            alt = fp / footprint_width(cam, 1.0)  # the footprint grows in proportion to the altitude
            s = _with(s, alt_m=alt, alt_sigma_m=0.1 * alt)
        dense, coarse = self.fine.run(work, cam, s, [region], keep_heat=True, allow_homography=not pseudo)
        if dense is not None:
            dense.region = inside[0] if inside else -1
            dense.info.update(keypoint_hint_inliers=kf.inliers, keypoint_hint_heading_grid_deg=heading)
        return dense, coarse

    def _hint_view(self, work: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Where this frame's keypoint hint puts it: ``(image centre on the map [2] m, grid heading of
        the image's up in degrees, ground length of its longer side in m)``."""
        h, w = work.shape[:2]
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        p = apply_h(self._hint.H_weak, np.array([[cx, cy], [cx, cy - 1.0], [0.0, cy], [w - 1.0, cy], [cx, 0.0], [cx, h - 1.0]]))
        up = p[1] - p[0]  # the image's up direction on the map
        heading = math.degrees(math.atan2(up[0], up[1])) % 360.0
        fp = float(max(np.hypot(*(p[3] - p[2])), np.hypot(*(p[5] - p[4]))))
        return p[0], heading, fp

    def _frame_keypoints(self, work: np.ndarray, flavour: str, heading_grid: float | None
                         ) -> tuple[tuple[int, int], np.ndarray, Keypoints]:
        """This frame's keypoints of one flavour, computed once per frame (later candidates and
        passes reuse them): ``((w, h) of the keypoint view, T: working px -> view px, keypoints in view px)``.

        They are detected once, on the working frame downscaled to ``verify_max_side``. The oriented
        flavour is described there; the upright one at ``heading_grid`` is steered to the map's north
        (:meth:`SiftDetector.steered`) and placed in the pixels of the frame turned north-up (the view
        :func:`rotate_north_up` would make, which the north-up 3-DOF fit of the keypoints needs).
        """
        key = (flavour, None if heading_grid is None else round(float(heading_grid), 6))
        if key in self._kp_cache:
            return self._kp_cache[key]
        if "small" not in self._kp_cache:
            s = min(1.0, self.config.verify_max_side / max(work.shape[:2]))
            small = cv2.resize(work, (round(work.shape[1] * s), round(work.shape[0] * s)), interpolation=cv2.INTER_AREA) \
                if s < 1 else work
            sx, sy = small.shape[1] / work.shape[1], small.shape[0] / work.shape[0]
            S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
            self._kp_cache["small"] = (small, S)
        small, S = self._kp_cache["small"]
        if flavour == "oriented":
            out = (small.shape[1], small.shape[0]), S, self.detector.detect(small, _data_mask(small), ("oriented",))
            self._kp_cache["detected"] = out[2]  # the upright flavour describes the same keypoints
        else:
            if "detected" not in self._kp_cache:
                self._kp_cache["detected"] = self.detector.detect(small, _data_mask(small), ())
            kp = self.detector.steered(small, self._kp_cache["detected"], heading_grid)
            R, wh = north_up_transform(small.shape[1], small.shape[0], heading_grid)
            kp.xy = apply_h(R, kp.xy.astype(np.float64)).astype(np.float32)
            out = wh, R @ S, kp
        self._kp_cache[key] = out
        return out

    # ------------------------------------------------------------------ headings
    def _heading_hypotheses(self, cands: list[Candidate], rotation: dict[int, int]) -> list[float]:
        """Grid headings to try upright, best first: the query rotation that matched each candidate
        best, in candidate order, then the remaining rotations."""
        n = max(1, self.config.unknown_heading_rotations)
        step = 360.0 / n
        out: list[float] = []
        for c in cands:
            h = step * rotation.get(c.tile_id, 0)
            if h not in out:
                out.append(h)
        return out + [step * i for i in range(n) if step * i not in out]

    def _true_to_grid(self, heading_true_deg: float, prior: Prior | None) -> float:
        """A true compass heading -> heading from the index frame's grid north, degrees [0, 360).

        The convergence is evaluated where the drone probably is: the prior (unless it is far off the
        map), else the track, else the middle of the map (it changes by ~0.01 deg per km).
        """
        near = None if prior is None else self.index.frame.from_lonlat(prior.lon, prior.lat)
        reach = 5e3 + 0.5 * float(np.hypot(self.bounds[2] - self.bounds[0], self.bounds[3] - self.bounds[1]))
        if near is not None and np.all(np.isfinite(near)) and np.hypot(*np.subtract(near, self._map_center)) <= reach:
            x, y = near
        elif self.tracker.initialised:
            x, y = (float(v) for v in self.tracker.position)
        else:
            x, y = self._map_center
        return float(self.index.frame.true_to_grid_heading(heading_true_deg, x, y))

    # ------------------------------------------------------------------ decision + tracking
    def _decide(self, fix: PoseFix | None, cands: list[Candidate], t: float, mode: str, sensors: Sensors,
                cam, pseudo: bool) -> GeoEstimate:
        cfg = self.config
        pose_info: dict[str, Any] = {"search": mode}
        dense = self.last_debug.get("dense")
        if dense is not None:
            pose_info.update({f"dense_{k}": v for k, v in dense.info.items() if isinstance(v, (int, float, str))})
        pose_info["orientations"] = round(self._structure, 2)
        if self._budget_spent_ms:
            pose_info["budget_stopped_ms"] = round(self._budget_spent_ms, 1)
        if self._budget_factor > 1.0:  # a grown budget (the frames before were stopped)
            pose_info["budget_ms"] = round(self._budget_factor * cfg.frame_budget_ms, 3)
        if fix is not None:
            pose_info.update({k: v for k, v in fix.info.items() if isinstance(v, (int, float, str))})
            pose_info.update(source=fix.source, model=fix.model, tile_id=fix.tile_id)
            reason = self._implausible(fix, sensors)
            if reason:
                pose_info["refused"] = reason
                fix = None
        if fix is not None:
            cov, terms = error_budget(
                fix.cov, sigma_scale=cfg.fine_sigma_scale if fix.source == "dense" else cfg.sigma_scale,
                map_accuracy_m=self.map_accuracy_m, alt_m=fix.alt_m if math.isfinite(fix.alt_m) else (sensors.alt_m or math.nan),
                attitude_sigma_deg=sensors.attitude_sigma_deg if fix.attitude_from_imu else None,
                tilt_deg=fix.tilt_deg if math.isfinite(fix.tilt_deg) else 0.0, hfov_deg=cam.hfov_deg,
                terrain_relief_m=self._relief(fix), calibration_sigma_frac=cfg.calibration_sigma_frac,
                floor_m=cfg.sigma_floor_m)
            if fix.source == "dense" and fix.model != "homography" and sensors.attitude is None and not pseudo:
                # a nadir was assumed: the camera may be tilted, its centre off the nadir point by alt tan(tilt)
                alt = fix.alt_m if math.isfinite(fix.alt_m) else 100.0
                cov = cov + np.eye(2) * (alt * math.tan(math.radians(cfg.unknown_tilt_sigma_deg))) ** 2
            if pseudo and fix.source == "dense":  # the image centre without intrinsics: the unknown tilt (keypoint fixes have it)
                width = 2.0 * (fix.alt_m if math.isfinite(fix.alt_m) else 100.0) * math.tan(math.radians(cam.hfov_deg) / 2)
                cov = cov + np.eye(2) * (cfg.no_intrinsics_sigma_frac * width) ** 2
            pose_info["budget"] = terms.to_json()
            sigma = math.sqrt(max(float(np.linalg.eigvalsh(cov).max()), 0.0))
            if sigma > cfg.verified_max_sigma_m:
                # a geometric match that says little about the position: no verified fix (the tracker
                # and the retrieval answer below decide what to report)
                pose_info["refused"] = f"fix sigma {sigma:.0f} m exceeds verified_max_sigma_m ({cfg.verified_max_sigma_m:.0f} m)"
                fix = None
        if fix is not None:
            self._turned(fix.heading_grid_deg, cfg.heading_sigma_deg)
            upd = self.tracker.update(fix.xy, cov, t)
            heading_true = float(self.index.frame.grid_to_true_heading(fix.heading_grid_deg, float(fix.xy[0]), float(fix.xy[1])))
            pose_info.update(heading_grid_deg=float(fix.heading_grid_deg), track_d2=upd.d2, track_restarted=upd.reinitialised)
            if upd.accepted:
                self._last_heading, self._last_heading_grid, self._last_alt = heading_true, fix.heading_grid_deg, fix.alt_m
                return self._estimate("verified", fix.xy, cov, heading_true, fix.alt_m, fix.score, fix.inliers, cands,
                                      pose_info)
            pose_info["rejected_fix_xy"] = [float(fix.xy[0]), float(fix.xy[1])]
        else:
            self.tracker.miss(t)
        if self.tracker.healthy:
            pose_info["misses"] = self.tracker.misses
            score = 0.5 * math.exp(-self.tracker.misses / max(cfg.max_misses, 1))
            return self._estimate("tracked", self.tracker.position, self.tracker.cov_xy, self._last_heading,
                                  self._last_alt, score, 0, cands, pose_info)
        # no fix, no track: a coarse retrieval answer if the candidates agree on a place, else lost
        if cands:
            top = cands[: cfg.top_k]
            w = np.array([max(c.score, 0.0) for c in top]) + 1e-6
            centers = np.array([c.center_xy for c in top])
            mean = centers[0]
            spread = (w[:, None] * (centers - mean) ** 2).sum(axis=0) / w.sum()
            cov = np.diag(spread) + np.eye(2) * (0.5 * cands[0].size_m) ** 2
            sigma = math.sqrt(np.linalg.eigvalsh(cov).max())
            pose_info["retrieval_sigma_m"] = sigma
            margin = top[0].score - float(np.mean([c.score for c in top[1:]])) if len(top) > 1 else 0.0
            pose_info["retrieval_margin"] = margin
            if sigma <= cfg.retrieval_max_sigma_m and margin >= cfg.retrieval_min_margin:
                return self._estimate("retrieval", mean, cov, math.nan, math.nan, float(min(0.2, max(margin, 0.0))),
                                      0, cands, pose_info)
        return GeoEstimate(status="lost", candidates=cands, pose=pose_info)

    def _turned(self, heading_grid: float, sigma_deg: float) -> None:
        """The heading is now ``heading_grid`` (degrees, grid): a turn since the last heading seen is a
        manoeuvre for the tracker (:meth:`Tracker.manoeuvre`). The heading's own noise (two readings of
        ``sigma_deg``) is not counted as a turn."""
        h = float(heading_grid)
        if not math.isfinite(h):
            return
        if math.isfinite(self._turn_ref_grid):
            d = (h - self._turn_ref_grid + 180.0) % 360.0 - 180.0
            turn = math.sqrt(max(d * d - 2.0 * float(sigma_deg) ** 2, 0.0))
            if turn > 0.0:
                self.tracker.manoeuvre(math.radians(turn))
        self._turn_ref_grid = h

    def _relief(self, fix: PoseFix) -> float:
        """Terrain relief (m) that the flat-ground assumption ignores for this fix (0 for a PnP pose)."""
        if fix.model == "pnp":
            return 0.0
        if self.dsm is None:
            return self.config.terrain_relief_m
        alt = fix.alt_m if math.isfinite(fix.alt_m) else 100.0
        r = max(alt, 10.0)  # the footprint is about the altitude's size
        return self.dsm.relief((fix.xy[0] - r, fix.xy[1] - r, fix.xy[0] + r, fix.xy[1] + r))

    def _implausible(self, fix: PoseFix, sensors: Sensors) -> str:
        """Why a fix cannot be a verified position ("" when it can)."""
        cfg = self.config
        if self._structure < cfg.min_orientations:
            return (f"the frame shows too little structure ({self._structure:.1f} effective gradient orientations of 9, "
                    f"below {cfg.min_orientations:g}): a covered lens or a test pattern, not ground")
        if not (np.all(np.isfinite(fix.xy)) and np.all(np.isfinite(fix.cov))):
            return "non-finite position or covariance"
        if not on_map(fix.xy, self.bounds, cfg.plausible_margin_m):
            return f"position {fix.xy[0]:.0f}, {fix.xy[1]:.0f} is off the map"
        if not altitude_consistent(fix.alt_m, sensors.alt_m, sensors.alt_sigma_m):
            return f"altitude {fix.alt_m:.1f} m disagrees with the sensor's {sensors.alt_m}"
        if fix.source == "keypoints" and not tilt_consistent(fix.tilt_deg, sensors.attitude, sensors.attitude_sigma_deg):
            return f"image tilt {fix.tilt_deg:.1f} deg disagrees with the IMU attitude"
        return ""

    def _estimate(self, status, xy, cov, heading, alt, score, inliers, cands, pose_info) -> GeoEstimate:
        lon, lat = self.index.frame.to_lonlat(float(xy[0]), float(xy[1]))
        heading = float(heading) % 360.0 if math.isfinite(heading) else math.nan
        if heading >= 359.995:  # -0.0 % 360 -> 360.0
            heading = 0.0
        sigma = math.sqrt(max(np.linalg.eigvalsh(cov).max(), 0.0))
        vel = tuple(float(v) for v in self.tracker.velocity) if self.tracker.initialised and self.tracker.n_updates > 1 else None
        return GeoEstimate(status=status, lat=lat, lon=lon, x=float(xy[0]), y=float(xy[1]), alt_m=float(alt),
                           heading_deg=float(heading), cov_xy=np.asarray(cov, dtype=np.float64), sigma_m=sigma,
                           velocity_xy=vel, score=float(score), inliers=int(inliers), candidates=cands, pose=pose_info)


# ---------------------------------------------------------------------------------------------- helpers
class _DebugFix:
    """What plots and the debug image read of the winning fix (``last_debug["fixes"][0]``)."""

    def __init__(self, fix: PoseFix, cands: list[Candidate]) -> None:
        self.fix = fix
        self.pts_frame = fix.pts_frame
        self.pts_ground = fix.pts_ground
        c = next((c for c in cands if c.tile_id == fix.tile_id), None)
        self.cand = c if c is not None else Candidate(-1, 0.0, (float(fix.xy[0]), float(fix.xy[1])),
                                                      max(50.0, float(np.ptp(fix.pts_ground[:, 0])) if len(fix.pts_ground) else 50.0))


def _sig(value: float | None, default: float) -> float:
    return float(value) if value is not None and math.isfinite(float(value)) and value > 0 else float(default)


def _fft_device(encoder) -> str:
    """The torch device for the fine stage's correlations: the encoder's GPU when it runs on one, else the CPU
    (an ONNX Runtime encoder says "cpu (onnxruntime)", which is no torch device)."""
    dev = str(getattr(encoder, "device", "cpu"))
    return dev if dev.startswith("cuda") else "cpu"


def _with(s: Sensors, **changes) -> Sensors:
    from dataclasses import replace

    return replace(s, **changes)


def _tilt(attitude) -> float:
    if attitude is None:
        return 0.0
    from ..geo import CameraPose

    return CameraPose(0.0, 0.0, 1.0, 0.0, attitude[1], attitude[0]).tilt_deg


def _corners(w: int, h: int) -> np.ndarray:
    return np.array([[0.0, 0.0], [w - 1.0, 0.0], [w - 1.0, h - 1.0], [0.0, h - 1.0]])


def _box_around(pts: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    return (float(pts[:, 0].min() - margin), float(pts[:, 1].min() - margin),
            float(pts[:, 0].max() + margin), float(pts[:, 1].max() + margin))


def _data_mask(img: np.ndarray) -> np.ndarray:
    """Where the image has data (black borders of rotated / undistorted frames carry no keypoints)."""
    return cv2.erode((channel_max(img) > 3).astype(np.uint8) * 255, np.ones((7, 7), np.uint8))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
