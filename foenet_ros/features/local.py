"""Local features for refinement: SIFT keypoints with RootSIFT descriptors, upright and oriented.

The map side detects them once, at index build (``foenet_ros.index.fine``); the frame side at
query time. Two descriptor flavours share the same keypoints:

* ``upright``: no orientation normalisation. Both images north-up (the frame turned by its
  heading): far more distinctive across seasons and sensors than rotated descriptors.
* ``oriented``: classic rotation-invariant SIFT, for a frame whose heading is unknown.

A frame's upright descriptors at a heading are *steered* (:meth:`SiftDetector.steered`): computed on
the frame itself with every keypoint's reference direction set to the map's north, instead of on the
frame turned north-up (a larger canvas, detected again). One detection per frame serves every
heading tried.

Descriptors are stored as uint8 (RootSIFT components are in [0, 1]; x 255, rounded).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FLAVOURS = ("upright", "oriented")


@dataclass
class Keypoints:
    """Keypoints of one image: ``xy [N,2]`` float32 pixels, ``size [N]`` (diameter, pixels),
    ``response [N]``, and descriptors per flavour ``{flavour: [N,128] uint8}``; ``octave [N]`` int32,
    OpenCV's packed octave/layer, where they were detected here (what describing them again needs;
    None for stored map keypoints)."""

    xy: np.ndarray
    size: np.ndarray
    response: np.ndarray
    desc: dict[str, np.ndarray]
    octave: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.xy))

    def subset(self, idx: np.ndarray) -> "Keypoints":
        return Keypoints(self.xy[idx], self.size[idx], self.response[idx], {k: v[idx] for k, v in self.desc.items()},
                         None if self.octave is None else self.octave[idx])

    @staticmethod
    def empty(flavours=FLAVOURS) -> "Keypoints":
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                         {f: np.zeros((0, 128), np.uint8) for f in flavours}, np.zeros(0, np.int32))


def root_sift_u8(desc: np.ndarray) -> np.ndarray:
    """SIFT descriptors [N,128] float32 -> RootSIFT (L1-normalise, sqrt), quantised to uint8."""
    d = desc / (np.abs(desc).sum(axis=1, keepdims=True) + 1e-7)
    return np.clip(np.rint(np.sqrt(d) * 255.0), 0, 255).astype(np.uint8)


class SiftDetector:
    """OpenCV SIFT detection + both descriptor flavours.

    Args:
        max_features: keypoints kept per image (strongest first; 0 = all).
        contrast: SIFT's contrast threshold (lower = more keypoints in low-contrast imagery).
    """

    def __init__(self, max_features: int = 2000, contrast: float = 0.03) -> None:
        self.max_features = int(max_features)
        self._sift = cv2.SIFT_create(nfeatures=self.max_features, contrastThreshold=contrast)

    def detect(self, image: np.ndarray, mask: np.ndarray | None = None,
               flavours: tuple[str, ...] = FLAVOURS) -> Keypoints:
        """Keypoints of an RGB ``[H,W,3]`` or grey ``[H,W]`` uint8 image; ``mask`` uint8/bool (0 = ignore)."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        m = None if mask is None else (mask.astype(np.uint8) * 255 if mask.dtype == bool else mask)
        out: dict[str, np.ndarray] = {}
        if "oriented" in flavours:
            # one scale-space pyramid for detection and description: detect() then compute() builds it
            # twice (the same keypoints and descriptors, ~1.5x the time: 196 vs 132 ms at 640 x 480)
            kept, d = self._sift.detectAndCompute(gray, m)
            if kept:
                out["oriented"] = root_sift_u8(d) if d is not None else np.zeros((0, 128), np.uint8)
        else:
            kept = self._sift.detect(gray, m)
        if not kept:
            return Keypoints.empty(flavours)
        kept = list(kept)
        if "upright" in flavours:
            up = [cv2.KeyPoint(k.pt[0], k.pt[1], k.size, 0.0, k.response, k.octave, k.class_id) for k in kept]
            up, d = self._sift.compute(gray, up)
            if len(up) != len(kept):  # compute() may drop keypoints near the border: keep the common ones
                keep = {(round(k.pt[0], 3), round(k.pt[1], 3)) for k in up}
                sel = [i for i, k in enumerate(kept) if (round(k.pt[0], 3), round(k.pt[1], 3)) in keep]
                kept = [kept[i] for i in sel]
                out = {f: v[sel] for f, v in out.items()}
            out["upright"] = root_sift_u8(d) if d is not None else np.zeros((0, 128), np.uint8)
        if not kept:
            return Keypoints.empty(flavours)
        xy = np.array([k.pt for k in kept], np.float32)
        size = np.array([k.size for k in kept], np.float32)
        resp = np.array([k.response for k in kept], np.float32)
        return Keypoints(xy, size, resp, out, np.array([k.octave for k in kept], np.int32))

    def steered(self, image: np.ndarray, kp: Keypoints, heading_deg: float) -> Keypoints:
        """Upright descriptors of ``kp`` (detected on ``image`` by :meth:`detect`) for the image turned
        north-up by ``heading_deg`` (:func:`~foenet_ros.localize.preprocess.rotate_north_up`).

        Each keypoint is described on ``image`` itself with its reference direction at ``-heading_deg``
        (OpenCV's angles turn the other way): the descriptor the turned image gives at that point up to
        resampling (median RootSIFT distance ~0.1 against ~0.8 for unrelated points), with one scale-space
        pyramid of the frame instead of a detection and a description on the larger turned canvas
        (640x480: ~40 ms against 75-140 ms). Returns the keypoints that could be described, ``xy`` still
        in ``image`` pixels, with ``desc["upright"]``.
        """
        if len(kp) == 0:
            return Keypoints.empty(("upright",))
        if kp.octave is None:
            raise ValueError("steered() needs keypoints detected by SiftDetector.detect (their octave)")
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        angle = float(-heading_deg) % 360.0
        # class_id = the keypoint's index: compute() may drop keypoints near the border, the ids say which are left
        cv_kp = [cv2.KeyPoint(float(x), float(y), float(s), angle, float(r), int(o), i)
                 for i, ((x, y), s, r, o) in enumerate(zip(kp.xy, kp.size, kp.response, kp.octave))]
        out, d = self._sift.compute(gray, cv_kp)
        if not out or d is None:
            return Keypoints.empty(("upright",))
        sel = np.array([k.class_id for k in out], np.int64)
        return Keypoints(kp.xy[sel], kp.size[sel], kp.response[sel], {"upright": root_sift_u8(d)}, kp.octave[sel])


