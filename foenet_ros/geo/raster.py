"""Map rasters in the local metric frame: ``MapRaster`` and ``read_map``.

A ``MapRaster`` is a north-up image in a metric frame (a UTM zone) with an
affine georeference and a validity mask. ``read_map`` turns what users have
(GeoTIFFs in any CRS, PNG/JPG tiles with a corner lat/lon sidecar, images with a
world file) into one such raster: every input is reprojected with
``rasterio.warp.reproject`` into the frame and mosaicked by georeference.

Pixel convention of ``transform`` (as in rasterio/GDAL): pixel ``(col, row)``
covers ``[col, col+1) x [row, row+1)`` and ``transform * (col, row)`` is its
*top-left corner*; the centre of pixel ``(i, j)`` is ``transform * (i + 0.5, j + 0.5)``.
OpenCV warps use pixel *centres* at integers; :meth:`MapRaster.cv_from_xy` gives
that matrix so nobody has to remember the half pixel.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from affine import Affine

from ..errors import CRSMismatchError, RasterError
from .crs import GeoFrame

log = logging.getLogger(__name__)

def affine_apply(t: Affine, x, y):
    """``t * (x, y)`` for scalars or arrays, without the operator (deprecated differently across affine versions)."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def affine_compose(t1: Affine, t2: Affine) -> Affine:
    """``t1`` after ``t2`` (the matrix product ``t1 @ t2``)."""
    m = np.array([[t1.a, t1.b, t1.c], [t1.d, t1.e, t1.f], [0, 0, 1.0]]) @ np.array(
        [[t2.a, t2.b, t2.c], [t2.d, t2.e, t2.f], [0, 0, 1.0]]
    )
    return Affine(*m[0], *m[1])


# interpolation flags kept in one place
_LINEAR = cv2.INTER_LINEAR
_NEAREST = cv2.INTER_NEAREST


def cv_from_transform(transform: Affine, scale: float = 1.0) -> np.ndarray:
    """3x3 matrix: frame ``(x, y, 1)`` -> OpenCV pixel-centre coords of the grid ``transform``
    (corner convention), optionally scaled by ``scale`` (0.5 = one pyramid level coarser)."""
    inv = ~transform
    M = np.array([[inv.a, inv.b, inv.c], [inv.d, inv.e, inv.f], [0.0, 0.0, 1.0]])
    # corner coords -> scaled corner coords -> centre coords
    S = np.array([[scale, 0.0, -0.5], [0.0, scale, -0.5], [0.0, 0.0, 1.0]])
    return S @ M


