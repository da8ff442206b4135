#!/usr/bin/env python3
"""Localizer benchmark on real imagery: accuracy, sigma honesty and per-stage speed, per case; with
``--baseline REV`` the same cases also run on another git revision, side by side in one run.

Cases (all need $FOENET_DATA, see the shared data README):

* ``banepa``         cold start anywhere on the Banepa orthomosaic (0.3 m, 1.7 x 1.3 km, ~740
                     tiles), rendered 640x480 views at 80-150 m, tilt 0-20 deg; heading, attitude and
                     altitude unknown (independent frames).
* ``banepa-imu``     the same views, heading unknown, with an IMU attitude (sigma 0.5 deg) and a
                     baro altitude (sigma 3 %): what an autopilot gives at a cold start.
* ``banepa-960``     the cold start at the speed bar's frame size: 960x540 views (same poses, same
                     70 deg horizontal field), nothing known. Speed case for cold starts.
* ``banepa-flight``  a 960x540 flight at 110 m, 10 m/s, 2 Hz over Banepa with compass (sigma 2 deg),
                     attitude (0.5 deg) and altitude (3 %): cold start, then tracking. Speed case.
* ``naip-2012-2019`` / ``naip-2019-2020``: the map of one year, 960x540 frames rendered from another
                     year's NAIP (different season, crops, sun, sensor) at 1500 m, a flight with the
                     same sensors (attitude sigma 0.1 deg: a gimbal/INS-grade attitude at that height).
* ``naip-nir``       the 2019 RGB map, frames from the 2020 near-infrared band (cross-sensor).
* ``pix4d``          the Pix4D Bali drone orthomosaic, views at 40-70 m, heading unknown.
* ``pix4d-12mp``     12 MP (4000x3000) nadir photos (tilt 0-5 deg) at 40-70 m over the same map, with a
                     compass (sigma 3 deg) and an altimeter (3 %): a survey drone's photos as they
                     come (the frame is downscaled once, first). Speed case for full-size photos.
* ``aerovloc``       the real drone photo vs. its two satellite tiles (GPS truth), heading 0 and
                     unknown; and the off-map photo (must come back lost).
* ``orthority``      4 real oblique frames (30 deg) vs. the orthos of the other three frames.
* ``orthority-tags`` the same frames with what their own DJI tags state (gimbal heading and tilt, height
                     above take-off, calibrated focal length, no distortion), read as ``foenet localize``
                     reads them; versions without the tag reader skip it.

Usage::

    FOENET_DATA=/work/shared/data .venv/bin/python bench/bench_localize.py --cases banepa naip-2012-2019 \\
        --n-views 40 --baseline 9264abf --out bench/results/localize.json

The script uses only the public API that every version has, so ``--baseline REV`` runs this very
file against a ``git worktree`` of REV in a subprocess (its own index cache) and prints both.
Results: one JSON (per-frame records included) and a summary table on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("FOENET_IMPL_ROOT") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

from foenet_ros.geo import CameraIntrinsics, CameraPose, pose_from_opk, read_map  # noqa: E402
from foenet_ros.geo.render import render_view  # noqa: E402
from foenet_ros.index import IndexConfig, TileIndex, build_index  # noqa: E402
from foenet_ros.localize import Localizer, LocalizerConfig  # noqa: E402
from foenet_ros.utils import shared_data_dir  # noqa: E402

log = logging.getLogger("bench_localize")
CASES = ("banepa", "banepa-imu", "banepa-960", "banepa-flight", "naip-2012-2019", "naip-2019-2020", "naip-nir", "pix4d", "pix4d-12mp",
         "aerovloc", "orthority", "orthority-tags")
_SIG = set(inspect.signature(Localizer.localize).parameters)
#: --fine-methods (cfog / foenet): the dense features the indexes store and the Localizer correlates
FINE_METHODS: tuple[str, ...] | None = None


def index_config(*, fine_polish: bool = False, **kw) -> IndexConfig:
    """IndexConfig from ``kw``; ``fine_polish`` sets FineConfig.polish (a dense level at half the
    finest cell, which the Localizer's polish step uses)."""
    # fields an older version lacks (map_accuracy_m, dsm, fine: the baseline) are left out for it
    known = {f.name for f in dataclasses.fields(IndexConfig)}
    cfg = IndexConfig(**{k: v for k, v in kw.items() if k in known})
    if "fine" in known and (FINE_METHODS is not None or fine_polish):
        fine = cfg.fine
        if FINE_METHODS is not None:
            fine = fine.replace(methods=FINE_METHODS)
        if fine_polish:
            fine = fine.replace(polish=True)
        cfg = cfg.replace(fine=fine)
    return cfg


#: --frame-budget-ms: the Localizer's per-frame search budget (None: the library default, no budget)
FRAME_BUDGET_MS: float | None = None
#: --mount-sigma-deg: LocalizerConfig.mount_sigma_deg (the views have no mount error: 0 by default)
MOUNT_SIGMA_DEG: float = 0.0


def loc_config() -> LocalizerConfig:
    # the rendered views have no camera-mount error: the roll/pitch and heading given (with their
    # noise and sigma) are the camera's own, so the mount adds nothing (a version without the knob: skipped)
    kw: dict = {"mount_sigma_deg": MOUNT_SIGMA_DEG} if "mount_sigma_deg" in {f.name for f in dataclasses.fields(LocalizerConfig)} else {}
    if FINE_METHODS is not None:
        kw["fine_methods"] = FINE_METHODS
    if FRAME_BUDGET_MS is not None:
        kw["frame_budget_ms"] = FRAME_BUDGET_MS
    return LocalizerConfig(**kw)


# ---------------------------------------------------------------------------- helpers
def get_index(cache: Path, name: str, maps, encoder, config: IndexConfig) -> TileIndex:
    import hashlib

    # the configuration is part of the key: a cached index of another configuration (e.g. without
    # the surface model) must not stand in for this one
    key = hashlib.sha256(repr(config).encode()).hexdigest()[:8]
    out = cache / f"{name}-{key}"
    if out.exists():
        try:
            idx = TileIndex.load(out)
            idx.check_encoder(encoder)
            Localizer(idx, encoder, loc_config())  # an index this version can use
            return idx
        except Exception as exc:  # stale cache (another version / model): rebuild
            log.warning("rebuilding %s: %s", out, exc)
    t = time.perf_counter()
    build_index(maps, encoder, out, config, overwrite=True, progress=False)
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


def flight_poses(mp, n: int, alt: float, speed: float, rate: float, seed: int, margin_m: float):
    """A smooth flight: a random heading, gentle turns, altitude and attitude wobble."""
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = mp.bounds_xy
    x, y = (xmin + xmax) / 2 + rng.uniform(-1, 1) * 0.2 * (xmax - xmin), (ymin + ymax) / 2 + rng.uniform(-1, 1) * 0.2 * (ymax - ymin)
    track = rng.uniform(0, 360)
    poses = []
    for i in range(n):
        # steer back towards the middle when near an edge
        if not (xmin + margin_m < x < xmax - margin_m and ymin + margin_m < y < ymax - margin_m):
            to_c = math.degrees(math.atan2((xmin + xmax) / 2 - x, (ymin + ymax) / 2 - y))
            track += 0.3 * ((to_c - track + 180) % 360 - 180)
        track += rng.normal(0, 3.0)
        poses.append(CameraPose(float(x), float(y), float(alt * (1 + 0.03 * math.sin(i / 7.0))), float(track % 360),
                                float(3.0 + 2.0 * math.sin(i / 3.0)), float(1.5 * math.sin(i / 5.0 + 1.0))))
        x += speed / rate * math.sin(math.radians(track))
        y += speed / rate * math.cos(math.radians(track))
    return poses


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another camera / another hour: gamma, contrast, brightness, sensor noise and a little blur."""
    import cv2

    x = 255.0 * (img.astype(np.float32) / 255.0) ** rng.uniform(0.75, 1.35)
    x = (x - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-15, 15)
    x = cv2.GaussianBlur(x, (0, 0), 0.6) + rng.normal(0, 3.0, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def sensor_kwargs(pose: CameraPose, true_heading: float, rng, *, heading_sigma=None, attitude_sigma=None,
                  alt_sigma_frac=None) -> dict:
    """Noisy sensor readings for localize() (only the keywords this version understands)."""
    kw: dict = {}
    if heading_sigma is not None:
        kw["heading_deg"] = (true_heading + rng.normal(0, heading_sigma)) % 360.0
        if "heading_sigma_deg" in _SIG:
            kw["heading_sigma_deg"] = heading_sigma
    if attitude_sigma is not None:
        kw["attitude"] = (pose.roll_deg + rng.normal(0, attitude_sigma), pose.pitch_deg + rng.normal(0, attitude_sigma))
        if "attitude_sigma_deg" in _SIG:
            kw["attitude_sigma_deg"] = attitude_sigma
    if alt_sigma_frac is not None:
        kw["altitude_m"] = pose.alt_m * (1 + rng.normal(0, alt_sigma_frac))
        if "altitude_sigma_m" in _SIG:
            kw["altitude_sigma_m"] = alt_sigma_frac * pose.alt_m
    return kw


def run_views(name: str, loc: Localizer, mp, intr, poses, *, sequence: bool, render_map=None, sensors: dict | None = None,
              rate_hz: float = 1.0, band_to_rgb: bool = False) -> dict:
    records = []
    rng = np.random.default_rng(1234)
    srng = np.random.default_rng(99)
    loc.reset()
    for i, pose in enumerate(poses):
        img, valid = render_view(render_map or mp, intr, pose)
        if img.ndim == 2 or img.shape[2] == 1:  # a single band (near-infrared) shown as grey
            img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
        img = photometric(img, rng)
        if not sequence:
            loc.reset()
        true_heading = float(mp.frame.grid_to_true_heading(pose.heading_deg, pose.x, pose.y))
        kw = sensor_kwargs(pose, true_heading, srng, **(sensors or {}))
        t = time.perf_counter()
        est = loc.localize(img, camera=intr, stamp=i / rate_hz, **kw)
        wall = (time.perf_counter() - t) * 1000.0
        err = math.hypot(est.x - pose.x, est.y - pose.y) if est.has_fix else None
        rec = {"i": i, "status": est.status, "err_m": err, "sigma_m": est.sigma_m if math.isfinite(est.sigma_m) else None,
               "truth": [pose.x, pose.y, pose.alt_m, true_heading, pose.pitch_deg], "est": [est.x, est.y, est.alt_m, est.heading_deg],
               "timings_ms": dict(est.timings_ms, wall=wall), "search": est.pose.get("search"),
               "source": est.pose.get("source"), "model": est.pose.get("model"), "inliers": est.inliers,
               "valid_frac": float(valid.mean()),
               "diag": {k: v for k, v in est.pose.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}}
        if est.has_fix and math.isfinite(est.heading_deg):
            rec["heading_err_deg"] = abs((est.heading_deg - true_heading + 180) % 360 - 180)
        records.append(rec)
        log.info("%s %d: %s err=%s sigma=%.1f %s/%s %.0f ms", name, i, est.status,
                 None if err is None else round(err, 2), est.sigma_m, rec["source"], rec["model"], wall)
    return {"summary": summarize(records), "records": records}


def summarize(records: list[dict]) -> dict:
    n = len(records)
    ver = [r for r in records if r["status"] == "verified"]
    fixes = [r for r in records if r["err_m"] is not None and r["status"] in ("verified", "tracked")]
    errs = np.array([r["err_m"] for r in ver]) if ver else np.zeros(0)
    allerr = np.array([r["err_m"] if r["err_m"] is not None and r["status"] in ("verified", "tracked") else np.inf
                       for r in records])
    norm = np.array([r["err_m"] / r["sigma_m"] for r in fixes if r["sigma_m"]]) if fixes else np.zeros(0)
    stages = sorted({k for r in records for k in r["timings_ms"]})
    timing = {k: {"p50": float(np.percentile([r["timings_ms"].get(k, 0.0) for r in records], 50)),
                  "p99": float(np.percentile([r["timings_ms"].get(k, 0.0) for r in records], 99))} for k in stages} if n else {}
    warm = records[1:] if n > 2 else records
    track = [r["timings_ms"]["wall"] for r in records if r.get("search") == "track"]
    cold = [r["timings_ms"]["wall"] for r in records if r.get("search") and not str(r["search"]).startswith("track")]
    out = {
        "frames": n,
        "verified_share": len(ver) / n if n else 0.0,
        "within_3m_share": float(np.mean(allerr <= 3)) if n else 0.0,
        "within_5m_share": float(np.mean(allerr <= 5)) if n else 0.0,
        "within_10m_share": float(np.mean(allerr <= 10)) if n else 0.0,
        "within_25m_share": float(np.mean(allerr <= 25)) if n else 0.0,
        "median_err_m": float(np.median(errs)) if len(errs) else None,
        "p90_err_m": float(np.percentile(errs, 90)) if len(errs) else None,
        "max_err_m": float(errs.max()) if len(errs) else None,
        "within_2sigma_share": float(np.mean(norm <= 2.0)) if len(norm) else None,
        "beyond_5sigma": int(np.sum(norm > 5.0)),
        "median_sigma_m": float(np.median([r["sigma_m"] for r in ver])) if ver else None,
        "status_counts": {s: sum(r["status"] == s for r in records) for s in ("verified", "retrieval", "tracked", "lost")},
        "timings_ms": timing,
        "fps_p50": 1000.0 / max(np.percentile([r["timings_ms"]["wall"] for r in warm], 50), 1e-6) if n else None,
        "tracking_ms": {"frames": len(track), "p50": float(np.percentile(track, 50)), "p99": float(np.percentile(track, 99))}
        if track else None,
        "cold_ms": {"frames": len(cold), "p50": float(np.percentile(cold, 50)), "p99": float(np.percentile(cold, 99))}
        if cold else None,
    }
    return out


# ---------------------------------------------------------------------------- cases
def banepa_index(data, cache, encoder):
    path = data / "oam_banepa" / "banepa_z19_0.15m.tif"
    mp = read_map([path], gsd_m=0.3)
    cfg = index_config(hfov_deg=70, image_size=(640, 480), alt_range_m=(80, 150), max_tilt_deg=20, map_gsd_m=0.3)
    return mp, get_index(cache, "banepa_0.3m", mp, encoder, cfg)


def case_banepa(data, cache, encoder, n, seed, with_imu: bool, size: tuple[int, int] = (640, 480)) -> dict:
    """Cold starts anywhere on Banepa; ``size`` the frames' (w, h) at a 70 deg horizontal field."""
    mp, idx = banepa_index(data, cache, encoder)
    intr = CameraIntrinsics.from_hfov(70, *size)
    poses = random_poses(mp, n, (80, 150), (0, 20), seed, margin_m=120)
    loc = Localizer(idx, encoder, loc_config())
    sensors = {"attitude_sigma": 0.5, "alt_sigma_frac": 0.03} if with_imu else None
    name = "banepa" + ("-imu" if with_imu else "") + ("" if size == (640, 480) else f"-{size[0]}")
    return run_views(name, loc, mp, intr, poses, sequence=False, sensors=sensors)


def case_banepa_flight(data, cache, encoder, n, seed) -> dict:
    mp, idx = banepa_index(data, cache, encoder)
    intr = CameraIntrinsics.from_hfov(70, 960, 540)
    poses = flight_poses(mp, n, 110.0, 10.0, 2.0, seed, margin_m=150)
    loc = Localizer(idx, encoder, loc_config())
    return run_views("banepa-flight", loc, mp, intr, poses, sequence=True, rate_hz=2.0,
                     sensors={"heading_sigma": 2.0, "attitude_sigma": 0.5, "alt_sigma_frac": 0.03})


def case_naip(data, cache, encoder, n, seed, map_year: str, view_year: str, nir: bool = False) -> dict:
    root = data / "naip_nd_5m"
    files = sorted(root.glob("*.tif"))
    mfile = next(f for f in files if map_year in f.name)
    vfile = next(f for f in files if view_year in f.name)
    mp = read_map([mfile])
    view_map = read_map([vfile], frame=mp.frame, bands=[4] if nir else None)
    # a 5 m map seen from 1500 m: the finest dense level at 11.8 m cells is 2.4 map pixels; one more
    # level at 5.9 m (`build-index --fine-polish`) lets the polish step place the fix
    cfg = index_config(hfov_deg=70, image_size=(960, 540), alt_range_m=(1300, 1700), max_tilt_deg=10, map_accuracy_m=3.0,
                       fine_polish=True)
    idx = get_index(cache, f"naip_{map_year}_1500", [mfile], encoder, cfg)
    intr = CameraIntrinsics.from_hfov(70, 960, 540)
    poses = flight_poses(mp, n, 1500.0, 40.0, 1.0, seed, margin_m=1100)
    loc = Localizer(idx, encoder, loc_config())
    out = run_views(f"naip-{map_year}-{view_year}{'-nir' if nir else ''}", loc, mp, intr, poses, sequence=True,
                    render_map=view_map, rate_hz=1.0, sensors={"heading_sigma": 2.0, "attitude_sigma": 0.1, "alt_sigma_frac": 0.02})
    out["map"], out["views"] = mfile.name, vfile.name + (" (NIR band)" if nir else "")
    return out


def case_pix4d(data, cache, encoder, n, seed, photos: bool = False) -> dict:
    """Views of the Pix4D orthomosaic: 640x480, heading unknown; ``photos``: 12 MP nadir photos with
    compass and altimeter."""
    tif = sorted((data / "pix4d_bali_ortho").glob("*.tif"))[0]
    mp = read_map([tif])
    cfg = index_config(hfov_deg=70, image_size=(640, 480), alt_range_m=(40, 70), max_tilt_deg=15)
    idx = get_index(cache, "pix4d", [tif], encoder, cfg)
    loc = Localizer(idx, encoder, loc_config())
    if photos:
        intr = CameraIntrinsics.from_hfov(70, 4000, 3000)
        poses = random_poses(mp, n, (40, 70), (0, 5), seed + 1, margin_m=40)
        return run_views("pix4d-12mp", loc, mp, intr, poses, sequence=False,
                         sensors={"heading_sigma": 3.0, "alt_sigma_frac": 0.03})
    intr = CameraIntrinsics.from_hfov(70, 640, 480)
    poses = random_poses(mp, n, (40, 70), (0, 15), seed, margin_m=40)
    return run_views("pix4d", loc, mp, intr, poses, sequence=False)


def case_aerovloc(data, cache, encoder) -> dict:
    import cv2

    root = data / "aerovloc_pair"
    maps = [root / "map" / "0.png", root / "map" / "1.png"]
    idx = get_index(cache, "aerovloc", maps, encoder, index_config(scales_m=(80.0, 120.0, 180.0), map_accuracy_m=3.0))
    truth = {}
    for line in (root / "queries" / "queries.txt").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            truth[parts[0]] = (float(parts[1]), float(parts[2]))  # lon lat
    loc = Localizer(idx, encoder, loc_config())
    out = {}
    for name in ("0.jpg", "1.png"):
        img = cv2.cvtColor(cv2.imread(str(root / "queries" / name)), cv2.COLOR_BGR2RGB)
        lon, lat = truth[name]
        for variant, heading in (("heading_0", 0.0), ("heading_unknown", None)):
            loc.reset()
            t = time.perf_counter()
            est = loc.localize(img, heading_deg=heading)
            tx, ty = idx.frame.from_lonlat(lon, lat)
            err = math.hypot(est.x - tx, est.y - ty) if est.has_fix else None
            out[f"{name}/{variant}"] = {"status": est.status, "err_m": err, "sigma_m": est.sigma_m,
                                        "on_map": name == "0.jpg", "wall_ms": (time.perf_counter() - t) * 1000,
                                        "source": est.pose.get("source"), "model": est.pose.get("model")}
            log.info("aerovloc %s %s: %s err=%s sigma=%.1f", name, variant, est.status, err, est.sigma_m)
    return out


def case_orthority(data, cache, encoder, tags: bool = False) -> dict:
    """4 real oblique frames (30 deg pitch, 4 headings) vs. the ortho mosaic of the OTHER three frames;
    ``tags``: localised with the camera, heading, tilt and height their own tags state."""
    import csv

    import cv2
    import rasterio

    root = data / "orthority_odm"
    cam = next(iter(json.loads((root / "reconstruction.json").read_text())[0]["cameras"].values()))
    w, h = int(cam["width"]), int(cam["height"])
    s = max(w, h)  # OpenSfM normalises by the larger side, principal point relative to the centre
    intr = CameraIntrinsics(w, h, cam["focal_x"] * s, cam["focal_y"] * s, (w - 1) / 2 + cam["c_x"] * s,
                            (h - 1) / 2 + cam["c_y"] * s, (cam["k1"], cam["k2"], cam["p1"], cam["p2"], cam["k3"]))
    rows = list(csv.reader((root / "io" / "odm_xyz_opk.csv").read_text().splitlines(), delimiter=" ", quotechar="'"))
    gt = {r[0]: (float(r[1]), float(r[2]), float(r[3])) for r in rows[1:] if r}
    opk = {r[0]: tuple(float(v) for v in r[1:7]) for r in rows[1:] if r}
    with rasterio.open(root / "dsm.tif") as ds:
        ground_z = float(ds.read(1, masked=True).mean())
    truth_heading = {n: pose_from_opk(*v, ground_z=ground_z).heading_deg for n, v in opk.items()}
    out = {"frames": {}}
    for name, (x, y, z) in gt.items():
        others = [root / "ortho" / f"{o}_ORTHO.tif" for o in gt if o != name]
        alt = z - ground_z
        cfg = index_config(hfov_deg=intr.hfov_deg, image_size=(w, h), alt_range_m=(alt * 0.8, alt * 1.2),
                          max_tilt_deg=30, min_valid=0.3, map_accuracy_m=0.5)
        if "dsm" in {f.name for f in dataclasses.fields(IndexConfig)}:  # this version knows surface models
            cfg = cfg.replace(dsm=str(root / "dsm.tif"))
        idx = get_index(cache, f"orthority_not_{name}", others, encoder, cfg)
        img = cv2.cvtColor(cv2.imread(str(root / "images" / f"{name}.tif")), cv2.COLOR_BGR2RGB)
        loc = Localizer(idx, encoder, loc_config())
        t = time.perf_counter()
        if tags:
            from foenet_ros.commands.localize import sensors_for_photo
            from foenet_ros.geo.photo_metadata import photo_metadata

            meta = photo_metadata(root / "images" / f"{name}.tif", img.shape[1], img.shape[0])
            sensors = sensors_for_photo({"heading_deg": None, "attitude": None, "altitude_m": None}, meta, None)
            est = loc.localize(img, **sensors)
        else:
            est = loc.localize(img, camera=intr)
        err = math.hypot(est.x - x, est.y - y) if est.has_fix else None
        out["frames"][name] = {"status": est.status, "err_m": err, "sigma_m": est.sigma_m, "alt_est_m": est.alt_m,
                               "alt_true_m": alt, "wall_ms": (time.perf_counter() - t) * 1000,
                               "heading_err_deg": _angle_diff(est.heading_deg, truth_heading[name]) if est.has_fix else None,
                               "source": est.pose.get("source"), "model": est.pose.get("model")}
        log.info("orthority %s: %s err=%s sigma=%.1f", name, est.status, err, est.sigma_m)
    errs = [f["err_m"] for f in out["frames"].values() if f["status"] == "verified" and f["err_m"] is not None]
    out["summary"] = {"verified": len(errs), "frames": len(gt), "within_5m": sum(e <= 5 for e in errs),
                      "max_err_m": max(errs) if errs else None}
    return out


def run_cases(args) -> dict:
    import torch

    from foenet_ros.model import Encoder, load_checkpoint, load_default_model

    torch.set_num_threads(args.threads)
    data = shared_data_dir()
    model = load_default_model() if args.model is None else load_checkpoint(args.model)
    encoder = Encoder(model, device=args.device, batch_size=16)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    results = {"env": {"impl_root": str(ROOT), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                       "loadavg_start": os.getloadavg(), "model": encoder.fingerprint,
                       "frame_budget_ms": FRAME_BUDGET_MS, "mount_sigma_deg": MOUNT_SIGMA_DEG}}
    for case in args.cases:
        t = time.perf_counter()
        if case in ("banepa", "banepa-imu"):
            results[case] = case_banepa(data, cache, encoder, args.n_views, args.seed, case == "banepa-imu")
        elif case == "banepa-960":
            results[case] = case_banepa(data, cache, encoder, args.n_views, args.seed, False, size=(960, 540))
        elif case == "banepa-flight":
            results[case] = case_banepa_flight(data, cache, encoder, args.n_frames, args.seed)
        elif case == "naip-2012-2019":
            results[case] = case_naip(data, cache, encoder, args.n_frames, args.seed, "2012", "2019")
        elif case == "naip-2019-2020":
            results[case] = case_naip(data, cache, encoder, args.n_frames, args.seed, "2019", "2020")
        elif case == "naip-nir":
            results[case] = case_naip(data, cache, encoder, args.n_frames, args.seed, "2019", "2020", nir=True)
        elif case == "pix4d":
            results[case] = case_pix4d(data, cache, encoder, args.n_views, args.seed)
        elif case == "pix4d-12mp":
            results[case] = case_pix4d(data, cache, encoder, args.n_views, args.seed, photos=True)
        elif case == "aerovloc":
            results[case] = case_aerovloc(data, cache, encoder)
        elif case == "orthority":
            results[case] = case_orthority(data, cache, encoder)
        elif case == "orthority-tags":
            if not (ROOT / "foenet_ros" / "geo" / "photo_metadata.py").exists():
                log.warning("orthority-tags skipped: this version reads no photo tags")
                continue
            results[case] = case_orthority(data, cache, encoder, tags=True)
        results[case]["wall_s"] = time.perf_counter() - t
    results["env"]["loadavg_end"] = os.getloadavg()
    return results


# ---------------------------------------------------------------------------- baseline + report
def run_baseline(rev: str, args) -> dict:
    """Run this script against a git worktree of ``rev`` in a subprocess; return its results."""
    repo = Path(__file__).resolve().parents[1]
    wt = Path(tempfile.gettempdir()) / f"foenet_baseline_{rev}"
    if not wt.exists():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(wt), rev], check=True,
                       stdout=subprocess.DEVNULL)
    out = Path(tempfile.gettempdir()) / f"foenet_baseline_{rev}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cases", *args.cases, "--n-views", str(args.n_views),
           "--n-frames", str(args.n_frames), "--seed", str(args.seed), "--cache", str(Path(args.cache) / f"baseline_{rev}"),
           "--out", str(out), "--device", args.device, "--threads", str(args.threads)]
    env = dict(os.environ, FOENET_IMPL_ROOT=str(wt), PYTHONPATH=str(wt))
    subprocess.run(cmd, check=True, env=env)
    return json.loads(out.read_text())


