#!/usr/bin/env python3
"""Calibrate the fine stage on TRAINING places: the acceptance score of a dense fix and the scale of its sigma.

The Localizer accepts a dense overlap fix by a logistic score of its evidence (coarse peak z-score,
margin over the best rival place, agreeing patches, fine-level z-score) and states its covariance
as ``fine_sigma_scale^2 * (heatmap covariance) + error budget``. Both are fitted here on places
and years the evaluation never uses (``foenet_ros.data.shared``: NAIP training years, the OAM
training places), so the held-out benchmark (bench/bench_localize.py) measures them honestly.

Samples: a frame rendered from one date (another NAIP year, or the same OAM mosaic with strong
photometric change) at a random pose, sensors with realistic noise, and a search region that
either contains the truth (a positive when the fix lands within 3 coarse cells) or does not (its
peak is necessarily wrong: a negative, as a wrong retrieval candidate or an off-map frame gives).
One sample in six is a frame that shows no ground at all (noise, stripes, checkerboards, gradients,
blobs, a constant: a covered lens or a broken readout), always a negative.

Usage::

    FOENET_DATA=/work/shared/data .venv/bin/python bench/calibrate_fine.py --samples 240 --out bench/results/calibration.json

Prints the fitted ``fine_score_weights`` / ``fine_sigma_scale`` for ``LocalizerConfig`` and the
training-set precision/recall of the acceptance threshold.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from foenet_ros.features import dense_extractor  # noqa: E402
from foenet_ros.geo import CameraIntrinsics, CameraPose  # noqa: E402
from foenet_ros.geo.render import render_view  # noqa: E402
from foenet_ros.index.fine import FineConfig, FineStore, build_fine  # noqa: E402
from foenet_ros.localize import LocalizerConfig  # noqa: E402
from foenet_ros.localize.fine import FineStage, Region, Sensors  # noqa: E402
from foenet_ros.localize.fine_score import FEATURES, dense_features  # noqa: E402
from foenet_ros.utils import shared_data_dir  # noqa: E402

log = logging.getLogger("calibrate_fine")


def photometric(img: np.ndarray, rng) -> np.ndarray:
    from foenet_ros.data.augment import photometric as ph

    return ph(img, rng)


def make_store(raster, cache: Path, name: str, footprints: tuple[float, float], methods, model) -> FineStore:
    out = cache / name
    if not (out / "entry.json").is_file():
        ex = {m: dense_extractor(m, model) for m in methods}
        entry = build_fine(raster, out, FineConfig(methods=tuple(methods), keypoints=False), list(footprints), ex,
                           progress=False)
        (out / "entry.json").write_text(json.dumps(entry))
    return FineStore(out, json.loads((out / "entry.json").read_text()))


def not_a_view(rng, w: int, h: int) -> np.ndarray:
    """A frame that shows no ground at all (a covered lens, a test pattern, sensor noise, a stuck readout):
    periodic patterns correlate strongly with regular map structure (roads, fields, roofs), so the score
    must learn that a coarse peak the fine level does not confirm is no fix."""
    kind = int(rng.integers(0, 6))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:
        v = rng.integers(0, 256, (h, w), dtype=np.uint8)
    elif kind == 1:
        t = [yy, xx, xx + yy, xx - yy][int(rng.integers(0, 4))]
        v = ((t // int(rng.integers(2, 60))) % 2 * 255).astype(np.uint8)
    elif kind == 2:
        s = int(rng.integers(2, 60))
        v = (((yy // s) + (xx // s)) % 2 * 255).astype(np.uint8)
    elif kind == 3:
        v = (xx * 255 // max(w - 1, 1)).astype(np.uint8)
    elif kind == 4:
        v = np.full((h, w), rng.integers(0, 256), np.uint8)
    else:  # smooth blobs
        small = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40)), dtype=np.uint8)
        import cv2

        v = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.repeat(v[:, :, None], 3, axis=2)


def sample(stage: FineStage, view_map, mp, rng, alt_range, intr, positive: bool, garbage: bool = False) -> dict | None:
    xmin, ymin, xmax, ymax = mp.bounds_xy
    alt = float(rng.uniform(*alt_range))
    fp = 2 * alt * math.tan(math.radians(intr.hfov_deg) / 2)
    m = 0.6 * fp
    if xmax - xmin < 2 * m + 10 or ymax - ymin < 2 * m + 10:
        return None
    pose = CameraPose(float(rng.uniform(xmin + m, xmax - m)), float(rng.uniform(ymin + m, ymax - m)), alt,
                      float(rng.uniform(0, 360)), float(rng.uniform(0, 12)), float(rng.uniform(-3, 3)))
    img, valid = render_view(view_map, intr, pose)
    if valid.mean() < 0.9:
        return None
    if img.ndim == 2 or img.shape[2] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    img = photometric(np.ascontiguousarray(img[:, :, :3]), rng)
    if garbage:
        img = not_a_view(rng, img.shape[1], img.shape[0])
    hs, asig = 2.0, 0.3
    sensors = Sensors(pose.heading_deg + rng.normal(0, hs), hs, alt * (1 + rng.normal(0, 0.03)), 0.03 * alt,
                      (pose.roll_deg + rng.normal(0, asig), pose.pitch_deg + rng.normal(0, asig)), asig)
    r = float(rng.uniform(0.3, 1.0)) * fp
    if positive:
        cx, cy = pose.x + rng.uniform(-0.5, 0.5) * r, pose.y + rng.uniform(-0.5, 0.5) * r
    else:  # a region that does not contain the truth
        for _ in range(20):
            cx, cy = rng.uniform(xmin + m, xmax - m), rng.uniform(ymin + m, ymax - m)
            if abs(cx - pose.x) > r + fp and abs(cy - pose.y) > r + fp:
                break
        else:
            return None
    fix, _ = stage.run(img, intr, sensors, [Region((cx - r, cy - r, cx + r, cy + r))])
    if fix is None:
        return None
    err = float(np.hypot(fix.xy[0] - pose.x, fix.xy[1] - pose.y))
    cov = fix.cov
    return {"features": dense_features(fix), "err_m": err, "coarse_cell_m": fix.coarse.cell_m,
            "sigma_fit_m": float(math.sqrt(max(np.linalg.eigvalsh(cov).max(), 0))), "positive_region": positive,
            "alt_m": alt, "attitude_sigma_deg": asig,
            "garbage": garbage, "correct": bool(err <= 3.0 * fix.coarse.cell_m) and positive and not garbage}


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Newton-Raphson (IRLS) logistic regression with a small ridge; returns [bias, w...]."""
    A = np.column_stack([np.ones(len(X)), X])
    w = np.zeros(A.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-A @ w))
        g = A.T @ (p - y) + l2 * np.r_[0, w[1:]]
        H = (A * (p * (1 - p))[:, None]).T @ A + l2 * np.diag(np.r_[0, np.ones(len(w) - 1)])
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=240, help="samples per place group (half positive)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/foenet_calib_cache")
    ap.add_argument("--out", default="bench/results/calibration.json")
    ap.add_argument("--model", default=None, help="checkpoint with an overlap head (for the learned features)")
    ap.add_argument("--methods", nargs="+", default=["cfog"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    data = shared_data_dir()
    if data is None:
        print("set FOENET_DATA to the shared data folder", file=sys.stderr)
        return 2
    from foenet_ros.data.shared import oam_places, read_naip
    from foenet_ros.model import load_checkpoint

    model = load_checkpoint(args.model) if args.model else None
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    # the patches are part of every sample's evidence (at run time "auto" skips them only where
    # the score is already strong without them)
    cfg = LocalizerConfig(fine_methods=tuple(args.methods), fine_patches="always")
    groups = []
    # NAIP training years: map of one year, frames from another (and from the NIR band)
    for map_year, view_year, band in ((2010, 2016, "rgb"), (2014, 2017, "rgb"), (2016, 2012, "nir")):
        mp = read_naip(data, map_year, "rgb")
        vm = read_naip(data, view_year, band)
        groups.append((f"naip_{map_year}_{view_year}_{band}", mp, vm, (700.0, 1600.0), (1000.0, 2300.0)))
    # the biggest OAM block of each training place: same date, strong photometric change
    for place in oam_places(data):
        unit = max(place.units, key=lambda u: min(u.rasters[0].size_m))
        mp = unit.rasters[0]
        side = min(mp.size_m)
        if side < 150:
            continue
        hi = side / 2.5 / (2 * math.tan(math.radians(35)))
        groups.append((f"oam_{unit.name}", mp, mp, (max(20.0, hi / 3), hi), (2 * math.tan(math.radians(35)) * hi / 3,
                                                                              2 * math.tan(math.radians(35)) * hi)))
    intr = CameraIntrinsics.from_hfov(70, 640, 480)
    rows = []
    t0 = time.time()
    for name, mp, vm, alts, fps in groups:
        store = make_store(mp, cache, name, fps, args.methods, model)
        stage = FineStage(store, [dense_extractor(m, model) for m in args.methods], args.methods, cfg)
        n = 0
        for k in range(args.samples * 3):
            if n >= args.samples:
                break
            # half positive regions; one sample in six a frame that shows no ground (a negative wherever it looks)
            r = sample(stage, vm, mp, rng, alts, intr, positive=k % 2 == 0, garbage=k % 12 in (1, 2))
            if r is None:
                continue
            r["group"] = name
            rows.append(r)
            n += 1
        log.info("%s: %d samples, %.0f s", name, n, time.time() - t0)
    X = np.array([r["features"] for r in rows], dtype=np.float64)
    y = np.array([r["correct"] for r in rows], dtype=np.float64)
    w = fit_logistic(X, y)
    p = 1 / (1 + np.exp(-(w[0] + X @ w[1:])))
    report = {"features": list(FEATURES), "weights": [float(v) for v in w], "samples": len(rows),
              "positives": int(y.sum()), "groups": [g[0] for g in groups]}
    for thr in (0.5, 0.8, 0.9, 0.95, 0.99):
        acc = p >= thr
        report[f"threshold_{thr}"] = {"accepted": int(acc.sum()), "wrong_accepted": int((acc & (y == 0)).sum()),
                                      "recall": float((acc & (y == 1)).sum() / max(y.sum(), 1))}
    # sigma scale: the smallest k with 90 % of the accepted correct fixes within 2 sigma, where sigma
    # combines k x the fit's sigma with the attitude term the Localizer's budget adds
    ok = np.flatnonzero((p >= 0.9) & (y == 1))
    err = np.array([rows[i]["err_m"] for i in ok])
    fit = np.array([rows[i]["sigma_fit_m"] for i in ok])
    att = np.array([rows[i]["alt_m"] * math.tan(math.radians(rows[i]["attitude_sigma_deg"])) for i in ok])
    ks = np.linspace(0.25, 10.0, 196)
    cover = [float(np.mean(err <= 2.0 * np.sqrt((k * fit) ** 2 + att**2))) for k in ks] if len(ok) else []
    report["fine_sigma_scale"] = float(next((k for k, c in zip(ks, cover) if c >= 0.9), ks[-1])) if cover else None
    report["rows"] = rows
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