class GridGeometry:
    """Geometry of a north-up raster grid, shared by in-memory (:class:`MapRaster`) and windowed
    (:class:`foenet_ros.geo.windowed.WindowedMap`) maps.

    Subclasses provide ``transform`` (corner convention), ``width``, ``height``, ``gsd_m`` and ``frame``.
    """

    transform: Affine
    gsd_m: float
    frame: GeoFrame

    @property
    def bounds_xy(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the raster's outer edges, metres."""
        t = self.transform
        x0, y0 = t.c, t.f
        x1, y1 = affine_apply(t, self.width, self.height)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @property
    def center_xy(self) -> tuple[float, float]:
        xmin, ymin, xmax, ymax = self.bounds_xy
        return ((xmin + xmax) / 2.0, (ymin + ymax) / 2.0)

    @property
    def size_m(self) -> tuple[float, float]:
        """Ground extent ``(width_m, height_m)``."""
        xmin, ymin, xmax, ymax = self.bounds_xy
        return (xmax - xmin, ymax - ymin)

    def xy_to_pixel(self, x, y):
        """Frame metres -> continuous ``(col, row)`` in the corner convention (``floor`` gives the index)."""
        col, row = affine_apply(~self.transform, np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        if np.ndim(col) == 0:
            return float(col), float(row)
        return np.asarray(col), np.asarray(row)

    def pixel_to_xy(self, col, row):
        """Continuous ``(col, row)`` (corner convention) -> frame metres. Use ``col + 0.5`` for a centre."""
        x, y = affine_apply(self.transform, np.asarray(col, dtype=np.float64), np.asarray(row, dtype=np.float64))
        if np.ndim(x) == 0:
            return float(x), float(y)
        return np.asarray(x), np.asarray(y)

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """``(lon_min, lat_min, lon_max, lat_max)`` of the raster corners, degrees."""
        xmin, ymin, xmax, ymax = self.bounds_xy
        lon, lat = self.frame.to_lonlat(np.array([xmin, xmax, xmax, xmin]), np.array([ymin, ymin, ymax, ymax]))
        return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())

    def cv_from_xy(self, level: int = 0) -> np.ndarray:
        """3x3 matrix: frame ``(x, y, 1)`` -> OpenCV pixel-centre coords of ``cv2.pyrDown`` pyramid ``level``.

        ``cv2.pyrDown`` centres its output pixel j on input pixel 2j, so level-k pixel j sits on level-0
        pixel 2^k j: *centre* coordinates scale by 2^-k. (Scaling corner coordinates, right for a
        box-averaged overview like GDAL's, shifts a pyrDown level by (1 - 2^-k) / 2 of a level-0 pixel:
        2.5 m at level 1 of a 5 m map -- see test/test_geo_pyramid.py.)
        """
        s = 0.5**level
        return np.diag([s, s, 1.0]) @ cv_from_transform(self.transform)

    def pyramid_level_for(self, out_gsd_m: float) -> int:
        """The coarsest pyramid level whose GSD is still finer than ``out_gsd_m`` (anti-aliasing)."""
        ratio = out_gsd_m / self.gsd_m
        if not math.isfinite(ratio) or ratio < 2.0:
            return 0
        return int(min(8, math.floor(math.log2(ratio))))

    def window_grid(self, bounds_xy: Sequence[float], gsd_m: float | None = None) -> tuple[Affine, int, int]:
        """The pixel grid of ``bounds_xy`` at ``gsd_m`` (default: the raster's), snapped outwards to
        the raster's own grid lines: ``(transform, width, height)``.

        Windows read at the raster's GSD are therefore pixel-aligned with it (a copy, no resampling).
        """
        gsd = float(gsd_m or self.gsd_m)
        if not (math.isfinite(gsd) and gsd > 0):
            raise RasterError(f"gsd_m must be positive, got {gsd_m}")
        x0, y1 = self.transform.c, self.transform.f  # grid origin: the raster's top-left corner
        xmin, ymin, xmax, ymax = (float(v) for v in bounds_xy)
        if not (xmax > xmin and ymax > ymin):
            raise RasterError(f"window bounds must be (xmin, ymin, xmax, ymax) with min < max, got {tuple(bounds_xy)}")
        eps = 1e-6  # of a pixel: float noise must not add a row/column
        c0 = math.floor((xmin - x0) / gsd + eps)
        c1 = math.ceil((xmax - x0) / gsd - eps)
        r0 = math.floor((y1 - ymax) / gsd + eps)
        r1 = math.ceil((y1 - ymin) / gsd - eps)
        return Affine(gsd, 0.0, x0 + c0 * gsd, 0.0, -gsd, y1 - r0 * gsd), max(1, c1 - c0), max(1, r1 - r0)


@dataclass(eq=False)  # arrays inside: equality is identity
class MapRaster(GridGeometry):
    """A georeferenced, north-up map image in a local metric frame.

    Attributes:
        image: ``uint8`` RGB ``[H, W, 3]`` (or ``[H, W, C]`` / ``[H, W]`` when other bands were requested).
        valid: ``bool [H, W]``; ``True`` where the map has real data (nodata/alpha -> ``False``).
        transform: pixel ``(col, row)`` (corner convention) -> frame ``(x, y)`` metres; north-up.
        frame: the local metric frame (UTM zone).
        gsd_m: ground sampling distance, metres per pixel.
        name: a label (file stem, "synthetic", ...).
    """

    image: np.ndarray
    valid: np.ndarray
    transform: Affine
    frame: GeoFrame
    gsd_m: float
    name: str = "map"
    _pyramid: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # per-instance cache: replace() must not share it

    def __post_init__(self) -> None:
        if self.image.dtype != np.uint8 or self.image.ndim not in (2, 3):
            raise RasterError(f"map {self.name!r}: image must be uint8 [H,W] or [H,W,C], got {self.image.dtype} {self.image.shape}")
        if self.valid.shape != self.image.shape[:2]:
            raise RasterError(f"map {self.name!r}: valid mask {self.valid.shape} != image {self.image.shape[:2]}")
        t = self.transform
        if abs(t.b) > 1e-9 * abs(t.a) or abs(t.d) > 1e-9 * abs(t.a) or t.a <= 0 or t.e >= 0:
            raise RasterError(f"map {self.name!r}: transform must be north-up (no rotation, y decreasing), got {t}")
        self.valid = self.valid.astype(bool, copy=False)

    # ------------------------------------------------------------------ geometry
    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0

    # ------------------------------------------------------------------ sampling
    def level(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image, valid)`` at pyramid ``level`` (each level halves the resolution; cached).

        Used to avoid aliasing when sampling the map much coarser than its GSD.
        """
        if level <= 0:
            return self.image, self.valid
        if level not in self._pyramid:
            img, val = self.level(level - 1)
            if min(img.shape[:2]) < 2:
                return img, val
            small = _pyr_down(img)
            # a coarse pixel is valid only when (almost) all of its source pixels are
            vsmall = cv2.pyrDown(val.astype(np.uint8) * 255) >= 250
            self._pyramid[level] = (small, vsmall)
        return self._pyramid[level]

    def warp(
        self, M_out_from_xy: np.ndarray, out_size: tuple[int, int], out_gsd_m: float, *, perspective: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Resample the map through ``M_out_from_xy`` (3x3: frame xy -> output pixel centres).

        Args:
            M_out_from_xy: 3x3 affine or projective matrix.
            out_size: ``(width, height)`` of the output.
            out_gsd_m: typical ground size of one output pixel (chooses the pyramid level).
            perspective: use ``warpPerspective`` (else ``warpAffine`` with the top two rows).
        Returns:
            ``(image, valid)``; pixels outside the map are 0 and invalid.
        """
        lvl = self.pyramid_level_for(out_gsd_m)
        img, val = self.level(lvl)
        # output pixel -> map pixel (at this level)
        M = self.cv_from_xy(lvl) @ np.linalg.inv(M_out_from_xy)
        flags_img = _LINEAR | cv2.WARP_INVERSE_MAP
        # the mask is warped linearly and thresholded high: an output pixel is valid only when
        # every map pixel its bilinear sample touches is valid (no half-black edge pixels)
        flags_val = _LINEAR | cv2.WARP_INVERSE_MAP
        w, h = int(out_size[0]), int(out_size[1])
        if perspective:
            out = _warp_channels(img, lambda a: cv2.warpPerspective(a, M, (w, h), flags=flags_img, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            ok = cv2.warpPerspective(val.astype(np.uint8) * 255, M, (w, h), flags=flags_val, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            return out, ok >= 250
        else:
            A = M[:2]
            out = _warp_channels(img, lambda a: cv2.warpAffine(a, A, (w, h), flags=flags_img, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            ok = cv2.warpAffine(val.astype(np.uint8) * 255, A, (w, h), flags=flags_val, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out, ok >= 250

    def crop(
        self, center_xy: Sequence[float], size_m: float, out_px: int, heading_deg: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """A square ``size_m`` x ``size_m`` ground crop centred at ``center_xy``, resampled to ``out_px``.

        ``heading_deg`` = compass heading of the crop's *up* direction (0 = north-up; 90 = east is up).
        Returns ``(image [out_px, out_px(, C)] uint8, valid [out_px, out_px] bool)``; parts outside
        the map are black and invalid.
        """
        M = crop_matrix(center_xy, size_m, out_px, heading_deg)
        return self.warp(M, (out_px, out_px), size_m / out_px)

    def read_window(self, bounds_xy: Sequence[float], gsd_m: float | None = None) -> "MapRaster":
        """The map inside ``bounds_xy`` (frame metres) at ``gsd_m`` (default: the map's), as a new MapRaster.

        The window's grid is snapped outwards to the map's grid lines (:meth:`window_grid`): at the
        map's own GSD it is an exact pixel copy; at another GSD it is resampled (pyramid + bilinear).
        Parts outside the map are black and invalid.
        """
        tr, w, h = self.window_grid(bounds_xy, gsd_m)
        if abs(tr.a - self.gsd_m) <= 1e-9 * self.gsd_m:
            image = np.zeros((h, w) + self.image.shape[2:], np.uint8)
            valid = np.zeros((h, w), bool)
            c0 = int(round((tr.c - self.transform.c) / tr.a))
            r0 = int(round((self.transform.f - tr.f) / tr.a))
            sc, sr = slice(max(c0, 0), min(c0 + w, self.width)), slice(max(r0, 0), min(r0 + h, self.height))
            if sc.start < sc.stop and sr.start < sr.stop:
                dc, dr = slice(sc.start - c0, sc.stop - c0), slice(sr.start - r0, sr.stop - r0)
                image[dr, dc] = self.image[sr, sc]
                valid[dr, dc] = self.valid[sr, sc]
        else:
            image, valid = self.warp(cv_from_transform(tr), (w, h), tr.a)
        return MapRaster(image=image, valid=valid, transform=tr, frame=self.frame, gsd_m=float(tr.a), name=self.name)

    # ------------------------------------------------------------------ io
    def to_geotiff(self, path: str | Path) -> Path:
        """Write the raster (bands + an alpha/mask from ``valid``) as a GeoTIFF, atomically."""
        import rasterio

        from ..utils import atomic_path

        img = self.image if self.image.ndim == 3 else self.image[:, :, None]
        with atomic_path(path, suffix=".tif") as tmp:
            with rasterio.open(
                tmp, "w", driver="GTiff", width=self.width, height=self.height, count=img.shape[2],
                dtype="uint8", crs=self.frame.to_rasterio(), transform=self.transform,
                compress="deflate", tiled=True,
            ) as dst:
                dst.write(np.moveaxis(img, 2, 0))
                dst.write_mask(self.valid.astype(np.uint8) * 255)
        return Path(path)


def crop_matrix(center_xy: Sequence[float], size_m: float, out_px: int, heading_deg: float = 0.0) -> np.ndarray:
    """3x3 affine: frame ``(x, y, 1)`` -> pixel centres of a square crop (see :meth:`MapRaster.crop`)."""
    if not (size_m > 0 and out_px > 0):
        raise RasterError(f"crop needs size_m > 0 and out_px > 0, got {size_m}, {out_px}")
    s = out_px / float(size_m)  # pixels per metre
    h = math.radians(heading_deg)
    right = np.array([math.cos(h), -math.sin(h)])
    up = np.array([math.sin(h), math.cos(h)])
    c = (out_px - 1) / 2.0
    cx, cy = float(center_xy[0]), float(center_xy[1])
    # u = c + s * right . (p - center);  v = c - s * up . (p - center)
    M = np.array(
        [
            [s * right[0], s * right[1], c - s * (right[0] * cx + right[1] * cy)],
            [-s * up[0], -s * up[1], c + s * (up[0] * cx + up[1] * cy)],
            [0.0, 0.0, 1.0],
        ]
    )
    return M


def _pyr_down(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3 and img.shape[2] > 4:
        return np.stack([cv2.pyrDown(img[:, :, i]) for i in range(img.shape[2])], axis=2)
    out = cv2.pyrDown(img)
    if img.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


def _warp_channels(img: np.ndarray, fn) -> np.ndarray:
    """Apply an OpenCV warp to images with any channel count (OpenCV handles at most 4)."""
    if img.ndim == 2 or img.shape[2] <= 4:
        out = fn(np.ascontiguousarray(img))
        if img.ndim == 3 and out.ndim == 2:
            out = out[:, :, None]
        return out
    return np.stack([fn(np.ascontiguousarray(img[:, :, i])) for i in range(img.shape[2])], axis=2)


# =============================================================================================
# read_map: files -> one MapRaster in a local metric frame
# =============================================================================================

#: the corner lat/lon sidecar read by :func:`read_map` next to plain images
SIDECAR_NAME = "map_metadata.txt"
_WORLD_EXTS = {".png": (".pgw", ".pngw"), ".jpg": (".jgw", ".jpgw"), ".jpeg": (".jgw", ".jpegw"),
               ".tif": (".tfw", ".tifw"), ".tiff": (".tfw", ".tiffw")}
#: refuse to allocate mosaics larger than this many bytes (ask for a coarser gsd_m instead)
MAX_MAP_BYTES = 3 * 1024**3


@dataclass(frozen=True)
class LatLonBounds:
    """Corner coordinates of a north-up image from a bounds sidecar (WGS84 degrees)."""

    top_left_lat: float
    top_left_lon: float
    bottom_right_lat: float
    bottom_right_lon: float


def read_bounds_sidecar(path: str | Path) -> dict[str, LatLonBounds]:
    """Parse a ``map_metadata.txt`` bounds sidecar (aero-vloc format).

    Format: a header line ``filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon``
    then one whitespace-separated row per image. Returns ``{filename: LatLonBounds}``.

    Raises:
        RasterError: unreadable file, wrong header/columns, non-numeric or impossible values.
    """
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines()]
    except OSError as exc:
        raise RasterError(f"cannot read bounds sidecar {path}: {exc}") from exc
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    expected = ["filename", "top_left_lat", "top_left_lon", "bottom_right_lat", "bottom_right_lon"]
    if not lines or lines[0].split() != expected:
        raise RasterError(
            f"{path}: first line must be the header {' '.join(expected)!r} "
            f"(got {lines[0] if lines else 'an empty file'!r})"
        )
    out: dict[str, LatLonBounds] = {}
    for n, ln in enumerate(lines[1:], start=2):
        cols = ln.split()
        if len(cols) != 5:
            raise RasterError(f"{path}:{n}: expected 5 columns (filename + 4 numbers), got {len(cols)}: {ln!r}")
        try:
            tl_lat, tl_lon, br_lat, br_lon = (float(c) for c in cols[1:])
        except ValueError as exc:
            raise RasterError(f"{path}:{n}: non-numeric coordinate in {ln!r}") from exc
        if not (-90 <= br_lat < tl_lat <= 90 and -180 <= tl_lon <= 180 and -180 <= br_lon <= 180 and tl_lon != br_lon):
            raise RasterError(
                f"{path}:{n}: impossible bounds (top-left lat must be north of bottom-right lat, "
                f"lon in -180..180): {ln!r}"
            )
        out[cols[0]] = LatLonBounds(tl_lat, tl_lon, br_lat, br_lon)
    if not out:
        raise RasterError(f"{path}: the sidecar lists no images")
    return out


def read_world_file(path: str | Path) -> Affine:
    """Parse an ESRI world file (6 lines: A, D, B, E, C, F) into a corner-convention ``Affine``.

    ``C, F`` in a world file are the coordinates of the *centre* of the top-left pixel.
    """
    path = Path(path)
    try:
        vals = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError) as exc:
        raise RasterError(f"cannot parse world file {path}: {exc}") from exc
    if len(vals) != 6:
        raise RasterError(f"world file {path} must hold 6 numbers (A D B E C F), got {len(vals)}")
    A, D, B, E, C, F = vals
    return Affine(A, B, C - A / 2 - B / 2, D, E, F - D / 2 - E / 2)


@dataclass
class _Source:
    """One input file with a resolved CRS and transform (corner convention)."""

    path: Path
    crs: object  # rasterio CRS
    transform: Affine
    width: int
    height: int
    georef: str  # "geotiff" | "sidecar" | "worldfile"
    native_gsd_m: float = 0.0  # in the destination frame, filled later
    dst_bounds: tuple = ()  # (xmin, ymin, xmax, ymax) in the destination frame, filled later
    band_idx: list = field(default_factory=list)  # 1-based bands to read, filled later
    nodata: float | None = None
    stretch: np.ndarray | None = None  # [C, 2] 2-98 % range of non-uint8 data, filled later


def _open_checked(path: Path):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    if not path.exists():
        raise RasterError(f"map file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(f"cannot read map raster {path}: {exc}; is it a GeoTIFF/PNG/JPEG image?") from exc


def _resolve_source(path: Path, world_crs) -> _Source:
    """Find the georeference of ``path``: embedded (GeoTIFF), bounds sidecar, or world file."""
    from rasterio.crs import CRS as RioCRS

    with _open_checked(path) as ds:
        w, h = ds.width, ds.height
        crs, tr = ds.crs, ds.transform
        # 1. a bounds sidecar next to the file wins for plain images (the aero-vloc layout)
        sidecar = path.parent / SIDECAR_NAME
        if sidecar.exists() and (crs is None or ds.driver != "GTiff"):
            table = read_bounds_sidecar(sidecar)
            if path.name in table:
                b = table[path.name]
                # web-map tiles are aligned in Web Mercator: interpolate the corners linearly there
                from pyproj import Transformer

                t = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
                x0, y0 = t.transform(b.top_left_lon, b.top_left_lat)
                x1, y1 = t.transform(b.bottom_right_lon, b.bottom_right_lat)
                tr = Affine((x1 - x0) / w, 0.0, x0, 0.0, (y1 - y0) / h, y0)
                return _Source(path, RioCRS.from_epsg(3857), tr, w, h, "sidecar")
        # 2. a world file
        for ext in _WORLD_EXTS.get(path.suffix.lower(), ()) + (".wld",):
            wf = path.with_suffix(ext)
            if wf.exists():
                tr = read_world_file(wf)
                prj = path.with_suffix(".prj")
                if prj.exists():
                    crs = RioCRS.from_wkt(prj.read_text())
                elif world_crs is not None:
                    crs = RioCRS.from_user_input(world_crs)
                elif abs(tr.c) <= 180 and abs(tr.f) <= 90 and abs(tr.a) < 0.1:
                    log.warning("%s: world file without .prj; coordinates look like degrees -> assuming EPSG:4326", wf)
                    crs = RioCRS.from_epsg(4326)
                else:
                    raise RasterError(
                        f"{wf} gives no CRS and its coordinates are not degrees: pass world_crs=... "
                        "(e.g. 'EPSG:32632') or put a .prj file next to it"
                    )
                return _Source(path, crs, tr, w, h, "worldfile")
        # 3. an embedded georeference (GeoTIFF, or any GDAL format carrying one)
        if crs is not None and not tr.is_identity:
            return _Source(path, crs, tr, w, h, "geotiff")
    raise RasterError(
        f"{path} is not georeferenced: it has no CRS/transform, no {SIDECAR_NAME} row for it "
        f"and no world file; write a GeoTIFF (gdal_translate -a_srs -a_ullr) or add a "
        f"{SIDECAR_NAME} with 'filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon'"
    )


def _pick_bands(count: int, colorinterp, bands: Sequence[int] | None, path: Path) -> tuple[list[int], bool]:
    """1-based band indices to read and whether to replicate one gray band to RGB."""
    from rasterio.enums import ColorInterp

    data_bands = [i + 1 for i, ci in enumerate(colorinterp) if ci != ColorInterp.alpha] or list(range(1, count + 1))
    if bands is not None:
        bands = [int(b) for b in bands]
        bad = [b for b in bands if not 1 <= b <= count]
        if bad or not bands:
            raise RasterError(f"{path} has {count} bands (1..{count}); cannot read bands {list(bands)}")
        return bands, False
    if len(data_bands) >= 3:
        return data_bands[:3], False
    return data_bands[:1], True


def open_map(
    paths: str | Path | Sequence[str | Path],
    *,
    frame: GeoFrame | None = None,
    gsd_m: float | None = None,
    bands: Sequence[int] | None = None,
    world_crs: object = None,
    name: str | None = None,
) -> "MapSource":
    """Open one or several georeferenced images as one windowed :class:`MapSource` (nothing is read whole).

    Same inputs, frame and GSD rules as :func:`read_map` (which is ``open_map(...).read_all()``);
    use this for maps too large for memory: :meth:`MapSource.read_window` reads any part of the
    mosaic, reprojected into ``frame`` at any GSD, touching only the source pixels it needs
    (and their overviews when reading coarser). Accepts GeoTIFF/COG, GDAL VRT mosaics, and
    images with a bounds sidecar or world file.

    Raises:
        RasterError: missing/unreadable/ungeoreferenced file, bad band, bad ``gsd_m``.
        CRSMismatchError: ``frame`` is not a metric frame or lies too far from the map.
    """
    from rasterio.warp import calculate_default_transform, transform_bounds

    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise RasterError("read_map needs at least one map file")
    sources = [_resolve_source(p, world_crs) for p in paths]

    # ---- destination frame: UTM zone of the centre of everything
    lonlat_boxes = [transform_bounds(s.crs, "EPSG:4326", *_src_bounds(s), densify_pts=21) for s in sources]
    lon_c = (min(b[0] for b in lonlat_boxes) + max(b[2] for b in lonlat_boxes)) / 2
    lat_c = (min(b[1] for b in lonlat_boxes) + max(b[3] for b in lonlat_boxes)) / 2
    if frame is None:
        frame = GeoFrame.for_lonlat(lon_c, lat_c)
    elif not isinstance(frame, GeoFrame):
        frame = GeoFrame(frame)
    _check_frame_near(frame, lon_c, lat_c)
    dst_crs = frame.to_rasterio()

    # ---- native resolution of each source in the frame, destination grid
    for s in sources:
        tr, _, _ = calculate_default_transform(s.crs, dst_crs, s.width, s.height, *_src_bounds(s))
        s.native_gsd_m = float(abs(tr.a))
    native = min(s.native_gsd_m for s in sources)
    gsd = float(gsd_m) if gsd_m is not None else float(f"{native:.4g}")
    if not (math.isfinite(gsd) and gsd > 0):
        raise RasterError(f"gsd_m must be positive, got {gsd_m}")
    boxes = [transform_bounds(s.crs, dst_crs, *_src_bounds(s), densify_pts=21) for s in sources]
    for s, b in zip(sources, boxes):
        s.dst_bounds = b
    # the grid is anchored on the finest source's corner, so a file already in the frame at its
    # native GSD is copied pixel for pixel (no half-pixel resampling blur)
    finest = min(range(len(sources)), key=lambda i: (sources[i].native_gsd_m, str(sources[i].path)))
    ax, ay = boxes[finest][0], boxes[finest][3]
    eps = 1e-3  # of a pixel: float noise from transform_bounds must not add a row/column
    xmin = ax + math.floor((min(b[0] for b in boxes) - ax) / gsd + eps) * gsd
    ymin = ay + math.floor((min(b[1] for b in boxes) - ay) / gsd + eps) * gsd
    xmax = ax + math.ceil((max(b[2] for b in boxes) - ax) / gsd - eps) * gsd
    ymax = ay + math.ceil((max(b[3] for b in boxes) - ay) / gsd - eps) * gsd
    W, H = int(round((xmax - xmin) / gsd)), int(round((ymax - ymin) / gsd))

    # finer sources first; "first valid pixel wins" then makes the result independent of file order
    order = sorted(range(len(sources)), key=lambda i: (sources[i].native_gsd_m, str(sources[i].path)))
    n_channels, gray_to_rgb = None, False
    for i in order:
        s = sources[i]
        with _open_checked(s.path) as ds:
            s.band_idx, gray = _pick_bands(ds.count, ds.colorinterp, bands, s.path)
            s.nodata = ds.nodata
            if ds.dtypes[s.band_idx[0] - 1] != "uint8":
                s.stretch = _stretch_of(ds, s.band_idx, s.path)
        if n_channels is None:
            n_channels, gray_to_rgb = len(s.band_idx), gray
        elif len(s.band_idx) != n_channels:
            raise RasterError(f"{s.path} yields {len(s.band_idx)} bands but earlier files {n_channels}; pass bands=[...]")
    return MapSource(
        sources=[sources[i] for i in order], frame=frame, gsd_m=gsd, native_gsd_m=native,
        transform=Affine(gsd, 0.0, xmin, 0.0, -gsd, ymax), width=W, height=H,
        name=name or paths[0].stem, n_channels=int(n_channels), gray_to_rgb=gray_to_rgb,
        explicit_bands=bands is not None,
    )


@dataclass(eq=False)
class MapSource(GridGeometry):
    """Georeferenced files opened as one mosaic in a metric frame, read by window (see :func:`open_map`).

    Attributes:
        sources: the input files (finest first), with their CRS and georeference.
        frame: the local metric frame every window is reprojected into.
        gsd_m: the GSD of the mosaic's grid (requested, or the finest native one).
        native_gsd_m: the finest native GSD among the sources, in the frame.
        transform / width / height: the mosaic's grid (corner convention), covering every source.
        name: a label (default: the first file's stem).
    """

    sources: list
    frame: GeoFrame
    gsd_m: float
    native_gsd_m: float
    transform: Affine
    width: int
    height: int
    name: str
    n_channels: int
    gray_to_rgb: bool
    explicit_bands: bool = False

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.sources]

    def identity(self) -> list[dict]:
        """What identifies the inputs cheaply (path, size, mtime): a resumable build keys its chunks on it."""
        out = []
        for s in sorted(self.sources, key=lambda s: str(s.path)):
            st = s.path.stat()
            out.append({"path": str(s.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        return out

    def read_all(self) -> MapRaster:
        """The whole mosaic in memory (:func:`read_map`); refuses more than ``MAX_MAP_BYTES``."""
        if self.width * self.height * (3 if self.gray_to_rgb else self.n_channels) > MAX_MAP_BYTES:
            raise RasterError(
                f"map of {self.width}x{self.height} px at {self.gsd_m:.3g} m/px is too large to hold in memory; "
                f"pass a coarser gsd_m (e.g. gsd_m={self.gsd_m * 2:.3g}), or read it by window (geo.open_map) "
                "-- `foenet build-index` does"
            )
        m = self.read_window(self.bounds_xy)
        if not m.valid.any():
            raise RasterError(
                f"no valid pixels in {[str(p) for p in self.paths]}: every pixel is nodata/transparent; "
                "check the nodata value / alpha band of the files"
            )
        return m

    def read_window(self, bounds_xy: Sequence[float], gsd_m: float | None = None) -> MapRaster:
        """The mosaic inside ``bounds_xy`` (frame metres) at ``gsd_m`` (default: the mosaic's GSD).

        Each source that overlaps the window is read only over the window (decimated, through its
        overviews, when the window is much coarser), warped into the frame (bilinear; the validity
        mask nearest), and mosaicked: finer sources first, the first valid pixel wins.
        Returns a MapRaster whose grid is snapped to the mosaic's; uncovered pixels are black and invalid.
        """
        tr, W, H = self.window_grid(bounds_xy, gsd_m)
        mosaic = np.zeros((self.n_channels, H, W), dtype=np.uint8)
        valid = np.zeros((H, W), dtype=bool)
        for s in self.sources:
            got = self._read_source(s, tr, W, H)
            if got is None:
                continue
            part, pmask = got
            new = pmask & ~valid
            np.copyto(mosaic, part, where=new[None])  # boolean fancy indexing is ~60x slower here
            valid |= new
        np.copyto(mosaic, 0, where=~valid[None])  # no stray colours under nodata
        image = np.ascontiguousarray(np.moveaxis(mosaic, 0, 2))
        if self.gray_to_rgb:
            image = np.repeat(image, 3, axis=2)
        elif image.shape[2] == 1:
            image = image[:, :, 0]
        return MapRaster(image=image, valid=valid, transform=tr, frame=self.frame, gsd_m=float(tr.a), name=self.name)

    def _read_source(self, s: "_Source", dst_tr: Affine, W: int, H: int) -> tuple[np.ndarray, np.ndarray] | None:
        """One source warped onto the window grid ``dst_tr`` (W x H): ``(bands [C,H,W] u8, mask [H,W])`` or None."""
        from rasterio.enums import Resampling
        from rasterio.errors import NodataShadowWarning
        from rasterio.warp import reproject, transform_bounds
        from rasterio.windows import Window

        gsd = dst_tr.a
        box = (dst_tr.c, dst_tr.f - H * gsd, dst_tr.c + W * gsd, dst_tr.f)
        sb = s.dst_bounds
        if box[0] >= sb[2] or box[2] <= sb[0] or box[1] >= sb[3] or box[3] <= sb[1]:
            return None
        dst_crs = self.frame.to_rasterio()
        bx = transform_bounds(dst_crs, s.crs, *box, densify_pts=21)
        cols, rows = affine_apply(~s.transform, np.array([bx[0], bx[2], bx[2], bx[0]]), np.array([bx[1], bx[1], bx[3], bx[3]]))
        # read decimated when the destination is much coarser (uses overviews when present)
        k = max(1, int(math.floor(gsd / s.native_gsd_m)))
        pad = 2 * k + 2  # bilinear neighbours of the window's edge pixels
        c0 = max(0, (int(math.floor(cols.min())) - pad) // k * k)
        r0 = max(0, (int(math.floor(rows.min())) - pad) // k * k)
        c1 = min(s.width, -(-(int(math.ceil(cols.max())) + pad) // k) * k)
        r1 = min(s.height, -(-(int(math.ceil(rows.max())) + pad) // k) * k)
        if c1 <= c0 or r1 <= r0:
            return None
        win = Window(c0, r0, c1 - c0, r1 - r0)
        h_r, w_r = -(-(r1 - r0) // k), -(-(c1 - c0) // k)
        with _open_checked(s.path) as ds, warnings.catch_warnings():
            # a nodata value wins over a 4th band that might be alpha (NAIP's NIR): that is what we want
            warnings.simplefilter("ignore", NodataShadowWarning)
            if k == 1:  # the plain read is ~40 % faster than an out_shape read at full size
                data = ds.read(s.band_idx, window=win)
                mask = ds.dataset_mask(window=win) > 0
            else:
                data = ds.read(s.band_idx, window=win, out_shape=(len(s.band_idx), h_r, w_r), resampling=Resampling.average)
                mask = ds.dataset_mask(window=win, out_shape=(h_r, w_r), resampling=Resampling.nearest) > 0
        if s.nodata is not None and self.explicit_bands:
            # dataset_mask covers the default bands; nodata of requested bands counts too
            mask &= ~np.all(data == np.asarray(s.nodata, dtype=data.dtype), axis=0)
        if not mask.any():
            return None
        if s.stretch is not None:
            data = _apply_stretch(data, s.stretch)
        src_tr = affine_compose(s.transform, affine_compose(Affine.translation(c0, r0),
                                                            Affine.scale((c1 - c0) / w_r, (r1 - r0) / h_r)))
        part = np.zeros((data.shape[0], H, W), dtype=np.uint8)
        warp_kw = dict(src_transform=src_tr, src_crs=s.crs, dst_transform=dst_tr, dst_crs=dst_crs,
                       num_threads=2, warp_mem_limit=256)
        reproject(source=data, destination=part, resampling=Resampling.bilinear, **warp_kw)
        pmask = np.zeros((H, W), dtype=np.uint8)
        reproject(source=mask.astype(np.uint8), destination=pmask, resampling=Resampling.nearest, **warp_kw)
        return part, pmask > 0


def read_map(
    paths: str | Path | Sequence[str | Path],
    *,
    frame: GeoFrame | None = None,
    gsd_m: float | None = None,
    bands: Sequence[int] | None = None,
    world_crs: object = None,
    name: str | None = None,
) -> MapRaster:
    """Read one or several georeferenced images into one north-up ``MapRaster`` in a metric frame.

    Inputs (per file, first match wins):

    * a plain image (PNG/JPEG/...) listed in a ``map_metadata.txt`` in its folder
      (``filename top_left_lat top_left_lon bottom_right_lat bottom_right_lon``, WGS84; the image
      is taken as aligned in Web Mercator, as web-map tiles are);
    * an image with a world file (``.pgw``/``.jgw``/``.tfw``/``.wld``); its CRS comes from a
      ``.prj`` next to it, else ``world_crs``, else EPSG:4326 when the numbers look like degrees;
    * a GeoTIFF/COG or GDAL VRT (any GDAL raster) with an embedded CRS, in any CRS.

    Every input is reprojected (``rasterio.warp.reproject``, bilinear; area-averaged when read
    at a coarser ``gsd_m``) into ``frame`` -- default: the UTM zone of the centre of all inputs --
    at ``gsd_m`` (default: the finest native ground resolution). Several files become one mosaic
    placed by georeference; where they overlap the finer file wins, then the first path.
    Nodata values, alpha bands and internal masks become ``valid == False``.
    Maps too large for memory: :func:`open_map` reads them by window.

    Args:
        paths: one path or a sequence of paths.
        frame: destination frame (default: UTM zone of the map centre).
        gsd_m: destination metres per pixel (default: native).
        bands: 1-based band indices to read (default: the first three colour bands; a gray
            image is replicated to RGB). ``bands=[4]`` reads NAIP near-infrared as ``[H, W]``.
        world_crs: CRS of world-file coordinates when there is no ``.prj``.
        name: raster name (default: the first file's stem).

    Raises:
        RasterError: missing/unreadable/ungeoreferenced file, bad band, all-nodata result, too large.
        CRSMismatchError: ``frame`` is not a metric frame or lies too far from the map to be usable.
    """
    return open_map(paths, frame=frame, gsd_m=gsd_m, bands=bands, world_crs=world_crs, name=name).read_all()


def _stretch_of(ds, band_idx: list[int], path: Path, max_side: int = 2048) -> np.ndarray:
    """Per-band 2-98 % range ``[C, 2]`` of non-uint8 data, from a read of at most ``max_side`` px
    (every window is then stretched alike, so the mosaic has no seams)."""
    from rasterio.enums import Resampling

    k = max(1, math.ceil(max(ds.width, ds.height) / max_side))
    shape = (max(1, ds.height // k), max(1, ds.width // k))
    data = ds.read(band_idx, out_shape=(len(band_idx),) + shape, resampling=Resampling.nearest)
    mask = ds.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
    out = np.zeros((len(band_idx), 2), np.float64)
    for i in range(data.shape[0]):
        vals = data[i][mask] if mask.any() else data[i].ravel()
        vals = vals[np.isfinite(vals)] if np.issubdtype(vals.dtype, np.floating) else vals
        out[i] = np.percentile(vals, [2, 98]) if vals.size else (0.0, 1.0)
    log.info("%s: %s data stretched to uint8 (2-98 %% per band)", path.name, data.dtype)
    return out


def _apply_stretch(data: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """Bands ``[C,h,w]`` of any dtype -> uint8 with the per-band ``(lo, hi)`` of :func:`_stretch_of`."""
    out = np.zeros(data.shape, np.uint8)
    for i in range(data.shape[0]):
        lo, hi = stretch[i]
        scale = 255.0 / max(float(hi - lo), 1e-12)
        out[i] = np.clip((np.nan_to_num(data[i].astype(np.float64)) - lo) * scale, 0, 255).astype(np.uint8)
    return out


def _src_bounds(s: _Source) -> tuple[float, float, float, float]:
    xs, ys = zip(*(affine_apply(s.transform, c, r) for c, r in ((0, 0), (s.width, 0), (s.width, s.height), (0, s.height))))
    return min(xs), min(ys), max(xs), max(ys)


def _check_frame_near(frame: GeoFrame, lon: float, lat: float) -> None:
    """A UTM frame is only usable within ~10 deg of longitude of its zone (scale error explodes beyond)."""
    epsg = frame.epsg
    if epsg is not None and (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        zone = epsg % 100
        central = -183.0 + 6.0 * zone
        dlon = (lon - central + 180.0) % 360.0 - 180.0
        if abs(dlon) > 10.0:
            raise CRSMismatchError(
                f"the map lies at lon={lon:.3f}, lat={lat:.3f}, outside the frame {frame.name} "
                f"(zone {zone}, central meridian {central:.0f} deg); use GeoFrame.for_lonlat({lon:.3f}, {lat:.3f}) "
                "or leave frame=None"
            )
