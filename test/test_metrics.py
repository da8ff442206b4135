"""Retrieval metrics against hand-computed cases (ties, several true matches, AP, SDM)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foenet_ros.metrics import (
    average_precision,
    distance_recall,
    geo_retrieval_metrics,
    positives_from_labels,
    positives_within,
    rank_gallery,
    retrieval_metrics,
    sdm_at_k,
    search_exact,
    similarity_exact,
)


def test_single_match_at_rank_two():
    res = retrieval_metrics(np.array([[0.9, 0.8, 0.1]]), np.array([[False, True, False]]), ks=(1, 2, 5))
    assert res.recall_at == {1: 0.0, 2: 1.0, 5: 1.0}
    # University-1652 AP: (old_precision 0/1 + precision 1/2) / 2
    assert res.mAP == pytest.approx(0.25)
    assert res.first_hit_rank.tolist() == [1]


def test_several_true_matches_ap():
    # hits at ranks 0 and 2: (1 + 1)/2 and (1/2 + 2/3)/2, averaged over the 2 positives
    ap = average_precision(np.array([True, False, True, False]))
    assert ap == pytest.approx((1.0 + (0.5 + 2.0 / 3.0) / 2.0) / 2.0)
    res = retrieval_metrics(np.array([[0.9, 0.8, 0.7, 0.6]]), np.array([[True, False, True, False]]), ks=(1,))
    assert res.mAP == pytest.approx(ap)
    assert res.recall_at[1] == 1.0


def test_ties_rank_negatives_first():
    sim = np.array([[0.5, 0.5, 0.5]])
    pos = np.array([[False, True, False]])
    res = retrieval_metrics(sim, pos, ks=(1, 2, 3))
    assert res.recall_at == {1: 0.0, 2: 0.0, 3: 1.0}
    assert res.mAP == pytest.approx((0.0 + 1.0 / 3.0) / 2.0)
    # a constant descriptor cannot score: every query ties with everything
    const = retrieval_metrics(np.ones((4, 4)), np.eye(4, dtype=bool), ks=(1,))
    assert const.recall_at[1] == 0.0


def test_order_of_gallery_does_not_matter():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(20, 50)).round(1)  # rounding creates ties
    pos = rng.random((20, 50)) < 0.1
    pos[:, 0] = True
    a = retrieval_metrics(sim, pos)
    perm = rng.permutation(50)
    b = retrieval_metrics(sim[:, perm], pos[:, perm])
    assert a.recall_at == b.recall_at
    assert a.mAP == pytest.approx(b.mAP)


def test_two_queries_mean_and_top1pct():
    g = 250  # 1 % of 250 -> K = 2 (round half to even) -- documented as max(1, round(0.01 G))
    sim = np.zeros((2, g))
    pos = np.zeros((2, g), dtype=bool)
    sim[0, 5], pos[0, 5] = 1.0, True  # query 0: its match first
    sim[1, 7] = 1.0
    sim[1, 8], pos[1, 8] = 0.9, True  # query 1: its match second
    res = retrieval_metrics(sim, pos, ks=(1, 5))
    assert res.recall_at == {1: 0.5, 5: 1.0}
    assert res.top1pct_k == 2 and res.recall_top1pct == 1.0
    assert res.mAP == pytest.approx((1.0 + 0.25) / 2.0)
    assert res.summary()["R@1"] == pytest.approx(50.0)


def test_labels_and_distances_to_positives():
    pos = positives_from_labels(["a", "b"], ["b", "a", "a"])
    assert pos.tolist() == [[False, True, True], [True, False, False]]
    within = positives_within(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0], [6.0, 8.0]]), 5.0)
    assert within.tolist() == [[True, False]]


def test_distance_recall_and_sdm():
    order = np.array([[0, 1]])
    dist = np.array([[0.0, 100.0]])
    assert distance_recall(order, dist, 10.0, ks=(1,)) == {1: 1.0}
    assert distance_recall(np.array([[1, 0]]), dist, 10.0, ks=(1, 2)) == {1: 0.0, 2: 1.0}
    s = 0.045
    expected = (1.0 * 1.0 + 0.5 * math.exp(-s * 100.0)) / 1.5  # weights (K-i+1)/K = 1, 1/2
    assert sdm_at_k(order, dist, 2, s) == pytest.approx(expected)
    assert sdm_at_k(order, dist, 1, s) == pytest.approx(1.0)


def test_geo_metrics_use_radius():
    qxy = np.array([[0.0, 0.0], [100.0, 0.0]])
    gxy = np.array([[0.0, 10.0], [100.0, 30.0], [500.0, 0.0]])
    sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])  # query 1 ranks the far tile first
    res = geo_retrieval_metrics(sim, qxy, gxy, radius_m=40.0, ks=(1, 2))
    assert res.recall_at == {1: 0.5, 2: 1.0}
    assert res.distance["top1_err_m"] == pytest.approx(np.median([10.0, 400.0]))


def test_faiss_exact_search_matches_numpy():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    g = rng.normal(size=(30, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    sim = similarity_exact(q, g)
    np.testing.assert_allclose(sim, q @ g.T, atol=1e-5)
    scores, idx = search_exact(q, g, k=3)
    np.testing.assert_array_equal(idx, np.argsort(-(q @ g.T), axis=1)[:, :3])
    order = rank_gallery(sim, np.zeros_like(sim, dtype=bool))
    np.testing.assert_array_equal(order[:, :3], idx)
    with pytest.raises(ValueError):
        search_exact(q, g[:, :8])
