"""Replay metrics against hand-made estimate streams (known errors, sigmas, statuses, timings)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from foenet_ros.bag.metrics import FrameRecord, compute_metrics, format_table, wrap_deg


def _rec(i, status, err=None, sigma=1.0, heading=None, gt_heading=None, gt=True, timings=None):
    """A frame at ground truth (100 i, 0) whose estimate is ``err`` metres east of it."""
    gx, gy = 100.0 * i, 0.0
    x = None if err is None else gx + err
    return FrameRecord(
        stamp_ns=i * 10**9, status=status, x=x, y=None if err is None else gy, heading_deg=heading, sigma_m=sigma,
        cov_xy=np.diag([sigma**2, sigma**2]) if err is not None and sigma else None,
        timings_ms=timings or {"encode": 10.0 + i, "total": 20.0 + i},
        gt_x=gx if gt else None, gt_y=gy if gt else None, gt_heading_deg=gt_heading,
    )


def test_metrics_against_hand_made_stream():
    errs = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 30.0]
    recs = [_rec(i, "verified" if e < 10 else "retrieval", e, sigma=2.0) for i, e in enumerate(errs)]
    recs += [_rec(8, "lost"), _rec(9, "lost")]
    mt = compute_metrics(recs, wall_s=5.0, model={"fingerprint": "abc"})
    assert mt["frames"] == 10 and mt["ground_truth"] is True
    assert mt["share_localised"] == pytest.approx(0.8)
    assert mt["share_verified"] == pytest.approx(0.6)
    e = mt["horizontal_error_m"]
    assert e["median"] == pytest.approx(np.median(errs)) and e["max"] == 30.0 and e["n"] == 8
    assert e["p90"] == pytest.approx(np.percentile(errs, 90))
    # lost frames count as misses: 4 of 10 within 5 m, 6 within 10 m, 7 within 25 m
    assert mt["within_m"] == {"5": pytest.approx(0.4), "10": pytest.approx(0.6), "25": pytest.approx(0.7)}
    # calibration: err <= 2 sigma = 4 m -> 4 of 8 localised; Mahalanobis e^2/sigma^2 <= 5.991 -> e <= 4.89 m
    assert mt["calibration"]["within_2sigma"] == pytest.approx(0.5)
    assert mt["calibration"]["mahalanobis_95"] == pytest.approx(0.5)
    assert mt["effective_fps"] == pytest.approx(2.0)
    assert mt["latency_ms"]["encode"]["p50"] == pytest.approx(np.median([10.0 + i for i in range(10)]))
    assert mt["model"] == {"fingerprint": "abc"}
    assert mt["status_counts"] == {"lost": 2, "retrieval": 2, "verified": 6}
    table = format_table(mt)
    assert "40.0% / 60.0% / 70.0%" in table and "effective FPS" in table


def test_heading_error_wraps_around_north():
    assert wrap_deg(358.0) == pytest.approx(2.0) and wrap_deg(180.0) == pytest.approx(180.0)
    assert wrap_deg(1.0 - 359.0) == pytest.approx(2.0)
    recs = [_rec(0, "verified", 1.0, heading=359.0, gt_heading=1.0), _rec(1, "verified", 1.0, heading=90.0, gt_heading=80.0)]
    h = compute_metrics(recs)["heading_error_deg"]
    assert h["median"] == pytest.approx(6.0) and h["max"] == pytest.approx(10.0)


def test_no_ground_truth_is_marked_not_faked():
    recs = [_rec(i, "verified", 1.0, gt=False) for i in range(3)] + [_rec(3, "lost", gt=False)]
    mt = compute_metrics(recs, wall_s=2.0)
    assert mt["ground_truth"] is False and "no ground truth" in mt["ground_truth_note"]
    assert mt["horizontal_error_m"] is None and mt["within_m"] is None and mt["calibration"] is None
    assert mt["share_localised"] == pytest.approx(0.75)
    assert "NONE" in format_table(mt)


def test_empty_stream_and_missing_sigma():
    mt = compute_metrics([])
    assert mt["frames"] == 0 and mt["share_localised"] is None and mt["effective_fps"] is None
    rec = _rec(0, "verified", 3.0, sigma=None)
    rec.cov_xy = None
    mt = compute_metrics([rec])
    assert mt["calibration"]["within_2sigma"] is None and mt["calibration"]["mahalanobis_95"] is None
    assert math.isclose(mt["horizontal_error_m"]["median"], 3.0)