def table(results: dict, baseline: dict | None) -> str:
    rows = ["| case | version | frames | verified | within 3 / 5 / 10 / 25 m | median / p90 / max err (m) | within 2 sigma | > 5 sigma | p50 / p99 ms | FPS |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for case, res in results.items():
        if case == "env":
            continue
        for label, r in (("baseline", (baseline or {}).get(case)), ("new", res)):
            if not r:
                continue
            s = r.get("summary")
            if s and "frames" in s and "timings_ms" in s:
                rows.append(f"| {case} | {label} | " + _row(s) + " |")
            else:
                items = r.get("frames", r) if isinstance(r.get("frames", r), dict) else r
                desc = "; ".join(f"{k}: {v.get('status')} {_err(v.get('err_m'))}"
                                 for k, v in items.items() if isinstance(v, dict) and "status" in v)
                rows.append(f"| {case} | {label} | {desc} |")
    return "\n".join(rows)


def speed_table(results: dict, baseline: dict | None) -> str:
    """Per case and version: tracking vs cold-start wall time (p50 / p99) and the stages' p50 / p99."""
    rows = ["| case | version | tracking frames: p50 / p99 ms (FPS) | cold frames: p50 / p99 ms (FPS) | stages p50 / p99 ms |",
            "|---|---|---|---|---|"]
    for case, res in results.items():
        for label, r in (("baseline", (baseline or {}).get(case)), ("new", res)):
            s = (r or {}).get("summary") if isinstance(r, dict) else None
            if not s or "timings_ms" not in s:
                continue

            def mode(key):
                t = s.get(key)
                return "-" if not t else f"{t['frames']}: {t['p50']:.0f} / {t['p99']:.0f} ({1000 / max(t['p50'], 1e-6):.1f})"

            stages = ", ".join(f"{k} {v['p50']:.0f}/{v['p99']:.0f}" for k, v in s["timings_ms"].items()
                               if k not in ("wall", "total") and v["p99"] >= 0.5)
            rows.append(f"| {case} | {label} | {mode('tracking_ms')} | {mode('cold_ms')} | {stages} |")
    return "\n".join(rows)


def _angle_diff(a: float, b: float) -> float:
    """Signed a - b wrapped to [-180, 180) degrees."""
    return (a - b + 180.0) % 360.0 - 180.0


def _err(e) -> str:
    return "" if e is None else f"{e:.1f} m"


def _row(s: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.0f} %"

    def m(v):
        return "-" if v is None else f"{v:.2f}"

    t = s["timings_ms"].get("wall", {})
    return " | ".join([
        str(s["frames"]), pct(s["verified_share"]),
        " / ".join(f"{100 * s[k]:.0f}" for k in ("within_3m_share", "within_5m_share", "within_10m_share", "within_25m_share")) + " %",
        f"{m(s['median_err_m'])} / {m(s['p90_err_m'])} / {m(s['max_err_m'])}", pct(s["within_2sigma_share"]),
        str(s["beyond_5sigma"]), f"{t.get('p50', 0):.0f} / {t.get('p99', 0):.0f}", f"{s['fps_p50']:.1f}"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["banepa", "banepa-flight", "naip-2012-2019", "aerovloc", "orthority"],
                    choices=CASES)
    ap.add_argument("--n-views", type=int, default=40, help="independent views per cold-start case")
    ap.add_argument("--n-frames", type=int, default=60, help="frames per flight case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/foenet_bench_cache", help="where indexes are built/cached")
    ap.add_argument("--out", default="bench/results/localize.json")
    ap.add_argument("--model", default=None, help="checkpoint (default: bundled default model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target machine has 2 cores)")
    ap.add_argument("--fine-methods", nargs="+", default=None, choices=["cfog", "foenet"],
                    help="dense features of the fine stage (default: the version's default; foenet needs --model with an overlap head)")
    ap.add_argument("--frame-budget-ms", type=float, default=None,
                    help="the Localizer's per-frame search budget, ms (default: the library's, none; the node's config "
                         "sets 1500)")
    ap.add_argument("--mount-sigma-deg", type=float, default=0.0,
                    help="LocalizerConfig.mount_sigma_deg (default 0: the rendered views have no camera-mount error; "
                         "the library's default is 0.5)")
    ap.add_argument("--baseline", default=None, help="git revision to run side by side (e.g. 9264abf)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    global FINE_METHODS, FRAME_BUDGET_MS, MOUNT_SIGMA_DEG
    FINE_METHODS = tuple(args.fine_methods) if args.fine_methods else None
    FRAME_BUDGET_MS = args.frame_budget_ms
    MOUNT_SIGMA_DEG = args.mount_sigma_deg
    if shared_data_dir() is None:
        print("set FOENET_DATA to the shared data folder", file=sys.stderr)
        return 2
    baseline = run_baseline(args.baseline, args) if args.baseline else None
    results = run_cases(args)
    if baseline is not None:
        results["baseline"] = baseline
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(table({k: v for k, v in results.items() if k != "baseline"}, baseline))
    print()
    print(speed_table({k: v for k, v in results.items() if k not in ("baseline", "env")}, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
