#!/usr/bin/env python3
"""NAIP pairs of years: one Localizer configuration against another on the same flights, frame by frame.

A map of one year and frames rendered from another year's NAIP (season, crops, sun, sensor; or its
near-infrared band) at 1500 m, with the sensors of ``bench_localize.py``'s NAIP cases (compass 2 deg,
attitude 0.1 deg, altimeter 2 %). Two Localizers share the index and get every frame alternately
(A then B on even frames, B then A on odd ones), so their times are measured side by side in one
process. Used to decide ``LocalizerConfig`` changes on pairs of years that nothing was tuned on
(the fine score was fitted on 2010/2016, 2014/2017 and 2016/2012-NIR).

Usage::

    FOENET_DATA=/work/shared/data PYTHONPATH=. .venv/bin/python bench/naip_years.py \\
        --a fine_line_search=false --out bench/results/naip_years.json

``--a`` / ``--b`` set LocalizerConfig fields (``name=value``, JSON values; B defaults to the
library's defaults). Pairs are ``MAP/FRAMES`` years, ``nir`` after the frames' year for its
near-infrared band.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_localize as B  # noqa: E402  (the cases' helpers: index, flight, photometry, sensors)

from foenet_ros.geo import CameraIntrinsics, read_map  # noqa: E402
from foenet_ros.geo.render import render_view  # noqa: E402
from foenet_ros.localize import Localizer  # noqa: E402

PAIRS = ("2012/2019", "2019/2020", "2019/2020nir", "2009/2020", "2020/2009", "2010/2017", "2014/2018", "2015/2016",
         "2016/2010nir", "2018/2012")
SENSORS = {"heading_sigma": 2.0, "attitude_sigma": 0.1, "alt_sigma_frac": 0.02}


def _kv(items: list[str]) -> dict:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def run_pair(pair: str, encoder, cache: Path, configs: dict, n: int, seed: int) -> dict:
    map_year, view = pair.split("/")
    nir = view.endswith("nir")
    view_year = view.removesuffix("nir")
    files = sorted((B.shared_data_dir() / "naip_nd_5m").glob("*.tif"))
    mfile = next(f for f in files if f"_{map_year}" in f.name)
    vfile = next(f for f in files if f"_{view_year}" in f.name)
    mp = read_map([mfile])
    view_map = read_map([vfile], frame=mp.frame, bands=[4] if nir else None)
    cfg = B.index_config(hfov_deg=70, image_size=(960, 540), alt_range_m=(1300, 1700), max_tilt_deg=10, map_accuracy_m=3.0,
                         fine_polish=True)
    idx = B.get_index(cache, f"naip_{map_year}_1500", [mfile], encoder, cfg)
    intr = CameraIntrinsics.from_hfov(70, 960, 540)
    poses = B.flight_poses(mp, n, 1500.0, 40.0, 1.0, seed, margin_m=1100)
    locs = {k: Localizer(idx, encoder, B.loc_config().replace(**c)) for k, c in configs.items()}
    rng, srng = np.random.default_rng(1234), np.random.default_rng(99)
    records: dict[str, list] = {k: [] for k in locs}
    for i, pose in enumerate(poses):
        img, _ = render_view(view_map, intr, pose)
        if img.ndim == 2 or img.shape[2] == 1:  # a single band (near-infrared) shown as grey
            img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        img = B.photometric(img, rng)
        true_heading = float(mp.frame.grid_to_true_heading(pose.heading_deg, pose.x, pose.y))
        kw = B.sensor_kwargs(pose, true_heading, srng, **SENSORS)
        for k in (list(locs) if i % 2 == 0 else list(locs)[::-1]):
            t = time.perf_counter()
            est = locs[k].localize(img, camera=intr, stamp=float(i), **kw)
            wall = (time.perf_counter() - t) * 1000.0
            err = math.hypot(est.x - pose.x, est.y - pose.y) if est.has_fix else None
            records[k].append({"i": i, "status": est.status, "err_m": err, "search": est.pose.get("search"),
                               "sigma_m": est.sigma_m if math.isfinite(est.sigma_m) else None, "wall_ms": wall})
    return {k: {"summary": summarize(r), "records": r} for k, r in records.items()}


def summarize(records: list[dict]) -> dict:
    errs = np.array([r["err_m"] if r["err_m"] is not None and r["status"] in ("verified", "tracked") else np.inf
                     for r in records])
    fin = errs[np.isfinite(errs)]
    norm = [r["err_m"] / r["sigma_m"] for r in records if r["err_m"] is not None and r["sigma_m"]]
    track = [r["wall_ms"] for r in records if r["search"] == "track"]
    return {"frames": len(records), "within_10m": float(np.mean(errs <= 10)), "within_25m": float(np.mean(errs <= 25)),
            "median_err_m": float(np.median(fin)) if fin.size else None,
            "within_2sigma": float(np.mean(np.array(norm) <= 2)) if norm else None,
            "beyond_5sigma": int(np.sum(np.array(norm) > 5)) if norm else 0,
            "tracking_frames": len(track), "tracking_p50_ms": float(np.median(track)) if track else None,
            "tracking_p99_ms": float(np.percentile(track, 99)) if track else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("Usage::")[1])
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), help="MAP/FRAMES years (default: %(default)s)")
    ap.add_argument("--a", nargs="*", default=[], metavar="NAME=VALUE", help="LocalizerConfig fields of A")
    ap.add_argument("--b", nargs="*", default=[], metavar="NAME=VALUE", help="LocalizerConfig fields of B")
    ap.add_argument("--n-frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(Path("/tmp") / "foenet_bench_cache"), help="index cache (bench_localize's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON with every frame")
    args = ap.parse_args()
    import torch

    from foenet_ros.model import Encoder, load_default_model

    torch.set_num_threads(args.threads)
    if B.shared_data_dir() is None:
        print("needs $FOENET_DATA (the shared data folder with naip_nd_5m/)", file=sys.stderr)
        return 2
    encoder = Encoder(load_default_model(), device="cpu", batch_size=16)
    configs = {"A": _kv(args.a), "B": _kv(args.b)}
    out = {"configs": configs, "sensors": SENSORS, "pairs": {}}
    print("| pair | config | within 10 / 25 m | median m | within 2 sigma | tracking p50 / p99 ms |")
    print("|---|---|---|---|---|---|")
    for pair in args.pairs:
        res = run_pair(pair, encoder, Path(args.cache), configs, args.n_frames, args.seed)
        out["pairs"][pair] = res
        for k, r in res.items():
            s = r["summary"]
            print(f"| {pair} | {k} | {100 * s['within_10m']:.1f} / {100 * s['within_25m']:.1f} % | "
                  f"{s['median_err_m']:.1f} | {100 * (s['within_2sigma'] or 0):.1f} % | "
                  f"{s['tracking_p50_ms']:.0f} / {s['tracking_p99_ms']:.0f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
