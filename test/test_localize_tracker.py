"""Tracker (constant-velocity Kalman filter with Mahalanobis gating) and GeoEstimate/config basics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from foenet_ros.errors import ConfigError
from foenet_ros.localize import GeoEstimate, LocalizerConfig, Prior, Tracker


def _fly(tracker: Tracker, n: int, v=(5.0, -2.0), noise=2.0, seed=0, t0=0.0):
    rng = np.random.default_rng(seed)
    R = np.eye(2) * noise**2
    for i in range(n):
        t = t0 + i
        truth = np.array([100.0, 50.0]) + np.asarray(v) * t
        tracker.update(truth + rng.normal(0, noise, 2), R, t)
    return truth


def test_constant_velocity_converges():
    tr = Tracker(accel_sigma=0.5)
    truth = _fly(tr, 30)
    assert tr.healthy and tr.misses == 0
    # velocity error within 3 sigma of the filter's own velocity covariance (and < 1 m/s)
    err_v = tr.velocity - [5.0, -2.0]
    sig_v = np.sqrt(np.diag(tr.P)[2:])
    assert np.all(np.abs(err_v) < 3 * sig_v) and np.all(np.abs(err_v) < 1.0), (err_v, sig_v)
    assert np.linalg.norm(tr.position - truth) < 2.5
    # the filter is more certain than one fix
    assert tr.sigma_m < 2.0


def test_outlier_is_gated_and_counted_as_miss():
    tr = Tracker(accel_sigma=0.5)
    _fly(tr, 15)
    pos_before = tr.position.copy()
    res = tr.update(pos_before + [200.0, 0.0], np.eye(2) * 4.0, 15.0)
    assert not res.accepted and res.d2 > tr.gate_chi2
    assert tr.misses == 1
    # the state only moved by prediction (5 m/s east for 1 s), not towards the outlier
    assert np.linalg.norm(tr.position - pos_before - tr.velocity) < 1e-6
    assert tr.position[0] < pos_before[0] + 10


def test_bridges_misses_then_loses_track():
    tr = Tracker(accel_sigma=0.5, max_misses=5)
    _fly(tr, 20)
    p0, v0 = tr.position, tr.velocity
    for k in range(1, 6):
        tr.miss(19.0 + k)
        assert tr.healthy, f"lost after only {k} misses"
    # prediction bridged 5 s at the estimated velocity
    assert np.allclose(tr.position, p0 + 5 * v0, atol=1e-6)
    sigma_bridged = tr.sigma_m
    tr.miss(25.0)
    assert not tr.healthy
    assert sigma_bridged > 1.0
    # the next fix restarts the track wherever it is
    res = tr.update(np.array([5000.0, 5000.0]), np.eye(2), 26.0)
    assert res.accepted and res.reinitialised and tr.healthy
    assert np.allclose(tr.position, [5000.0, 5000.0])


def test_two_consistent_rejected_fixes_restart_a_wrong_track():
    tr = Tracker(accel_sigma=0.5)
    _fly(tr, 10, v=(0.0, 0.0))
    far = np.array([900.0, 900.0])
    assert not tr.update(far, np.eye(2) * 4, 10.0).accepted
    res = tr.update(far + [1.0, 0.5], np.eye(2) * 4, 11.0)
    assert res.accepted and res.reinitialised
    assert np.linalg.norm(tr.position - far) < 3


def test_geoestimate_json_and_status_check():
    est = GeoEstimate(status="verified", lat=27.6, lon=85.5, x=1.0, y=2.0, cov_xy=np.eye(2), sigma_m=1.0,
                      timings_ms={"total": 3.0})
    d = json.loads(json.dumps(est.to_json()))
    assert d["status"] == "verified" and d["lat"] == 27.6 and d["cov_xy"] == [[1.0, 0.0], [0.0, 1.0]]
    lost = GeoEstimate(status="lost")
    d = json.loads(json.dumps(lost.to_json()))  # NaN/inf -> null, still valid JSON
    assert d["lat"] is None and d["sigma_m"] is None and not lost.has_fix
    with pytest.raises(ValueError):
        GeoEstimate(status="great")


def test_prior_coercion_and_config_validation():
    assert Prior.coerce((27.6, 85.5)) == Prior(27.6, 85.5, 50.0)
    assert Prior.coerce({"lat": 1, "lon": 2, "sigma_m": 5}).sigma_m == 5
    with pytest.raises(ConfigError):
        LocalizerConfig(refine="sometimes")
    with pytest.raises(ConfigError, match="safety bound"):
        LocalizerConfig(min_inliers=4)  # a homography from 4 points verifies anything
    with pytest.raises(ConfigError, match="safety bound"):
        LocalizerConfig(sigma_floor_m=0.0)
    with pytest.raises(ConfigError, match="safety bound"):
        LocalizerConfig(ratio=0.95)
    with pytest.raises(ConfigError):
        LocalizerConfig(fine_methods=("sift",))
    with pytest.raises(ConfigError):
        LocalizerConfig(min_inliers=2)
    with pytest.raises(ConfigError):
        LocalizerConfig(top_k=10, search_k=5)
    assert math.isclose(LocalizerConfig().replace(ratio=0.7).ratio, 0.7)


def test_scale_translation_ransac_and_evidence_checks():
    from foenet_ros.localize.verify import distinct_count, ransac_scale_translation, well_spread

    rng = np.random.default_rng(0)
    p1 = rng.uniform(0, 600, (40, 2))
    p2 = 1.3 * p1 + [25.0, -40.0] + rng.normal(0, 0.5, p1.shape)
    p2[:25] = rng.uniform(0, 800, (25, 2))  # 25 of 40 matches are outliers
    s, t, inl = ransac_scale_translation(p1, p2, thr=3.0)
    assert abs(s - 1.3) < 0.02 and np.allclose(t, [25, -40], atol=2.0)
    assert inl[25:].all() and inl[:25].sum() <= 2
    # everything matched onto one map point: a collapsed fit is refused
    assert ransac_scale_translation(p1, np.tile([[100.0, 100.0]], (40, 1)), thr=3.0) is None
    assert distinct_count(p1, np.tile([[100.0, 100.0]], (40, 1))) == 1
    assert distinct_count(p1, p2) == 40
    assert well_spread(p1, 600, 600) and not well_spread(p1 * 0.05, 600, 600)


def test_localize_and_index_do_not_import_rclpy():
    import subprocess
    import sys

    code = ("import sys, foenet_ros.localize, foenet_ros.index, foenet_ros.localize.plot; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosbags')]; print(bad); sys.exit(bool(bad))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_refused_fix_widens_the_coasted_covariance_to_reach_it():
    # A track that refuses a strong fix 300 m away must not keep claiming metre-level certainty:
    # the true position may be the refused fix (e.g. the drone flew faster than the motion model).
    tr = Tracker(accel_sigma=0.5)
    truth = _fly(tr, 15)
    refused = truth + np.array([300.0, 0.0])
    upd = tr.update(refused, np.eye(2) * 4.0, 15.0)
    assert not upd.accepted
    assert 2 * tr.sigma_m >= np.linalg.norm(refused - tr.position) * 0.99
    # and the next consistent fix there is taken: the track follows the evidence
    upd2 = tr.update(refused + np.array([5.0, -2.0]), np.eye(2) * 4.0, 16.0)
    assert upd2.accepted
    assert np.linalg.norm(tr.position - (refused + [5.0, -2.0])) < 20.0


def _turning_flight(tracker: Tracker, coast_from: int, n: int = 40, dt: float = 0.5, speed: float = 15.0,
                    turn_at: int = 24, turn_rate_dps: float = 45.0, seed: int = 3):
    """Fly straight, then turn at ``turn_rate_dps`` from frame ``turn_at``; fixes (1 m) until
    ``coast_from``, then coast (misses). Returns [(true error, sigma)] of the coasted frames."""
    rng = np.random.default_rng(seed)
    pos, heading = np.array([0.0, 0.0]), 90.0
    out = []
    for i in range(n):
        t = i * dt
        if i > 0:
            if i >= turn_at:
                heading -= turn_rate_dps * dt
            v = speed * np.array([math.sin(math.radians(heading)), math.cos(math.radians(heading))])
            pos = pos + v * dt
        if i < coast_from:
            tracker.update(pos + rng.normal(0, 1.0, 2), np.eye(2), t)
        else:
            tracker.predict(t)  # the Localizer predicts before searching, then reports the miss
            tracker.miss(t)
            if not tracker.healthy:
                break
            out.append((float(np.linalg.norm(tracker.position - pos)), tracker.sigma_m))
    return out


def test_coasting_through_a_turn_keeps_sigma_honest():
    # A drone at 15 m/s that starts an 18 deg/s turn (4.7 m/s^2, ~0.5 g) just as verification
    # stops: the constant-velocity prediction drifts off; the manoeuvre noise while coasting must
    # keep the true error within 2 sigma. The smooth-flight noise alone (coast = accel) does not.
    honest = _turning_flight(Tracker(accel_sigma=2.0, coast_accel_sigma=5.0, max_misses=6), coast_from=24,
                             turn_rate_dps=18.0)
    assert len(honest) == 6 and all(e <= 2 * s for e, s in honest), honest
    naive = _turning_flight(Tracker(accel_sigma=2.0, max_misses=6), coast_from=24, turn_rate_dps=18.0)
    assert any(e > 2 * s for e, s in naive), naive
    # on a straight leg the coasting sigma stays moderate (no blanket inflation): 3 misses at 2 Hz
    straight = _turning_flight(Tracker(accel_sigma=2.0, coast_accel_sigma=5.0, max_misses=6), coast_from=10,
                               turn_at=10_000, n=13)
    assert len(straight) == 3 and straight[-1][1] < 7.0 and all(e <= s for e, s in straight), straight


def test_refused_fix_hypothesis_covers_a_fix_slightly_off():
    # The refused fix is itself uncertain: the truth 1-2 m beyond it must still be within 2 sigma.
    tr = Tracker(accel_sigma=0.5)
    truth = _fly(tr, 15)
    refused = truth + np.array([25.0, 0.0])
    tr.update(refused, np.eye(2) * 4.0, 15.0)
    beyond = refused + np.array([3.0, 0.0]) - tr.position
    assert np.linalg.norm(beyond) <= 2 * tr.sigma_m
    with pytest.raises(ConfigError):
        LocalizerConfig(coast_accel_sigma=1.0)
    with pytest.raises(ConfigError):
        LocalizerConfig(refused_fix_weight=1.5)


def _sharp_turn(tracker: Tracker, use_heading: bool, turn_deg=30.0, speed=40.0, sigma=7.0, seed=3):
    """A 1 Hz flight at ``speed`` m/s, straight for 12 s, then turning by ``turn_deg`` every second
    for 4 s (fixes of ``sigma`` m); the tracker is told each turn when ``use_heading``. Returns the
    accepted flags of the fixes during the turn."""
    rng = np.random.default_rng(seed)
    R = np.eye(2) * sigma**2
    pos, psi, accepted = np.array([0.0, 0.0]), 0.0, []
    for t in range(16):
        if t >= 12:
            psi += turn_deg
            if use_heading:
                tracker.predict(float(t))
                tracker.manoeuvre(math.radians(turn_deg))
        up = tracker.update(pos + rng.normal(0, sigma, 2), R, float(t))
        if t >= 12:
            accepted.append(up.accepted)
        pos = pos + speed * np.array([math.sin(math.radians(psi)), math.cos(math.radians(psi))])
    return accepted


def test_a_turn_seen_by_the_heading_widens_the_gate():
    # 40 m/s, 30 deg per second (a sharp turn at 1 Hz): the constant-velocity prediction falls tens of
    # metres outside the turn and refuses correct fixes; told the turn, the tracker accepts them all
    told = _sharp_turn(Tracker(accel_sigma=2.0), use_heading=True)
    assert all(told), told
    blind = _sharp_turn(Tracker(accel_sigma=2.0), use_heading=False)
    assert not all(blind), blind
    # no velocity yet, no turn, or a NaN turn: nothing changes
    tr = Tracker()
    assert tr.manoeuvre(1.0) == 0.0
    _fly(tr, 5)
    P = tr.P.copy()
    assert tr.manoeuvre(0.0) == 0.0 and tr.manoeuvre(math.nan) == 0.0 and np.array_equal(tr.P, P)
    assert tr.manoeuvre(-0.5) > 0 and np.all(np.diag(tr.P) >= np.diag(P))
