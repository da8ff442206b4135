"""Retrieval metrics: the one tested implementation used by ``foenet eval``, training and benchmarks.

Conventions (all functions):

* Descriptors are L2-normalised float32 rows; similarity is the inner product (cosine), searched
  exactly with FAISS ``IndexFlatIP`` (no approximation anywhere in evaluation).
* A query's *positives* are a set of gallery indices (several true matches are normal: overlapping
  tiles, several satellite views of one building).
* **Ties are broken pessimistically**: among gallery items with exactly the same score, negatives
  rank before positives. A model that outputs a constant descriptor therefore scores
  ``R@1 = 0`` instead of whatever the sort order happens to give (and results do not depend on
  the gallery's order).
* Recall@K: fraction of queries with at least one positive among the first K results.
* Recall@top-1%: Recall@K with ``K = max(1, round(0.01 * gallery_size))`` (CVM-Net, University-1652).
* AP: the University-1652 / Market-1501 definition (trapezoidal interpolation between the
  precision before and at each positive's rank), averaged over queries as mAP.
* Distance-based (geo-referenced sets): a result is a hit when its ground position lies within
  ``radius_m`` metres of the query's true ground position; SDM@K (DenseUAV) weighs the first K
  results by rank, ``w_i = (K - i + 1) / K``, and by closeness, ``exp(-scale * d_i)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: SDM@K closeness scale in 1/metre. DenseUAV uses 5e3 per degree of lat/lon; one degree is
#: ~111 km, so the same decay in metres is 5e3 / 111_000 = 0.045 per metre (e^-1 at ~22 m).
SDM_SCALE_PER_M = 0.045


def search_exact(queries: np.ndarray, gallery: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search with FAISS.

    Args:
        queries: ``[Q, D]`` float32 descriptors (L2-normalised).
        gallery: ``[G, D]`` float32 descriptors (L2-normalised).
        k: results per query (default: the whole gallery).

    Returns:
        ``(scores[Q, k], indices[Q, k])`` sorted by decreasing score.
    """
    import faiss

    q = np.ascontiguousarray(queries, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"descriptor shapes do not match: queries {q.shape}, gallery {g.shape}")
    if len(g) == 0:
        raise ValueError("empty gallery")
    k = len(g) if k is None else min(int(k), len(g))
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    scores, idx = index.search(q, k)
    return scores, idx


