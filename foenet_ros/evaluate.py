"""Retrieval evaluation: encode queries and gallery, exact FAISS search, :mod:`foenet_ros.metrics`.

Evaluation sets:

* ``university1652`` (also SUES-200 / DenseUAV folders): a test protocol, ``drone2sat`` or
  ``sat2drone``; positives = same building id.
* geo-referenced held-out maps (``banepa``, ``naip``, ``naip-nir``, ``pix4d``, or any
  ``map:<file>``): the gallery is a grid of north-up tiles of one raster, the queries are drone
  views rendered (tilted pinhole camera, heading jitter, appearance change) from the same or
  another raster of the same ground; positives = tiles whose centre lies within ``radius_m`` of
  the query's ground point, and distance-based recall / SDM@K come for free.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .data.augment import EVAL_PHOTOMETRIC, PhotometricConfig, photometric
from .data.common import read_image_rgb
from .errors import DatasetError
from .metrics import geo_retrieval_metrics, positives_from_labels, retrieval_metrics, similarity_exact

log = logging.getLogger(__name__)

KS = (1, 5, 10)


@dataclass(frozen=True)
class QueryConfig:
    """How evaluation queries are rendered from a map (a heading-up drone camera, as the Localizer
    feeds the encoder after rotating frames with the compass heading).

    Attributes:
        n_queries: number of query views.
        heading_jitter_deg: heading error, uniform in +-jitter (compass error).
        max_pitch_deg: forward tilt up to this angle.
        scale_range: nadir footprint / tile size (altitude error).
        hfov_deg: field of view of the virtual camera.
        min_valid: minimum fraction of real map pixels in a query.
        photometric: appearance change of the queries.
    """

    n_queries: int = 300
    heading_jitter_deg: float = 15.0
    max_pitch_deg: float = 20.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    hfov_deg: float = 60.0
    min_valid: float = 0.95
    photometric: PhotometricConfig = EVAL_PHOTOMETRIC


@dataclass
class EvalSet:
    """Queries and gallery of one evaluation, as images or as files (read batch by batch).

    Exactly one of ``positives`` / (``query_labels``, ``gallery_labels``) / (``query_xy``,
    ``gallery_xy``, ``radius_m``) defines the true matches.
    """

    name: str
    description: dict[str, Any]
    queries: Sequence[np.ndarray] | None = None
    gallery: Sequence[np.ndarray] | None = None
    query_paths: Sequence[Path] | None = None
    gallery_paths: Sequence[Path] | None = None
    query_labels: Sequence[Any] | None = None
    gallery_labels: Sequence[Any] | None = None
    query_xy: np.ndarray | None = None
    gallery_xy: np.ndarray | None = None
    radius_m: float | None = None


# ------------------------------------------------------------------------------------ raster sets
def tile_grid(raster, tile_size_m: float, stride_m: float, out_px: int, min_valid: float = 0.7):
    """North-up gallery tiles on a regular grid: ``(images, centres_xy[N,2])``; tiles with less
    than ``min_valid`` real pixels are dropped."""
    xmin, ymin, xmax, ymax = raster.bounds_xy
    half = tile_size_m / 2.0
    xs = np.arange(xmin + half, xmax - half + 1e-6, stride_m)
    ys = np.arange(ymax - half, ymin + half - 1e-6, -stride_m)
    images, centres = [], []
    for y in ys:
        for x in xs:
            img, valid = raster.crop((x, y), tile_size_m, out_px)
            if valid.mean() >= min_valid:
                images.append(_rgb3(img))
                centres.append((x, y))
    if not images:
        raise DatasetError(f"map {raster.name}: no {tile_size_m} m tile has {min_valid:.0%} valid pixels")
    return images, np.asarray(centres, dtype=np.float64)


def _rgb3(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def render_queries(query_map, tile_size_m: float, out_px: int, cfg: QueryConfig, seed: int, inside=None):
    """Rendered drone views of ``query_map``: ``(images, ground_xy[N,2], poses)``.

    ``ground_xy`` is where the optical axis meets the ground (the view's centre). ``inside`` is an
    optional ``(xmin, ymin, xmax, ymax)`` box the ground points must lie in (the gallery's extent).
    """
    from .geo import CameraIntrinsics, CameraPose, ground_to_image_homography

    rng = np.random.default_rng(seed)
    intr = CameraIntrinsics.from_hfov(cfg.hfov_deg, out_px, out_px)
    xmin, ymin, xmax, ymax = inside or query_map.bounds_xy
    half = tile_size_m / 2.0
    images, xy, poses = [], [], []
    tries = 0
    while len(images) < cfg.n_queries:
        tries += 1
        if tries > 50 * cfg.n_queries:
            raise DatasetError(f"map {query_map.name}: could only render {len(images)} valid queries of {cfg.n_queries}")
        aim = np.array([rng.uniform(xmin + half, xmax - half), rng.uniform(ymin + half, ymax - half)])
        heading = rng.uniform(-cfg.heading_jitter_deg, cfg.heading_jitter_deg) % 360.0
        pitch = rng.uniform(0.0, cfg.max_pitch_deg)
        scale = rng.uniform(*cfg.scale_range)
        alt = tile_size_m * scale / (2.0 * math.tan(math.radians(cfg.hfov_deg) / 2.0))
        h = math.radians(heading)
        cam = aim - alt * math.tan(math.radians(pitch)) * np.array([math.sin(h), math.cos(h)])
        pose = CameraPose(float(cam[0]), float(cam[1]), float(alt), float(heading), float(pitch), 0.0)
        H = ground_to_image_homography(intr, pose)
        img, valid = query_map.warp(H, (out_px, out_px), tile_size_m * scale / out_px, perspective=True)
        if valid.mean() < cfg.min_valid:
            continue
        images.append(photometric(_rgb3(img), rng, cfg.photometric))
        xy.append(aim)
        poses.append(pose)
    return images, np.asarray(xy), poses


def raster_eval_set(
    name: str, query_map, gallery_map, tile_size_m: float, out_px: int, *, stride_frac: float = 0.5,
    qcfg: QueryConfig = QueryConfig(), seed: int = 0, description: dict | None = None,
) -> EvalSet:
    """Gallery = tile grid of ``gallery_map`` (stride ``stride_frac * tile``); queries rendered from
    ``query_map``; positives within half a tile of the query's ground point."""
    gallery, gxy = tile_grid(gallery_map, tile_size_m, tile_size_m * stride_frac, out_px)
    gb = gallery_map.bounds_xy
    qb = query_map.bounds_xy
    inside = (max(gb[0], qb[0]), max(gb[1], qb[1]), min(gb[2], qb[2]), min(gb[3], qb[3]))
    queries, qxy, _ = render_queries(query_map, tile_size_m, out_px, qcfg, seed, inside)
    desc = {
        "type": "rendered-views-vs-tiles",
        "query_map": query_map.name,
        "gallery_map": gallery_map.name,
        "tile_size_m": tile_size_m,
        "tile_stride_m": tile_size_m * stride_frac,
        "radius_m": tile_size_m / 2.0,
        "queries": len(queries),
        "gallery": len(gallery),
        "query_render": {k: v for k, v in qcfg.__dict__.items() if k != "photometric"},
        "seed": seed,
        **(description or {}),
    }
    return EvalSet(name, desc, queries=queries, gallery=gallery, query_xy=qxy, gallery_xy=gxy, radius_m=tile_size_m / 2.0)


#: Held-out evaluation maps of the shared data: name -> (description, builder(root, out_px, seed, qcfg)).
def _banepa(root: Path, out_px: int, seed: int, qcfg: QueryConfig) -> EvalSet:
    from .data.shared import BANEPA_MAP
    from .geo import read_map

    m = read_map(root / BANEPA_MAP, gsd_m=0.3)
    return raster_eval_set("banepa", m, m, 80.0, out_px, qcfg=qcfg, seed=seed,
                           description={"place": "Banepa, Nepal (OpenAerialMap orthomosaic, read at 0.3 m)", "held_out": True})


def _naip(root: Path, out_px: int, seed: int, qcfg: QueryConfig, nir: bool = False) -> EvalSet:
    from .data.shared import read_naip

    q = read_naip(root, 2020 if nir else 2019, "nir" if nir else "rgb")
    g = read_naip(root, 2020, "rgb")
    what = "NIR band of 2020 (single channel) vs RGB tiles of 2020" if nir else "RGB 2019 views vs RGB 2020 tiles"
    qc = replace(qcfg, photometric=replace(qcfg.photometric, p_color=0.0)) if nir else qcfg
    return raster_eval_set("naip-nir" if nir else "naip", q, g, 500.0, out_px, qcfg=qc, seed=seed,
                           description={"place": "North Dakota NAIP (held-out years 2019/2020), 5 m", "pairs": what, "held_out": True})


def _pix4d(root: Path, out_px: int, seed: int, qcfg: QueryConfig) -> EvalSet:
    from .data.shared import PIX4D_MAP
    from .geo import read_map

    m = read_map(root / PIX4D_MAP)
    return raster_eval_set("pix4d", m, m, 50.0, out_px, qcfg=replace(qcfg, n_queries=min(qcfg.n_queries, 150)), seed=seed,
                           description={"place": "Bali drone orthomosaic (Pix4D), 0.35 m", "held_out": True})


HELDOUT_SETS: dict[str, Callable[..., EvalSet]] = {
    "banepa": _banepa,
    "naip": _naip,
    "naip-nir": lambda root, out_px, seed, qcfg: _naip(root, out_px, seed, qcfg, nir=True),
    "pix4d": _pix4d,
}


def build_eval_set(spec: str, out_px: int, *, seed: int = 0, qcfg: QueryConfig = QueryConfig(),
                   data_root: str | Path | None = None, protocol: str = "drone2sat", tile_size_m: float | None = None) -> EvalSet:
    """An evaluation set from a spec string.

    ``banepa`` | ``naip`` | ``naip-nir`` | ``pix4d`` (shared data, ``data_root`` or ``$FOENET_DATA``);
    ``university1652:<root>`` (``protocol`` drone2sat | sat2drone);
    ``map:<file>`` (queries rendered from that map against its own tiles, ``tile_size_m`` default 80).
    """
    if spec in HELDOUT_SETS:
        from .data.shared import require_data_root

        return HELDOUT_SETS[spec](require_data_root(data_root), out_px, seed, qcfg)
    kind, _, arg = spec.partition(":")
    if kind in ("university1652", "u1652") and arg:
        from .data.university1652 import load_test_split

        split = load_test_split(arg, protocol)
        return EvalSet(
            f"university1652-{protocol}", split.describe(), query_paths=split.query.paths,
            gallery_paths=split.gallery.paths, query_labels=split.query.labels, gallery_labels=split.gallery.labels,
        )
    if kind == "map" and arg:
        from .geo import read_map

        m = read_map(arg)
        return raster_eval_set(Path(arg).stem, m, m, tile_size_m or 80.0, out_px, qcfg=qcfg, seed=seed,
                               description={"map": str(arg)})
    raise DatasetError(
        f"unknown evaluation set {spec!r}; valid: {sorted(HELDOUT_SETS)}, university1652:<folder>, map:<geotiff>"
    )


# ------------------------------------------------------------------------------------ encode + score
def _encode_files(encoder, paths: Sequence[Path], labels: Sequence[Any], branch: str, what: str):
    """Encode image files batch by batch; unreadable ones are skipped and counted in the log."""
    from tqdm import tqdm

    out, keep, skipped = [], [], []
    bs = max(1, int(getattr(encoder, "batch_size", 32)))
    for start in tqdm(range(0, len(paths), bs), desc=f"encode {what}", unit="batch", leave=False):
        imgs, labs = [], []
        for p, lab in zip(paths[start : start + bs], labels[start : start + bs]):
            img = read_image_rgb(p)
            if img is None:
                skipped.append(p)
                continue
            imgs.append(img)
            labs.append(lab)
        if imgs:
            out.append(encoder.encode(imgs, branch=branch))
            keep.extend(labs)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s) of %d, e.g. %s", what, len(skipped), len(paths), [str(s) for s in skipped[:3]])
    if not out:
        raise DatasetError(f"{what}: none of {len(paths)} images could be read")
    return np.concatenate(out), keep, len(skipped)


def evaluate_set(encoder, es: EvalSet, ks: Sequence[int] = KS) -> dict[str, Any]:
    """Encode ``es`` with ``encoder`` (an :class:`~foenet_ros.model.Encoder`) and compute its metrics.

    Returns a JSON-able dict: ``metrics`` (percentages), ``description``, counts and timings.
    """
    t0 = time.time()
    skipped = {"queries": 0, "gallery": 0}
    if es.query_paths is not None:
        q, qlab, skipped["queries"] = _encode_files(encoder, es.query_paths, es.query_labels, "drone", f"{es.name} queries")
        g, glab, skipped["gallery"] = _encode_files(encoder, es.gallery_paths, es.gallery_labels, "satellite", f"{es.name} gallery")
    else:
        q = encoder.encode(es.queries, branch="drone")
        g = encoder.encode(es.gallery, branch="satellite")
        qlab, glab = es.query_labels, es.gallery_labels
    t_enc = time.time() - t0
    sim = similarity_exact(q, g)
    if es.query_xy is not None:
        res = geo_retrieval_metrics(sim, es.query_xy, es.gallery_xy, es.radius_m, ks)
    else:
        res = retrieval_metrics(sim, positives_from_labels(qlab, glab), ks)
    return {
        "name": es.name,
        "description": es.description,
        "n_queries": int(q.shape[0]),
        "n_gallery": int(g.shape[0]),
        "skipped_unreadable": skipped,
        "top1pct_k": res.top1pct_k,
        "metrics": {k: round(float(v), 3) for k, v in res.summary().items()},
        "encode_s": round(t_enc, 2),
        "encode_img_per_s": round((q.shape[0] + g.shape[0]) / max(t_enc, 1e-9), 1),
    }


def model_info(model) -> dict[str, Any]:
    """The identity of the evaluated model for the JSON report."""
    cfg = model.config
    return {
        "fingerprint": model.fingerprint(),
        "preset": cfg.preset,
        "backbone": cfg.backbone,
        "use_osm": cfg.use_osm,
        "input_size": cfg.input_size,
        "descriptor_dim": model.out_dim,
    }


def format_table(reports: Sequence[dict[str, Any]], columns: Sequence[str] = ("R@1", "R@5", "R@10", "R@1%", "AP", "SDM@1", "top1_err_m")) -> str:
    """A plain-text table of several set reports (one row each)."""
    head = ["set", "queries", "gallery", *columns]
    rows = [head]
    for r in reports:
        m = r["metrics"]
        rows.append([r["name"], str(r["n_queries"]), str(r["n_gallery"])] + [
            (f"{m[c]:.1f}" if c in m else "-") for c in columns
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
