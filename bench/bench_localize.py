#!/usr/bin/env python3
"""Measure the Localizer on real imagery: share verified, error (median / p90), sigma honesty,
retrieval recall, per-stage CPU time, and the recall cost of HNSW / IVF indexes.

Cases (all need $FOENET_DATA, see /work/shared/data/README.md):

* ``banepa``   rendered perspective views (70 deg camera, 80-150 m, tilt 0-20 deg, any heading)
               of the Banepa orthomosaic read at 0.3 m/px; a whole town to search.
* ``aerovloc`` the real drone photo ``queries/0.jpg`` against its two satellite tiles (GPS truth),
               and ``queries/1.png`` (not on the map: must not come back as a confident fix).
* ``pix4d``    rendered views of the Pix4D Bali orthomosaic (0.35 m, alpha = nodata), 40-70 m.
* ``naip``     views rendered from NAIP 2020 localised against an index of NAIP 2010 (cross-year).

Usage::

    FOENET_DATA=/work/shared/data .venv/bin/python bench/bench_localize.py --cases banepa aerovloc \\
        --n-views 40 --out bench/results/localize.json

Indexes are cached under ``--cache`` (rebuilt when missing). Results: one JSON file with a
section per case (per-frame records included), and a summary printed to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from foenet_ros.geo import CameraIntrinsics, CameraPose, read_map  # noqa: E402
from foenet_ros.geo.render import render_view  # noqa: E402
from foenet_ros.index import IndexConfig, TileIndex, build_index  # noqa: E402
from foenet_ros.localize import Localizer, LocalizerConfig  # noqa: E402
from foenet_ros.utils import shared_data_dir, write_json_atomic  # noqa: E402

log = logging.getLogger("bench_localize")


# ---------------------------------------------------------------------------- helpers
def get_index(cache: Path, name: str, maps, encoder, config: IndexConfig) -> TileIndex:
    out = cache / name
    if out.exists():
        try:
            idx = TileIndex.load(out)
            idx.check_encoder(encoder)
            return idx
        except Exception as exc:  # stale cache: rebuild
            log.warning("rebuilding %s: %s", out, exc)
    t = time.perf_counter()
    build_index(maps, encoder, out, config, overwrite=True)
    log.info("built %s in %.1f s", out, time.perf_counter() - t)
    return TileIndex.load(out)


def random_poses(mp, n: int, alt: tuple[float, float], tilt: tuple[float, float], seed: int, margin_m: float):
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = mp.bounds_xy
    poses = []
    while len(poses) < n:
        x, y = rng.uniform(xmin + margin_m, xmax - margin_m), rng.uniform(ymin + margin_m, ymax - margin_m)
        c, r = mp.xy_to_pixel(x, y)
        if not mp.valid[int(np.clip(r, 0, mp.height - 1)), int(np.clip(c, 0, mp.width - 1))]:
            continue
        poses.append(CameraPose(float(x), float(y), float(rng.uniform(*alt)), float(rng.uniform(0, 360)),
                                float(rng.uniform(*tilt)), float(rng.uniform(-3, 3))))
    return poses


def summarize(records: list[dict]) -> dict:
    n = len(records)
    tracked = [r for r in records if r["status"] == "tracked"]
    ver = [r for r in records if r["status"] == "verified"]
    errs = np.array([r["err_m"] for r in ver])
    norm = np.array([r["err_m"] / r["sigma_m"] for r in ver]) if ver else np.array([])
    timing = {k: float(np.median([r["timings_ms"][k] for r in records])) for k in records[0]["timings_ms"]} if n else {}
    out = {
        "frames": n,
        "verified_share": len(ver) / n if n else 0.0,
        "verified_within_5m_share": float(np.mean([r["status"] == "verified" and r["err_m"] < 5 for r in records])) if n else 0,
        "median_err_m": float(np.median(errs)) if len(errs) else None,
        "p90_err_m": float(np.percentile(errs, 90)) if len(errs) else None,
        "max_err_m": float(errs.max()) if len(errs) else None,
        "within_2sigma_share": float(np.mean(norm <= 2.0)) if len(norm) else None,
        "median_sigma_m": float(np.median([r["sigma_m"] for r in ver])) if ver else None,
        "status_counts": {s: sum(r["status"] == s for r in records) for s in ("verified", "retrieval", "tracked", "lost")},
        "median_timings_ms": timing,
        "tracked_max_err_m": max((r["err_m"] for r in tracked), default=None),
        "tracked_within_2sigma_share": float(np.mean([r["err_m"] <= 2 * r["sigma_m"] for r in tracked])) if tracked else None,
    }
    rr = [r for r in records if r.get("truth_rank") is not None]
    if rr:
        out["retrieval_recall@1"] = float(np.mean([0 <= r["truth_rank"] < 1 for r in rr]))
        out["retrieval_recall@5"] = float(np.mean([0 <= r["truth_rank"] < 5 for r in rr]))
    return out


def truth_rank(est, xy) -> int:
    """Rank of the first candidate whose tile contains the true image-centre ground point (-1: none)."""
    for k, c in enumerate(est.candidates):
        if abs(c.center_xy[0] - xy[0]) <= c.size_m / 2 and abs(c.center_xy[1] - xy[1]) <= c.size_m / 2:
            return k
    return -1


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another camera / another hour: gamma, contrast, brightness, sensor noise and a little blur."""
    import cv2

    x = 255.0 * (img.astype(np.float32) / 255.0) ** rng.uniform(0.75, 1.35)
    x = (x - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-15, 15)
    x = cv2.GaussianBlur(x, (0, 0), 0.6) + rng.normal(0, 3.0, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def run_views(name: str, loc: Localizer, mp, intr, poses, *, heading_known: bool, sequence: bool = False,
              render_map=None, jitter: bool = True, blank: frozenset = frozenset()) -> dict:
    from foenet_ros.geo import image_center_ground

    records = []
    rng = np.random.default_rng(1234)
    for i, pose in enumerate(poses):
        img, valid = render_view(render_map or mp, intr, pose)
        if jitter:
            img = photometric(img, rng)
        if i in blank:  # a frame the camera lost (glare, cloud): nothing to match
            img = np.full_like(img, 200)
        if not sequence:
            loc.reset()
        # CameraPose headings are from the map's grid north; the Localizer takes and returns TRUE headings
        true_heading = float(mp.frame.grid_to_true_heading(pose.heading_deg, pose.x, pose.y))
        est = loc.localize(img, camera=intr, heading_deg=true_heading if heading_known else None,
                           stamp=float(i))
        gc = image_center_ground(intr, pose)
        rec = {
            "i": i, "status": est.status, "truth": [pose.x, pose.y, pose.alt_m, true_heading, pose.pitch_deg],
            "est": [est.x, est.y, est.alt_m, est.heading_deg],
            "err_m": math.hypot(est.x - pose.x, est.y - pose.y) if est.has_fix else None,
            "sigma_m": est.sigma_m if math.isfinite(est.sigma_m) else None,
            "inliers": est.inliers, "score": est.score, "timings_ms": est.timings_ms,
            "truth_rank": truth_rank(est, gc), "search": est.pose.get("search"),
            "valid_frac": float(valid.mean()), "blank": i in blank,
        }
        if est.has_fix and math.isfinite(est.heading_deg):
            rec["heading_err_deg"] = abs((est.heading_deg - true_heading + 180) % 360 - 180)
            rec["alt_err_m"] = est.alt_m - pose.alt_m if math.isfinite(est.alt_m) else None
        records.append(rec)
        log.info("%s %d: %s err=%s sigma=%.1f inl=%d rank=%d %.0f ms", name, i, est.status,
                 None if rec["err_m"] is None else round(rec["err_m"], 2), est.sigma_m, est.inliers,
                 rec["truth_rank"], est.timings_ms["total"])
    summary = summarize(records)
    hd = [r["heading_err_deg"] for r in records if r["status"] == "verified" and "heading_err_deg" in r]
    al = [abs(r["alt_err_m"]) for r in records if r["status"] == "verified" and r.get("alt_err_m") is not None]
    summary["median_heading_err_deg"] = float(np.median(hd)) if hd else None
    summary["median_abs_alt_err_m"] = float(np.median(al)) if al else None
    return {"summary": summary, "records": records}


def ann_recall(index: TileIndex, queries: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Recall of HNSW / IVF top-k against exact (flat) top-k, and search time per query."""
    from foenet_ros.index import faiss_store

    desc = index.descriptors()
    flat, _ = faiss_store.make_index(desc, "flat")
    res = {}
    t = time.perf_counter()
    _, gt = faiss_store.search(flat, queries, max(ks))
    res["flat"] = {"ms_per_query": (time.perf_counter() - t) * 1000 / len(queries)}
    for kind in ("hnsw", "ivf"):
        idx, params = faiss_store.make_index(desc, kind)
        t = time.perf_counter()
        _, ids = faiss_store.search(idx, queries, max(ks))
        ms = (time.perf_counter() - t) * 1000 / len(queries)
        res[kind] = {"params": params, "ms_per_query": ms}
        for k in ks:
            res[kind][f"recall@{k}"] = float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ids, gt)]))
    return res


# ---------------------------------------------------------------------------- cases
def case_banepa(data: Path, cache: Path, encoder, n: int, seed: int) -> dict:
    path = data / "oam_banepa" / "banepa_z19_0.15m.tif"
    mp = read_map([path], gsd_m=0.3)
    cfg = IndexConfig(hfov_deg=70, image_size=(640, 480), alt_range_m=(80, 150), max_tilt_deg=20, map_gsd_m=0.3)
    idx = get_index(cache, "banepa_0.3m", mp, encoder, cfg)
    intr = CameraIntrinsics.from_hfov(70, 640, 480)
    poses = random_poses(mp, n, (80, 150), (0, 20), seed, margin_m=120)
    loc = Localizer(idx, encoder, LocalizerConfig())
    out = {"index": {"tiles": len(idx), "scales_m": idx.scales_m, "map_gsd_m": idx.manifest["map"]["gsd_m"]}}
    out["heading_unknown"] = run_views("banepa/no-heading", loc, idx.map_raster(), intr, poses, heading_known=False,
                                       render_map=mp)
    out["heading_known"] = run_views("banepa/heading", loc, idx.map_raster(), intr, poses, heading_known=True,
                                     render_map=mp)
    # a flight: 24 frames 1 s apart at 12 m/s, heading known, frames 8, 9 and 16 blanked (tracker bridges them)
    rng = np.random.default_rng(seed + 1)
    xmin, ymin, xmax, ymax = mp.bounds_xy
    x0, y0 = (xmin + xmax) / 2 - 150, (ymin + ymax) / 2 - 60
    hd = 70.0
    flight = [CameraPose(x0 + 12 * i * math.sin(math.radians(hd)), y0 + 12 * i * math.cos(math.radians(hd)),
                         110 + rng.normal(0, 2), hd + rng.normal(0, 2), 8 + rng.normal(0, 1), rng.normal(0, 1))
              for i in range(24)]
    loc.reset()
    out["flight"] = run_views("banepa/flight", loc, idx.map_raster(), intr, flight, heading_known=True, sequence=True,
                              render_map=mp, blank=frozenset({8, 9, 16}))
    loc.reset()
    # ANN recall on the query descriptors of the views
    from foenet_ros.localize.preprocess import retrieval_queries

    qs = []
    for pose in poses:
        img, _ = render_view(mp, intr, pose)
        qs.extend(retrieval_queries(img, pose.heading_deg, 1))
    out["ann"] = ann_recall(idx, encoder.encode(qs))
    return out


def case_aerovloc(data: Path, cache: Path, encoder) -> dict:
    import cv2

    root = data / "aerovloc_pair"
    maps = [root / "map" / "0.png", root / "map" / "1.png"]
    cfg = IndexConfig(scales_m=(80.0, 120.0, 180.0))
    idx = get_index(cache, "aerovloc", maps, encoder, cfg)
    truth = {}
    for line in (root / "queries" / "queries.txt").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            truth[parts[0]] = (float(parts[1]), float(parts[2]))  # lon lat
    out = {"index": {"tiles": len(idx), "scales_m": idx.scales_m}}
    loc = Localizer(idx, encoder, LocalizerConfig())
    frame = idx.frame
    for name in ("0.jpg", "1.png"):
        img = cv2.cvtColor(cv2.imread(str(root / "queries" / name)), cv2.COLOR_BGR2RGB)
        lon, lat = truth[name]
        # no intrinsics, no prior: cold start over the whole map; the photos are north-up
        # (README), so once with that heading and once with the heading unknown
        for variant, heading in (("heading_0", 0.0), ("heading_unknown", None)):
            loc.reset()
            est = loc.localize(img, heading_deg=heading)
            rec = est.to_json()
            rec["candidates"] = rec["candidates"][:5]
            tx, ty = frame.from_lonlat(lon, lat)  # query 1 is far away: still a (large) distance
            rec["err_m"] = math.hypot(est.x - tx, est.y - ty) if est.has_fix else None
            rec["truth_lonlat"] = [lon, lat]
            rec["on_map"] = name == "0.jpg"
            out[f"{name}/{variant}"] = rec
            if os.environ.get("BENCH_PLOTS"):
                from foenet_ros.localize.plot import plot_estimate

                plot_estimate(loc, est, Path(os.environ["BENCH_PLOTS"]) / f"aerovloc_{name}_{variant}.png",
                              truth_xy=(tx, ty) if name == "0.jpg" else None)
            log.info("aerovloc %s %s: %s err=%s sigma=%.1f inliers=%d model=%s", name, variant, est.status,
                     rec["err_m"], est.sigma_m, est.inliers, est.pose.get("model"))
    return out


def case_pix4d(data: Path, cache: Path, encoder, n: int, seed: int) -> dict:
    path = data / "pix4d_bali_ortho"
    tif = sorted(path.glob("*.tif"))[0]
    mp = read_map([tif])
    cfg = IndexConfig(hfov_deg=70, image_size=(640, 480), alt_range_m=(40, 70), max_tilt_deg=15)
    idx = get_index(cache, "pix4d", [tif], encoder, cfg)
    intr = CameraIntrinsics.from_hfov(70, 640, 480)
    poses = random_poses(mp, n, (40, 70), (0, 15), seed, margin_m=40)
    loc = Localizer(idx, encoder, LocalizerConfig())
    return {"index": {"tiles": len(idx), "scales_m": idx.scales_m},
            "heading_unknown": run_views("pix4d", loc, idx.map_raster(), intr, poses, heading_known=False, render_map=mp)}


def case_naip(data: Path, cache: Path, encoder, n: int, seed: int, map_year: str = "2010", view_year: str = "2020") -> dict:
    root = data / "naip_nd_5m"
    files = sorted(root.glob("*.tif"))
    mfile = next(f for f in files if map_year in f.name)
    vfile = next(f for f in files if view_year in f.name)
    mp = read_map([mfile])
    view_map = read_map([vfile], frame=mp.frame)
    cfg = IndexConfig(hfov_deg=70, image_size=(640, 480), alt_range_m=(700, 1100), max_tilt_deg=10)
    idx = get_index(cache, f"naip_{map_year}", [mfile], encoder, cfg)
    intr = CameraIntrinsics.from_hfov(70, 640, 480)
    poses = random_poses(mp, n, (700, 1100), (0, 10), seed, margin_m=800)
    loc = Localizer(idx, encoder, LocalizerConfig())
    return {"index": {"tiles": len(idx), "scales_m": idx.scales_m, "map": mfile.name, "views": vfile.name},
            "heading_known": run_views("naip", loc, idx.map_raster(), intr, poses, heading_known=True,
                                       render_map=view_map)}


def case_orthority(data: Path, cache: Path, encoder) -> dict:
    """4 real oblique frames (30 deg pitch, 4 headings) vs. the ortho mosaic of the OTHER three frames."""
    import csv

    import cv2

    root = data / "orthority_odm"
    cam = next(iter(json.loads((root / "reconstruction.json").read_text())[0]["cameras"].values()))
    w, h = int(cam["width"]), int(cam["height"])
    s = max(w, h)  # OpenSfM normalises by the larger side, principal point relative to the centre
    intr = CameraIntrinsics(w, h, cam["focal_x"] * s, cam["focal_y"] * s, (w - 1) / 2 + cam["c_x"] * s,
                            (h - 1) / 2 + cam["c_y"] * s, (cam["k1"], cam["k2"], cam["p1"], cam["p2"], cam["k3"]))
    rows = list(csv.reader((root / "io" / "odm_xyz_opk.csv").read_text().splitlines(), delimiter=" ", quotechar="'"))
    gt = {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows[1:] if r}
    import rasterio

    with rasterio.open(root / "dsm.tif") as ds:
        ground_z = float(ds.read(1, masked=True).mean())
    out = {"intrinsics": intr.to_json(), "ground_z_mean": ground_z, "frames": {}}
    errs = []
    for name, (x, y, z) in gt.items():
        others = [root / "ortho" / f"{o}_ORTHO.tif" for o in gt if o != name]
        alt = z - ground_z
        cfg = IndexConfig(hfov_deg=intr.hfov_deg, image_size=(w, h), alt_range_m=(alt * 0.8, alt * 1.2),
                          max_tilt_deg=30, min_valid=0.3)
        idx = get_index(cache, f"orthority_not_{name}", others, encoder, cfg)
        img = cv2.cvtColor(cv2.imread(str(root / "images" / f"{name}.tif")), cv2.COLOR_BGR2RGB)
        loc = Localizer(idx, encoder, LocalizerConfig())
        est = loc.localize(img, camera=intr)
        err = math.hypot(est.x - x, est.y - y) if est.has_fix else None
        rec = {"status": est.status, "err_m": err, "sigma_m": est.sigma_m, "inliers": est.inliers,
               "alt_est_m": est.alt_m, "alt_true_m": alt, "tilt_est_deg": est.pose.get("tilt_deg"),
               "heading_deg": est.heading_deg, "timings_ms": est.timings_ms, "tiles": len(idx)}
        out["frames"][name] = rec
        if err is not None and est.status == "verified":
            errs.append(err)
        if os.environ.get("BENCH_PLOTS"):
            from foenet_ros.localize.plot import plot_estimate

            plot_estimate(loc, est, Path(os.environ["BENCH_PLOTS"]) / f"orthority_{name}.png", truth_xy=(x, y))
        log.info("orthority %s: %s err=%s sigma=%.1f inliers=%d", name, est.status, err, est.sigma_m, est.inliers)
    out["summary"] = {"verified": len(errs), "frames": len(gt), "median_err_m": float(np.median(errs)) if errs else None,
                      "max_err_m": float(np.max(errs)) if errs else None}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["banepa", "aerovloc"],
                    choices=["banepa", "aerovloc", "pix4d", "naip", "orthority"])
    ap.add_argument("--n-views", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/foenet_bench_cache", help="where indexes are built/cached")
    ap.add_argument("--out", default="bench/results/localize.json")
    ap.add_argument("--model", default=None, help="checkpoint (default: bundled default model)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    data = shared_data_dir()
    if data is None:
        print("set FOENET_DATA to the shared data folder", file=sys.stderr)
        return 2
    import torch

    from foenet_ros.model import Encoder, load_checkpoint, load_default_model

    model = load_default_model() if args.model is None else load_checkpoint(args.model)
    encoder = Encoder(model, device=args.device, batch_size=16)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results = {"env": {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                       "loadavg_start": os.getloadavg(), "model": encoder.fingerprint}}
    for case in args.cases:
        t = time.perf_counter()
        if case == "banepa":
            results[case] = case_banepa(data, cache, encoder, args.n_views, args.seed)
        elif case == "aerovloc":
            results[case] = case_aerovloc(data, cache, encoder)
        elif case == "pix4d":
            results[case] = case_pix4d(data, cache, encoder, args.n_views, args.seed)
        elif case == "orthority":
            results[case] = case_orthority(data, cache, encoder)
        elif case == "naip":
            results[case] = case_naip(data, cache, encoder, args.n_views, args.seed)
        results[case]["wall_s"] = time.perf_counter() - t
    results["env"]["loadavg_end"] = os.getloadavg()
    write_json_atomic(args.out, results)

    def strip(d):
        return {k: (strip(v) if isinstance(v, dict) else v) for k, v in d.items() if k != "records"}

    print(json.dumps(strip(results), indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