def nearest_two(d1: np.ndarray, d2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two nearest neighbours in ``d2 [M,128]`` of each descriptor of ``d1 [N,128]`` (uint8 or
    float), exact L2: ``(idx [N,2] int64, dist [N,2] float32)``, nearest first; needs ``M >= 2``.

    FAISS's exact k-NN (one BLAS product for the whole batch): 4-5x faster than OpenCV's
    brute-force matcher for the ~2,000 x 10,000 descriptors of a frame against a map region,
    which dominated a cold start's worst frames.
    """
    return nearest_k(d1, d2, 2)


def nearest_k_rootsift(d1: np.ndarray, d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_k` for a few hundred RootSIFT queries against a large set (``d2`` of ~10^5
    rows): one GEMM and a top-k in torch. FAISS's exact search costs as much for 128 queries as for
    2,000 there (~450 ms against 60,000 descriptors on 2 cores); this scales with the queries
    (~100 ms for 128 against 85,000).

    RootSIFT descriptors have unit L2 norm (x 255 before rounding to uint8), so the nearest ones are
    those with the largest dot products, to within the rounding: ``2k + 4`` are taken by dot product,
    their exact distances computed and the ``k`` nearest kept. Returns ``(idx [N,k] int64,
    dist [N,k] float32)``, nearest first; needs ``M >= 2k + 4``.
    """
    import torch

    q = np.ascontiguousarray(d1, dtype=np.float32)
    b = np.ascontiguousarray(d2)
    dots = torch.mm(torch.from_numpy(q), torch.from_numpy(b).float().T)  # [N, M]
    _, pool = torch.topk(dots, 2 * k + 4, dim=1, largest=True, sorted=False)
    pool = pool.numpy().astype(np.int64)
    diff = q[:, None, :] - b[pool].astype(np.float32)  # [N, 2k+4, 128]
    dist = np.sqrt(np.einsum("nkd,nkd->nk", diff, diff))
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(pool, order, 1), np.take_along_axis(dist, order, 1).astype(np.float32)


def nearest_k(d1: np.ndarray, d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours in ``d2 [M,128]`` of each row of ``d1 [N,128]``, exact L2 (FAISS):
    ``(idx [N,k] int64, dist [N,k] float32)``, nearest first; needs ``M >= k``."""
    import faiss

    q = np.ascontiguousarray(d1, dtype=np.float32)
    b = np.ascontiguousarray(d2, dtype=np.float32)
    dist2, idx = faiss.knn(q, b, k)
    return idx, np.sqrt(np.maximum(dist2, 0.0))


def ratio_filter(nn: tuple[np.ndarray, np.ndarray], ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowe's ratio test on :func:`nearest_two`'s result: ``(i1, i2, dist_ratio)`` of the matches
    whose best distance is below ``ratio`` x the second best."""
    idx, dist = nn
    if len(idx) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    keep = dist[:, 0] < ratio * dist[:, 1]
    i1 = np.flatnonzero(keep)
    rr = dist[keep, 0] / np.maximum(dist[keep, 1], 1e-6)
    return i1.astype(int), idx[keep, 0].astype(int), rr.astype(np.float32)


def ratio_matches(d1: np.ndarray, d2: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lowe ratio-test matches of uint8/float descriptors ``d1 [N,128]`` against ``d2 [M,128]``.

    Returns ``(i1, i2, dist_ratio)``: indices of the matches and their best/second distance ratio.
    """
    if len(d1) < 1 or len(d2) < 2:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    return ratio_filter(nearest_two(d1, d2), ratio)


def guided_matches(d1: np.ndarray, pred_xy: np.ndarray, d2: np.ndarray, xy2: np.ndarray, radius: float,
                   ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matches constrained by a predicted position: frame keypoint ``i`` (predicted at
    ``pred_xy[i]`` in the map's coordinates) may only match map keypoints within ``radius`` of it.

    The ratio test is applied among those candidates (a keypoint with a single candidate passes
    when its distance is below the ``ratio``-scaled median distance of random pairs); each map
    keypoint is then kept in its best match only (one-to-one). Vectorised: candidate pairs come from
    a uniform grid of ``radius`` cells.

    Returns ``(i1, i2, dist_ratio)``.
    """
    n1, n2 = len(d1), len(d2)
    if n1 == 0 or n2 == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    cell = float(radius)
    g2 = np.floor(xy2 / cell).astype(np.int64)
    key2 = g2[:, 0] * 1_000_003 + g2[:, 1]
    order = np.argsort(key2, kind="stable")
    skeys = key2[order]
    g1 = np.floor(pred_xy / cell).astype(np.int64)
    pairs_i, pairs_j = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            k = (g1[:, 0] + dx) * 1_000_003 + (g1[:, 1] + dy)
            lo = np.searchsorted(skeys, k, side="left")
            hi = np.searchsorted(skeys, k, side="right")
            cnt = hi - lo
            if cnt.sum() == 0:
                continue
            ii = np.repeat(np.arange(n1), cnt)
            starts = np.repeat(lo, cnt)
            offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            pairs_i.append(ii)
            pairs_j.append(order[starts + offs])
    if not pairs_i:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    pi = np.concatenate(pairs_i)
    pj = np.concatenate(pairs_j)
    near = np.sum((xy2[pj] - pred_xy[pi]) ** 2, axis=1) <= radius * radius
    pi, pj = pi[near], pj[near]
    if len(pi) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    a = d1.astype(np.float32)
    b = d2.astype(np.float32)
    dist = np.sqrt(np.maximum(np.einsum("ij,ij->i", a[pi] - b[pj], a[pi] - b[pj]), 0.0))
    # best and second-best candidate per frame keypoint
    o = np.lexsort((dist, pi))
    pi, pj, dist = pi[o], pj[o], dist[o]
    first = np.r_[True, pi[1:] != pi[:-1]]
    idx_first = np.flatnonzero(first)
    has_second = np.r_[pi[idx_first[:-1] + 1] == pi[idx_first[:-1]], (idx_first[-1] + 1 < len(pi))]
    d_best = dist[idx_first]
    d_second = np.where(has_second, dist[np.minimum(idx_first + 1, len(dist) - 1)], np.inf)
    # a keypoint alone in its radius: compare with a typical non-matching distance instead
    typical = float(np.median(dist)) if len(dist) > 8 else 300.0
    d_second = np.where(np.isfinite(d_second), d_second, typical)
    r = d_best / np.maximum(d_second, 1e-6)
    ok = r < ratio
    i1, i2, r = pi[idx_first][ok], pj[idx_first][ok], r[ok]
    # one-to-one: a map keypoint keeps only its best frame match. A map coarser than the frame offers
    # few keypoints per radius, and many frame keypoints matched to the same one let RANSAC fit a
    # homography that collapses part of the frame onto it
    o = np.lexsort((r, i2))
    keep = o[np.r_[True, i2[o][1:] != i2[o][:-1]]] if len(o) else o
    keep.sort()
    return i1[keep], i2[keep], r[keep].astype(np.float32)
