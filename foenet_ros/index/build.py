"""``build_index``: map rasters -> multi-scale tiles -> FOENet descriptors -> one index directory.

Resumable: descriptors are encoded in chunks and checkpointed in ``<out_dir>.partial/``; a rerun
with the same map, tiles and model skips the chunks already done. Atomic: the directory is
assembled in ``<out_dir>.tmp-*`` and renamed into place only when complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
import numpy as np

from ..errors import ConfigError, EmptyIndexError
from ..utils import atomic_replace_dir, make_tmp_dir, recover_dir
from . import faiss_store
from .config import IndexConfig
from .fine import build_fine, fine_extractors
from .manifest import (
    FAISS_FILE,
    FORMAT_VERSION,
    MAP_FILE,
    MASK_FILE,
    TILES_FILE,
    sha256_file,
    write_manifest,
)

log = logging.getLogger(__name__)

def resolve_scales(config: IndexConfig) -> list[float]:
    """Tile side lengths (metres): the configured ones, or those the camera model implies."""
    if config.scales_m is not None:
        return sorted(float(s) for s in config.scales_m)
    from ..geo import CameraIntrinsics, tile_scales_for_camera

    w, h = config.image_size
    intr = CameraIntrinsics.from_hfov(config.hfov_deg, w, h)
    return sorted(float(s) for s in tile_scales_for_camera(intr, config.alt_range_m, config.max_tilt_deg))


def build_index(maps, encoder, out_dir: str | os.PathLike, config: IndexConfig, *,
                overwrite: bool = False, progress: bool = True) -> Path:
    """Build a tile index of ``maps`` with ``encoder`` into the directory ``out_dir``; return its path.

    Args:
        maps: one map path, a list of paths (mosaicked by georeference), or a loaded ``MapRaster``.
        encoder: a :class:`foenet_ros.model.Encoder` (its fingerprint and input size go in the manifest).
        out_dir: the index directory to create.
        config: tiling and FAISS settings.
        overwrite: replace an existing ``out_dir`` (otherwise :class:`ConfigError`).
        progress: show a tqdm bar while encoding.

    Raises:
        RasterError: a map is unreadable or not georeferenced (from ``geo.read_map``).
        EmptyIndexError: no tile of the requested sizes fits on the map's valid pixels.
        ConfigError: ``out_dir`` exists and ``overwrite`` is False.
    """
    from tqdm.auto import tqdm

    from ..geo import MapRaster, make_tiles, read_map

    out_dir = Path(out_dir)
    recover_dir(out_dir)  # a build killed mid-swap left out_dir missing / stale copies: repair first
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; pass overwrite=True (CLI: --force) or choose another --out")

    source_files: list[Path] = []
    if isinstance(maps, MapRaster):
        raster = maps
    else:
        paths = [maps] if isinstance(maps, (str, os.PathLike)) else list(maps)
        source_files = [Path(p) for p in paths]
        raster = read_map(source_files, gsd_m=config.map_gsd_m)

    scales = resolve_scales(config)
    tiles = make_tiles(raster, scales, overlap=config.overlap, min_valid=config.min_valid)
    n = len(tiles.centers_xy)
    if n == 0:
        xmin, ymin, xmax, ymax = raster.bounds_xy
        raise EmptyIndexError(
            f"no tile of sizes {scales} m fits on map {raster.name!r} ({xmax - xmin:.0f} x {ymax - ymin:.0f} m, "
            f"min valid fraction {config.min_valid}): use smaller tile sizes (--scales-m / --alt-range) "
            "or lower min_valid"
        )
    tile_px = int(config.tile_px or encoder.input_size)
    log.info("map %s: %d x %d px at %.3f m/px, %d tiles at scales %s m", raster.name, raster.image.shape[1],
             raster.image.shape[0], raster.gsd_m, n, [round(s, 1) for s in scales])

    # --- encode in checkpointed chunks (resumable) ---------------------------------------
    key = _build_key(encoder.fingerprint, tile_px, tiles, raster)
    partial = out_dir.with_name(out_dir.name + ".partial")
    _prepare_partial(partial, key)
    chunk = int(config.chunk_tiles)
    n_chunks = (n + chunk - 1) // chunk
    done = sum(1 for c in range(n_chunks) if (partial / f"chunk_{c:05d}.npy").is_file())
    if done:
        log.info("resuming: %d of %d chunks already encoded in %s", done, n_chunks, partial)
    bar = tqdm(total=n, desc="encoding tiles", unit="tile", disable=not progress, initial=min(done * chunk, n))
    parts = []
    for c in range(n_chunks):
        path = partial / f"chunk_{c:05d}.npy"
        lo, hi = c * chunk, min(n, (c + 1) * chunk)
        if path.is_file():
            desc = np.load(path, allow_pickle=False)
            if desc.shape == (hi - lo, encoder.dim):
                parts.append(desc)
                continue
        crops = [raster.crop(tuple(tiles.centers_xy[i]), float(tiles.size_m[i]), tile_px)[0] for i in range(lo, hi)]
        desc = np.empty((hi - lo, encoder.dim), np.float32)
        for b in range(0, hi - lo, config.batch_size):
            desc[b : b + config.batch_size] = encoder.encode(crops[b : b + config.batch_size], branch="satellite")
            bar.update(min(config.batch_size, hi - lo - b))
        _save_npy_atomic(path, desc)
        parts.append(desc)
    bar.close()
    descriptors = np.concatenate(parts, axis=0)

    # --- assemble the directory in a temp dir, then rename ------------------------------
    tmp = make_tmp_dir(out_dir)
    try:
        index, params = faiss_store.make_index(
            descriptors, config.index_type, hnsw_m=config.hnsw_m, hnsw_ef_search=config.hnsw_ef_search,
            ivf_nlist=config.ivf_nlist, ivf_nprobe=config.ivf_nprobe)
        faiss_store.write(index, tmp / FAISS_FILE)
        np.savez(tmp / TILES_FILE, **tiles.to_arrays())
        copy_meta = _write_map_copy(raster, tmp, config)
        # the fine stage's map side: dense feature grids + keypoints, computed once, here
        fine_entry = build_fine(raster, tmp, config.fine, scales, fine_extractors(config.fine, encoder),
                                progress=progress, dsm=config.dsm)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "fingerprint": encoder.fingerprint,
                "name": getattr(getattr(encoder, "config", None), "preset", None),
                "input_size": int(encoder.input_size),
                "descriptor_dim": int(encoder.dim),
            },
            "frame": raster.frame.to_json(),
            "map": {
                "name": raster.name,
                "gsd_m": float(raster.gsd_m),
                "bounds_xy": [float(v) for v in raster.bounds_xy],
                "size_px": [int(raster.image.shape[1]), int(raster.image.shape[0])],
                "accuracy_m": float(config.map_accuracy_m),
            },
            "maps": [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size}
                     for p in source_files if p.is_file()],
            "map_copy": copy_meta,
            "tiles": {
                "count": n,
                "scales_m": scales,
                "count_per_scale": [int(np.sum(tiles.scale_idx == i)) for i in range(len(scales))],
                "overlap": config.overlap,
                "min_valid": config.min_valid,
                "tile_px": tile_px,
            },
            "faiss": {"type": config.index_type, "metric": "inner_product", "params": params},
            "config": config.to_json(),
            "fine": fine_entry,
        }
        write_manifest(tmp, manifest)  # adds the size + sha256 of every file and the manifest's checksum
        atomic_replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(partial, ignore_errors=True)
    log.info("wrote index %s (%d tiles, %s)", out_dir, n, config.index_type)
    return out_dir


# ---------------------------------------------------------------------- helpers
def _build_key(fingerprint: str, tile_px: int, tiles, raster) -> str:
    """Identity of an encoding job: a partial checkpoint is reused only for the same key."""
    h = hashlib.sha256()
    h.update(f"{fingerprint}|{tile_px}|{raster.image.shape}|{tuple(raster.transform)[:6]}|{raster.frame.to_json()}".encode())
    h.update(np.ascontiguousarray(tiles.centers_xy, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(tiles.size_m, dtype=np.float64).tobytes())
    # a cheap content sample: every 97th row of the image
    h.update(np.ascontiguousarray(raster.image[::97]).tobytes())
    return h.hexdigest()[:32]


def _prepare_partial(partial: Path, key: str) -> None:
    state = partial / "state.json"
    if partial.is_dir():
        try:
            same = json.loads(state.read_text()).get("key") == key
        except (OSError, ValueError):
            same = False
        if not same:
            log.info("discarding stale partial build %s", partial)
            shutil.rmtree(partial)
    if not partial.is_dir():
        partial.mkdir(parents=True)
        state.write_text(json.dumps({"key": key}))


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)


def _write_map_copy(raster, out: Path, config: IndexConfig) -> dict:
    """Write the (downsampled) GeoTIFF copy of the map + its mask; return the manifest entry."""
    import cv2
    import rasterio
    from affine import Affine

    h, w = raster.image.shape[:2]
    factor = 1.0
    if config.map_copy_gsd_m:
        factor = max(factor, config.map_copy_gsd_m / raster.gsd_m)
    factor = max(factor, float(np.sqrt(h * w / config.map_copy_max_px)))
    if factor > 1.0 + 1e-6:
        w2, h2 = max(1, int(round(w / factor))), max(1, int(round(h / factor)))
        image = cv2.resize(raster.image[:, :, :3], (w2, h2), interpolation=cv2.INTER_AREA)
        valid = cv2.resize(raster.valid.astype(np.uint8), (w2, h2), interpolation=cv2.INTER_NEAREST) > 0
    else:
        w2, h2 = w, h
        image, valid = raster.image[:, :, :3], raster.valid
    transform = raster.transform @ Affine.scale(w / w2, h / h2)
    profile = dict(driver="GTiff", width=w2, height=h2, count=3, dtype="uint8", crs=raster.frame.to_rasterio(),
                   transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="jpeg",
                   photometric="ycbcr", jpeg_quality=92)
    if w2 < 256 or h2 < 256:  # tiny maps: strips, lossless
        profile.update(tiled=False, compress="deflate", photometric="rgb")
        for key in ("blockxsize", "blockysize", "jpeg_quality"):
            profile.pop(key)
    with rasterio.open(out / MAP_FILE, "w", **profile) as ds:
        ds.write(np.moveaxis(np.ascontiguousarray(image), -1, 0))
    if not cv2.imwrite(str(out / MASK_FILE), valid.astype(np.uint8) * 255):
        raise OSError(f"cannot write {out / MASK_FILE}")
    return {"file": MAP_FILE, "mask_file": MASK_FILE, "name": raster.name, "transform": list(transform)[:6],
            "gsd_m": float(raster.gsd_m * w / w2), "size_px": [w2, h2]}
