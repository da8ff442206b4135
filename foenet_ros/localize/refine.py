"""Keypoint refinement: the frame's SIFT keypoints against the index's cached map keypoints.

Two uses, both against keypoints detected on the map once, at index build:

* **guided** (after the dense fine stage): each frame keypoint may only match map keypoints
  within a few metres of where the dense fix predicts it. Even cross-season, where unguided
  matching drowns in outliers, the spatial constraint keeps the true matches; a homography over
  them gives a sub-metre position and the camera's tilt.
* **unguided** (no dense fix, e.g. heading and altitude unknown): ratio-test matches against the
  map keypoints of a retrieved tile's area, rotation-invariant ("oriented") descriptors when the
  heading is unknown, upright ones when the frame was turned north-up.

A fix is accepted on distinct, well-spread inliers of a sane homography; its covariance comes from
a bootstrap over the inliers (in :class:`foenet_ros.localize.Localizer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..features.local import Keypoints, guided_matches, nearest_two, ratio_filter
from .overlap import apply_h
from .verify import distinct_count, homography_is_sane, well_spread


@dataclass
class KeypointFit:
    """A homography from frame pixels to map metres fitted on keypoint matches.

    Attributes:
        H: [3, 3] (working-frame pixels -> map metres), None when the fit failed.
        pts_frame, pts_map: [N, 2] inliers.
        matches: matches before RANSAC.
        inliers: distinct, well-spread inliers (0 when refused).
        reason: why the fit was refused ("" when accepted).
        H_weak: the homography of a fit refused only for too few distinct inliers (sane, inliers
            spread; ``inliers`` then counts them), else None: a hint where to look again.
    """

    H: np.ndarray | None
    pts_frame: np.ndarray
    pts_map: np.ndarray
    matches: int
    inliers: int
    reason: str = ""
    model: str = "homography"  # or "scale_translation" (upright, few matches: no tilt, the image centre)
    z_map: np.ndarray | None = None  # [N] ground heights of the inliers (NaN without a surface model)
    H_weak: np.ndarray | None = None


_EMPTY = np.zeros((0, 2))
_NO_HOMOGRAPHY = "no homography"


def fit_keypoints(kp: Keypoints, flavour: str, store, box, gsd_m: float, frame_wh: tuple[int, int], *,
                  H_pred: np.ndarray | None = None, radius_m: float = 8.0, ratio: float = 0.8,
                  ransac_px: float = 4.0, min_inliers: int = 12, min_spread: float = 0.1,
                  T_frame: np.ndarray | None = None, min_inliers_3dof: int = 0, hint_min_inliers: int = 0) -> KeypointFit:
    """Match frame keypoints against the map keypoints inside ``box`` and fit a homography.

    Args:
        kp: the frame's keypoints, in the pixels of the image they were detected on.
        flavour: "upright" or "oriented".
        store: the index's FineStore.
        box: (xmin, ymin, xmax, ymax) map area to take keypoints from.
        gsd_m: the frame's ground resolution (m/px): picks the map keypoint pyramid levels.
        frame_wh: (w, h) of the working frame (for the spread and sanity checks).
        H_pred: predicted working-frame pixels -> map metres (guided matching), or None.
        radius_m: guided matching radius around each prediction.
        ransac_px: RANSAC threshold, in frame pixels (converted to metres with ``gsd_m``).
        T_frame: [3, 3] working-frame pixels -> ``kp`` pixels (e.g. the north-up rotation), or None.
        min_inliers_3dof: upright and unguided, when the homography fails: a north-up scale +
            translation model (3 DOF: far less likely to fit random matches than 8) on loose-ratio
            matches, with at least this many distinct inliers (0 = off). Drone photo vs. satellite
            map of another season often matches only this way.
        hint_min_inliers: a homography refused only for fewer than ``min_inliers`` (but at least this
            many) distinct inliers is returned as ``H_weak`` (0 = never).
    """
    xy_map, _, d_map, z_all = store.keypoints_in(box, flavour, gsd_m)
    if len(kp) < 4 or len(xy_map) < 4:
        return KeypointFit(None, _EMPTY, _EMPTY, 0, 0, "too few keypoints")
    T_inv = np.linalg.inv(T_frame) if T_frame is not None else np.eye(3)
    pts_work = apply_h(T_inv, kp.xy.astype(np.float64))  # keypoints in working-frame pixels
    d = kp.desc[flavour]
    nn = None  # the unguided nearest neighbours, shared by the homography and the 3-DOF fallback
    if H_pred is not None:
        i1, i2, _ = guided_matches(d, apply_h(H_pred, pts_work), d_map, xy_map, radius_m, ratio)
    else:
        nn = nearest_two(d, d_map)
        i1, i2, _ = ratio_filter(nn, ratio)
    fit = fit_matches(pts_work[i1], xy_map[i2], z_all[i2], gsd_m, frame_wh, ransac_px=ransac_px,
                      min_inliers=min_inliers, min_spread=min_spread, hint_min_inliers=hint_min_inliers)
    # too few matches, or a homography that fails its checks: the 3-DOF model may still hold (not when
    # RANSAC found no homography at all)
    if fit.H is None and min_inliers_3dof and flavour == "upright" and nn is not None and fit.reason != _NO_HOMOGRAPHY:
        return _scale_translation(kp, nn, xy_map, gsd_m, frame_wh, T_frame, ransac_px, min_inliers_3dof,
                                  min_spread, fit)
    return fit


def fit_matches(pts_frame: np.ndarray, xy_map: np.ndarray, z_map: np.ndarray, gsd_m: float, frame_wh: tuple[int, int], *,
                ransac_px: float = 4.0, min_inliers: int = 12, min_spread: float = 0.1,
                hint_min_inliers: int = 0) -> KeypointFit:
    """A homography (working-frame pixels -> map metres) over putative matches, RANSAC, then the checks.

    Args:
        pts_frame: [N, 2] working-frame pixels of the matched frame keypoints.
        xy_map, z_map: [N, 2] map metres and [N] ground heights of their map matches.
        gsd_m: the frame's ground resolution (the RANSAC threshold is ``ransac_px`` x ``gsd_m``).
        frame_wh: (w, h) of the working frame.

    Returns a :class:`KeypointFit`: accepted on a sane homography, inliers spread over the frame and at
    least ``min_inliers`` distinct ones; else ``H`` None and the reason (and ``H_weak`` when only the
    count fell short, with at least ``hint_min_inliers`` > 0 of them).
    """
    n = len(pts_frame)
    if n < max(4, min(min_inliers, hint_min_inliers or min_inliers)):
        return KeypointFit(None, _EMPTY, _EMPTY, n, 0, f"{n} matches")
    p1 = pts_frame.astype(np.float32)
    p2 = xy_map
    # fit in a local map frame (UTM-sized numbers cost precision in float32 RANSAC)
    o = p2.mean(axis=0)
    # OpenCV's RANSAC draws from the calling thread's RNG, whose state depends on every earlier call in that
    # thread: seeded here, the same frame gives the same fix in the node's worker thread and in a replay
    cv2.setRNGSeed(len(p1))
    H, mask = cv2.findHomography(p1, (p2 - o).astype(np.float32), cv2.RANSAC, ransac_px * gsd_m,
                                 maxIters=2000, confidence=0.999)
    if H is None or mask is None:
        return KeypointFit(None, _EMPTY, _EMPTY, n, 0, _NO_HOMOGRAPHY)
    H = np.array([[1.0, 0.0, o[0]], [0.0, 1.0, o[1]], [0.0, 0.0, 1.0]]) @ H
    inl = mask.ravel().astype(bool)
    pf, pm, zm = p1[inl].astype(np.float64), p2[inl], z_map[inl]
    w, h = frame_wh
    # sanity in a map-pixel frame at the frame's GSD (the check is about shape, not units)
    S = np.diag([1.0 / gsd_m, -1.0 / gsd_m, 1.0])
    if not homography_is_sane(S @ H, int(w), int(h)):
        return KeypointFit(None, pf, pm, n, 0, "insane homography")
    if not well_spread(pf, w, h, min_spread):
        return KeypointFit(None, pf, pm, n, 0, "inliers not spread")
    count = distinct_count(pf, pm / max(gsd_m, 1e-9))
    if count < min_inliers:
        weak = H if 0 < hint_min_inliers <= count else None
        return KeypointFit(None, pf, pm, n, count, f"{count} distinct inliers", H_weak=weak)
    return KeypointFit(H, pf, pm, n, count, z_map=zm)


def screen_windows(kp: Keypoints, flavour: str, store, boxes: list, gsds: list[float], *, ratio: float = 0.8,
                   strongest: int = 128, place_m: float = 2.0) -> np.ndarray:
    """How many of the frame's strongest keypoints match each map window: ``[len(boxes)] int``.

    A cheap vote that orders candidate windows before the per-window fits: one exact k-NN search of
    the ``strongest`` frame descriptors against the union of the windows' cached map keypoints (each
    map keypoint once, however many windows hold it), Lowe's ratio test against that whole union
    (stricter than per window: a true match must stand out of every candidate place), each surviving
    match counted for every window that holds its map keypoint. The second neighbour of the ratio test
    is the nearest one more than ``place_m`` from the first: the same map detail stored at two pyramid
    levels is not a rival.

    Args:
        kp: the frame's keypoints (any pixels; only descriptors and responses are used).
        boxes: map windows (xmin, ymin, xmax, ymax), metres; gsds: the frame GSD assumed for each (m/px,
            picks its keypoint levels as in :func:`fit_keypoints`).
    """
    from ..features.local import nearest_k_rootsift

    ids = [store.keypoint_ids(b, g) for b, g in zip(boxes, gsds)]
    union = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
    k = 4
    if len(kp) < 4 or len(union) < 2 * k + 4:
        return np.zeros(len(boxes), int)
    strong = np.argsort(-kp.response, kind="stable")[:strongest]
    xy_u, _, d_u, _ = store.keypoints_at(union, flavour)
    idx, dist = nearest_k_rootsift(kp.desc[flavour][strong], d_u, k)
    # the rival: the nearest neighbour at another place (the last one when all k are at the first's place)
    far = np.hypot(*(xy_u[idx] - xy_u[idx[:, :1]]).transpose(2, 0, 1)) > place_m  # [n, k]
    far[:, -1] = True
    far[:, 0] = False
    rival = dist[np.arange(len(idx)), np.argmax(far, axis=1)]
    matched = union[idx[dist[:, 0] < ratio * rival, 0]]
    return np.array([int(np.isin(matched, i).sum()) for i in ids], int)


def _scale_translation(kp: Keypoints, nn: tuple[np.ndarray, np.ndarray], xy_map: np.ndarray, gsd_m: float, frame_wh,
                       T_frame, ransac_px: float, min_inliers: int, min_spread: float, fail: KeypointFit) -> KeypointFit:
    """The north-up 3-DOF fallback of :func:`fit_keypoints` (both images north-up: ``kp`` in the
    north-up keypoint image's pixels, the map in metres; ``nn``: :func:`nearest_two` of the frame's
    descriptors against the map's, filtered here at a loose ratio)."""
    from .verify import ransac_scale_translation

    i1, i2, _ = ratio_filter(nn, 0.95)
    if len(i1) < min_inliers:
        return fail
    q = kp.xy[i1].astype(np.float64)  # north-up image pixels (v down)
    o = xy_map[i2].mean(axis=0)
    m = np.column_stack([(xy_map[i2, 0] - o[0]) / gsd_m, -(xy_map[i2, 1] - o[1]) / gsd_m])  # map pixels (v down)
    r = ransac_scale_translation(q, m, 1.5 * ransac_px)
    if r is None:
        return fail
    sc, t, inl = r
    T = np.eye(3) if T_frame is None else T_frame
    pf = apply_h(np.linalg.inv(T), q[inl])
    pm = xy_map[i2][inl]
    w, h = frame_wh
    count = distinct_count(pf, pm / max(gsd_m, 1e-9))
    if count < min_inliers or not well_spread(pf, w, h, min_spread):
        return fail
    # north-up image pixels -> map metres: x = o_x + g (s u + t_u), y = o_y - g (s v + t_v)
    A = np.array([[gsd_m * sc, 0.0, o[0] + gsd_m * t[0]], [0.0, -gsd_m * sc, o[1] - gsd_m * t[1]], [0.0, 0.0, 1.0]])
    return KeypointFit(A @ T, pf, pm, len(i1), count, "", "scale_translation")


def frame_gsd(H_img_to_map: np.ndarray, w: int, h: int) -> float:
    """Ground size (m) of a working-frame pixel at the frame centre under ``H_img_to_map``."""
    c = np.array([[(w - 1) / 2.0, (h - 1) / 2.0], [(w - 1) / 2.0 + 1.0, (h - 1) / 2.0],
                  [(w - 1) / 2.0, (h - 1) / 2.0 + 1.0]])
    g = apply_h(H_img_to_map, c)
    a, b = g[1] - g[0], g[2] - g[0]
    return float(math.sqrt(abs(a[0] * b[1] - a[1] * b[0])))  # area of the cell's image on the map
