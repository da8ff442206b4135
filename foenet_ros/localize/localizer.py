"""``Localizer``: camera frame -> ``GeoEstimate`` (retrieval, geometric verification, pose, tracking).

Per frame::

    preprocess  validate, undistort (intrinsics + distortion), north-up square query(s), resize
    encode      FOENet descriptor(s) of the query (4 rotations when the heading is unknown)
    search      top tiles: gated near the track / prior when there is one, else the whole map
    verify      SIFT/ORB + ratio test + RANSAC homography against a map crop around each candidate
    pose        frame -> ground homography -> camera centre, altitude, heading (intrinsics), or the
                image centre (no intrinsics); covariance from a bootstrap over the inliers
    track       constant-velocity Kalman filter: gates outliers, bridges misses, detects loss

Plain Python: no rclpy here (the node, the bag replay, the benchmarks and the tests drive it).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..errors import CameraError, EmptyIndexError
from ..geo.validate import check_altitude, check_attitude_pair, validate_heading
from .config import LocalizerConfig
from .estimate import Candidate, GeoEstimate, Prior, validate_prior
from .preprocess import camera_for_frame, check_frame, retrieval_queries, rotate_north_up, undistort
from .tracker import Tracker
from .verify import FeatureMatcher, Features, distinct_count, homography_is_sane, ransac_scale_translation, well_spread

log = logging.getLogger(__name__)


@dataclass
class _View:
    """The frame as verification sees it (internal): features in ``T @ small`` pixels."""

    feats: Features
    T: np.ndarray  # [3,3] small-frame pixels -> feature-image pixels (identity or north-up rotation)
    upright: bool
    w: int  # small-frame size, pixels
    h: int
    s_v: float  # small = undistorted frame scaled by s_v


@dataclass
class _Fix:
    """A verified candidate turned into a position (internal)."""

    cand: Candidate
    xy: np.ndarray  # [2] drone position, frame metres
    cov: np.ndarray  # [2,2] m^2 (before ambiguity widening)
    heading_deg: float
    alt_m: float
    info: dict
    H_img_to_ground: np.ndarray
    pts_frame: np.ndarray  # inliers in (undistorted) frame pixels
    pts_ground: np.ndarray  # the same inliers on the ground, frame metres
    model: str = "homography"  # or "scale_translation" (weak, north-up only)


class Localizer:
    """Absolute visual localisation of camera frames against a :class:`~foenet_ros.index.TileIndex`.

    Args:
        index: the tile index of the flight area.
        encoder: the FOENet encoder that built the index (checked: :class:`IndexMismatchError` otherwise).
        config: query-side settings.
    """

    def __init__(self, index, encoder, config: LocalizerConfig = LocalizerConfig()) -> None:
        index.check_encoder(encoder)
        self.index = index
        self.encoder = encoder
        self.config = config
        self.map = index.map_raster()
        self.matcher = FeatureMatcher(config.feature, config.max_features, config.ratio, config.ransac_px)
        self.tracker = Tracker(config.accel_sigma, config.gate_chi2, config.max_misses, config.max_track_sigma_m,
                               coast_accel_sigma=config.coast_accel_sigma, refused_fix_weight=config.refused_fix_weight)
        self._last_t: float | None = None
        self._last_heading = math.nan
        self._last_alt = math.nan
        self.last_debug: dict[str, Any] = {}
        self._best_rotation: dict[int, int] = {}
        c = np.asarray(index.tiles.centers_xy, dtype=np.float64)
        # where the map frame's grid-vs-true-north rotation is evaluated when nothing better is known
        self._map_center = tuple(float(v) for v in (c.min(axis=0) + c.max(axis=0)) / 2.0) if len(c) else (0.0, 0.0)

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
        self._last_t = None
        self._last_heading = math.nan
        self._last_alt = math.nan

    # ------------------------------------------------------------------ main entry
    def localize(self, frame: np.ndarray, camera=None, prior: Any = None, heading_deg: float | None = None,
                 altitude_m: float | None = None, attitude: Sequence[float] | None = None,
                 stamp: float | None = None) -> GeoEstimate:
        """Localise one camera frame.

        Args:
            frame: [H,W,3] uint8 RGB (or [H,W] mono) camera image.
            camera: :class:`~foenet_ros.geo.CameraIntrinsics` of the frame (rescaled if the frame was
                resized uniformly); with it the drone's position (camera centre), altitude and
                attitude come from the homography; without it the image centre is reported.
            prior: a position hint: :class:`Prior`, ``(lat, lon[, sigma_m])`` or a GeoEstimate.
            heading_deg: TRUE compass heading of the image-up direction (clockwise from true north), if known (e.g. from the
                autopilot's yaw); the query is rotated north-up. Unknown: several rotations are tried.
            altitude_m: height above the map's ground plane, metres (used for the camera centre
                with ``attitude`` and reported as alt when no intrinsics are given).
            attitude: ``(roll_deg, pitch_deg)`` of the camera (see :class:`~foenet_ros.geo.CameraPose`),
                e.g. from the IMU and gimbal; fixes the tilt instead of estimating it from the image.
            stamp: time in seconds (for the tracker); consecutive frames 1 s apart when omitted.

        Raises:
            ImageError: wrong dtype/shape. CameraError: invalid intrinsics or attitude.
        """
        cfg = self.config
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
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

        # Headings in and out are TRUE compass headings; the map tiles are north-up in the frame's
        # UTM *grid*, which is turned by the meridian convergence (up to ~3 deg at zone edges).
        heading_grid = None if heading_deg is None else self._true_to_grid(float(heading_deg), prior)
        und, cam_und = undistort(rgb, cam)
        queries = retrieval_queries(und, heading_grid, cfg.unknown_heading_rotations)
        s_v = min(1.0, cfg.verify_max_side / max(und.shape[:2]))
        small = cv2.resize(und, (round(und.shape[1] * s_v), round(und.shape[0] * s_v)), interpolation=cv2.INTER_AREA) \
            if s_v < 1 else und
        s_v = small.shape[1] / und.shape[1]
        timings["preprocess"] = _ms(t0)

        t1 = time.perf_counter()
        descs = self.encoder.encode(queries, branch="drone")
        timings["encode"] = _ms(t1)

        # ---- search: near the prior / track when there is one, else the whole map
        t2 = time.perf_counter()
        self.tracker.predict(t)
        near, radius, mode = None, None, "global"
        if prior is not None:
            near = self.index.frame.from_lonlat(prior.lon, prior.lat)
            radius = max(cfg.gating_radius_m, cfg.gate_sigmas * prior.sigma_m)
            mode = "prior"
        elif self.tracker.healthy:
            near = tuple(self.tracker.position)
            radius = max(cfg.gating_radius_m, cfg.gate_sigmas * self.tracker.sigma_m)
            mode = "track"
        self._best_rotation = {}
        cands = self._search(descs, near, radius)
        timings["search"] = _ms(t2)

        # ---- verify
        t3 = time.perf_counter()
        # heading known (SIFT): match grid-north-up against north-up with upright descriptors
        upright = heading_grid is not None and cfg.feature == "sift"
        view = self._detect_view(small, s_v, heading_grid if upright else None)
        fixes = self._verify(cands, view, cam_und, attitude, altitude_m)
        extra_search = 0.0
        if not fixes and mode != "global" and cfg.global_fallback:
            seen = {c.tile_id for c in cands}
            t2b = time.perf_counter()
            extra = [c for c in self._search(descs, None, None) if c.tile_id not in seen]
            extra_search = _ms(t2b)
            timings["search"] += extra_search
            fixes = self._verify(extra, view, cam_und, attitude, altitude_m)
            cands = cands + extra
            mode += "+global"
        if not fixes and heading_grid is None and cfg.feature == "sift" and cfg.upright_hypotheses > 0 and cands:
            # Heading unknown and rotation-invariant matching found nothing: drone-vs-satellite pairs
            # often match only with upright descriptors. Try the query rotations that retrieval
            # liked best as heading hypotheses (true headings, n * 360 / rotations).
            top = sorted(cands, key=lambda c: -c.score)[: cfg.top_k]
            for h_true in self._heading_hypotheses(top, len(descs))[: cfg.upright_hypotheses]:
                view_h = self._detect_view(small, s_v, self._true_to_grid(h_true, prior))
                fixes = self._verify(top, view_h, cam_und, attitude, altitude_m)
                if fixes:
                    mode += f"+upright_hypothesis_{h_true:.0f}"
                    break
        timings["verify"] = _ms(t3) - extra_search
        self.last_debug = {"frame_small": small, "s_v": s_v, "fixes": fixes, "mode": mode}

        # ---- track + the answer
        t4 = time.perf_counter()
        est = self._decide(fixes, cands, t, mode, cam_und is not None)
        timings["track"] = _ms(t4)
        timings["total"] = _ms(t0)
        est.timings_ms = timings
        est.stamp = stamp
        return est

    def _detect_view(self, small: np.ndarray, s_v: float, upright_heading_grid: float | None) -> _View:
        """Local features of the (downscaled) frame for verification.

        With ``upright_heading_grid`` the frame is first turned grid-north-up and described with
        upright descriptors; without it the frame is used as it is (rotation-invariant matching).
        Black borders (rotated/undistorted frames, rendered views off the map) carry no features.
        """
        upright = upright_heading_grid is not None
        if upright:
            img, T = rotate_north_up(small, upright_heading_grid, return_matrix=True)
        else:
            img, T = small, np.eye(3)
        mask = cv2.erode((img.max(axis=2) > 3).astype(np.uint8) * 255, np.ones((7, 7), np.uint8))
        feats = self.matcher.detect(img, mask, upright=upright)
        return _View(feats, T, upright, small.shape[1], small.shape[0], s_v)

    # ------------------------------------------------------------------ headings
    def _true_to_grid(self, heading_true_deg: float, prior: Prior | None) -> float:
        """A true compass heading -> heading from the index frame's grid north, degrees [0, 360).

        The convergence is evaluated where the drone probably is: the prior, else the track, else
        the middle of the map (it changes by ~0.01 deg per km, far below the matching tolerance).
        """
        near = None if prior is None else self.index.frame.from_lonlat(prior.lon, prior.lat)
        reach = 5e3 + 0.5 * float(np.hypot(*self.map.size_m))  # a prior farther off the map says nothing about it
        if near is not None and np.all(np.isfinite(near)) and np.hypot(*np.subtract(near, self._map_center)) <= reach:
            x, y = near
        elif self.tracker.initialised:
            x, y = (float(v) for v in self.tracker.position)
        else:
            x, y = self._map_center
        return float(self.index.frame.true_to_grid_heading(heading_true_deg, x, y))

    def _heading_hypotheses(self, cands: list[Candidate], n_rotations: int) -> list[float]:
        """True headings (deg) to try upright, best first: the query rotation that matched each
        candidate best, in candidate order, then the remaining rotations."""
        out: list[float] = []
        step = 360.0 / max(n_rotations, 1)
        for c in cands:
            h = step * self._best_rotation.get(c.tile_id, 0)
            if h not in out:
                out.append(h)
        return out + [step * i for i in range(n_rotations) if step * i not in out]

    # ------------------------------------------------------------------ retrieval
    def _search(self, descs: np.ndarray, near, radius) -> list[Candidate]:
        """Merge the per-rotation searches (best score per tile), de-duplicate places, keep top_k."""
        cfg = self.config
        best: dict[int, float] = {}
        for r, d in enumerate(descs):
            try:
                hits = self.index.search(d, cfg.search_k, near_xy=near, radius_m=radius)
            except EmptyIndexError:
                hits = []
            for tid, score in hits:
                if score > best.get(tid, -2.0):
                    best[tid] = score
                    self._best_rotation[tid] = r  # which query rotation matched this tile best
        tiles = self.index.tiles
        out: list[Candidate] = []
        for tid, score in sorted(best.items(), key=lambda kv: -kv[1]):
            c = tiles.centers_xy[tid]
            size = float(tiles.size_m[tid])
            if any(np.hypot(*(c - np.asarray(o.center_xy))) < cfg.dedup_frac * min(size, o.size_m) for o in out):
                continue
            out.append(Candidate(tid, score, (float(c[0]), float(c[1])), size))
            if len(out) >= cfg.top_k:
                break
        return out

    # ------------------------------------------------------------------ verification
    def _verify(self, cands: list[Candidate], view: _View, cam, attitude, altitude_m) -> list[_Fix]:
        """Match the frame against a map crop around each candidate; return the verified fixes, best first."""
        from ..geo.raster import crop_matrix

        cfg = self.config
        fixes: list[_Fix] = []
        if len(view.feats) < min(cfg.min_inliers, cfg.min_inliers_upright):
            return fixes
        s_v = view.s_v
        S = np.array([[s_v, 0, 0.5 * s_v - 0.5], [0, s_v, 0.5 * s_v - 0.5], [0, 0, 1.0]])  # frame px -> small px
        T_inv = np.linalg.inv(view.T)
        S_inv = np.linalg.inv(S)
        w, h = view.w / s_v, view.h / s_v  # undistorted frame size
        for cand in cands:
            crop_m = cfg.crop_factor * cand.size_m
            # match the crop's resolution to the frame's: a tile spans about the frame's footprint
            gsd = cand.size_m / math.sqrt(view.w * view.h)
            if cam is not None and altitude_m is not None:
                gsd = altitude_m / (cam.fx * s_v)
            gsd = max(gsd, self.map.gsd_m)
            out_px = int(np.clip(round(crop_m / gsd), 64, 1280))
            img, valid = self.map.crop(cand.center_xy, crop_m, out_px)
            if valid.mean() < 0.2:
                continue
            mask = cv2.erode(valid.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
            m = self.matcher.match(view.feats, self.matcher.detect(img, mask, upright=view.upright))
            cand.matches = m.matches
            model, H_feat = "homography", m.H
            p_feat, p_crop = m.pts1, m.pts2
            def evidence(pf, pc) -> int:
                # distinct one-to-one matches spread over the frame (else 0)
                pts = _apply_h(S_inv @ T_inv, pf.astype(np.float64))
                return distinct_count(pf, pc) if well_spread(pts, w, h, cfg.min_spread) else 0

            ok = (m.H is not None and m.inliers >= cfg.min_inliers
                  and homography_is_sane(m.H @ view.T @ S, int(w), int(h))
                  and evidence(m.pts1, m.pts2) >= cfg.min_inliers)
            if not ok and view.upright and m.all1 is not None and len(m.all1) >= cfg.min_inliers_upright:
                # few true matches (cross-season, cross-sensor): the 3-DOF north-up model
                r = ransac_scale_translation(m.all1.astype(np.float64), m.all2.astype(np.float64), 1.5 * cfg.ransac_px)
                if r is not None and evidence(m.all1[r[2]], m.all2[r[2]]) >= cfg.min_inliers_upright:
                    sc, t, inl = r
                    model, H_feat = "scale_translation", np.array([[sc, 0, t[0]], [0, sc, t[1]], [0, 0, 1.0]])
                    p_feat, p_crop = m.all1[inl], m.all2[inl]
                    ok = True
            if not ok:
                cand.inliers = 0 if m.H is None else min(m.inliers, cfg.min_inliers - 1)
                continue
            A = np.linalg.inv(crop_matrix(cand.center_xy, crop_m, out_px))  # crop px -> ground
            H = A @ H_feat @ view.T @ S  # undistorted frame pixels -> ground metres
            pts_small = _apply_h(T_inv, p_feat.astype(np.float64))
            pts_frame = (pts_small + 0.5) / s_v - 0.5
            pts_ground = _apply_h(A, p_crop.astype(np.float64))
            try:
                fix = self._pose(cand, H, pts_frame, pts_ground, cam, attitude, altitude_m, (w, h), model)
            except CameraError as exc:
                log.debug("candidate %d: pose failed: %s", cand.tile_id, exc)
                cand.inliers = 0
                continue
            cand.inliers = len(pts_frame)
            cand.position_xy = (float(fix.xy[0]), float(fix.xy[1]))
            fixes.append(fix)
            if model == "homography" and cand.inliers >= cfg.strong_inliers:
                break
        # homography fixes first (full geometry), then by evidence
        fixes.sort(key=lambda f: (f.model != "homography", -f.cand.inliers))
        return fixes

    def _position(self, H: np.ndarray, cam, attitude, altitude_m, wh) -> tuple[np.ndarray, float, float, dict]:
        """Drone position [2], heading, altitude and diagnostics from an image->ground homography."""
        from ..geo import CameraPose, pose_from_homography

        w, h = wh
        if cam is None:
            c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
            g = _apply_h(H, np.array([c, c - [0, h / 4.0], c - [w / 2.0, 0], c + [w / 2.0, 0]]))
            up = g[1] - g[0]
            heading = math.degrees(math.atan2(up[0], up[1])) % 360.0
            width = float(np.hypot(*(g[3] - g[2])))
            alt = float(altitude_m) if altitude_m is not None else math.nan
            return g[0], heading, alt, {"footprint_width_m": width, "position_of": "image_centre"}
        pose, info = pose_from_homography(cam, H)
        info = dict(info, position_of="camera_centre")
        xy = np.array([pose.x, pose.y])
        alt = pose.alt_m
        if attitude is not None:
            # IMU attitude fixes the tilt: walk back from where the principal ray hits the ground
            roll, pitch = attitude
            alt = float(altitude_m) if altitude_m is not None else pose.alt_m
            d = CameraPose(0.0, 0.0, 1.0, pose.heading_deg, pitch, roll).R_world_from_cam[:, 2]
            if d[2] >= -1e-3:
                raise CameraError(f"attitude roll={roll}, pitch={pitch} puts the optical axis at or above the horizon")
            g0 = np.array([info["center_ground_x"], info["center_ground_y"]])
            xy = g0 - (alt / -d[2]) * d[:2]
            info["attitude_from"] = "imu"
        return xy, pose.heading_deg, alt, info

    def _pose(self, cand, H, pts_frame, pts_ground, cam, attitude, altitude_m, wh, model="homography") -> _Fix:
        """Position + covariance: the spread of bootstrap refits over the inliers, scaled and floored.

        A scale+translation fix carries no tilt information: it reports the image centre (as
        without intrinsics) with the corresponding extra uncertainty.
        """
        cfg = self.config
        cam_used = cam if model == "homography" else None
        xy, heading_grid, alt, info = self._position(H, cam_used, attitude, altitude_m, wh)
        # the homography lives in the grid-aligned map frame; report a true compass heading
        heading = float(self.index.frame.grid_to_true_heading(heading_grid, float(xy[0]), float(xy[1])))
        info["heading_grid_deg"] = float(heading_grid)
        if model != "homography" and cam is not None and altitude_m is None:
            alt = math.nan
        info["model"] = model
        origin = pts_ground.mean(axis=0)
        rng = np.random.default_rng(len(pts_frame))
        samples = []
        T = np.array([[1, 0, origin[0]], [0, 1, origin[1]], [0, 0, 1.0]])
        for _ in range(cfg.bootstrap):
            idx = rng.integers(0, len(pts_frame), len(pts_frame))
            Hb = _fit(pts_frame[idx], pts_ground[idx] - origin, model)
            if Hb is None:
                continue
            try:
                samples.append(self._position(T @ Hb, cam_used, attitude, altitude_m, wh)[0])
            except CameraError:
                continue
        if len(samples) >= 3:
            cov = np.cov(np.asarray(samples).T) * cfg.sigma_scale**2
        else:  # too few refits: a wide default from the footprint
            cov = np.eye(2) * (0.1 * cand.size_m) ** 2
        cov = cov + np.eye(2) * cfg.sigma_floor_m**2
        if cam_used is None:
            cov = cov + np.eye(2) * (cfg.no_intrinsics_sigma_frac * info["footprint_width_m"]) ** 2
        resid = _apply_h(H, pts_frame) - pts_ground
        info["ground_rms_m"] = float(np.sqrt(np.mean(np.sum(resid**2, axis=1))))
        return _Fix(cand, xy, cov, heading, alt, info, H, pts_frame, pts_ground, model)

    # ------------------------------------------------------------------ decision + tracking
    def _decide(self, fixes: list[_Fix], cands: list[Candidate], t: float, mode: str, has_cam: bool) -> GeoEstimate:
        cfg = self.config
        frame = self.index.frame
        pose_info: dict[str, Any] = {"search": mode}
        if fixes:
            best = fixes[0]
            cov = best.cov.copy()
            score = best.cand.inliers / (best.cand.inliers + 2.0 * cfg.min_inliers)
            # another verified place far away with comparable evidence: an ambiguous fix
            sigma0 = math.sqrt(np.linalg.eigvalsh(cov).max())
            for other in fixes[1:]:
                diff = other.xy - best.xy
                if np.hypot(*diff) > 3 * sigma0 + 5.0 and other.cand.inliers >= cfg.ambiguity_frac * best.cand.inliers:
                    cov = cov + np.outer(diff, diff)
                    score *= 1.0 - other.cand.inliers / best.cand.inliers
                    pose_info["ambiguous_with_tile"] = other.cand.tile_id
            upd = self.tracker.update(best.xy, cov, t)
            pose_info.update({k: v for k, v in best.info.items() if isinstance(v, (int, float, str))})
            pose_info.update(tile_id=best.cand.tile_id, track_d2=upd.d2, track_restarted=upd.reinitialised)
            if upd.accepted:
                self._last_heading, self._last_alt = best.heading_deg, best.alt_m
                return self._estimate("verified", best.xy, cov, best.heading_deg, best.alt_m, score,
                                      best.cand.inliers, cands, pose_info)
            pose_info["rejected_fix_xy"] = [float(best.xy[0]), float(best.xy[1])]
        else:
            self.tracker.miss(t)
        if self.tracker.healthy:
            pose_info["misses"] = self.tracker.misses
            score = 0.5 * math.exp(-self.tracker.misses / max(cfg.max_misses, 1))
            return self._estimate("tracked", self.tracker.position, self.tracker.cov_xy, self._last_heading,
                                  self._last_alt, score, 0, cands, pose_info)
        # no fix, no track: a coarse retrieval answer if the candidates agree on a place, else lost
        if cands:
            w = np.array([max(c.score, 0.0) for c in cands]) + 1e-6
            centers = np.array([c.center_xy for c in cands])
            mean = centers[0]
            spread = (w[:, None] * (centers - mean) ** 2).sum(axis=0) / w.sum()
            cov = np.diag(spread) + np.eye(2) * (0.5 * cands[0].size_m) ** 2
            sigma = math.sqrt(np.linalg.eigvalsh(cov).max())
            pose_info["retrieval_sigma_m"] = sigma
            # distinct: the best tile must stand out from the other candidates' scores
            margin = cands[0].score - float(np.mean([c.score for c in cands[1:]])) if len(cands) > 1 else 0.0
            pose_info["retrieval_margin"] = margin
            if sigma <= cfg.retrieval_max_sigma_m and margin >= cfg.retrieval_min_margin:
                return self._estimate("retrieval", mean, cov, math.nan, math.nan, float(min(0.2, max(margin, 0.0))),
                                      0, cands, pose_info)
        return GeoEstimate(status="lost", candidates=cands, pose=pose_info)

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


def _fit(src: np.ndarray, dst: np.ndarray, model: str) -> np.ndarray | None:
    """Least-squares refit of ``model`` (for the bootstrap): a homography or a scale+translation
    composed with the fixed rotation already inside ``src`` -> ``dst`` (fitted as a similarity)."""
    if model == "homography":
        H, _ = cv2.findHomography(src, dst, 0)
        return H
    # closed-form least-squares similarity (complex numbers: dst = a * src + b, a = scale * e^{i angle})
    z1 = src[:, 0] + 1j * src[:, 1]
    z2 = dst[:, 0] + 1j * dst[:, 1]
    z1c, z2c = z1 - z1.mean(), z2 - z2.mean()
    den = float(np.sum(np.abs(z1c) ** 2))
    if den < 1e-9:
        return None
    a = np.sum(np.conj(z1c) * z2c) / den
    b = z2.mean() - a * z1.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0.0, 0.0, 1.0]])


def _apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.column_stack([pts, np.ones(len(pts))]) @ H.T
    return p[:, :2] / p[:, 2:3]


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0

