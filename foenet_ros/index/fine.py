"""The map side of the fine stage, precomputed once at index build: dense feature grids and keypoints.

Nothing is detected on the map at query time. An index directory gets a ``fine/`` folder::

    fine/level{k}_{method}.npy   [H_k, W_k, C] uint8/int8 dense features at cell c_k = c_0 * 2^k
                                 (methods: "cfog", and "foenet" when the model has an overlap head)
    fine/level{k}_valid.npy      [H_k, W_k] bool: real map data under the cell
    fine/kp_xy.npy               [N, 2] float64 keypoint positions, frame metres
    fine/kp_size.npy             [N] float32 keypoint diameter, metres
    fine/kp_level.npy            [N] uint8 keypoint pyramid level (GSD g_0 * 2^l)
    fine/kp_{flavour}.npy        [N, 128] uint8 RootSIFT ("upright", "oriented")
    fine/kp_cells.npy            [G] int64 start offsets of each spatial cell (keypoints sorted by cell)

All arrays are plain ``.npy`` (no pickle), read memory-mapped, and covered by the manifest's
sha256 list. Level grids are north-up: cell (i, j) of level k is centred at
``(x0 + (j + 0.5) c_k, y1 - (i + 0.5) c_k)`` where ``(x0, y1)`` is the map's top-left corner.

``FineConfig`` decides the cell sizes from the tile scales (the footprints the camera sees): the
frame projected on the ground should span about 160 cells at the finest level, which keeps an FFT correlation to a
few milliseconds and a cell to about 1 % of the footprint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, IndexCorruptError
from ..features import FeatureGrid, dequantize, quantize

log = logging.getLogger(__name__)

FINE_DIR = "fine"
FINE_FORMAT = 1


@dataclass(frozen=True)
class FineConfig:
    """What the index stores for the fine stage.

    Attributes:
        methods: dense feature methods to precompute ("cfog"; "foenet" = learned, needs a model with an overlap head).
        cell_m: level-0 cell size, metres (None: smallest tile scale / ``cells_per_footprint``, at least the map GSD).
        cells_per_footprint: target template size in cells, used to derive the cell sizes.
        levels: number of levels (None: enough that the largest tile spans at most ~96 cells... at least 1).
        keypoints: store SIFT keypoints for refinement.
        kp_gsd_m: GSD of keypoint level 0 (None: smallest tile scale / ``kp_frame_px``, at least the map GSD).
            Finer than the map (the map upsampled) helps where the frames are much finer than the map:
            the Pix4D 0.35 m map with 0.15 gave 40 / 40 views verified (39), median 0.27 m (0.44).
            Not the default: at map GSD / 2.5 everywhere, Banepa cold starts slowed 1.3x (p99 3.5x p50)
            and the drone photo vs satellite went 0.3 -> 1.1 m (docs/localize.md).
        kp_frame_px: the frame width (pixels) at which the Localizer refines (matches verify_max_side).
        kp_per_block: keypoints kept per 64 x 64 pixel block (strongest), bounding the density.
        kp_flavours: descriptor flavours stored ("upright", "oriented").
        polish: store one more dense level at half the finest cell (at least the map GSD; 4x that level's
            storage), used only by the Localizer's polish step, which runs when its line search is off
            (``LocalizerConfig.fine_line_search``): fixes placed to a third of that cell where keypoints
            do not match (a map of another year or sensor, coarse next to the footprint).
    """

    methods: tuple[str, ...] = ("cfog",)
    cell_m: float | None = None
    cells_per_footprint: int = 160
    levels: int | None = None
    keypoints: bool = True
    kp_gsd_m: float | None = None
    kp_frame_px: int = 640
    kp_per_block: int = 24
    kp_flavours: tuple[str, ...] = ("upright", "oriented")
    polish: bool = False

    def __post_init__(self) -> None:
        if not self.methods:
            raise ConfigError("fine methods must name at least one dense feature method (e.g. ('cfog',))")
        if self.cell_m is not None and not (self.cell_m > 0):
            raise ConfigError(f"fine cell_m must be > 0, got {self.cell_m}")
        if self.cells_per_footprint < 16:
            raise ConfigError(f"cells_per_footprint must be >= 16, got {self.cells_per_footprint}")
        if self.levels is not None and not (1 <= self.levels <= 8):
            raise ConfigError(f"fine levels must be in 1..8, got {self.levels}")
        if self.kp_gsd_m is not None and not (math.isfinite(self.kp_gsd_m) and self.kp_gsd_m > 0):
            raise ConfigError(f"kp_gsd_m must be > 0 m/px (None = from the tile scales), got {self.kp_gsd_m}")

    def replace(self, **changes) -> "FineConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


#: the coarsest level must make the largest footprint at most this many cells wide (the heading sweep's size)
COARSEST_CELLS = 32


def plan_cells(cfg: FineConfig, scales_m: list[float], map_gsd_m: float) -> list[float]:
    """Cell sizes of the dense levels (metres), finest first: from ``cells_per_footprint`` cells across
    the smallest footprint (the patch refinement) down to :data:`COARSEST_CELLS` across the largest
    (the coarse heatmap and the heading sweep)."""
    lo, hi = min(scales_m), max(scales_m)
    c0 = cfg.cell_m or max(map_gsd_m, lo / cfg.cells_per_footprint)
    n = cfg.levels or max(1, 1 + int(math.ceil(math.log2(max(hi / COARSEST_CELLS / c0, 1.0)) - 1e-9)))
    cells = [c0 * 2**k for k in range(n)]
    if has_polish_level(cfg, scales_m, map_gsd_m):
        cells.insert(0, max(0.5 * c0, map_gsd_m))
    return cells


def has_polish_level(cfg: FineConfig, scales_m: list[float], map_gsd_m: float) -> bool:
    """Whether the plan starts with a polish level (``cfg.polish`` and the map has detail finer than
    3/4 of the finest search cell to show it)."""
    if not cfg.polish:
        return False
    c0 = cfg.cell_m or max(map_gsd_m, min(scales_m) / cfg.cells_per_footprint)
    return max(0.5 * c0, map_gsd_m) <= 0.75 * c0


def plan_kp_gsds(cfg: FineConfig, scales_m: list[float], map_gsd_m: float) -> list[float]:
    """Keypoint pyramid GSDs (metres per pixel), finest first."""
    lo, hi = min(scales_m), max(scales_m)
    g0 = cfg.kp_gsd_m or max(map_gsd_m, lo / cfg.kp_frame_px)
    n = max(1, 1 + int(math.ceil(math.log2(max(hi / cfg.kp_frame_px / g0, 1.0)) - 1e-9)))
    return [g0 * 2**k for k in range(n)]


# ---------------------------------------------------------------------------------------------- build
def fine_extractors(cfg: FineConfig, encoder=None) -> dict:
    """The dense extractors ``cfg.methods`` name (the learned one takes the encoder's model)."""
    from ..features import dense_extractor

    return {m: dense_extractor(m, getattr(encoder, "model", None)) for m in cfg.methods}


class FineProducts:
    """The fine stage's map side as a map product (:mod:`foenet_ros.index.products`): windowed,
    resumable and sharded under torchrun like the tile descriptors.

    Items (stage "tiles": they read the stored map by window):

    * ``dense``: one block of ``block_cells`` cells of one level and method -> ``NNNNN.npy`` (the
      quantised ``[h, w, C]`` features) + ``NNNNN.valid.npy``;
    * ``keypoints``: one ``block_px`` block of one keypoint pyramid level -> ``NNNNN.npz`` (xy in
      frame metres, size, level, descriptors per flavour).

    ``merge`` assembles the level grids into memory-mapped ``fine/level{k}_*.npy``, sorts the
    keypoints by a spatial grid, adds the surface model's heights (``dsm``) and returns the
    manifest's ``"fine"`` section.
    """

    name = "fine"
    version = 1
    stage = "tiles"

    def __init__(self, cfg: FineConfig, extractors: dict, dsm: str | Path | None = None, block_cells: int = 1024,
                 block_px: int = 2048) -> None:
        self.cfg = cfg
        self.extractors = extractors
        self.dsm = dsm
        self.block_cells = int(block_cells)
        self.block_px = int(block_px)

    def _geometry(self, ctx) -> tuple[list[float], list[float], tuple[float, float]]:
        xmin, ymin, xmax, ymax = ctx.grid.bounds_xy
        return (plan_cells(self.cfg, ctx.scales, ctx.grid.gsd_m), plan_kp_gsds(self.cfg, ctx.scales, ctx.grid.gsd_m),
                (xmin, ymax))

    def plan(self, ctx) -> list:
        from .products import WorkItem

        cells, gsds, _ = self._geometry(ctx)
        xmin, ymin, xmax, ymax = ctx.grid.bounds_xy
        items, b = [], self.block_cells
        for k, c in enumerate(cells):
            H, W = int(math.ceil((ymax - ymin) / c)), int(math.ceil((xmax - xmin) / c))
            for m in self.cfg.methods:
                for i0 in range(0, H, b):
                    for j0 in range(0, W, b):
                        items.append({"kind": "dense", "level": k, "method": m,
                                      "block": [i0, min(H, i0 + b), j0, min(W, j0 + b)]})
        if self.cfg.keypoints:
            for li, g in enumerate(gsds):
                H, W = int(math.ceil((ymax - ymin) / g)), int(math.ceil((xmax - xmin) / g))
                items += [{"kind": "keypoints", "level": li, "block": [i0, min(H, i0 + self.block_px), j0, min(W, j0 + self.block_px)]}
                          for i0 in range(0, H, self.block_px) for j0 in range(0, W, self.block_px)]
        return [WorkItem(self.name, i, payload) for i, payload in enumerate(items)]

    def run(self, ctx, item) -> None:
        from .products import _save_npy_atomic

        cells, gsds, top_left = self._geometry(ctx)
        pl = item.payload
        if pl["kind"] == "dense":
            ex = self.extractors[pl["method"]]
            f, v = map_features(ctx.map, ex, cells[pl["level"]], tuple(pl["block"]), top_left)
            _save_npy_atomic(ctx.item_path(item, ".valid.npy"), v)
            _save_npy_atomic(ctx.item_path(item, ".npy"), quantize(f, ex.storage))
        else:
            kp = keypoint_block(ctx.map, self.cfg, gsds[pl["level"]], tuple(pl["block"]), top_left)
            arrays = {"xy": kp[0], "size": kp[1], "level": np.full(len(kp[0]), pl["level"], np.uint8)}
            arrays.update({f"desc_{f}": kp[2][f] for f in self.cfg.kp_flavours})
            from .products import save_npz_deterministic

            save_npz_deterministic(ctx.item_path(item, ".npz"), arrays)
        ctx.tick(1)

    def merge(self, ctx, items, out_dir: Path) -> dict:
        cells, gsds, top_left = self._geometry(ctx)
        fine = Path(out_dir) / FINE_DIR
        fine.mkdir(parents=True, exist_ok=True)
        xmin, ymin, xmax, ymax = ctx.grid.bounds_xy
        polish = has_polish_level(self.cfg, ctx.scales, ctx.grid.gsd_m)
        levels = []
        dense = [it for it in items if it.payload["kind"] == "dense"]
        for k, c in enumerate(cells):
            H, W = int(math.ceil((ymax - ymin) / c)), int(math.ceil((xmax - xmin) / c))
            valid_all = np.zeros((H, W), bool)
            for m in self.cfg.methods:
                ex = self.extractors[m]
                arr = np.lib.format.open_memmap(fine / f"level{k}_{m}.npy", mode="w+",
                                                dtype=np.uint8 if ex.storage == "u8" else np.int8, shape=(H, W, ex.channels))
                for it in dense:
                    if it.payload["level"] == k and it.payload["method"] == m:
                        i0, i1, j0, j1 = it.payload["block"]
                        arr[i0:i1, j0:j1] = np.load(ctx.item_path(it, ".npy"))
                        valid_all[i0:i1, j0:j1] |= np.load(ctx.item_path(it, ".valid.npy"))
                arr.flush()
                del arr
            np.save(fine / f"level{k}_valid.npy", valid_all)
            levels.append({"cell_m": c, "shape": [H, W], "polish": bool(k == 0 and polish)})
        entry = {"format": FINE_FORMAT, "config": self.cfg.to_json(), "origin_xy": [top_left[0], top_left[1]],
                 "levels": levels, "methods": {n: {"channels": self.extractors[n].channels, "storage": self.extractors[n].storage,
                                                   "stride": self.extractors[n].stride} for n in self.cfg.methods}}
        grid = None
        if self.dsm is not None:
            from ..geo.dsm import read_dsm

            # bounded size: at most ~40 M heights for the whole map (160 MB), at least 1 m per cell
            g = max(1.0, 2.0 * ctx.grid.gsd_m, math.sqrt((xmax - xmin) * (ymax - ymin) / 4e7))
            grid = read_dsm(self.dsm, ctx.grid.frame, ctx.grid.bounds_xy, g)
            np.save(fine / "dsm.npy", grid.z)
            entry["dsm"] = {"name": Path(self.dsm).name, "transform": list(grid.transform)[:6], "shape": list(grid.z.shape),
                            "relief_m": grid.relief()}
        if self.cfg.keypoints:
            entry["keypoints"] = self._merge_keypoints(ctx, [it for it in items if it.payload["kind"] == "keypoints"],
                                                       fine, gsds, grid)
        return {"fine": entry}

    def _merge_keypoints(self, ctx, items, fine: Path, gsds: list[float], dsm) -> dict:
        xmin, ymin, xmax, ymax = ctx.grid.bounds_xy
        parts = [np.load(ctx.item_path(it, ".npz"), allow_pickle=False) for it in items]
        xy = np.concatenate([p["xy"] for p in parts]) if parts else np.zeros((0, 2))
        size = np.concatenate([p["size"] for p in parts]).astype(np.float32) if parts else np.zeros(0, np.float32)
        lvl = np.concatenate([p["level"] for p in parts]) if parts else np.zeros(0, np.uint8)
        grid_m = 64.0 * gsds[-1]
        gw, gh = max(1, int(math.ceil((xmax - xmin) / grid_m))), max(1, int(math.ceil((ymax - ymin) / grid_m)))
        cell = _grid_cell(xy, (xmin, ymax), grid_m, gw, gh)
        order = np.argsort(cell, kind="stable")
        np.save(fine / "kp_xy.npy", xy[order].astype(np.float64))
        np.save(fine / "kp_size.npy", size[order])
        np.save(fine / "kp_level.npy", lvl[order])
        for f in self.cfg.kp_flavours:
            d = np.concatenate([p[f"desc_{f}"] for p in parts]) if parts else np.zeros((0, 128), np.uint8)
            np.save(fine / f"kp_{f}.npy", d[order])
        np.save(fine / "kp_cells.npy", np.searchsorted(cell[order], np.arange(gw * gh + 1)).astype(np.int64))
        if dsm is not None:  # 3D keypoints: heights from the surface model (NaN where it has none)
            np.save(fine / "kp_z.npy", dsm.sample(xy[order]).astype(np.float32))
        log.info("map keypoints: %d at GSDs %s m", len(xy), [round(g, 3) for g in gsds])
        return {"count": int(len(xy)), "gsd_m": gsds, "grid_m": grid_m, "grid_shape": [gh, gw],
                "flavours": list(self.cfg.kp_flavours), "has_z": dsm is not None}


def build_fine(raster, out_dir: Path, cfg: FineConfig, scales_m: list[float], extractors, *,
               progress: bool = True, dsm: str | Path | None = None) -> dict:
    """The fine products of an in-memory map, in one process, into ``out_dir/fine``; returns the
    manifest's ``"fine"`` entry (what an index build stores; for calibration scripts and tests)."""
    import tempfile

    from tqdm.auto import tqdm

    from .distributed import Dist
    from .products import BuildContext, MapGrid

    product = FineProducts(cfg, extractors, dsm)
    with tempfile.TemporaryDirectory(prefix="fine-partial-") as tmp:
        ctx = BuildContext(config=None, encoder=None, source=raster, grid=MapGrid.of(raster, None), partial=Path(tmp),
                           dist=Dist(), tile_px=0, scales=list(scales_m), map=raster)
        items = product.plan(ctx)
        (Path(tmp) / product.name).mkdir()
        for it in tqdm(items, desc="map features", unit="block", disable=not progress):
            product.run(ctx, it)
        return product.merge(ctx, items, Path(out_dir))["fine"]


def map_features(raster, extractor, cell_m: float, block: tuple[int, int, int, int],
                 top_left: tuple[float, float], margin: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Dense features of cells ``[i0:i1, j0:j1]`` of the level grid with cell ``cell_m`` anchored at ``top_left``.

    The map is resampled (north-up, anti-aliased) to ``cell_m / stride`` with ``margin`` extra cells on
    every side, so features near a block edge see the same neighbourhood as in one big block.
    Returns ``(feats [C, i1-i0, j1-j0] float32, valid [i1-i0, j1-j0] bool)``.
    """
    i0, i1, j0, j1 = block
    s = extractor.stride
    px = cell_m / s
    x0 = top_left[0] + (j0 - margin) * cell_m
    y0 = top_left[1] - (i0 - margin) * cell_m
    w = (j1 - j0 + 2 * margin) * s
    h = (i1 - i0 + 2 * margin) * s
    # frame xy -> output pixel centres: u = (x - x0) / px - 0.5, v = (y0 - y) / px - 0.5
    M = np.array([[1.0 / px, 0.0, -x0 / px - 0.5], [0.0, -1.0 / px, y0 / px - 0.5], [0.0, 0.0, 1.0]])
    img, valid = raster.warp(M, (w, h), px)
    f, v = extractor.extract(img[:, :, :3] if img.ndim == 3 else img, valid)
    sl = (slice(margin, margin + i1 - i0), slice(margin, margin + j1 - j0))
    return f[:, sl[0], sl[1]], v[sl]


def keypoint_block(raster, cfg: FineConfig, gsd: float, block: tuple[int, int, int, int], top_left,
                   margin: int = 32) -> tuple[np.ndarray, np.ndarray, dict]:
    """SIFT keypoints of pixels ``[i0:i1, j0:j1]`` of the map resampled to ``gsd`` (a margin around the
    block so keypoints near its edge see their whole neighbourhood; only the block's own are kept,
    at most ``kp_per_block`` per 64 px). Returns ``(xy [N, 2] frame metres, size [N] metres, {flavour: desc})``."""
    import cv2

    from ..features.local import SiftDetector

    i0, i1, j0, j1 = block
    x0, y0 = top_left[0] + (j0 - margin) * gsd, top_left[1] - (i0 - margin) * gsd
    w, h = j1 - j0 + 2 * margin, i1 - i0 + 2 * margin
    M = np.array([[1.0 / gsd, 0.0, -x0 / gsd - 0.5], [0.0, -1.0 / gsd, y0 / gsd - 0.5], [0.0, 0.0, 1.0]])
    img, valid = raster.warp(M, (w, h), gsd)
    mask = cv2.erode(valid.astype(np.uint8) * 255, np.ones((7, 7), np.uint8))
    kp = SiftDetector(max_features=0).detect(img[:, :, :3] if img.ndim == 3 else img, mask, cfg.kp_flavours)
    core = (kp.xy[:, 0] >= margin) & (kp.xy[:, 0] < w - margin) & (kp.xy[:, 1] >= margin) & (kp.xy[:, 1] < h - margin)
    kp = kp.subset(np.flatnonzero(core))
    kp = kp.subset(_strongest_per_block(kp.xy, kp.response, 64, cfg.kp_per_block))
    # pixel centres -> frame metres
    xy = np.column_stack([x0 + (kp.xy[:, 0] + 0.5) * gsd, y0 - (kp.xy[:, 1] + 0.5) * gsd])
    return xy, kp.size * gsd, {f: kp.desc[f] for f in cfg.kp_flavours}


def _grid_cell(xy: np.ndarray, top_left, grid_m: float, gw: int, gh: int) -> np.ndarray:
    col = np.clip(np.floor((xy[:, 0] - top_left[0]) / grid_m), 0, gw - 1).astype(np.int64)
    row = np.clip(np.floor((top_left[1] - xy[:, 1]) / grid_m), 0, gh - 1).astype(np.int64)
    return row * gw + col


def _strongest_per_block(xy: np.ndarray, response: np.ndarray, block: int, keep: int) -> np.ndarray:
    """Indices of at most ``keep`` strongest keypoints per ``block`` x ``block`` pixel block."""
    if len(xy) == 0:
        return np.zeros(0, int)
    b = (np.floor(xy[:, 1] / block).astype(np.int64) << 32) + np.floor(xy[:, 0] / block).astype(np.int64)
    order = np.lexsort((-response, b))
    bs = b[order]
    first = np.r_[0, np.flatnonzero(bs[1:] != bs[:-1]) + 1]
    rank = np.arange(len(bs)) - np.repeat(first, np.diff(np.r_[first, len(bs)]))
    return np.sort(order[rank < keep])


# ---------------------------------------------------------------------------------------------- load
class FineStore:
    """The fine-stage products of a loaded index (memory-mapped), read by window.

    Attributes:
        cells: level cell sizes (m), finest first.
        polish_level: the level kept for the polish step only (0), or None (the index has none).
        search_levels: the levels the correlations search (every level but the polish level).
        methods: dense methods stored.
        has_keypoints: whether keypoints were stored.
    """

    def __init__(self, index_dir: Path, entry: dict) -> None:
        self.dir = Path(index_dir) / FINE_DIR
        self.entry = entry
        try:
            self.origin = (float(entry["origin_xy"][0]), float(entry["origin_xy"][1]))
            self.cells = [float(lv["cell_m"]) for lv in entry["levels"]]
            # indexes before the polish level have no "polish" key: every level is searched
            self.polish_level = 0 if len(self.cells) > 1 and entry["levels"][0].get("polish") is True else None
            self.search_levels = [k for k in range(len(self.cells)) if k != self.polish_level]
            self.methods = list(entry["methods"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"index {index_dir}: malformed 'fine' manifest section ({exc})") from exc
        self._feats: dict[tuple[int, str], np.ndarray] = {}
        self._valid: dict[int, np.ndarray] = {}
        self.has_keypoints = "keypoints" in entry
        self._kp: dict[str, np.ndarray] | None = None
        self._dsm = None

    @classmethod
    def for_index(cls, index) -> "FineStore":
        """The fine-stage products of a loaded :class:`~foenet_ros.index.TileIndex`.

        Raises:
            IndexMismatchError: the index has none (built by an older foenet_ros): it must be rebuilt.
        """
        from ..errors import IndexMismatchError
        from .manifest import REBUILD_HINT

        entry = index.manifest.get("fine")
        if not isinstance(entry, dict):
            raise IndexMismatchError(
                f"index {index.path} has no fine-stage map features (built by an older foenet_ros); {REBUILD_HINT}")
        return cls(index.path, entry)

    @staticmethod
    def files(entry: dict) -> list[str]:
        """Every file of the ``fine/`` folder that the manifest entry implies (relative paths)."""
        out = []
        for k in range(len(entry.get("levels", []))):
            out += [f"{FINE_DIR}/level{k}_{m}.npy" for m in entry.get("methods", {})] + [f"{FINE_DIR}/level{k}_valid.npy"]
        if "keypoints" in entry:
            out += [f"{FINE_DIR}/kp_{n}.npy" for n in ("xy", "size", "level", "cells")]
            out += [f"{FINE_DIR}/kp_{f}.npy" for f in entry["keypoints"].get("flavours", [])]
            if entry["keypoints"].get("has_z"):
                out.append(f"{FINE_DIR}/kp_z.npy")
        if "dsm" in entry:
            out.append(f"{FINE_DIR}/dsm.npy")
        return out

    def dsm(self):
        """The index's surface model (:class:`foenet_ros.geo.dsm.DsmGrid`), or None when built without one."""
        if "dsm" not in self.entry:
            return None
        if self._dsm is None:
            from affine import Affine

            from ..geo.dsm import DsmGrid

            self._dsm = DsmGrid(np.asarray(self._load("dsm.npy")), Affine(*self.entry["dsm"]["transform"]),
                                self.entry["dsm"].get("name", "dsm"))
        return self._dsm

    def _load(self, name: str) -> np.ndarray:
        path = self.dir / name
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"cannot read {path}: {exc}; rebuild the index") from exc

    def level_for(self, footprint_m: float, target_cells: int = 96) -> int:
        """The level whose cells make a ``footprint_m`` template closest to ``target_cells`` wide (log scale)."""
        return min(self.search_levels, key=lambda k: abs(math.log(footprint_m / self.cells[k] / target_cells)))

    def window(self, level: int, box: tuple[float, float, float, float], methods: list[str]):
        """Features of ``methods`` (concatenated) over the cells covering ``box`` = (xmin, ymin, xmax, ymax).

        Cells outside the map are zero and invalid. Returns a :class:`foenet_ros.features.FeatureGrid`.
        """
        c = self.cells[level]
        xmin, ymin, xmax, ymax = box
        j0 = int(math.floor((xmin - self.origin[0]) / c))
        j1 = int(math.ceil((xmax - self.origin[0]) / c))
        i0 = int(math.floor((self.origin[1] - ymax) / c))
        i1 = int(math.ceil((self.origin[1] - ymin) / c))
        H, W = i1 - i0, j1 - j0
        if (level, "valid") not in self._feats:
            self._feats[(level, "valid")] = self._load(f"level{level}_valid.npy")
        vmap = self._feats[(level, "valid")]
        Hm, Wm = vmap.shape
        a0, a1, b0, b1 = max(i0, 0), min(i1, Hm), max(j0, 0), min(j1, Wm)
        parts = []
        valid = np.zeros((H, W), bool)
        if a1 > a0 and b1 > b0:
            valid[a0 - i0 : a1 - i0, b0 - j0 : b1 - j0] = vmap[a0:a1, b0:b1]
        for m in methods:
            key = (level, m)
            if key not in self._feats:
                self._feats[key] = self._load(f"level{level}_{m}.npy")
            arr = self._feats[key]
            f = np.zeros((arr.shape[2], H, W), np.float32)
            if a1 > a0 and b1 > b0:
                f[:, a0 - i0 : a1 - i0, b0 - j0 : b1 - j0] = dequantize(np.asarray(arr[a0:a1, b0:b1]))
            parts.append(f)
        feats = np.concatenate(parts, axis=0) * valid[None]
        origin = (self.origin[0] + (j0 + 0.5) * c, self.origin[1] - (i0 + 0.5) * c)
        return FeatureGrid(feats, valid, origin, c)

    # ------------------------------------------------------------------ keypoints
    def keypoints_in(self, box: tuple[float, float, float, float], flavour: str, gsd_m: float | None = None):
        """Keypoints inside ``box`` (frame metres): ``(xy [N,2], size_m [N], desc [N,128] uint8, z [N])``;
        ``z`` (ground heights, metres) is NaN when the index was built without a surface model.

        ``gsd_m``: keep the keypoint pyramid levels within a factor 2 of this GSD (all when None).
        """
        return self.keypoints_at(self.keypoint_ids(box, gsd_m), flavour)

    def keypoint_ids(self, box: tuple[float, float, float, float], gsd_m: float | None = None) -> np.ndarray:
        """Row numbers ``[N] int64`` (ascending) of the stored keypoints inside ``box`` (frame metres), at
        the pyramid levels within a factor 2 of ``gsd_m`` (all when None): the ids several overlapping
        windows share, so that their union holds each map keypoint once."""
        if not self.has_keypoints:
            return np.zeros(0, np.int64)
        kp = self.entry["keypoints"]
        self._load_kp()
        gh, gw = kp["grid_shape"]
        g = float(kp["grid_m"])
        xmin, ymin, xmax, ymax = box
        c0 = max(0, int(math.floor((xmin - self.origin[0]) / g)))
        c1 = min(gw - 1, int(math.floor((xmax - self.origin[0]) / g)))
        r0 = max(0, int(math.floor((self.origin[1] - ymax) / g)))
        r1 = min(gh - 1, int(math.floor((self.origin[1] - ymin) / g)))
        if c1 < c0 or r1 < r0:
            return np.zeros(0, np.int64)
        starts = self._kp["cells"]
        idx = np.concatenate([np.arange(starts[r * gw + c0], starts[r * gw + c1 + 1]) for r in range(r0, r1 + 1)])
        xy = np.asarray(self._kp["xy"][idx])
        sel = (xy[:, 0] >= xmin) & (xy[:, 0] <= xmax) & (xy[:, 1] >= ymin) & (xy[:, 1] <= ymax)
        if gsd_m is not None:
            gsds = np.asarray(kp["gsd_m"], dtype=np.float64)
            lv = np.asarray(self._kp["level"][idx])
            ok_levels = np.flatnonzero(np.abs(np.log2(gsds / gsd_m)) <= 1.0)
            if len(ok_levels) == 0:
                ok_levels = np.array([int(np.argmin(np.abs(np.log2(gsds / gsd_m))))])
            sel &= np.isin(lv, ok_levels)
        return idx[sel].astype(np.int64)

    def keypoints_at(self, ids: np.ndarray, flavour: str):
        """The stored keypoints with these row numbers (from :meth:`keypoint_ids`):
        ``(xy [N,2], size_m [N], desc [N,128] uint8, z [N])``, as :meth:`keypoints_in`."""
        if not self.has_keypoints:
            return np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros((0, 128), np.uint8), np.zeros(0)
        kp = self.entry["keypoints"]
        self._load_kp()
        if flavour not in self._kp:
            if flavour not in kp.get("flavours", []):
                raise IndexCorruptError(f"index has no {flavour!r} keypoint descriptors; rebuild it")
            self._kp[flavour] = self._load(f"kp_{flavour}.npy")
        if kp.get("has_z"):
            if "z" not in self._kp:
                self._kp["z"] = self._load("kp_z.npy")
            z = np.asarray(self._kp["z"][ids], dtype=np.float64)
        else:
            z = np.full(len(ids), np.nan)
        return (np.asarray(self._kp["xy"][ids]), np.asarray(self._kp["size"][ids]), np.asarray(self._kp[flavour][ids]), z)

    def _load_kp(self) -> None:
        if self._kp is None:
            self._kp = {n: self._load(f"kp_{n}.npy") for n in ("xy", "size", "level", "cells")}
