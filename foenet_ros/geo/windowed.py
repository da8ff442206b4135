"""Maps too large for memory: a north-up raster file read by window through an LRU block cache.

:class:`WindowedMap` opens a GeoTIFF / Cloud Optimized GeoTIFF / GDAL VRT that is already in the
local metric frame (the map an index stores, or the parts of a build) and offers what the query
side needs from a :class:`~foenet_ros.geo.MapRaster` -- ``crop``, ``warp``, ``gsd_m``, ``frame``,
``transform``, ``bounds_xy``, ``xy_to_pixel`` -- without holding the map: every read decodes only
the blocks it touches (512 x 512 px), at the pyramid level its output resolution needs (the
file's overviews when it has them), and keeps the decoded blocks in a bounded LRU cache.

:func:`write_vrt` mosaics same-grid GeoTIFFs into one VRT (no ``gdalbuildvrt`` needed);
:func:`write_cog` turns any such raster into a tiled, overviewed COG with an internal mask.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import escape

import numpy as np
from affine import Affine

from ..errors import CRSMismatchError, RasterError
from .crs import GeoFrame
from .raster import GridGeometry, MapRaster, affine_apply, affine_compose, crop_matrix, cv_from_transform

log = logging.getLogger(__name__)

#: side of the decoded blocks the cache holds, pixels (= the COG block size the index writes)
BLOCK_PX = 512
#: refuse to decode more than this many pixels for one read (a runaway perspective warp, a whole-map ``.image``)
MAX_READ_PX = 100_000_000
#: GDAL's own block cache while a block is decoded, MiB. The decoded blocks live in our LRU; GDAL's cache
#: (default: 5 % of the RAM) would keep a second, compressed-then-decoded copy of everything ever read:
#: measured on the 200 km² index, the node's RSS grew ~30 MB per localised frame without this cap, flat with it.
GDAL_CACHE_MB = 32


class BlockCache:
    """A thread-safe LRU of decoded blocks, bounded in bytes.

    Keys are ``(level, block_row, block_col)``; values ``(image [h,w,3] uint8, valid [h,w] bool)``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key, item) -> None:
        size = sum(a.nbytes for a in item)
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= sum(a.nbytes for a in old)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class WindowedMap(GridGeometry):
    """A north-up map file in a metric frame, read by window (quacks like a :class:`MapRaster`).

    Args:
        path: GeoTIFF / COG / VRT with 3 uint8 colour bands in a projected (metric) CRS, north-up.
        frame: the expected frame (``CRSMismatchError`` when the file's CRS differs); default: the file's CRS.
        name: a label (default: the file stem).
        cache_mb: budget of the decoded-block LRU cache, MiB.

    Attributes:
        transform, width, height, gsd_m, frame, name: the full-resolution grid (corner convention).
        cache: the :class:`BlockCache`.

    Pyramid level ``k`` has ``2**k`` times the GSD. It is read from the file's overview of that
    factor when there is one, else decoded from level 0 by area averaging (GDAL). A pixel of a
    coarse level is valid when its mask value is >= 250 of 255 (all or nearly all source pixels
    valid), as in :meth:`MapRaster.level`.
    """

    def __init__(self, path: str | Path, frame: GeoFrame | None = None, *, name: str | None = None,
                 cache_mb: float = 256) -> None:
        import rasterio

        self.path = Path(path)
        try:
            ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"cannot open map raster {self.path}: {exc}") from exc
        t = ds.transform
        if ds.crs is None or abs(t.b) > 1e-9 * abs(t.a) or abs(t.d) > 1e-9 * abs(t.a) or t.a <= 0 or t.e >= 0:
            ds.close()
            raise RasterError(f"{self.path} must be a north-up raster with a CRS (got crs={ds.crs}, transform={tuple(t)[:6]})")
        if ds.count < 3 or any(d != "uint8" for d in ds.dtypes[:3]):
            ds.close()
            raise RasterError(f"{self.path} must hold 3 uint8 colour bands, got {ds.count} bands {ds.dtypes}")
        file_frame = GeoFrame(ds.crs)
        if frame is not None and file_frame != frame:
            ds.close()
            raise CRSMismatchError(f"{self.path} is in {file_frame.name}, not in the expected frame {frame.name}")
        self.frame = frame or file_frame
        self.transform = Affine(*tuple(t)[:6])
        self.width, self.height = int(ds.width), int(ds.height)
        self.gsd_m = float(t.a)
        self.name = name or self.path.stem
        self.overview_factors = list(ds.overviews(1))
        self.cache = BlockCache(int(cache_mb * 2**20))
        self._datasets = {0: ds}  # pyramid level -> open rasterio dataset (overview levels opened lazily)
        self._lock = threading.RLock()  # GDAL dataset handles are not thread-safe
        self._whole: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ MapRaster-like surface
    @property
    def valid_fraction(self) -> float:
        _, valid = self.level(self.pyramid_level_for(self.gsd_m * max(self.width, self.height) / 1024))
        return float(valid.mean()) if valid.size else 0.0

    @property
    def image(self) -> np.ndarray:
        """The whole full-resolution image (small maps only; large ones: :meth:`read_window` / :meth:`overview`)."""
        return self.level(0)[0]

    @property
    def valid(self) -> np.ndarray:
        """The whole full-resolution validity mask (small maps only)."""
        return self.level(0)[1]

    def level(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image, valid)`` of the whole pyramid ``level`` (cached; refuses more than ``MAX_READ_PX``)."""
        level = max(0, int(level))
        if level not in self._whole:
            w, h = self._level_size(level)
            if w * h > MAX_READ_PX:
                raise RasterError(
                    f"map {self.name!r} level {level} is {w} x {h} px, too large to hold whole: read it by window "
                    f"(read_window(bounds_xy, gsd_m)) or as an overview (overview(max_side_px))"
                )
            self._whole[level] = self._read_level(level, 0, 0, w, h)
        return self._whole[level]

    def crop(self, center_xy: Sequence[float], size_m: float, out_px: int,
             heading_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """A square ``size_m`` ground crop centred at ``center_xy`` resampled to ``out_px`` (as :meth:`MapRaster.crop`).

        Returns ``(image [out_px, out_px, 3] uint8, valid [out_px, out_px] bool)``; parts outside
        the map are black and invalid. ``heading_deg``: compass heading of the crop's up direction.
        """
        M = crop_matrix(center_xy, size_m, out_px, heading_deg)
        return self.warp(M, (out_px, out_px), size_m / out_px)

    def warp(self, M_out_from_xy: np.ndarray, out_size: tuple[int, int], out_gsd_m: float, *,
             perspective: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Resample the map through ``M_out_from_xy`` (3x3: frame xy -> output pixel centres), as :meth:`MapRaster.warp`.

        Decodes only the window (at the pyramid level ``out_gsd_m`` asks for) that the output covers.
        """
        lvl = self.pyramid_level_for(out_gsd_m)
        w, h = int(out_size[0]), int(out_size[1])
        # the output's footprint on the map: its corners (pixel edges) mapped back to frame xy
        inv = np.linalg.inv(np.asarray(M_out_from_xy, np.float64))
        uv = np.array([[-0.5, -0.5, 1.0], [w - 0.5, -0.5, 1.0], [w - 0.5, h - 0.5, 1.0], [-0.5, h - 0.5, 1.0]])
        xy = uv @ inv.T
        if perspective:
            if np.any(xy[:, 2] <= 1e-12):  # a corner beyond the horizon: the whole map may be in view
                xy = None
            else:
                xy = xy[:, :2] / xy[:, 2:3]
        lt = self._level_transform(lvl)
        lw, lh = self._level_size(lvl)
        if xy is None:
            c0, r0, c1, r1 = 0, 0, lw, lh
        else:
            cols, rows = affine_apply(~lt, xy[:, 0], xy[:, 1])
            pad = 2  # bilinear neighbours
            c0 = max(0, int(math.floor(np.min(cols))) - pad)
            r0 = max(0, int(math.floor(np.min(rows))) - pad)
            c1 = min(lw, int(math.ceil(np.max(cols))) + pad)
            r1 = min(lh, int(math.ceil(np.max(rows))) + pad)
        shape = (h, w, 3)
        if c1 <= c0 or r1 <= r0:  # entirely off the map
            return np.zeros(shape, np.uint8), np.zeros((h, w), bool)
        if (c1 - c0) * (r1 - r0) > MAX_READ_PX:
            raise RasterError(f"a warp of map {self.name!r} would decode {(c1 - c0)} x {(r1 - r0)} px at level {lvl} "
                              "(a view up to the horizon, or an output much finer than its ground footprint): "
                              "reduce the tilt or the output size")
        img, val = self._read_level(lvl, c0, r0, c1 - c0, r1 - r0)
        win_tr = affine_compose(lt, Affine.translation(c0, r0))
        sub = MapRaster(image=img, valid=val, transform=win_tr, frame=self.frame, gsd_m=float(win_tr.a), name=self.name)
        return sub.warp(M_out_from_xy, (w, h), out_gsd_m, perspective=perspective)

    def read_window(self, bounds_xy: Sequence[float], gsd_m: float | None = None) -> MapRaster:
        """The map inside ``bounds_xy`` (frame metres) at ``gsd_m`` (default: full resolution), in memory.

        The window's grid is snapped outwards to the map's grid lines; at the map's GSD the pixels
        are copied exactly, at a coarser one they come from the matching pyramid level.
        """
        tr, w, h = self.window_grid(bounds_xy, gsd_m)
        if w * h > MAX_READ_PX:
            raise RasterError(f"window of {w} x {h} px at {tr.a:.3g} m/px is too large to read at once; "
                              "ask for a smaller window or a coarser gsd_m")
        image, valid = self.warp(cv_from_transform(tr), (w, h), tr.a)
        return MapRaster(image=image, valid=valid, transform=tr, frame=self.frame, gsd_m=float(tr.a), name=self.name)

    def overview(self, max_side_px: int = 2048) -> MapRaster:
        """The whole map in memory at the GSD that fits ``max_side_px`` (for plots; read from overviews)."""
        gsd = max(self.gsd_m, self.gsd_m * max(self.width, self.height) / float(max_side_px))
        return self.read_window(self.bounds_xy, gsd)

    def decode_all(self) -> int:
        """Decode every block of the full resolution and of each overview, one at a time, uncached;
        return how many (an integrity check: a damaged block raises RasterError naming it)."""
        n, level = 0, 0
        while True:
            w, h = self._level_size(level)
            for by in range(-(-h // BLOCK_PX)):
                for bx in range(-(-w // BLOCK_PX)):
                    self._decode_block(level, by, bx)
                    n += 1
            if max(w, h) <= BLOCK_PX or 2 ** (level + 1) not in self.overview_factors:
                return n
            level += 1

    def close(self) -> None:
        with self._lock:
            for ds in self._datasets.values():
                ds.close()
            self._datasets.clear()
            self.cache.clear()
            self._whole.clear()

    def __repr__(self) -> str:
        return (f"WindowedMap({str(self.path)!r}, {self.width} x {self.height} px at {self.gsd_m:.3g} m/px, "
                f"overviews {self.overview_factors}, cache {self.cache.nbytes / 2**20:.0f}/{self.cache.max_bytes / 2**20:.0f} MiB)")

    # ------------------------------------------------------------------ pyramid levels and blocks
    def _level_size(self, level: int) -> tuple[int, int]:
        f = 2**level
        return -(-self.width // f), -(-self.height // f)  # GDAL's overview size: ceil(W / f)

    def _level_transform(self, level: int) -> Affine:
        w, h = self._level_size(level)
        return affine_compose(self.transform, Affine.scale(self.width / w, self.height / h))

    def _read_level(self, level: int, c0: int, r0: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels ``[r0:r0+h, c0:c0+w]`` of pyramid ``level``, assembled from cached blocks."""
        img = np.empty((h, w, 3), np.uint8)
        val = np.empty((h, w), bool)
        for by in range(r0 // BLOCK_PX, (r0 + h - 1) // BLOCK_PX + 1):
            for bx in range(c0 // BLOCK_PX, (c0 + w - 1) // BLOCK_PX + 1):
                bimg, bval = self._block(level, by, bx)
                y0, x0 = by * BLOCK_PX, bx * BLOCK_PX
                ys, ye = max(r0, y0), min(r0 + h, y0 + bimg.shape[0])
                xs, xe = max(c0, x0), min(c0 + w, x0 + bimg.shape[1])
                img[ys - r0 : ye - r0, xs - c0 : xe - c0] = bimg[ys - y0 : ye - y0, xs - x0 : xe - x0]
                val[ys - r0 : ye - r0, xs - c0 : xe - c0] = bval[ys - y0 : ye - y0, xs - x0 : xe - x0]
        return img, val

    def _block(self, level: int, by: int, bx: int) -> tuple[np.ndarray, np.ndarray]:
        key = (level, by, bx)
        item = self.cache.get(key)
        if item is None:
            item = self._decode_block(level, by, bx)
            self.cache.put(key, item)
        return item

    def _decode_block(self, level: int, by: int, bx: int) -> tuple[np.ndarray, np.ndarray]:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        lw, lh = self._level_size(level)
        c0, r0 = bx * BLOCK_PX, by * BLOCK_PX
        w, h = min(BLOCK_PX, lw - c0), min(BLOCK_PX, lh - r0)
        f = 2**level
        with self._lock, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            ds, exact = self._dataset_for(level)
            try:
                if exact:  # the file's own overview (or level 0): a plain windowed read
                    win = Window(c0, r0, w, h)
                    data = ds.read([1, 2, 3], window=win)
                    mask = ds.dataset_mask(window=win)
                else:  # no such overview: average the level-0 pixels (GDAL RasterIO decimation)
                    win = Window(c0 * f, r0 * f, min(w * f, self.width - c0 * f), min(h * f, self.height - r0 * f))
                    data = ds.read([1, 2, 3], window=win, out_shape=(3, h, w), resampling=Resampling.average)
                    mask = ds.dataset_mask(window=win, out_shape=(h, w), resampling=Resampling.average)
            except Exception as exc:  # RasterioIOError, or a CPLE_* error from a damaged block
                raise RasterError(f"cannot read block {key_str(level, by, bx)} of map {self.path}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
        return np.ascontiguousarray(np.moveaxis(data, 0, -1)), mask >= 250

    def _dataset_for(self, level: int):
        """``(dataset, exact)``: the open dataset whose grid is pyramid ``level`` (exact), else level 0."""
        import rasterio

        if level in self._datasets:
            return self._datasets[level], True
        f = 2**level
        if f in self.overview_factors:
            ds = rasterio.open(self.path, overview_level=self.overview_factors.index(f))
            if (ds.width, ds.height) == self._level_size(level):
                self._datasets[level] = ds
                return ds, True
            ds.close()
        return self._datasets[0], False


def key_str(level: int, by: int, bx: int) -> str:
    return f"(level {level}, row {by}, col {bx})"


# ============================================================================ writing
def write_vrt(paths: Sequence[str | Path], out: str | Path, *, relative: bool = True) -> Path:
    """Mosaic GeoTIFFs that share one CRS and pixel grid into a GDAL VRT (``gdalbuildvrt`` without GDAL's tools).

    Every file must be north-up, in the same CRS, with the same GSD and with corners on the same
    pixel grid; they may have gaps (no data there) but should not overlap (the first one wins in
    GDAL). Band count and types come from the first file; each file's mask (internal mask, alpha
    or nodata) becomes the VRT's mask band. Files in other CRSs or GSDs: pass them to
    :func:`foenet_ros.geo.open_map` / ``foenet build-index`` directly, which reproject them.

    Returns ``out`` (written atomically). Raises RasterError when the files do not share a grid.
    """
    import rasterio

    from ..utils import atomic_path

    out = Path(out)
    paths = [Path(p) for p in paths]
    if not paths:
        raise RasterError("write_vrt needs at least one file")
    metas = []
    for p in paths:
        try:
            with rasterio.open(p) as ds:
                metas.append((p, ds.crs, ds.transform, ds.width, ds.height, ds.count, ds.dtypes))
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"cannot read {p}: {exc}") from exc
    _, crs0, t0, _, _, count, dtypes = metas[0]
    gsd_x, gsd_y = t0.a, t0.e
    for p, crs, t, _, _, c, _ in metas:
        if crs != crs0 or abs(t.a - gsd_x) > 1e-9 * abs(gsd_x) or abs(t.e - gsd_y) > 1e-9 * abs(gsd_y) or t.b or t.d:
            raise RasterError(f"{p} does not share the CRS/GSD of {metas[0][0]} (north-up, {gsd_x:g} m/px): "
                              "pass the files to open_map / foenet build-index instead, which reprojects them")
        if c < count:
            raise RasterError(f"{p} has {c} bands, {metas[0][0]} has {count}")
    xmin = min(t.c for _, _, t, *_ in metas)
    ymax = max(t.f for _, _, t, *_ in metas)
    offs = []
    for p, _, t, w, h, _, _ in metas:
        fc, fr = (t.c - xmin) / gsd_x, (t.f - ymax) / gsd_y
        if abs(fc - round(fc)) > 1e-3 or abs(fr - round(fr)) > 1e-3:
            raise RasterError(f"{p} is not on the pixel grid of the other files (offset {fc:.3f}, {fr:.3f} px)")
        offs.append((p, int(round(fc)), int(round(fr)), w, h))
    W = max(c + w for _, c, _, w, _ in offs)
    H = max(r + h for _, _, r, _, h in offs)

    def source(p: Path, band: str, c: int, r: int, w: int, h: int) -> str:
        name = escape(str(p.resolve().relative_to(out.parent.resolve()) if relative and _under(p, out.parent) else p.resolve()))
        rel = "1" if relative and _under(p, out.parent) else "0"
        return (f'<SimpleSource><SourceFilename relativeToVRT="{rel}">{name}</SourceFilename><SourceBand>{band}</SourceBand>'
                f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/><DstRect xOff="{c}" yOff="{r}" xSize="{w}" ySize="{h}"/></SimpleSource>')

    gdal_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
                 "float32": "Float32", "float64": "Float64"}
    lines = [f'<VRTDataset rasterXSize="{W}" rasterYSize="{H}">', f"<SRS>{escape(crs0.to_wkt())}</SRS>",
             f"<GeoTransform>{xmin!r}, {gsd_x!r}, 0, {ymax!r}, 0, {gsd_y!r}</GeoTransform>"]
    for b in range(1, count + 1):
        lines.append(f'<VRTRasterBand dataType="{gdal_type.get(dtypes[b - 1], "Byte")}" band="{b}">')
        lines += [source(p, str(b), c, r, w, h) for p, c, r, w, h in offs]
        lines.append("</VRTRasterBand>")
    lines.append('<MaskBand><VRTRasterBand dataType="Byte">')
    lines += [source(p, "mask,1", c, r, w, h) for p, c, r, w, h in offs]
    lines.append("</VRTRasterBand></MaskBand></VRTDataset>")
    with atomic_path(out, suffix=".vrt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out


def _under(p: Path, folder: Path) -> bool:
    try:
        p.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


#: GeoTIFF compression of :func:`write_cog`: ``jpeg`` (lossy, YCbCr, ~10x smaller) or lossless ``deflate``
COG_COMPRESSIONS = ("jpeg", "deflate")


def write_cog(src: str | Path, out: str | Path, *, compression: str = "jpeg", quality: int = 90,
              cache_mb: int = 256) -> Path:
    """Copy a north-up raster (GeoTIFF/VRT, 3 bands + mask) into a Cloud Optimized GeoTIFF.

    512 px blocks, overviews down to < 512 px (area average), the mask stored internally (so a
    JPEG-compressed map keeps exact nodata edges). GDAL streams it block by block: the memory
    used is bounded by ``cache_mb`` whatever the map's size. Written atomically.
    """
    import rasterio
    import rasterio.shutil

    from ..utils import atomic_path

    if compression not in COG_COMPRESSIONS:
        raise RasterError(f"compression must be one of {COG_COMPRESSIONS}, got {compression!r}")
    opts = dict(driver="COG", BLOCKSIZE=BLOCK_PX, OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER")
    if compression == "jpeg":
        opts.update(COMPRESS="JPEG", QUALITY=int(quality))
    else:
        opts.update(COMPRESS="DEFLATE", PREDICTOR="YES")
    with atomic_path(out, suffix=".tif") as tmp, rasterio.Env(GDAL_CACHEMAX=int(cache_mb)):
        rasterio.shutil.copy(str(src), str(tmp), **opts)
    return Path(out)


def write_geotiff_window(path: str | Path, m: MapRaster, *, compress: str = "deflate") -> Path:
    """Write an in-memory window (3 bands + internal mask) as a tiled GeoTIFF, atomically (the parts of a build)."""
    import rasterio

    from ..utils import atomic_path

    img = m.image if m.image.ndim == 3 else np.repeat(m.image[:, :, None], 3, axis=2)
    profile = dict(driver="GTiff", width=m.width, height=m.height, count=3, dtype="uint8",
                   crs=m.frame.to_rasterio(), transform=m.transform, compress=compress)
    if m.width >= 256 and m.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path, suffix=".tif") as tmp, rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(np.ascontiguousarray(img[:, :, :3]), 2, 0))
            dst.write_mask(m.valid.astype(np.uint8) * 255)
    return Path(path)
