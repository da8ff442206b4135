"""Retrieval: FOENet descriptors of the frame -> the best candidate tiles of the index.

With a heading the frame is encoded once, north-up; without, ``rotations`` copies turned by
360/n degrees are encoded and each tile keeps its best score (and which rotation gave it: a
coarse heading hint for the fine stage). Near-duplicate tiles (the same place at overlapping
positions or another scale) are merged.
"""

from __future__ import annotations

import numpy as np

from ..errors import EmptyIndexError
from .estimate import Candidate


def search_candidates(index, descs: np.ndarray, *, k: int, top_k: int, dedup_frac: float, near=None,
                      radius: float | None = None) -> tuple[list[Candidate], dict[int, int]]:
    """Merge the per-rotation searches (best score per tile), de-duplicate places, keep ``top_k``.

    Args:
        index: the TileIndex.
        descs: [R, D] query descriptors (one per rotation).
        k: tiles fetched per rotation before de-duplication.
        near, radius: restrict to tiles within ``radius`` metres of ``near`` (exact search).

    Returns:
        ``(candidates best first, {tile_id: index of the rotation that scored it best})``.
    """
    best: dict[int, float] = {}
    rotation: dict[int, int] = {}
    for r, d in enumerate(descs):
        try:
            hits = index.search(d, k, near_xy=near, radius_m=radius)
        except EmptyIndexError:
            hits = []
        for tid, score in hits:
            if score > best.get(tid, -2.0):
                best[tid] = score
                rotation[tid] = r
    tiles = index.tiles
    out: list[Candidate] = []
    for tid, score in sorted(best.items(), key=lambda kv: -kv[1]):
        c = tiles.centers_xy[tid]
        size = float(tiles.size_m[tid])
        if any(np.hypot(*(c - np.asarray(o.center_xy))) < dedup_frac * min(size, o.size_m) for o in out):
            continue
        out.append(Candidate(tid, score, (float(c[0]), float(c[1])), size))
        if len(out) >= top_k:
            break
    return out, rotation
