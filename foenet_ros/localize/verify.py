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
    """

    H: np.ndarray | None
    inliers: int
    matches: int
    pts1: np.ndarray
    pts2: np.ndarray


_EMPTY = np.zeros((0, 2), np.float32)


class FeatureMatcher:
    """SIFT (RootSIFT descriptors, L2) or ORB (Hamming) with a brute-force ratio test and RANSAC."""

    def __init__(self, feature: str = "sift", max_features: int = 2000, ratio: float = 0.8,
                 ransac_px: float = 4.0) -> None:
        self.feature = feature
        self.ratio = float(ratio)
        self.ransac_px = float(ransac_px)
        if feature == "sift":
            self._det = cv2.SIFT_create(nfeatures=max_features)
            self._bf = cv2.BFMatcher(cv2.NORM_L2)
        elif feature == "orb":
            self._det = cv2.ORB_create(nfeatures=max_features, fastThreshold=10)
            self._bf = cv2.BFMatcher(cv2.NORM_HAMMING)
        else:
            raise ValueError(f"unknown feature {feature!r}")

    def detect(self, image: np.ndarray, mask: np.ndarray | None = None) -> Features:
        """Keypoints of an RGB [H,W,3] or grey [H,W] uint8 image (``mask``: uint8, 0 = ignore)."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
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
        knn = self._bf.knnMatch(f1.desc, f2.desc, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < self.ratio * m[1].distance]
        if len(good) < 4:
            return Match(None, 0, len(good), _EMPTY, _EMPTY)
        p1 = f1.xy[[m.queryIdx for m in good]]
        p2 = f2.xy[[m.trainIdx for m in good]]
        H, mask = cv2.findHomography(p1, p2, cv2.RANSAC, self.ransac_px, maxIters=2000, confidence=0.999)
        if H is None or mask is None:
            return Match(None, 0, len(good), _EMPTY, _EMPTY)
        inl = mask.ravel().astype(bool)
        return Match(H, int(inl.sum()), len(good), p1[inl], p2[inl])


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
