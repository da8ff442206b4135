"""Constant-velocity Kalman filter in the local metric frame, with Mahalanobis gating of fixes.

State ``[x, y, vx, vy]`` (metres, m/s). Process noise: white acceleration of ``accel_sigma``.
A fix is accepted only if its Mahalanobis distance to the prediction is within ``gate_chi2``;
frames without an accepted fix are "misses", bridged by prediction until ``max_misses`` (or the
predicted sigma exceeds ``max_sigma_m``), after which the track is lost and the next fix restarts it.

Coasting (a miss) is an open-loop prediction: ``accel_sigma`` describes the smooth flight seen
between fixes, but while nothing is observed the drone may manoeuvre (turn at a waypoint, brake),
so a missed frame's prediction gets the process noise of ``coast_accel_sigma`` (the platform's
manoeuvre acceleration, ~0.5 g) for the time since the last update. A refused fix is a second
hypothesis of where the drone is: the coasted covariance about the prediction includes it.

A turn seen by the heading (compass or the fix's own heading) is a manoeuvre too: a drone whose
heading changed by ``dpsi`` since the last fix may have turned its velocity by as much, so before a
fix is gated the velocity gets an extra uncertainty ``|v| dpsi`` (:meth:`Tracker.manoeuvre`). A
sharp turn between two 1 Hz fixes otherwise leaves the constant-velocity prediction tens of metres
off and the first correct fix after the turn is refused.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_H = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])


@dataclass
class TrackUpdate:
    """Outcome of :meth:`Tracker.update`: ``accepted`` or gated out, with the Mahalanobis distance²."""

    accepted: bool
    d2: float
    reinitialised: bool = False


class Tracker:
    """Constant-velocity Kalman filter with gating; see the module docstring."""

    def __init__(self, accel_sigma: float = 2.0, gate_chi2: float = 13.8, max_misses: int = 10,
                 max_sigma_m: float = 150.0, init_speed_sigma: float = 10.0, coast_accel_sigma: float | None = None,
                 refused_fix_weight: float = 0.5) -> None:
        self.accel_sigma = float(accel_sigma)
        # manoeuvre acceleration while coasting (never below the smooth-flight value)
        self.coast_accel_sigma = max(self.accel_sigma, float(coast_accel_sigma if coast_accel_sigma is not None else accel_sigma))
        self.refused_fix_weight = float(refused_fix_weight)
        self.gate_chi2 = float(gate_chi2)
        self.max_misses = int(max_misses)
        self.max_sigma_m = float(max_sigma_m)
        self.init_speed_sigma = float(init_speed_sigma)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the track (the next fix starts a new one)."""
        self.x = np.zeros(4)
        self.P = np.eye(4)
        self.t: float | None = None
        self.initialised = False
        self.misses = 0
        self.n_updates = 0
        self._rejected: tuple[np.ndarray, np.ndarray, float] | None = None
        self._unobserved_dt = 0.0  # predicted time since the last update not yet given manoeuvre noise
        self._t_update: float | None = None  # time of the last accepted fix

    @property
    def healthy(self) -> bool:
        """True while the track exists and is not lost (few misses, bounded uncertainty)."""
        return self.initialised and self.misses <= self.max_misses and self.sigma_m <= self.max_sigma_m

    @property
    def position(self) -> np.ndarray:
        return self.x[:2].copy()

    @property
    def velocity(self) -> np.ndarray:
        return self.x[2:].copy()

    @property
    def cov_xy(self) -> np.ndarray:
        return self.P[:2, :2].copy()

    @property
    def sigma_m(self) -> float:
        """1-sigma radius of the position (sqrt of the larger eigenvalue), metres."""
        return float(math.sqrt(max(np.linalg.eigvalsh(self.P[:2, :2]).max(), 0.0)))

    # ------------------------------------------------------------------ filter
    def start(self, z: np.ndarray, R: np.ndarray, t: float) -> None:
        """(Re)start the track at fix ``z`` [2] with covariance ``R`` [2,2] at time ``t`` (s)."""
        self.x = np.array([z[0], z[1], 0.0, 0.0], dtype=np.float64)
        self.P = np.zeros((4, 4))
        self.P[:2, :2] = R
        self.P[2:, 2:] = np.eye(2) * self.init_speed_sigma**2
        self.t = float(t)
        self.initialised = True
        self.misses = 0
        self.n_updates = 1
        self._rejected = None
        self._unobserved_dt = 0.0
        self._t_update = float(t)

    def predict(self, t: float) -> None:
        """Propagate the state to time ``t`` (seconds); no-op before the first fix or for dt <= 0."""
        if not self.initialised or self.t is None:
            return
        dt = float(t) - self.t
        if dt <= 0:
            return
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + _accel_q(dt, self.accel_sigma)
        self.t = float(t)
        self._unobserved_dt += dt

    def _coast(self) -> None:
        """The predicted interval(s) since the last update are a coast: add the manoeuvre noise
        (``coast_accel_sigma``, in excess of the smooth-flight ``accel_sigma`` already added)."""
        dt, self._unobserved_dt = self._unobserved_dt, 0.0
        extra = self.coast_accel_sigma**2 - self.accel_sigma**2
        if dt > 0 and extra > 0:
            # continuous white acceleration (PSD extra * 1 s): independent of the frame rate,
            # sigma_pos ~ coast_accel_sigma * sqrt(t^3 / 3) after t seconds of coasting
            q1 = np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]]) * extra
            Q = np.zeros((4, 4))
            Q[np.ix_([0, 2], [0, 2])] = q1
            Q[np.ix_([1, 3], [1, 3])] = q1
            self.P = self.P + Q

    def manoeuvre(self, turn_rad: float) -> float:
        """The heading turned by ``turn_rad`` (radians, either sign) since the last accepted fix: add
        velocity noise ``sigma_v = |v| |turn|`` (m/s) as if injected at that fix, i.e. to the velocity
        block, ``sigma_v * tau`` to the position block and the cross terms (``tau``: seconds since the
        fix). A velocity that turned by ``dpsi`` differs from the old one by ``2 |v| sin(dpsi / 2) <=
        |v| dpsi``. Returns ``sigma_v``; no-op before the track has a velocity or for a NaN turn."""
        if not self.initialised or self.n_updates < 2 or not math.isfinite(turn_rad):
            return 0.0
        sigma_v = float(np.linalg.norm(self.x[2:])) * min(abs(float(turn_rad)), math.pi)
        if sigma_v <= 0.0:
            return 0.0
        tau = max(float(self.t) - self._t_update, 0.0) if self._t_update is not None and self.t is not None else 0.0
        q1 = np.array([[tau**2, tau], [tau, 1.0]]) * sigma_v**2
        Q = np.zeros((4, 4))
        Q[np.ix_([0, 2], [0, 2])] = q1
        Q[np.ix_([1, 3], [1, 3])] = q1
        self.P = self.P + Q
        return sigma_v

    def mahalanobis2(self, z: np.ndarray, R: np.ndarray) -> float:
        """Squared Mahalanobis distance of fix ``z`` (covariance ``R``) to the predicted position."""
        y = np.asarray(z, dtype=np.float64) - _H @ self.x
        S = _H @ self.P @ _H.T + R
        return float(y @ np.linalg.solve(S, y))

    def update(self, z: np.ndarray, R: np.ndarray, t: float) -> TrackUpdate:
        """Offer a fix at time ``t``: start the track, fuse it, or gate it out (counted as a miss).

        Two consecutive gated-out fixes that agree with each other (while the track disagrees with
        both) mean the track itself is wrong: it is restarted at the newer fix.
        """
        z = np.asarray(z, dtype=np.float64).reshape(2)
        R = np.asarray(R, dtype=np.float64).reshape(2, 2)
        if not self.healthy:
            self.start(z, R, t)
            return TrackUpdate(True, 0.0, reinitialised=True)
        self.predict(t)
        d2 = self.mahalanobis2(z, R)
        if d2 > self.gate_chi2:
            if self._rejected is not None:
                z0, R0, t0 = self._rejected
                # allow for motion between the two rejected fixes at the track's speed (+ margin)
                speed = float(np.linalg.norm(self.x[2:])) + 3 * self.init_speed_sigma
                slack = (speed * max(t - t0, 0.0)) ** 2
                y = z - z0
                if float(y @ np.linalg.solve(R + R0 + np.eye(2) * slack, y)) <= self.gate_chi2:
                    log.info("two consistent fixes disagree with the track (d2=%.1f): restarting it", d2)
                    self.start(z, R, t)
                    return TrackUpdate(True, d2, reinitialised=True)
            self._rejected = (z, R, float(t))
            self.misses += 1
            self._coast()
            # A verified fix the track refuses is still evidence that the track may be wrong: the
            # drone is at the prediction or (with probability w) at the refused fix. About the
            # reported prediction that mixture has covariance (1-w) P + w (R + d d^T); keeping P
            # whole (never shrinking) gives P + w (R + d d^T): with w = 0.5 the 2-sigma ellipse
            # reaches 1.4x past the refused fix. If the fix is right the velocity is wrong too: the
            # offset y built up since the last accepted fix (tau ago), so d = [y, y / tau]
            # (correlated), and the next consistent fix corrects position AND velocity.
            y = z - _H @ self.x
            tau = max(float(t) - self._t_update, 1e-3) if self._t_update is not None else 1.0
            dvec = np.concatenate([y, y / tau])
            self.P += self.refused_fix_weight * np.outer(dvec, dvec)
            self.P[:2, :2] += self.refused_fix_weight * R
            return TrackUpdate(False, d2)
        S = _H @ self.P @ _H.T + R
        K = self.P @ _H.T @ np.linalg.inv(S)
        self.x = self.x + K @ (z - _H @ self.x)
        self.P = (np.eye(4) - K @ _H) @ self.P
        self.P = 0.5 * (self.P + self.P.T)
        self.misses = 0
        self.n_updates += 1
        self._rejected = None
        self._unobserved_dt = 0.0
        self._t_update = float(t)
        return TrackUpdate(True, d2)

    def miss(self, t: float) -> None:
        """A frame without a fix: predict to ``t`` and count a miss."""
        self.predict(t)
        if self.initialised:
            self.misses += 1
            self._coast()


def _accel_q(dt: float, accel_sigma: float) -> np.ndarray:
    """Process noise [4,4] of white acceleration ``accel_sigma`` (m/s^2) over ``dt`` seconds."""
    Q1 = np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]]) * accel_sigma**2
    Q = np.zeros((4, 4))
    Q[np.ix_([0, 2], [0, 2])] = Q1
    Q[np.ix_([1, 3], [1, 3])] = Q1
    return Q
