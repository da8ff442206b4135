"""Map products: what an index build computes from the map, one resumable, shardable work item at a time.

A **map product** is anything the index stores that is computed from the map: the map itself
(:class:`MapCopy`, a tiled COG), the tile descriptors and their FAISS index
(:class:`TileDescriptors`), and whatever a later version adds (dense feature grids, cached map
keypoints...). Every product follows one small protocol (:class:`MapProduct`):

``plan(ctx) -> [WorkItem]``
    cut the job into items (map windows, tile chunks); cheap, deterministic, the same on every rank.
``run(ctx, item) -> None``
    compute one item and write its files under ``ctx.item_dir(self)`` named ``ctx.item_path(item, suffix)``,
    each atomically. The driver marks the item done afterwards (``NNNNN.done``), skips done items when
    a killed build is rerun, and shards items across torchrun ranks (item ``i`` on rank ``i % world``).
``merge(ctx, items, out_dir) -> dict``
    rank 0, after every item is done: combine the item files into the index directory ``out_dir``
    and return the manifest sections it adds.

``stage`` says when a product runs: ``"map"`` products read the *input* map (``ctx.source``,
reprojected windows) before the tiles exist; ``"tiles"`` products read the *stored* map
(``ctx.map``, a :class:`~foenet_ros.geo.windowed.WindowedMap`) and may use ``ctx.tiles``.
Products meet only through files: an item never needs another rank's memory.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from affine import Affine

from ..geo.raster import GridGeometry, affine_compose
from .config import IndexConfig
from .distributed import Dist

log = logging.getLogger(__name__)

MAP_FILE = "map.tif"
MASK_FILE = "map_valid.png"
FAISS_FILE = "index.faiss"
DESCRIPTORS_FILE = "descriptors.npy"
PARTS_VRT = "parts.vrt"


# ============================================================================ protocol
@dataclass(frozen=True)
class WorkItem:
    """One unit of work of a product: ``payload`` (JSON-able) says what; ``units`` sizes the progress bar."""

    product: str
    idx: int
    payload: dict = field(default_factory=dict)
    units: int = 1


@dataclass(eq=False)
class MapGrid(GridGeometry):
    """The pixel grid the index stores its map on (north-up, in the local frame)."""

    transform: Affine
    width: int
    height: int
    gsd_m: float
    frame: Any
    name: str
    native_gsd_m: float

    @classmethod
    def of(cls, source, gsd_m: float | None) -> "MapGrid":
        """The grid of ``source`` (MapSource or MapRaster) at ``gsd_m`` (None: the source's own), same origin."""
        g = float(gsd_m or source.gsd_m)
        native = float(getattr(source, "native_gsd_m", source.gsd_m))
        eps = 1e-6
        w = max(1, math.ceil(source.width * source.gsd_m / g - eps))
        h = max(1, math.ceil(source.height * source.gsd_m / g - eps))
        t = source.transform
        return cls(Affine(g, 0.0, t.c, 0.0, -g, t.f), w, h, g, source.frame, source.name, native)


@dataclass
class BuildContext:
    """Everything a product's ``plan``/``run``/``merge`` may use.

    Attributes:
        config: the build's :class:`IndexConfig`.
        encoder: the FOENet encoder (``fingerprint``, ``input_size``, ``dim``, ``encode``).
        source: the input map: a :class:`~foenet_ros.geo.MapSource` or an in-memory MapRaster (``read_window``).
        grid: the stored map's grid (:class:`MapGrid`).
        partial: ``<out>.partial/``: item files live in ``partial/<product name>/``.
        dist: this process's rank / world size.
        tile_px, scales: tile crop size (pixels) and tile ground sizes (metres).
        map: the stored map as a WindowedMap (``"tiles"`` stage on).
        tiles: the tile set (``"tiles"`` stage on).
        tick: progress callback (units done), for products whose items are long.
    """

    config: IndexConfig
    encoder: Any
    source: Any
    grid: MapGrid
    partial: Path
    dist: Dist
    tile_px: int
    scales: list[float]
    map: Any = None
    tiles: Any = None
    tick: Callable[[int], None] = lambda n: None

    def item_dir(self, product: "MapProduct") -> Path:
        return self.partial / product.name

    def item_path(self, item: WorkItem, suffix: str) -> Path:
        return self.partial / item.product / f"{item.idx:05d}{suffix}"


class MapProduct(Protocol):
    """A product of the map stored in the index (see the module docstring)."""

    name: str  # folder of its item files; also its key in the manifest's "products"
    version: int  # bump when the item files change meaning: stale partial builds are then discarded
    stage: str  # "map" (reads ctx.source) | "tiles" (reads ctx.map and ctx.tiles)

    def plan(self, ctx: BuildContext) -> list[WorkItem]: ...

    def run(self, ctx: BuildContext, item: WorkItem) -> None: ...

    def merge(self, ctx: BuildContext, items: list[WorkItem], out_dir: Path) -> dict: ...


# ============================================================================ the map (COG)
class MapCopy:
    """The map at the index's GSD: parts (GeoTIFF windows + coverage grids) -> one tiled COG.

    Items are ``part_px`` square windows of the grid, read from the input by window (reprojected,
    mosaicked) -- the whole map is never in memory. Each item writes ``NNNNN.tif`` (lossless ZSTD,
    internal mask) and ``NNNNN.cov.npy`` (share of valid pixels per ``cov_px`` cell, uint8 0..255:
    the tile planner's mask). ``parts.vrt`` mosaics the parts for the ``"tiles"`` stage; merge
    turns it into ``map.tif`` (COG: 512 px blocks, overviews, internal mask) and the coverage into
    ``map_valid.png``.
    """

    name = "map"
    version = 1
    stage = "map"

    def plan(self, ctx: BuildContext) -> list[WorkItem]:
        p = ctx.config.part_px
        items = []
        for r0 in range(0, ctx.grid.height, p):
            for c0 in range(0, ctx.grid.width, p):
                w, h = min(p, ctx.grid.width - c0), min(p, ctx.grid.height - r0)
                items.append(WorkItem(self.name, len(items), {"col": c0, "row": r0, "w": w, "h": h}, units=w * h))
        return items

    @staticmethod
    def cov_px(ctx: BuildContext) -> int:
        """Coverage cell side, pixels: a power of two near 1/16 of the smallest tile (<= 64, divides part_px)."""
        target = min(ctx.scales) / 16.0 / ctx.grid.gsd_m
        return int(2 ** max(0, min(6, math.floor(math.log2(max(target, 1.0))))))

    def run(self, ctx: BuildContext, item: WorkItem) -> None:
        from ..geo.windowed import write_geotiff_window

        c0, r0, w, h = (item.payload[k] for k in ("col", "row", "w", "h"))
        g = ctx.grid
        x0, y1 = g.pixel_to_xy(c0, r0)
        x1, y0 = g.pixel_to_xy(c0 + w, r0 + h)
        part = ctx.source.read_window((x0, y0, x1, y1), g.gsd_m)
        if (part.width, part.height) != (w, h):  # cannot happen on an aligned grid: a bug, not a user error
            raise RuntimeError(f"map part {item.idx}: read {part.width}x{part.height} px, expected {w}x{h}")
        write_geotiff_window(ctx.item_path(item, ".tif"), part, compress=_parts_compression())
        _save_npy_atomic(ctx.item_path(item, ".cov.npy"), _coverage(part.valid, self.cov_px(ctx)))
        ctx.tick(item.units)

    def parts_vrt(self, ctx: BuildContext) -> Path:
        """Mosaic the finished parts into ``partial/map/parts.vrt`` (every rank writes the same bytes, atomically)."""
        from ..geo.windowed import write_vrt

        items = self.plan(ctx)
        return write_vrt([ctx.item_path(it, ".tif") for it in items], ctx.item_dir(self) / PARTS_VRT)

    def coverage(self, ctx: BuildContext) -> tuple[np.ndarray, Affine]:
        """The whole coverage grid ``[ceil(H/c), ceil(W/c)]`` uint8 and its transform (c = :meth:`cov_px`)."""
        c = self.cov_px(ctx)
        g = ctx.grid
        cov = np.zeros((-(-g.height // c), -(-g.width // c)), np.uint8)
        for it in self.plan(ctx):
            a = np.load(ctx.item_path(it, ".cov.npy"), allow_pickle=False)
            r, col = it.payload["row"] // c, it.payload["col"] // c
            cov[r : r + a.shape[0], col : col + a.shape[1]] = a
        return cov, affine_compose(g.transform, Affine.scale(c))

    def merge(self, ctx: BuildContext, items: list[WorkItem], out_dir: Path) -> dict:
        import cv2

        from ..geo.windowed import WindowedMap, write_cog

        cfg, g = ctx.config, ctx.grid
        write_cog(self.parts_vrt(ctx), out_dir / MAP_FILE, compression=cfg.map_compression)
        cov, cov_tr = self.coverage(ctx)
        if not cv2.imwrite(str(out_dir / MASK_FILE), cov):
            raise OSError(f"cannot write {out_dir / MASK_FILE}")
        stored = WindowedMap(out_dir / MAP_FILE, g.frame, cache_mb=1)
        overviews = stored.overview_factors
        stored.close()
        resampled = abs(g.gsd_m - g.native_gsd_m) > 1e-6 * g.native_gsd_m
        return {"map_copy": {
            "file": MAP_FILE, "format": "COG", "compression": cfg.map_compression, "block_px": 512,
            "overviews": overviews, "name": g.name, "transform": list(g.transform)[:6], "size_px": [g.width, g.height],
            "gsd_m": float(g.gsd_m), "native_gsd_m": float(g.native_gsd_m),
            "requested_gsd_m": cfg.map_gsd_m, "resampled": bool(resampled),
            "mask_file": MASK_FILE, "mask_gsd_m": float(cov_tr.a), "mask_transform": list(cov_tr)[:6],
            "mask_meaning": "share of valid map pixels per cell, 0..255 (the map's exact mask is internal to map.tif)",
        }}


def _coverage(valid: np.ndarray, c: int) -> np.ndarray:
    """Share of valid pixels in each ``c x c`` cell (partial edge cells: of their real pixels), uint8 0..255."""
    h, w = valid.shape
    H, W = -(-h // c), -(-w // c)
    pad = np.zeros((H * c, W * c), np.float32)
    cnt = np.zeros_like(pad)
    pad[:h, :w] = valid
    cnt[:h, :w] = 1.0
    s = pad.reshape(H, c, W, c).sum(axis=(1, 3))
    n = cnt.reshape(H, c, W, c).sum(axis=(1, 3))
    return np.round(255.0 * s / np.maximum(n, 1.0)).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _parts_compression() -> str:
    """ZSTD when this GDAL has it (3x faster than DEFLATE), else DEFLATE."""
    import rasterio
    from rasterio.io import MemoryFile

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with MemoryFile() as mf, mf.open(driver="GTiff", width=8, height=8, count=1, dtype="uint8",
                                             compress="zstd") as ds:
                ds.write(np.zeros((1, 8, 8), np.uint8))
        return "zstd"
    except (rasterio.errors.RasterioError, ValueError):
        return "deflate"


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    """``np.save`` to a temp name next to ``path``, then rename (a killed build never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)


def save_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` (loadable with ``np.load(allow_pickle=False)``) but byte-reproducible:
    fixed zip timestamps, so the same tiles give the same file on every rank and every run."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    os.replace(tmp, path)


# ============================================================================ tile descriptors + FAISS
class TileDescriptors:
    """FOENet descriptors of every tile, in chunks of ``chunk_tiles`` -> one FAISS index.

    Items are tile ranges; each crops its tiles from the stored map by window and writes
    ``NNNNN.npy`` (float32 ``[n, D]``). Merge streams the chunks into the FAISS index of the
    configured type (``auto``: exact up to ``auto_exact_max_tiles``, IVF-PQ above) and, for
    IVF-PQ, into ``descriptors.npy`` (float16, memory-mapped at run time for exact re-ranking and
    radius search).
    """

    name = "descriptors"
    version = 1
    stage = "tiles"

    def plan(self, ctx: BuildContext) -> list[WorkItem]:
        n, c = len(ctx.tiles), ctx.config.chunk_tiles
        return [WorkItem(self.name, i, {"lo": lo, "hi": min(n, lo + c)}, units=min(n, lo + c) - lo)
                for i, lo in enumerate(range(0, n, c))]

    def run(self, ctx: BuildContext, item: WorkItem) -> None:
        lo, hi = item.payload["lo"], item.payload["hi"]
        bs = ctx.config.batch_size
        desc = np.empty((hi - lo, ctx.encoder.dim), np.float32)
        for b in range(lo, hi, bs):
            e = min(hi, b + bs)
            crops = [ctx.tiles.crop(ctx.map, i, ctx.tile_px)[0] for i in range(b, e)]
            desc[b - lo : e - lo] = ctx.encoder.encode(crops, branch="satellite")
            ctx.tick(e - b)
        _save_npy_atomic(ctx.item_path(item, ".npy"), desc)

    def merge(self, ctx: BuildContext, items: list[WorkItem], out_dir: Path) -> dict:
        from . import faiss_store

        cfg = ctx.config
        n, dim = len(ctx.tiles), int(ctx.encoder.dim)
        kind = cfg.resolved_index_type(n)
        paths = [ctx.item_path(it, ".npy") for it in items]

        def batches():
            for p in paths:
                yield np.load(p, mmap_mode="r")

        desc_entry = None
        sample = None
        if kind == "ivfpq":
            # float16 copy for exact re-ranking / radius search, written in tile order
            mm = np.lib.format.open_memmap(out_dir / DESCRIPTORS_FILE, mode="w+", dtype=np.float16, shape=(n, dim))
            at = 0
            for b in batches():
                mm[at : at + len(b)] = b
                at += len(b)
            mm.flush()
            del mm
            stored = np.load(out_dir / DESCRIPTORS_FILE, mmap_mode="r")
            sample = lambda ids: np.asarray(stored[ids], np.float32)  # noqa: E731
            desc_entry = {"file": DESCRIPTORS_FILE, "dtype": "float16", "shape": [n, dim]}
        else:
            starts = np.cumsum([0] + [it.units for it in items])

            def sample(ids):  # rows by id across the chunk files
                out = np.empty((len(ids), dim), np.float32)
                for j, p in enumerate(paths):
                    sel = (ids >= starts[j]) & (ids < starts[j + 1])
                    if sel.any():
                        out[sel] = np.load(p, mmap_mode="r")[ids[sel] - starts[j]]
                return out

        index, params = faiss_store.make_index(
            batches, kind, n=n, dim=dim, sample=sample, hnsw_m=cfg.hnsw_m, hnsw_ef_search=cfg.hnsw_ef_search,
            ivf_nlist=cfg.ivf_nlist, ivf_nprobe=cfg.ivf_nprobe, pq_m=cfg.pq_m, rerank=cfg.rerank, train_max=cfg.train_max)
        faiss_store.write(index, out_dir / FAISS_FILE)
        entry = {"type": kind, "metric": "inner_product", "params": params}
        if cfg.index_type == "auto":
            entry["chosen"] = f"auto: {n} tiles {'<=' if kind == 'flat' else '>'} {cfg.auto_exact_max_tiles}"
        if desc_entry:
            entry["descriptors"] = desc_entry
        return {"faiss": entry}


def default_products() -> list[MapProduct]:
    """The products every index has: the map and the tile descriptors (more can be appended)."""
    return [MapCopy(), TileDescriptors()]


def state_key(parts: dict) -> str:
    """A stable hash of a JSON-able description (a build's identity)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
