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

from ..features.local import Keypoints, guided_matches, ratio_matches
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
    """

    H: np.ndarray | None
    pts_frame: np.ndarray
    pts_map: np.ndarray
    matches: int
    inliers: int
    reason: str = ""


_EMPTY = np.zeros((0, 2))


def fit_keypoints(kp: Keypoints, flavour: str, store, box, gsd_m: float, frame_wh: tuple[int, int], *,
                  H_pred: np.ndarray | None = None, radius_m: float = 8.0, ratio: float = 0.8,
                  ransac_px: float = 4.0, min_inliers: int = 12, min_spread: float = 0.1,
                  T_frame: np.ndarray | None = None) -> KeypointFit:
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
    """
    xy_map, _, d_map = store.keypoints_in(box, flavour, gsd_m)
    if len(kp) < 4 or len(xy_map) < 4:
        return KeypointFit(None, _EMPTY, _EMPTY, 0, 0, "too few keypoints")
    T_inv = np.linalg.inv(T_frame) if T_frame is not None else np.eye(3)
    pts_work = apply_h(T_inv, kp.xy.astype(np.float64))  # keypoints in working-frame pixels
    d = kp.desc[flavour]
    if H_pred is not None:
        i1, i2, _ = guided_matches(d, apply_h(H_pred, pts_work), d_map, xy_map, radius_m, ratio)
    else:
        i1, i2, _ = ratio_matches(d, d_map, ratio)
    n = len(i1)
    if n < max(4, min_inliers):
        return KeypointFit(None, _EMPTY, _EMPTY, n, 0, f"{n} matches")
    p1 = pts_work[i1].astype(np.float32)
    p2 = xy_map[i2]
    # fit in a local map frame (UTM-sized numbers cost precision in float32 RANSAC)
    o = p2.mean(axis=0)
    H, mask = cv2.findHomography(p1, (p2 - o).astype(np.float32), cv2.RANSAC, ransac_px * gsd_m,
                                 maxIters=2000, confidence=0.999)
    if H is None or mask is None:
        return KeypointFit(None, _EMPTY, _EMPTY, n, 0, "no homography")
    H = np.array([[1.0, 0.0, o[0]], [0.0, 1.0, o[1]], [0.0, 0.0, 1.0]]) @ H
    inl = mask.ravel().astype(bool)
    pf, pm = p1[inl].astype(np.float64), p2[inl]
    w, h = frame_wh
    # sanity in a map-pixel frame at the frame's GSD (the check is about shape, not units)
    S = np.diag([1.0 / gsd_m, -1.0 / gsd_m, 1.0])
    if not homography_is_sane(S @ H, int(w), int(h)):
        return KeypointFit(None, pf, pm, n, 0, "insane homography")
    if not well_spread(pf, w, h, min_spread):
        return KeypointFit(None, pf, pm, n, 0, "inliers not spread")
    count = distinct_count(pf, pm / max(gsd_m, 1e-9))
    if count < min_inliers:
        return KeypointFit(None, pf, pm, n, count, f"{count} distinct inliers")
    return KeypointFit(H, pf, pm, n, count)


def frame_gsd(H_img_to_map: np.ndarray, w: int, h: int) -> float:
    """Ground size (m) of a working-frame pixel at the frame centre under ``H_img_to_map``."""
    c = np.array([[(w - 1) / 2.0, (h - 1) / 2.0], [(w - 1) / 2.0 + 1.0, (h - 1) / 2.0],
                  [(w - 1) / 2.0, (h - 1) / 2.0 + 1.0]])
    g = apply_h(H_img_to_map, c)
    return float(math.sqrt(abs(np.cross(g[1] - g[0], g[2] - g[0]))))
