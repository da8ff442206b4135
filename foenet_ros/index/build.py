"""``build_index``: map rasters -> stored map + multi-scale tiles + FOENet descriptors -> one index directory.

The map is never read whole: the build runs the map products (:mod:`foenet_ros.index.products`)
one work item at a time::

    stage "map"    MapCopy: part_px windows of the input, reprojected -> parts (GeoTIFF + coverage)
    (plan tiles)   tiles from the coverage grid (every rank computes the same set)
    stage "tiles"  TileDescriptors: chunks of chunk_tiles tiles cropped from the parts -> descriptors
    (merge)        rank 0: parts -> map.tif (COG), descriptors -> index.faiss, tiles.npz, manifest.json

Sharded: under ``torchrun --nproc_per_node=N`` (one or many nodes, the output on a shared file
system) item ``i`` of a stage runs on rank ``i % N``; the stages meet at barriers; one process
runs the same code alone. Resumable: items are checkpointed in ``<out_dir>.partial/<product>/``
(``NNNNN.done`` marks a finished one); a rerun with the same inputs, grid, tiling and model skips
them, whatever the number of processes. Atomic: the directory is assembled in ``<out_dir>.tmp-*``
and renamed into place only when complete. The result is byte-identical for any number of
processes (same thread count; manifest timestamps aside).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..utils import atomic_replace_dir, make_tmp_dir, recover_dir
from . import distributed
from .config import IndexConfig
from .fine import FineProducts, fine_extractors
from .manifest import FORMAT_VERSION, TILES_FILE, sha256_file, write_manifest
from .products import (
    BuildContext,
    MapCopy,
    MapGrid,
    MapProduct,
    WorkItem,
    default_products,
    save_npz_deterministic,
    state_key,
)

log = logging.getLogger(__name__)

#: config fields that do not change any item file (a killed build may be resumed with other values)
_MERGE_ONLY_FIELDS = ("batch_size", "cache_mb", "index_type", "auto_exact_max_tiles", "hnsw_m", "hnsw_ef_search",
                      "ivf_nlist", "ivf_nprobe", "pq_m", "rerank", "train_max", "map_compression")


def resolve_scales(config: IndexConfig) -> list[float]:
    """Tile side lengths (metres): the configured ones, or those the camera model implies."""
    if config.scales_m is not None:
        return sorted(float(s) for s in config.scales_m)
    from ..geo import CameraIntrinsics, tile_scales_for_camera

    w, h = config.image_size
    intr = CameraIntrinsics.from_hfov(config.hfov_deg, w, h)
    return sorted(float(s) for s in tile_scales_for_camera(intr, config.alt_range_m, config.max_tilt_deg))


def build_index(maps, encoder, out_dir: str | os.PathLike, config: IndexConfig, *,
                overwrite: bool = False, progress: bool = True,
                extra_products: list[MapProduct] | None = None) -> Path:
    """Build a tile index of ``maps`` with ``encoder`` into the directory ``out_dir``; return its path.

    Args:
        maps: one map path, a list of paths (mosaicked by georeference; GeoTIFF/COG/VRT or images
            with sidecars), or a loaded ``MapRaster``.
        encoder: a :class:`foenet_ros.model.Encoder` (its fingerprint and input size go in the manifest).
        out_dir: the index directory to create (under torchrun: on a file system every rank sees).
        config: tiling, map storage and FAISS settings.
        overwrite: replace an existing ``out_dir`` (otherwise :class:`ConfigError`).
        progress: show a tqdm bar per stage (rank 0).
        extra_products: more :class:`MapProduct` s to compute and store (after the map and descriptors).

    Returns ``out_dir`` on every rank, once rank 0 has renamed the finished directory into place.

    Raises:
        RasterError: a map is unreadable or not georeferenced, or no tile fits on its valid pixels.
        ConfigError: ``out_dir`` exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    if int(os.environ.get("RANK", "0")) == 0:
        recover_dir(out_dir)  # a build killed mid-swap left out_dir missing / stale copies: repair first
    if out_dir.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already exists; pass overwrite=True (CLI: --force) or choose another --out")
    import rasterio

    dist = distributed.from_env()
    try:
        # GDAL's own block cache (default: 5 % of the RAM) is bounded too: the build's memory does not grow with the map
        with rasterio.Env(GDAL_CACHEMAX=max(64, config.cache_mb // 2)):
            # every index stores the fine stage's map side too (dense feature grids, keypoints, a DSM)
            fine = FineProducts(config.fine, fine_extractors(config.fine, encoder), config.dsm)
            return _build(maps, encoder, out_dir, config, dist, progress,
                          default_products() + [fine] + list(extra_products or []))
    finally:
        dist.close()


def _build(maps, encoder, out_dir: Path, config: IndexConfig, dist, progress: bool, products: list) -> Path:
    from ..geo import MapRaster, open_map
    from ..geo.windowed import WindowedMap

    t0 = time.perf_counter()
    source_files: list[Path] = []
    if isinstance(maps, MapRaster):
        source = maps
        grid = MapGrid.of(source, config.map_gsd_m)
    else:
        paths = [maps] if isinstance(maps, (str, os.PathLike)) else list(maps)
        source_files = [Path(p) for p in paths]
        source = open_map(source_files, gsd_m=config.map_gsd_m)
        grid = MapGrid.of(source, None)
    scales = resolve_scales(config)
    tile_px = int(config.tile_px or encoder.input_size)
    _log_map_gsd(grid, config)

    partial = out_dir.with_name(out_dir.name + ".partial")
    key = _build_key(source, grid, config, encoder.fingerprint, tile_px, scales, products)
    if dist.main:
        _prepare_partial(partial, key, [p.name for p in products])
    dist.barrier()
    ctx = BuildContext(config=config, encoder=encoder, source=source, grid=grid, partial=partial, dist=dist,
                       tile_px=tile_px, scales=scales)

    # --- stage "map": the input, window by window, into parts of the stored map ----------
    map_copy = next(p for p in products if isinstance(p, MapCopy))
    _run_stage(ctx, [p for p in products if p.stage == "map"], "reading map", progress)
    dist.barrier()
    t_map = time.perf_counter() - t0
    ctx.map = WindowedMap(map_copy.parts_vrt(ctx), grid.frame, name=grid.name, cache_mb=config.cache_mb)
    ctx.tiles = plan_tiles(ctx, map_copy, config)
    log.info("map %s: %d x %d px at %.3f m/px, %d tiles at scales %s m", grid.name, grid.width, grid.height,
             grid.gsd_m, len(ctx.tiles), [round(s, 1) for s in scales])

    # --- stage "tiles": descriptors (and any product that reads the stored map + tiles) ----
    _run_stage(ctx, [p for p in products if p.stage == "tiles"], "encoding tiles", progress)
    dist.barrier()
    timings = {"map_stage_s": round(t_map, 1), "tiles_stage_s": round(time.perf_counter() - t0 - t_map, 1)}

    # --- merge (rank 0): assemble the directory in a temp dir, then rename ------------------
    if dist.main:
        _merge(ctx, products, out_dir, source_files, encoder, timings)
        ctx.map.close()
        shutil.rmtree(partial, ignore_errors=True)
    else:
        ctx.map.close()
    dist.barrier()
    return out_dir


def plan_tiles(ctx: BuildContext, map_copy: MapCopy, config: IndexConfig):
    """Tiles over the stored map, their valid share taken from the parts' coverage grids (never the whole mask)."""
    from ..geo import make_tiles

    cov, cov_tr = map_copy.coverage(ctx)
    return make_tiles(_CoverageGrid(ctx.grid, cov, cov_tr), ctx.scales, overlap=config.overlap,
                      min_valid=config.min_valid)


class _CoverageGrid:
    """What :func:`geo.make_tiles` reads from a map, served by the coarse coverage grid: the map's exact
    bounds (tiles flush with its edges), and a cell valid when >= half of its pixels are."""

    def __init__(self, grid: MapGrid, cov: np.ndarray, cov_tr) -> None:
        from ..geo.raster import GridGeometry

        self.bounds_xy = grid.bounds_xy
        self.size_m = grid.size_m
        self.name = grid.name
        self.valid = cov >= 128
        self._geom = GridGeometry()
        self._geom.transform = cov_tr

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0

    def xy_to_pixel(self, x, y):
        return self._geom.xy_to_pixel(x, y)


def _run_stage(ctx: BuildContext, products: list, desc: str, progress: bool) -> None:
    """Run this rank's share (round robin) of the stage's items that are not done yet."""
    from tqdm.auto import tqdm

    items: list[tuple[object, WorkItem]] = [(p, it) for p in products for it in p.plan(ctx)]
    mine = [items[i] for i in ctx.dist.shard(len(items))]
    todo = [(p, it) for p, it in mine if not ctx.item_path(it, ".done").is_file()]
    if len(todo) < len(mine):
        log.info("resuming: %d of %d %s items of this rank already done in %s", len(mine) - len(todo), len(mine),
                 "/".join(p.name for p in products), ctx.partial)
    total = sum(it.units for _, it in mine)
    unit = "tile" if any(p.stage == "tiles" for p in products) else "px"
    bar = tqdm(total=total, initial=total - sum(it.units for _, it in todo), desc=desc, unit=unit,
               unit_scale=unit == "px", disable=not (progress and ctx.dist.main))
    ctx.tick = bar.update
    try:
        for p, it in todo:
            d = ctx.item_dir(p)
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob(f".{it.idx:05d}*"):  # temp files of a run killed inside this item
                stale.unlink(missing_ok=True)
            p.run(ctx, it)
            _touch_atomic(ctx.item_path(it, ".done"))
    finally:
        ctx.tick = lambda n: None
        bar.close()


def _merge(ctx: BuildContext, products: list, out_dir: Path, source_files: list[Path], encoder,
           timings: dict) -> None:
    tmp = make_tmp_dir(out_dir)
    try:
        sections: dict = {}
        for p in products:
            sections.update(p.merge(ctx, p.plan(ctx), tmp))
        tiles = ctx.tiles
        save_npz_deterministic(tmp / TILES_FILE, tiles.to_arrays())
        g, cfg = ctx.grid, ctx.config
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "fingerprint": encoder.fingerprint,
                "name": getattr(getattr(encoder, "config", None), "preset", None),
                "input_size": int(encoder.input_size),
                "descriptor_dim": int(encoder.dim),
            },
            "frame": g.frame.to_json(),
            "map": {"name": g.name, "gsd_m": float(g.gsd_m), "native_gsd_m": float(g.native_gsd_m),
                    "bounds_xy": [float(v) for v in g.bounds_xy], "size_px": [g.width, g.height],
                    "accuracy_m": float(cfg.map_accuracy_m)},
            "maps": [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size}
                     for p in source_files if p.is_file()],
            **sections,
            "tiles": {
                "count": len(tiles),
                "scales_m": ctx.scales,
                "count_per_scale": [int(np.sum(tiles.scale_idx == i)) for i in range(len(ctx.scales))],
                "overlap": cfg.overlap,
                "min_valid": cfg.min_valid,
                "tile_px": ctx.tile_px,
            },
            "products": {p.name: p.version for p in products},
            "build": {"world_size": ctx.dist.world, **timings},  # the merge itself is not in there
            "config": cfg.to_json(),
        }
        write_manifest(tmp, manifest)  # adds the size + sha256 of every file and the manifest's checksum
        atomic_replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote index %s (%d tiles, %s, map %.3f m/px)", out_dir, len(ctx.tiles), sections["faiss"]["type"],
             ctx.grid.gsd_m)


