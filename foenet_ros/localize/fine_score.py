"""The acceptance score of a dense overlap fix: a logistic model of its evidence, fitted on training places.

``p = sigmoid(w0 + w . features(fix))`` estimates the probability that the fix found the right
place (within 3 coarse cells). The weights are fitted by ``bench/calibrate_fine.py`` on NAIP
training years and OpenAerialMap training places -- never on the evaluation places -- and
stored as ``LocalizerConfig.fine_score_weights``. Features (in this order):

    z_peak      the coarse heatmap peak, robust standard deviations above the window's scores
    margin      z_peak minus the best rival place's z (another region or far in the window)
    patches     log(1 + patches of the frame that independently agree with the fit)
    patch_frac  agreeing / tested patches
    fine_z      the fine-level peak's z-score
"""

from __future__ import annotations

import math

import numpy as np

FEATURES = ("z_peak", "margin", "patches", "patch_frac", "fine_z")


def dense_features(fix) -> list[float]:
    """The evidence of a :class:`~foenet_ros.localize.fine.FineFix` as the score's feature vector."""
    zf = float(fix.info.get("fine_z", 0.0))
    return [float(fix.coarse.z_peak), float(fix.coarse.z_peak - fix.rival_z), math.log1p(fix.inliers),
            fix.inliers / max(fix.tested, 1), zf if math.isfinite(zf) else 0.0]


def dense_score(fix, weights) -> float:
    """Probability (0-1) that the dense fix found the right place, from the calibrated weights."""
    return score_of(dense_features(fix), weights)


def score_of(features, weights) -> float:
    """``sigmoid(w0 + w . features)`` for a feature vector in the order of :data:`FEATURES`."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    if w.shape != (len(FEATURES) + 1,):
        raise ValueError(f"fine_score_weights needs {len(FEATURES) + 1} numbers (bias + {FEATURES}), got {len(w)}")
    return float(1.0 / (1.0 + math.exp(-float(np.clip(w[0] + w[1:] @ x, -50, 50)))))


def score_without_patches(z_peak: float, rival_z: float, fine_z: float, weights) -> float | None:
    """The score before the patches are searched, with none of them agreeing: the least they can
    leave it at when their weights are >= 0 (then None is never returned); None when a negative
    patch weight means patches could lower it."""
    w = np.asarray(weights, dtype=np.float64)
    if w[3] < 0 or w[4] < 0:
        return None
    return score_of([z_peak, z_peak - rival_z, 0.0, 0.0, fine_z if math.isfinite(fine_z) else 0.0], w)
