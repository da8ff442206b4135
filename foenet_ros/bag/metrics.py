"""Replay metrics: how often, how well and how honestly a bag was localised.

One :class:`FrameRecord` per camera frame; :func:`compute_metrics` turns a list of them into the
``metrics.json`` dict and :func:`format_table` into the terminal table. Definitions:

* ``share_localised`` = frames whose status is not ``lost`` / all frames;
  ``share_verified`` = frames with status ``verified`` / all frames.
* Horizontal errors (metres, map frame) are over localised frames that have ground truth;
  ``within_{5,10,25}m`` divide by *all* frames with ground truth, so a lost frame counts as a miss.
* ``heading_error_deg``: absolute wrapped difference, localised frames with a heading estimate.
* ``calibration.within_2sigma``: share of localised frames whose true error is <= 2 * ``sigma_m``
  (the scalar 1-sigma the estimate reports); ``calibration.mahalanobis_95``: share with
  ``e^T C^-1 e <= 5.991`` (chi-square, 2 dof, 95 %), which should be ~0.95 when ``cov_xy`` is honest.
* Latency per stage: p50 / p99 of the Localizer's ``timings_ms``; ``effective_fps`` = frames /
  wall-clock time of the whole replay loop (decode + localise + record).

Without ground truth the accuracy blocks are ``null`` and ``ground_truth`` is ``false``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

CHI2_2DOF_95 = 5.991


@dataclass
class FrameRecord:
    """One replayed frame: its estimate (map frame metres) and ground truth when known."""

    stamp_ns: int
    status: str
    x: float | None = None
    y: float | None = None
    heading_deg: float | None = None
    sigma_m: float | None = None
    cov_xy: np.ndarray | None = None
    score: float | None = None
    inliers: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    gt_x: float | None = None
    gt_y: float | None = None
    gt_heading_deg: float | None = None

    @property
    def localised(self) -> bool:
        return self.status != "lost" and self.x is not None and self.y is not None

    @property
    def has_gt(self) -> bool:
        return self.gt_x is not None and self.gt_y is not None

    @property
    def error_m(self) -> float | None:
        if not (self.localised and self.has_gt):
            return None
        return math.hypot(self.x - self.gt_x, self.y - self.gt_y)  # type: ignore[operator]


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "median": _pct(values, 50), "p90": _pct(values, 90), "p99": _pct(values, 99),
        "max": float(np.max(values)) if len(values) else None, "mean": float(np.mean(values)) if len(values) else None,
    }


def wrap_deg(d: float) -> float:
    """Absolute angular difference folded into ``[0, 180]``."""
    return abs((d + 180.0) % 360.0 - 180.0)


def compute_metrics(records: Sequence[FrameRecord], wall_s: float | None = None, **identity: Any) -> dict[str, Any]:
    """The metrics dict of ``records`` (see the module doc); ``identity`` (model, index, bag...) is copied in."""
    n = len(records)
    with_gt = [r for r in records if r.has_gt]
    loc = [r for r in records if r.localised]
    errs = [r.error_m for r in with_gt if r.error_m is not None]
    out: dict[str, Any] = dict(identity)
    out["frames"] = n
    out["ground_truth"] = bool(with_gt)
    if not with_gt:
        out["ground_truth_note"] = "no ground truth in the bag: accuracy and calibration are not measured"
    out["share_localised"] = len(loc) / n if n else None
    out["share_verified"] = sum(r.status == "verified" for r in records) / n if n else None
    out["status_counts"] = {s: sum(r.status == s for r in records) for s in sorted({r.status for r in records})}
    if with_gt:
        out["frames_with_ground_truth"] = len(with_gt)
        out["horizontal_error_m"] = _stats(errs) | {"n": len(errs)}
        out["within_m"] = {str(t): sum(e <= t for e in errs) / len(with_gt) for t in (5, 10, 25)}
        verified_errs = [r.error_m for r in with_gt if r.status == "verified" and r.error_m is not None]
        out["horizontal_error_verified_m"] = _stats(verified_errs) | {"n": len(verified_errs)}
        h = [wrap_deg(r.heading_deg - r.gt_heading_deg) for r in with_gt
             if r.localised and r.heading_deg is not None and r.gt_heading_deg is not None]
        out["heading_error_deg"] = _stats(h) | {"n": len(h)} if h else None
        sig = [(r.error_m, r.sigma_m) for r in with_gt if r.error_m is not None and r.sigma_m and r.sigma_m > 0]
        maha = []
        for r in with_gt:
            if r.error_m is None or r.cov_xy is None:
                continue
            c = np.asarray(r.cov_xy, dtype=np.float64).reshape(2, 2)
            e = np.array([r.x - r.gt_x, r.y - r.gt_y])  # type: ignore[operator]
            try:
                maha.append(float(e @ np.linalg.solve(c, e)))
            except np.linalg.LinAlgError:
                continue
        out["calibration"] = {
            "within_2sigma": sum(e <= 2 * s for e, s in sig) / len(sig) if sig else None,
            "beyond_5sigma": sum(e > 5 * s for e, s in sig),
            "mahalanobis_95": sum(d <= CHI2_2DOF_95 for d in maha) / len(maha) if maha else None,
            "median_sigma_m": _pct([s for _, s in sig], 50),
            "n": len(sig),
        }
    else:
        out["horizontal_error_m"] = None
        out["within_m"] = None
        out["heading_error_deg"] = None
        out["calibration"] = None
    stages = sorted({k for r in records for k in r.timings_ms})
    out["latency_ms"] = {
        k: {"p50": _pct(v, 50), "p99": _pct(v, 99)}
        for k in stages
        if (v := [float(r.timings_ms[k]) for r in records if k in r.timings_ms and r.timings_ms[k] is not None])
    }
    out["wall_s"] = wall_s
    out["effective_fps"] = (n / wall_s) if wall_s and wall_s > 0 else None
    return out


def _f(v: Any, fmt: str = "{:.1f}", unit: str = "") -> str:
    return "-" if v is None else fmt.format(v) + unit


def format_table(metrics: dict[str, Any]) -> str:
    """A compact plain-text table of the headline numbers of ``metrics``."""
    rows: list[tuple[str, str]] = [
        ("frames", str(metrics.get("frames"))),
        ("localised", _f(metrics.get("share_localised"), "{:.1%}")),
        ("verified", _f(metrics.get("share_verified"), "{:.1%}")),
    ]
    if metrics.get("ground_truth"):
        e = metrics["horizontal_error_m"]
        w = metrics["within_m"]
        rows += [
            ("error median / p90 / p99 / max", " / ".join(_f(e[k], "{:.1f}") for k in ("median", "p90", "p99", "max")) + " m"),
            ("within 5 / 10 / 25 m", " / ".join(_f(w[k], "{:.1%}") for k in ("5", "10", "25"))),
        ]
        if "beyond_5sigma" in (metrics.get("calibration") or {}):
            rows.append(("fixes beyond 5 sigma", str(metrics["calibration"]["beyond_5sigma"])))
        h = metrics.get("heading_error_deg")
        rows.append(("heading error median / p90", (_f(h["median"]) + " / " + _f(h["p90"]) + " deg") if h else "-"))
        c = metrics.get("calibration") or {}
        rows.append(("calibration (err <= 2 sigma)", _f(c.get("within_2sigma"), "{:.1%}")))
    else:
        rows.append(("ground truth", "NONE in this bag: accuracy not measured"))
    lat = metrics.get("latency_ms") or {}
    for k in ("encode", "search", "fine", "refine", "total"):
        if k in lat:
            rows.append((f"latency {k} p50 / p99", f"{_f(lat[k]['p50'])} / {_f(lat[k]['p99'])} ms"))
    rows.append(("effective FPS", _f(metrics.get("effective_fps"), "{:.2f}")))
    if metrics.get("partial"):
        rows.append(("PARTIAL RUN", str(metrics.get("error", ""))[:60]))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line] + [f"{k.ljust(width)} | {v}" for k, v in rows] + [line])
