"""CFOG: channel features of oriented gradients, the classical dense descriptor of the fine stage.

After Ye et al., "Fast and Robust Matching for Multimodal Remote Sensing Image Registration"
(IEEE TGRS 2019): per pixel, the magnitude of the image gradient projected on ``n`` orientations
in [0, 180) degrees (unsigned, so a brightness inversion between sensors -- near-infrared vs. red,
a roof lit from the other side -- keeps the same descriptor), smoothed in space by a Gaussian and
across orientations by [1, 2, 1], then L2-normalised per pixel. Correlating these channels finds
the same *structure* (field edges, roads, roof lines) under another season, year, hour or sensor,
where grey-level correlation and SIFT descriptors fail.

Shapes: an image ``[H, W]`` (or ``[H, W, 3]`` RGB) at the working ground resolution in, features
``[C=n, H, W]`` float32 out (stride 1: one descriptor per input pixel).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: orientation channels (20 degrees apart)
N_ORIENT = 9


def to_gray_f32(image: np.ndarray) -> np.ndarray:
    """``[H,W]`` or ``[H,W,3]`` uint8 RGB -> ``[H,W]`` float32 grey in 0..255."""
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return image.astype(np.float32, copy=False)


def cfog(image: np.ndarray, valid: np.ndarray | None = None, *, n_orient: int = N_ORIENT,
         sigma: float = 1.0, border: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """CFOG features of one image.

    Args:
        image: ``[H,W]`` grey or ``[H,W,3]`` RGB uint8, already resampled to the working cell size.
        valid: ``[H,W]`` bool, True where the image has data (None = all).
        n_orient: orientation channels.
        sigma: spatial Gaussian, in pixels.
        border: the valid mask is eroded by this many pixels, so that the artificial edge between
            data and no-data (black corners of a rotated frame, a map's nodata) adds no structure.

    Returns:
        ``(features [n_orient, H, W] float32, valid [H, W] bool)``; features are 0 where invalid and
        have unit L2 norm (or less, in flat areas) elsewhere.
    """
    g = to_gray_f32(image)
    if valid is not None and not valid.all():
        # fill no-data with the mean of the data so its edge does not look like a strong gradient
        fill = float(g[valid].mean()) if valid.any() else 0.0
        g = np.where(valid, g, fill).astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    feats = np.empty((n_orient, *g.shape), np.float32)
    for k in range(n_orient):
        t = math.pi * k / n_orient
        ch = np.abs(gx * math.cos(t) + gy * math.sin(t))
        feats[k] = cv2.GaussianBlur(ch, (0, 0), sigma) if sigma > 0 else ch
    # smooth across orientation: [1, 2, 1] on the circle of orientations
    feats = 0.5 * feats + 0.25 * (np.roll(feats, 1, axis=0) + np.roll(feats, -1, axis=0))
    norm = np.sqrt(np.einsum("chw,chw->hw", feats, feats))
    # a small floor relative to the typical gradient keeps flat, noisy areas weak instead of
    # blowing their noise up to unit length
    floor = 0.1 * float(np.median(norm[valid])) if valid is not None and valid.any() else 0.1 * float(np.median(norm))
    feats /= norm + max(floor, 1e-3)
    if valid is None:
        valid = np.ones(g.shape, bool)
    if border > 0:
        valid = cv2.erode(valid.astype(np.uint8), np.ones((2 * border + 1, 2 * border + 1), np.uint8),
                          borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    feats *= valid[None]
    return feats, valid
