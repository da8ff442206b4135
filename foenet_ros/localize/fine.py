"""The fine stage: search regions -> fine-grained overlap estimation -> a metric fix with a covariance.

Two passes over the precomputed map features (:class:`foenet_ros.index.fine.FineStore`):

1. **coarse heatmap** (:func:`overlap.correlate` + :func:`overlap.decode`): the frame projected
   on the ground for each pose hypothesis (heading bins around the compass, scale bins around the
   altitude) at a cell size that makes it ~64 cells wide -- coarse enough to tolerate half a bin
   of heading or scale error -- correlated with each search region's map window. The heatmap's
   peak is where the frame overlaps the map; its distinctness (z-score, margin over the best
   rival place) is the evidence.
2. **patch refinement** (:func:`overlap.patch_correspondences` + :func:`overlap.fit_patches`): the
   frame projected for the winning hypothesis at ~2x finer cells, cut into patches, each found
   near its predicted place; a similarity (or, with tilt to explain, a homography) fitted to the
   consistent patches corrects position, heading and scale. A bootstrap over the patches gives
   the fit's covariance.

The result is the camera's ground position (its nadir; the image centre for frames without
intrinsics), heading, altitude, and the transform from frame pixels to map metres that the
keypoint refinement (:mod:`.refine`) starts from.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import CameraError
from ..geo import CameraIntrinsics
from ..geo.camera import ground_to_image_homography
from .fine_score import score_without_patches
from .overlap import (
    Hypothesis,
    OverlapResult,
    Template,
    correlate,
    decode,
    fit_patches,
    make_templates,
    patch_correspondences,
    near_peak,
    parabola_vertex,
    polish_peak,
    turn_template,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sensors:
    """What is known about the frame's pose besides the image (grid-north headings).

    Attributes:
        heading_grid_deg: heading of the image-up direction from the map grid's north (None: unknown).
        heading_sigma_deg: its 1-sigma error.
        alt_m: camera height above the ground (None: unknown).
        alt_sigma_m: its 1-sigma error.
        attitude: (roll_deg, pitch_deg) of the camera (None: unknown, assumed nadir).
        attitude_sigma_deg: 1-sigma error of roll and pitch.
    """

    heading_grid_deg: float | None = None
    heading_sigma_deg: float = 3.0
    alt_m: float | None = None
    alt_sigma_m: float = 5.0
    attitude: tuple[float, float] | None = None
    attitude_sigma_deg: float = 1.0


@dataclass
class Region:
    """Where the camera nadir may be: a box (frame metres), and a footprint hint for unknown altitude."""

    box: tuple[float, float, float, float]
    tag: int = -1  # e.g. the retrieved tile id
    footprint_m: float | None = None  # ground width of the frame (from the tile size) when the altitude is unknown


@dataclass
class FineFix:
    """A fix from the fine stage.

    Attributes:
        xy: [2] camera nadir (frame metres); for a frame without intrinsics the image-centre ground point.
        cov: [2, 2] covariance of the fit (m^2): bootstrap over the patches (before the error budget).
        heading_grid_deg, alt_m: the refined heading (grid north) and altitude.
        H_img_to_map: [3, 3] undistorted working-frame pixels -> map metres.
        model: "similarity" | "homography".
        coarse: the coarse heatmap result of the winning region.
        rival_z: best coarse z-score of another place (another region or far in the same window).
        inliers, tested, rms_m: patch-fit evidence.
        region: index of the winning region.
    """

    xy: np.ndarray
    cov: np.ndarray
    heading_grid_deg: float
    alt_m: float
    H_img_to_map: np.ndarray
    model: str
    coarse: OverlapResult
    rival_z: float
    inliers: int
    tested: int
    rms_m: float
    region: int
    hyp: Hypothesis
    src: np.ndarray  # [N, 2] inlier patch centres, template ground metres (offsets from the hypothesis' nadir)
    dst: np.ndarray  # [N, 2] where they lie on the map, metres
    info: dict = field(default_factory=dict)

    @property
    def margin(self) -> float:
        return self.coarse.z_peak - self.rival_z


class FineStage:
    """Runs the two passes for one frame over a list of search regions.

    Args:
        store: the index's :class:`~foenet_ros.index.fine.FineStore`.
        extractors: dense extractors, in the order of ``methods`` (their channels are concatenated).
        methods: the store's method names for them.
        config: the Localizer's configuration (``fine_*`` fields).
        device: torch device for the FFTs.
    """

    def __init__(self, store, extractors: list, methods: list[str], config, device="cpu") -> None:
        self.store = store
        self.extractors = extractors
        self.methods = methods
        self.cfg = config
        self.device = device
        self.weights = _channel_weights(extractors)

    # ------------------------------------------------------------------ hypotheses
    def hypotheses(self, sensors: Sensors, cam: CameraIntrinsics, region: Region,
                   headings: list[float] | None = None) -> tuple[list[float], list[float], float, float]:
        """Heading bins and scale bins around what the sensors say (or the region's footprint hint).

        Returns ``(headings_deg, scales, alt0, ...)``: grid headings, relative scales (of ``alt0``),
        the nominal altitude, and (roll, pitch) packed as the last element's pair.
        """
        cfg = self.cfg
        if headings is None:
            if sensors.heading_grid_deg is None:
                raise ValueError("hypotheses need a heading or a list of headings")
            n = min(cfg.fine_max_heading_bins, 2 * _half_bins(sensors.heading_sigma_deg / cfg.fine_heading_step_deg) + 1)
            n = max(1, n - (1 - n % 2))  # odd: the compass heading itself is a bin
            headings = [sensors.heading_grid_deg + (k - n // 2) * cfg.fine_heading_step_deg for k in range(n)]
        if sensors.alt_m is not None:
            alt0 = sensors.alt_m
            rel = 2.0 * sensors.alt_sigma_m / max(alt0, 1e-6)
        else:
            fp = region.footprint_m or 100.0
            alt0 = fp / (2.0 * math.tan(math.radians(cam.hfov_deg) / 2.0))
            rel = cfg.fine_unknown_scale_range
        n = min(cfg.fine_max_scale_bins, 2 * _half_bins(rel / 2.0 / cfg.fine_scale_step) + 1)
        n = max(1, n - (1 - n % 2))
        scales = [math.exp((k - n // 2) * cfg.fine_scale_step) for k in range(n)]
        return [float(h) % 360.0 for h in headings], scales, alt0

    @staticmethod
    def _hyps(headings, scales, alt0, sensors: Sensors) -> list[Hypothesis]:
        roll, pitch = sensors.attitude if sensors.attitude is not None else (0.0, 0.0)
        return [Hypothesis(h, alt0 * s, roll, pitch) for h in headings for s in scales]

    # ------------------------------------------------------------------ the two passes
    def run(self, frame: np.ndarray, cam: CameraIntrinsics, sensors: Sensors, regions: list[Region],
            headings: list[float] | None = None, keep_heat: bool = False,
            allow_homography: bool = True, stop=None) -> tuple[FineFix | None, list[OverlapResult]]:
        """Coarse heatmaps over the regions (best first, stopping at a decisive peak), then patch
        refinement of the best one.

        Args:
            frame: the undistorted working frame [H, W, 3] uint8 that ``cam`` describes.
            headings: grid headings to try (overrides the sensor's heading bins; e.g. a sweep).
            allow_homography: the patch fit may use a homography (tilt) when the attitude is unknown.
            stop: ``() -> bool``, asked before each region after the first and before the fine pass:
                True ends the scan there, and before the fine pass means no fix (the Localizer's time budget).
        Returns:
            ``(fix or None, per-region coarse results)``.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        results: list[tuple[int, OverlapResult]] = []
        cache: dict = {"frame": {}}  # templates are relative to the nadir: shared by regions with the same hypotheses
        for ri, region in enumerate(regions):
            if ri > 0 and stop is not None and stop():
                break
            heads, scales, alt0 = self.hypotheses(sensors, cam, region, headings)
            # coordinate search: the heading bins at the nominal scale, then the scale bins at the
            # best heading (the coarse peak tolerates half a bin of either, so the two separate)
            res = self.coarse(frame, cam, self._hyps(heads, [1.0], alt0, sensors), region.box, keep_heat=keep_heat,
                              cache=cache)
            # in the track's window with an altimeter the fine pass's line search spans the scale bins
            # (elsewhere they also lift the z-score that accepts a cold start: kept)
            in_track = region.tag == -1 and region.footprint_m is None
            if res is not None and len(scales) > 1 and not (cfg.fine_line_search and sensors.alt_m is not None and in_track):
                others = [s for s in scales if abs(s - 1.0) > 1e-9]
                res2 = self.coarse(frame, cam, self._hyps([res.hyp.heading_grid_deg], others, alt0, sensors), region.box,
                                   keep_heat=keep_heat, cache=cache)
                if res2 is not None and res2.z_peak > res.z_peak:
                    res2.z_second = max(res2.z_second, res.z_second)
                    res = res2
            if res is not None:
                res.info["region"] = ri
                results.append((ri, res))
                if res.z_peak >= cfg.fine_decisive_z and res.margin >= cfg.fine_decisive_margin:
                    break  # an unmistakable peak: the remaining (lower-ranked) regions cannot matter
        if not results:
            return None, []
        results.sort(key=lambda t: -t[1].z_peak)
        if stop is not None and stop():  # no time left for the fine pass: the heatmaps say where, not how well
            return None, [r for _, r in results]
        ri, best = results[0]
        rival = best.z_second
        for _, other in results[1:]:
            if np.hypot(*(other.xy - best.xy)) > max(4.0 * best.cell_m, 3.0 * math.sqrt(np.trace(best.cov))):
                rival = max(rival, other.z_peak)
                break
        t_coarse = (time.perf_counter() - t0) * 1000.0
        fix = self.refine(frame, cam, best, sensors, allow_homography=allow_homography, cache=cache["frame"],
                          rival_z=rival)
        if fix is not None:
            fix.rival_z, fix.region = rival, ri
            fix.info["coarse_ms"] = t_coarse
        return fix, [r for _, r in results]

    def coarse(self, frame, cam, hyps: list[Hypothesis], box, *, cells: int | None = None,
               keep_heat: bool = False, cache: dict | None = None) -> OverlapResult | None:
        """The coarse heatmap of one search box for a set of hypotheses."""
        cfg = self.cfg
        fp = max(footprint_width(cam, h.alt_m) for h in hyps)
        level = self.store.level_for(fp, cells or cfg.fine_coarse_cells)
        cell = self.store.cells[level]
        key = (level, tuple(hyps))
        templates = cache.get(key) if cache is not None else None
        if templates is None:
            templates = make_templates(frame, cam, hyps, cell, self.extractors,
                                       max_cells=4 * (cells or cfg.fine_coarse_cells), keep_image=keep_heat,
                                       cache=None if cache is None else cache.setdefault("frame", {}))
            if cache is not None:
                cache[key] = templates
        if not templates:
            return None
        # a small box (the tracker's gate) still needs a neighbourhood for the peak's statistics
        peak_box = None
        half = 0.5 * cfg.fine_stats_cells * cell
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        if box[2] - box[0] < 2 * half or box[3] - box[1] < 2 * half:
            peak_box = box
            box = (min(box[0], cx - half), min(box[1], cy - half), max(box[2], cx + half), max(box[3], cy + half))
        xmin, ymin, xmax, ymax = box
        # the window: every placement of every template whose nadir lies in the box
        ax = [t.anchor_xy[0] for t in templates]
        ay = [t.anchor_xy[1] for t in templates]
        wx = [t.anchor_xy[0] + cell * t.feats.shape[2] for t in templates]
        wy = [t.anchor_xy[1] - cell * t.feats.shape[1] for t in templates]
        wbox = (xmin + min(ax) - cell, ymin + min(wy) - cell, xmax + max(wx) + cell, ymax + max(ay) + cell)
        win = self.store.window(level, wbox, self.methods)
        if not win.valid.any():
            return None
        log.debug("coarse: %d hypotheses, level %d (%.2f m), box %.0f x %.0f m, window %s cells, templates <= %s",
                  len(templates), level, cell, xmax - xmin, ymax - ymin, win.shape,
                  max(t.feats.shape[1:] for t in templates))
        scores, overlap, hw, full = correlate(templates, win, weights=self.weights, device=self.device)
        res = decode(scores, overlap, win, templates, hw, full, box, min_overlap=cfg.fine_min_overlap,
                     beta=cfg.fine_beta, keep_heat=keep_heat, peak_box=peak_box)
        if res is not None:
            res.info.update(level=level, hypotheses=len(templates))
            if keep_heat and templates[res.hyp_index].image is not None:
                res.info["template"] = templates[res.hyp_index].image
        return res

    def refine(self, frame, cam, coarse: OverlapResult, sensors: Sensors, allow_homography: bool = True,
               cache: dict | None = None, rival_z: float | None = None) -> FineFix | None:
        """Refine a coarse placement at ~2x finer cells: the whole frame again with heading bins half as
        wide, then (``fine_line_search``) a line search in heading and scale between the bins that
        places the fix (position, heading, altitude), then patches of it (independent evidence, and
        a homography -- the tilt -- when the attitude is unknown). None when the fine search fails.

        ``rival_z``: the best rival place's coarse z (default: the window's second peak). With
        ``fine_patches="auto"`` the patches are skipped when no homography is to be fitted and the
        score is already strong without them (``info["patches"] = "skipped"``): on a map of
        another year they seldom agree and cost a third of a tracking frame."""
        cfg = self.cfg
        fp = footprint_width(cam, coarse.hyp.alt_m)
        # the finest level whose template stays within 1.5x the target size, finer than the coarse pass
        cands = [k for k in self.store.search_levels if fp / self.store.cells[k] <= 1.5 * cfg.fine_patch_level_cells]
        level = min(cands) if cands else self.store.search_levels[-1]
        coarse_level = int(coarse.info.get("level", level + 1))
        if level >= coarse_level and coarse_level > min(self.store.search_levels):
            level = max(k for k in self.store.search_levels if k < coarse_level)
        cell = self.store.cells[level]
        cells = int(round(fp / cell))
        t0 = time.perf_counter()
        # 1. the whole frame at the fine level, around the coarse peak
        r = max(3.0 * coarse.cell_m, 3.0 * math.sqrt(max(float(np.trace(coarse.cov)) / 2.0, 0.0)), 8.0 * cell)
        x0, y0 = coarse.xy
        box = (x0 - r, y0 - r, x0 + r, y0 + r)
        h0, step = coarse.hyp.heading_grid_deg, cfg.fine_heading_step_deg / 2.0
        mk = lambda heads, scales: [Hypothesis(h % 360.0, coarse.hyp.alt_m * sc, coarse.hyp.roll_deg, coarse.hyp.pitch_deg)  # noqa: E731
                                   for h in heads for sc in scales]
        res = self.coarse(frame, cam, mk([h0 - step, h0, h0 + step], [1.0]), box, cells=cells, cache=cache)
        if res is None:
            return None
        searched: dict = {}
        if cfg.fine_line_search:
            # 1a. heading, then scale, between the bins: what the correlation places depends on both
            res, off, base = self._line_search(frame, cam, res, level, cache, "heading", step, res.template)
            searched["heading_search_deg"] = off * step
            if base is not None:
                res, off, _ = self._line_search(frame, cam, res, level, cache, "scale", cfg.fine_scale_step / 2.0, base)
                searched["scale_search"] = off * cfg.fine_scale_step / 2.0
        elif sensors.alt_m is None:  # the scale is known only to the coarse bin: halve that too
            ds = cfg.fine_scale_step / 2.0
            res2 = self.coarse(frame, cam, mk([res.hyp.heading_grid_deg], [math.exp(-ds), math.exp(ds)]), box,
                               cells=cells, cache=cache)
            if res2 is not None and res2.z_peak > res.z_peak:
                res = res2
        hyp = res.hyp
        info = {"fine_level": level, "fine_cell_m": cell, "coarse_level": coarse.info.get("level"),
                "coarse_cell_m": coarse.cell_m, "fine_z": res.z_peak, "coarse_to_fine_m": float(np.hypot(*(res.xy - coarse.xy))),
                **searched}
        # 1b. the winning hypothesis once more at the index's polish level, near the peak: where, not whether
        xy = res.xy
        pl = self.store.polish_level
        if cfg.fine_polish_cells > 0 and pl is not None and self.store.cells[pl] < cell and not searched:
            tp = time.perf_counter()
            polished = self.polish(frame, cam, hyp, res.xy, pl, cache)
            if polished is not None:
                info.update(polish_cell_m=self.store.cells[pl], polish_shift_m=float(np.hypot(*(polished - res.xy))))
                xy = polished
            info["polish_ms"] = (time.perf_counter() - tp) * 1000.0
        H_g_from_img = np.linalg.inv(ground_to_image_homography(cam, hyp.pose()))
        T = np.array([[1.0, 0.0, xy[0]], [0.0, 1.0, xy[1]], [0.0, 0.0, 1.0]])
        H, model = T @ H_g_from_img, "template"
        t1 = time.perf_counter()
        homography = sensors.attitude is None and allow_homography
        src = dst = np.zeros((0, 2))
        inliers = tested = 0
        rms = math.nan
        tmpl = []
        searched = self._patches_can_matter(coarse, res.z_peak, homography, rival_z)
        if searched:
            # 2. patches of the frame: do its parts agree (evidence), and is there tilt to explain (homography)?
            tmpl = [res.template] if res.template is not None else make_templates(
                frame, cam, [hyp], cell, self.extractors, max_cells=4 * cells, cache=cache)
        else:
            info["patches"] = "skipped"
        if tmpl:
            t = tmpl[0]
            S = cfg.fine_patch_search_cells
            # just the template's ground extent at the fine fix, plus the patches' search margin
            m = cell * (S + 2)
            x0, y1 = xy + t.anchor_xy
            x1, y0 = x0 + cell * t.feats.shape[2], y1 - cell * t.feats.shape[1]
            win = self.store.window(level, (x0 - m, y0 - m, x1 + m, y1 + m), self.methods)
            P = cfg.fine_patch_cells
            src, dst, z, tested = patch_correspondences(t, win, xy, patch_cells=P, stride=max(1, P // 2), search_cells=S,
                                                        min_z=cfg.fine_patch_min_z, device=self.device)
            fit = fit_patches(src, dst, z, tested, cell, tol_cells=cfg.fine_patch_tol_cells,
                              homography_min=cfg.fine_homography_min if homography else 10**9)
            if fit is not None:
                src, dst, inliers, rms = fit.src, fit.dst, fit.inliers, fit.rms_m
                if fit.model == "homography":
                    H, model = fit.M @ H_g_from_img, "homography"
            else:
                src = dst = np.zeros((0, 2))
        info.update(patch_inliers=inliers, patches_tested=tested, patch_rms_m=rms, fit_model=model,
                    fine_ms=(t1 - t0) * 1000.0, patch_ms=(time.perf_counter() - t1) * 1000.0 if searched else 0.0)
        return FineFix(xy, res.cov, hyp.heading_grid_deg, hyp.alt_m, H, model, coarse, coarse.z_second, inliers,
                       tested, rms if math.isfinite(rms) else cell, -1, hyp, src, dst, info)


    def _line_search(self, frame, cam, res: OverlapResult, level: int, cache, what: str, step: float,
                     base: Template | None) -> tuple[OverlapResult, float, Template | None]:
        """Refine the heading (``what="heading"``, ``step`` degrees) or the scale (``"scale"``, ``step``
        in log units) of ``res.hyp`` between the bins: steps from it (up to two either way) while the
        correlation near ``res.xy`` grows, then the vertex of the parabola through the best step and
        its neighbours, as a continuous value.

        Why: what the correlation places is the frame's texture, wherever it lies in the footprint;
        the nadir is then off by the heading or scale error times that lever (hundreds of metres
        from 1500 m). On NAIP frames of another year the 2 deg compass and the 2 % altimeter left
        4-6 m median errors; the exact heading and altitude gave 0.6-1.5 m.

        Each step's template is ``base`` (the frame's template at ``level``, for any heading or scale)
        turned or zoomed on the ground (:func:`overlap.turn_template`: exact for every attitude) and
        scored by :func:`overlap.near_peak` (the 5 x 5 placements around ``res.xy``, one window
        transform shared by the steps): ~4 ms a step where a rendered template with a window's
        z-scores costs ~10.

        Returns ``(result, offset, base)``: ``res`` with the continuous hypothesis and its position
        (interpolated between the best step's and its neighbour's), its template dropped (the next
        pass renders it); the offset in ``step`` units; the base template (None when the frame has
        no template at this level: ``res`` unchanged).
        """
        h = res.hyp
        cell = self.store.cells[level]
        if base is not None and base.hyp != h:  # the same frame at another heading or scale: resampled
            b0 = base.hyp
            base = turn_template(base, (h.heading_grid_deg - b0.heading_grid_deg + 180.0) % 360.0 - 180.0,
                                 h.alt_m / b0.alt_m, cell)
        if base is None:
            made = make_templates(frame, cam, [h], cell, self.extractors, cache=cache,
                                  max_cells=4 * int(round(footprint_width(cam, h.alt_m) / cell)))
            if not made:
                return res, 0.0, None
            base = made[0]

        def turn(k: float) -> tuple[float, float]:  # (heading change, scale) of step k
            return (k * step, 1.0) if what == "heading" else (0.0, math.exp(k * step))

        S = 2
        # one window for every step: the base's extent, grown by what two steps of either kind move
        # its corners (~5 % of its size) and the search square
        _, hb, wb = base.feats.shape
        grow = 0.06 * max(hb, wb) * cell + (S + 2) * cell
        x0, y1 = np.asarray(res.xy) + base.anchor_xy
        win = self.store.window(level, (x0 - grow, y1 - hb * cell - grow, x0 + wb * cell + grow, y1 + grow), self.methods)
        found: dict[int, tuple[float, np.ndarray | None]] = {}
        spectra: dict = {}  # the window's transforms, shared by the steps

        def score(k: int) -> float:
            if k not in found:
                t = base if k == 0 else turn_template(base, *turn(k), cell)
                found[k] = near_peak(t, win, res.xy, search_cells=S, weights=self.weights,
                                     min_overlap=self.cfg.fine_min_overlap, device=self.device, spectra=spectra)
            return found[k][0]

        best = 0
        for sgn in (-1, 1):
            if score(sgn) > score(best):
                best = sgn
        while abs(best) < 2 and score(best + (1 if best > 0 else -1)) > score(best):
            best += 1 if best > 0 else -1
        frac = parabola_vertex(score(best - 1), score(best), score(best + 1)) if abs(best) < 2 else 0.0
        xy = found[best][1]
        nb = found.get(best + (1 if frac > 0 else -1), (None, None))[1]
        if xy is not None and nb is not None:
            xy = xy + abs(frac) * (nb - xy)
        dh, sc = turn(best + frac)
        hyp = Hypothesis((h.heading_grid_deg + dh) % 360.0, h.alt_m * sc, h.roll_deg, h.pitch_deg)
        return replace(res, hyp=hyp, template=None, xy=res.xy if xy is None else xy), best + frac, base

    def _patches_can_matter(self, coarse: OverlapResult, fine_z: float, homography: bool,
                            rival_z: float | None) -> bool:
        """Whether searching the patches can change the outcome (always, with ``fine_patches="always"``):
        a homography to fit, or a score that is not yet strong with none of them agreeing."""
        cfg = self.cfg
        if cfg.fine_patches == "always" or homography:
            return True
        p0 = score_without_patches(coarse.z_peak, coarse.z_second if rival_z is None else rival_z, fine_z,
                                   cfg.fine_score_weights)
        return p0 is None or p0 < cfg.fine_strong_score

    def polish(self, frame, cam, hyp: Hypothesis, xy0: np.ndarray, level: int, cache: dict | None = None) -> np.ndarray | None:
        """The nadir of ``hyp``'s template at ``level`` (finer than the fine pass), within
        ``fine_polish_cells`` cells of ``xy0`` (:func:`overlap.polish_peak`); None when it cannot say."""
        cell = self.store.cells[level]
        S = int(self.cfg.fine_polish_cells)
        cells = int(round(footprint_width(cam, hyp.alt_m) / cell))
        tmpl = make_templates(frame, cam, [hyp], cell, self.extractors, max_cells=4 * cells, cache=cache)
        if not tmpl:
            return None
        t = tmpl[0]
        m = cell * (S + 2)
        x0, y1 = np.asarray(xy0) + t.anchor_xy
        x1, y0 = x0 + cell * t.feats.shape[2], y1 - cell * t.feats.shape[1]
        win = self.store.window(level, (x0 - m, y0 - m, x1 + m, y1 + m), self.methods)
        return polish_peak(t, win, np.asarray(xy0, float), search_cells=S, weights=self.weights,
                           min_overlap=self.cfg.fine_min_overlap, device=self.device)


def _half_bins(sigma_in_steps: float) -> int:
    """Bins on each side of the sensor's value so that +-2 sigma is covered, given that each bin
    tolerates half a step of error: k bins reach k + 0.5 steps."""
    return max(0, int(math.ceil(2.0 * sigma_in_steps - 0.5)))


def _channel_weights(extractors) -> np.ndarray | None:
    """Per-channel correlation weights: with the learned features next to CFOG, CFOG's channels
    count as much as the overlap head learned they should (``OverlapHead.cfog_weight``)."""
    learned = [e for e in extractors if e.name == "foenet"]
    if not learned or not any(e.name == "cfog" for e in extractors):
        return None
    w_cfog = float(learned[0].model.overlap_head.cfog_weight.detach())
    return np.concatenate([np.full(e.channels, w_cfog if e.name == "cfog" else 1.0, np.float32) for e in extractors])


def footprint_width(cam: CameraIntrinsics, alt_m: float) -> float:
    """Ground width seen by the frame at the nadir distance ``alt_m`` (m): ``2 alt tan(fov / 2)``, longer side."""
    return 2.0 * alt_m * math.tan(math.radians(max(cam.hfov_deg, cam.vfov_deg)) / 2.0)


def camera_or_pseudo(cam: CameraIntrinsics | None, width: int, height: int) -> tuple[CameraIntrinsics, bool]:
    """The frame's intrinsics, or the nadir pseudo-camera for a frame without them (flag True)."""
    if cam is not None:
        return cam, False
    from .overlap import pseudo_camera

    return pseudo_camera(width, height), True


__all__ = ["CameraError", "FineFix", "FineStage", "Region", "Sensors", "camera_or_pseudo", "footprint_width"]