def similarity_exact(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """The full ``[Q, G]`` inner-product matrix, computed by FAISS exact search (column order = gallery)."""
    scores, idx = search_exact(queries, gallery)
    sim = np.empty_like(scores)
    np.put_along_axis(sim, idx, scores, axis=1)
    return sim


def rank_gallery(sim: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Order the gallery for each query by decreasing similarity, negatives first among ties.

    Args:
        sim: ``[Q, G]`` similarities.
        positives: ``[Q, G]`` bool, True where the gallery item is a true match of the query.

    Returns:
        ``order[Q, G]``: gallery indices, best first.
    """
    sim = np.asarray(sim, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if sim.shape != positives.shape:
        raise ValueError(f"sim {sim.shape} and positives {positives.shape} differ in shape")
    # lexsort: last key is primary. Primary = -sim (best first); secondary = positive (False first).
    return np.stack([np.lexsort((positives[i], -sim[i])) for i in range(sim.shape[0])]) if sim.size else np.zeros(sim.shape, dtype=np.int64)


def average_precision(ranked_positive: np.ndarray) -> float:
    """University-1652 AP of one query from its ranked relevance vector.

    Args:
        ranked_positive: ``[G]`` bool, relevance of the gallery in ranked order.

    Returns:
        AP in [0, 1] (0 when the query has no positive).
    """
    hits = np.flatnonzero(np.asarray(ranked_positive, dtype=bool))
    n = len(hits)
    if n == 0:
        return 0.0
    i = np.arange(n, dtype=np.float64)
    precision = (i + 1.0) / (hits + 1.0)
    old_precision = np.where(hits == 0, 1.0, i / np.maximum(hits, 1))
    return float(np.sum((old_precision + precision) / 2.0) / n)


@dataclass
class RetrievalResult:
    """Per-query results and the summary of one retrieval evaluation."""

    recall_at: dict[int, float]
    recall_top1pct: float
    top1pct_k: int
    mAP: float
    first_hit_rank: np.ndarray  # [Q] 0-based rank of the first positive (G if none)
    ap: np.ndarray  # [Q]
    order: np.ndarray  # [Q, G] ranked gallery indices
    distance: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Flat dict of the headline numbers (percentages for recall/AP, as the literature reports)."""
        out = {f"R@{k}": 100.0 * v for k, v in sorted(self.recall_at.items())}
        out["R@1%"] = 100.0 * self.recall_top1pct
        out["AP"] = 100.0 * self.mAP
        out.update(self.distance)
        return out


def retrieval_metrics(
    sim: np.ndarray,
    positives: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
) -> RetrievalResult:
    """Recall@K, Recall@top-1% and mAP from a similarity matrix and the true-match matrix.

    Args:
        sim: ``[Q, G]`` similarities (higher = more similar).
        positives: ``[Q, G]`` bool true matches; every query should have at least one (a query
            without any is counted as a miss and logged).
        ks: the K values of Recall@K.

    Returns:
        A :class:`RetrievalResult`.
    """
    sim = np.asarray(sim)
    positives = np.asarray(positives, dtype=bool)
    n_q, n_g = sim.shape
    if n_q == 0:
        raise ValueError("no queries")
    no_pos = int((~positives.any(axis=1)).sum())
    if no_pos:
        logger.warning("%d of %d queries have no true match in the gallery (counted as misses)", no_pos, n_q)
    order = rank_gallery(sim, positives)
    ranked_pos = np.take_along_axis(positives, order, axis=1)
    first = np.where(ranked_pos.any(axis=1), ranked_pos.argmax(axis=1), n_g)
    recall = {int(k): float(np.mean(first < k)) for k in ks}
    k1 = max(1, int(round(0.01 * n_g)))
    ap = np.array([average_precision(r) for r in ranked_pos])
    return RetrievalResult(
        recall_at=recall,
        recall_top1pct=float(np.mean(first < k1)),
        top1pct_k=k1,
        mAP=float(ap.mean()),
        first_hit_rank=first,
        ap=ap,
        order=order,
    )


def positives_from_labels(query_labels: Sequence, gallery_labels: Sequence) -> np.ndarray:
    """``[Q, G]`` bool: gallery items with the same label (building id, place id) as the query."""
    q = np.asarray(query_labels)
    g = np.asarray(gallery_labels)
    return q[:, None] == g[None, :]


def positives_within(query_xy: np.ndarray, gallery_xy: np.ndarray, radius_m: float) -> np.ndarray:
    """``[Q, G]`` bool: gallery positions within ``radius_m`` metres of the query position."""
    return ground_distances(query_xy, gallery_xy) <= radius_m


def ground_distances(query_xy: np.ndarray, gallery_xy: np.ndarray) -> np.ndarray:
    """``[Q, G]`` Euclidean distances in metres between ``[Q,2]`` and ``[G,2]`` positions (one metric frame)."""
    q = np.asarray(query_xy, dtype=np.float64).reshape(-1, 2)
    g = np.asarray(gallery_xy, dtype=np.float64).reshape(-1, 2)
    return np.linalg.norm(q[:, None, :] - g[None, :, :], axis=-1)


def distance_recall(order: np.ndarray, dist: np.ndarray, radius_m: float, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Distance-based Recall@K: a query is a hit when any of its first K results lies within ``radius_m``.

    Args:
        order: ``[Q, G]`` ranked gallery indices (from :func:`rank_gallery`).
        dist: ``[Q, G]`` ground distance (metres) from each query to each gallery item.
    """
    ranked_d = np.take_along_axis(np.asarray(dist), order, axis=1)
    return {int(k): float(np.mean((ranked_d[:, :k] <= radius_m).any(axis=1))) for k in ks}


def sdm_at_k(order: np.ndarray, dist: np.ndarray, k: int, scale_per_m: float = SDM_SCALE_PER_M) -> float:
    """SDM@K of DenseUAV (spatial distance metric), averaged over queries, in [0, 1].

    ``SDM@K = sum_i w_i * exp(-scale * d_i) / sum_i w_i`` over the first K results with
    ``w_i = (K - i + 1) / K`` (i = 1..K) and ``d_i`` the ground distance (metres) of result i.
    """
    ranked_d = np.take_along_axis(np.asarray(dist, dtype=np.float64), order, axis=1)[:, :k]
    kk = ranked_d.shape[1]
    w = 1.0 - np.arange(kk, dtype=np.float64) / kk
    s = np.exp(-scale_per_m * ranked_d)
    return float(np.mean((s * w).sum(axis=1) / w.sum()))


def geo_retrieval_metrics(
    sim: np.ndarray,
    query_xy: np.ndarray,
    gallery_xy: np.ndarray,
    radius_m: float,
    ks: Sequence[int] = (1, 5, 10),
    sdm_ks: Sequence[int] = (1, 3, 5),
    sdm_scale_per_m: float = SDM_SCALE_PER_M,
) -> RetrievalResult:
    """Retrieval metrics for geo-referenced sets: positives are gallery items within ``radius_m``.

    Adds to the result's ``distance`` dict: ``SDM@K`` for ``sdm_ks`` (in %) and the median ground
    error of the top-1 result in metres (``top1_err_m``).
    """
    dist = ground_distances(query_xy, gallery_xy)
    res = retrieval_metrics(sim, dist <= radius_m, ks)
    ranked_d = np.take_along_axis(dist, res.order, axis=1)
    for k in sdm_ks:
        res.distance[f"SDM@{k}"] = 100.0 * sdm_at_k(res.order, dist, k, sdm_scale_per_m)
    res.distance["top1_err_m"] = float(np.median(ranked_d[:, 0]))
    return res
