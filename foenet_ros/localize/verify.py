"""Geometric checks of keypoint fits: the north-up 3-DOF RANSAC, and the evidence tests a fit must
pass before it may become a fix (distinct one-to-one matches, spread over the frame, a sane
homography). The matching itself lives in :mod:`.refine` (frame keypoints vs. the index's map
keypoints)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def ransac_scale_translation(p1: np.ndarray, p2: np.ndarray, thr: float, iters: int = 2000,
                             scale_range: tuple[float, float] = (0.3, 3.0), seed: int = 0):
    """Fit ``p2 = s * p1 + t`` (scale + translation, no rotation: both images north-up) by RANSAC.

    Three degrees of freedom instead of a homography's eight: with few true matches (a drone photo
    vs. a satellite image of another season) a random consensus of this model is far less likely.
    Returns ``(s, t[2], inlier_mask)`` or ``None``.
    """
    n = len(p1)
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, iters)
    j = rng.integers(0, n, iters)
    d1 = p1[j] - p1[i]
    d2 = p2[j] - p2[i]
    n1 = np.linalg.norm(d1, axis=1)
    ok = (n1 > 4.0) & (i != j)
    s = np.where(ok, np.linalg.norm(d2, axis=1) / np.maximum(n1, 1e-9), 0.0)
    ok &= (s > scale_range[0]) & (s < scale_range[1])
    # the two displacement vectors must also point the same way (no rotation)
    ok &= np.sum(d1 * d2, axis=1) > 0.9 * n1 * np.linalg.norm(d2, axis=1)
    if not np.any(ok):
        return None
    s, i = s[ok], i[ok]
    t = p2[i] - s[:, None] * p1[i]
    # score the hypotheses in chunks (float32): [hyp, n] residuals without a huge temporary
    a, b = p1.astype(np.float32), p2.astype(np.float32)
    thr2 = np.float32(thr * thr)
    counts = np.empty(len(s), np.int64)
    for c in range(0, len(s), 256):
        sc, tc = s[c : c + 256, None, None].astype(np.float32), t[c : c + 256, None].astype(np.float32)
        d = a[None] * sc + tc - b[None]
        counts[c : c + 256] = ((d * d).sum(axis=2) < thr2).sum(axis=1)
    best = int(np.argmax(counts))
    inl = np.linalg.norm(p1 * s[best] + t[best] - p2, axis=1) < thr
    # least-squares refit on the consensus
    a, b = p1[inl].astype(np.float64), p2[inl].astype(np.float64)
    ac, bc = a - a.mean(0), b - b.mean(0)
    s_ls = float(np.sum(ac * bc) / max(np.sum(ac * ac), 1e-9))
    if not (scale_range[0] < s_ls < scale_range[1]):  # collapsed onto a few points
        return None
    t_ls = b.mean(0) - s_ls * a.mean(0)
    inl = np.linalg.norm(p1 * s_ls + t_ls - p2, axis=1) < thr
    return s_ls, t_ls, inl


def distinct_count(p1: np.ndarray, p2: np.ndarray, cell_px: float = 2.0) -> int:
    """Matches that are one-to-one at ``cell_px`` resolution: several keypoints matched to the same
    map point (blobs of an upsampled map, repeated texture) count once."""
    if len(p1) == 0:
        return 0
    k1 = {tuple(v) for v in np.round(p1 / cell_px).astype(np.int64)}
    k2 = {tuple(v) for v in np.round(p2 / cell_px).astype(np.int64)}
    return min(len(k1), len(k2))


def well_spread(pts: np.ndarray, w: float, h: float, frac: float = 0.1) -> bool:
    """Inliers must cover the image (std along both axes >= ``frac`` of its size), not one corner:
    a fit on a tight cluster extrapolates wildly to the image centre and the camera."""
    if len(pts) < 4:
        return False
    sd = pts.std(axis=0)
    return bool(sd[0] >= frac * w and sd[1] >= frac * h)


def homography_is_sane(H: np.ndarray, w: int, h: int, max_scale_ratio: float = 6.0) -> bool:
    """Reject homographies that mirror, collapse or explode the frame (a wrong match can fit anything).

    The frame's corners must map to a convex, non-mirrored quadrilateral whose sides are within
    ``max_scale_ratio`` of each other (perspective of a tilted camera stays well within that).
    """
    if H is None or not np.all(np.isfinite(H)):
        return False
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    p = np.column_stack([corners, np.ones(4)]) @ H.T
    if np.any(p[:, 2] <= 1e-9):  # a corner behind the horizon
        return False
    q = p[:, :2] / p[:, 2:3]
    cross = []
    for i in range(4):
        a, b, c = q[i], q[(i + 1) % 4], q[(i + 2) % 4]
        cross.append((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]))
    cross = np.array(cross)
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return False
    # image coordinates (y down) -> same orientation as the frame's corners: no mirror
    if np.all(cross < 0):
        return False
    sides = np.linalg.norm(q - np.roll(q, -1, axis=0), axis=1)
    return bool(sides.min() > 1e-6 and sides.max() / sides.min() < max_scale_ratio)