# ---------------------------------------------------------------------- helpers
def _log_map_gsd(grid: MapGrid, config: IndexConfig) -> None:
    """Say which GSD the stored (verification) map gets: never a silent downsampling."""
    if abs(grid.gsd_m - grid.native_gsd_m) <= 1e-6 * grid.native_gsd_m:
        log.info("verification map: %.4g m/px, the native GSD of the input", grid.gsd_m)
    elif grid.gsd_m > grid.native_gsd_m:
        log.warning("verification map: %.4g m/px as requested (map_gsd_m / --gsd-m), COARSER than the input's "
                    "native %.4g m/px: fine localisation works with the coarser pixels", grid.gsd_m, grid.native_gsd_m)
    else:
        log.warning("verification map: %.4g m/px as requested, finer than the input's native %.4g m/px "
                    "(upsampled: larger, no more detail)", grid.gsd_m, grid.native_gsd_m)


def _build_key(source, grid: MapGrid, config: IndexConfig, fingerprint: str, tile_px: int, scales: list[float],
               products: list) -> str:
    """Identity of a build's item files: a partial build is reused only for the same key."""
    if hasattr(source, "identity"):  # files: path, size, mtime (hashing 100 GB of maps would take minutes)
        ident = source.identity()
    else:  # an in-memory raster: its shape, georeference and a cheap content sample (every 97th row)
        h = hashlib.sha256(np.ascontiguousarray(source.image[::97]).tobytes())
        h.update(np.ascontiguousarray(source.valid[::97]).tobytes())
        ident = [list(source.image.shape), list(source.transform)[:6], h.hexdigest()]
    cfg = {k: v for k, v in config.to_json().items() if k not in _MERGE_ONLY_FIELDS}
    return state_key({
        "source": ident, "grid": [list(grid.transform)[:6], grid.width, grid.height, grid.frame.to_json()],
        "config": cfg, "model": fingerprint, "tile_px": tile_px, "scales": scales,
        "products": [[p.name, p.version] for p in products],
    })


def _prepare_partial(partial: Path, key: str, products: list[str]) -> None:
    state = partial / "state.json"
    if partial.is_dir():
        try:
            same = json.loads(state.read_text()).get("key") == key
        except (OSError, ValueError):
            same = False
        if not same:
            log.info("discarding stale partial build %s (other inputs, grid, tiling or model)", partial)
            shutil.rmtree(partial)
    if not partial.is_dir():
        partial.mkdir(parents=True)
        tmp = partial / ".state.json.tmp"
        tmp.write_text(json.dumps({"key": key, "products": products}))
        os.replace(tmp, state)


def _touch_atomic(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("")
    os.replace(tmp, path)
