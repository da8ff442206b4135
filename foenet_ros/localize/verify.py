"""Geometric verification: local features (OpenCV SIFT/ORB) + ratio test + RANSAC homography.

Matches a camera frame against a north-up map crop; the homography (frame pixels -> crop pixels)
is the evidence that turns a retrieved tile into a metric position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Features:
    """Keypoints ``xy`` [N,2] float32 (pixels of the image they came from) and descriptors [N,D]."""

    xy: np.ndarray
    desc: np.ndarray | None

    def __len__(self) -> int:
        return 0 if self.desc is None else len(self.xy)


@dataclass
class Match:
    """Result of matching two images.

    Attributes:
        H: 3x3 homography from image-1 pixels to image-2 pixels (None when it failed).
        inliers: RANSAC inlier count.
        matches: ratio-test matches.
        pts1, pts2: inlier coordinates [M,2] in image 1 and image 2.
        all1, all2: every ratio-test match [K,2] (for a constrained re-fit when the homography fails).
    """

    H: np.ndarray | None
    inliers: int
    matches: int
    pts1: np.ndarray
    pts2: np.ndarray
    all1: np.ndarray = None
    all2: np.ndarray = None


_EMPTY = np.zeros((0, 2), np.float32)


class FeatureMatcher:
    """SIFT (RootSIFT descriptors, L2) or ORB (Hamming) with a brute-force ratio test and RANSAC."""

    def __init__(self, feature: str = "sift", max_features: int = 2000, ratio: float = 0.8,
                 ransac_px: float = 4.0, loose_ratio: float = 0.95) -> None:
        self.feature = feature
        self.ratio = float(ratio)
        self.loose_ratio = float(loose_ratio)
        self.ransac_px = float(ransac_px)
        if feature == "sift":
            self._det = cv2.SIFT_create(nfeatures=max_features)
            self._bf = cv2.BFMatcher(cv2.NORM_L2)
        elif feature == "orb":
            self._det = cv2.ORB_create(nfeatures=max_features, fastThreshold=10)
            self._bf = cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            raise ValueError(f"unknown feature {feature!r}")

    def detect(self, image: np.ndarray, mask: np.ndarray | None = None, upright: bool = False) -> Features:
        """Keypoints of an RGB [H,W,3] or grey [H,W] uint8 image (``mask``: uint8, 0 = ignore).

        ``upright`` (SIFT only): descriptors without orientation normalisation, for two images that
        are both north-up; far more distinctive across seasons and sensors than rotated ones.
        """
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        if upright and self.feature == "sift":
            kps = self._det.detect(gray, mask)
            for k in kps:
                k.angle = 0.0
            kps, desc = self._det.compute(gray, kps) if kps else ((), None)
        else:
            kps, desc = self._det.detectAndCompute(gray, mask)
        if desc is None or len(kps) == 0:
            return Features(_EMPTY, None)
        if self.feature == "sift":  # RootSIFT: Hellinger kernel, a free gain in matching
            desc = desc / (np.abs(desc).sum(axis=1, keepdims=True) + 1e-7)
            desc = np.sqrt(desc).astype(np.float32)
        xy = np.array([k.pt for k in kps], dtype=np.float32)
        return Features(xy, desc)

    def match(self, f1: Features, f2: Features) -> Match:
        """Ratio-test matches + RANSAC homography from ``f1``'s image to ``f2``'s image."""
        if len(f1) < 4 or len(f2) < 4:
            return Match(None, 0, 0, _EMPTY, _EMPTY)
        knn = [m for m in self._bf.knnMatch(f1.desc, f2.desc, k=2) if len(m) == 2]
        good = [m[0] for m in knn if m[0].distance < self.ratio * m[1].distance]
        # a looser set for the constrained (3-DOF) model, which tolerates far more outliers
        loose = [m[0] for m in knn if m[0].distance < self.loose_ratio * m[1].distance]
        a1 = f1.xy[[m.queryIdx for m in loose]] if loose else _EMPTY
        a2 = f2.xy[[m.trainIdx for m in loose]] if loose else _EMPTY
        if len(good) < 4:
            return Match(None, 0, len(good), _EMPTY, _EMPTY, a1, a2)
        p1 = f1.xy[[m.queryIdx for m in good]]
        p2 = f2.xy[[m.trainIdx for m in good]]
        H, mask = cv2.findHomography(p1, p2, cv2.RANSAC, self.ransac_px, maxIters=2000, confidence=0.999)
        if H is None or mask is None:
            return Match(None, 0, len(good), _EMPTY, _EMPTY, a1, a2)
        inl = mask.ravel().astype(bool)
        return Match(H, int(inl.sum()), len(good), p1[inl], p2[inl], a1, a2)


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
