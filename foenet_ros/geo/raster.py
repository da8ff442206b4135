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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from affine import Affine

from ..errors import CRSMismatchError, RasterError
from .crs import WGS84, GeoFrame

log = logging.getLogger(__name__)

# interpolation flags kept in one place
_LINEAR = cv2.INTER_LINEAR
_NEAREST = cv2.INTER_NEAREST


@dataclass
class MapRaster:
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
    _pyramid: dict = field(default_factory=dict, repr=False, compare=False)

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
    def bounds_xy(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the raster's outer edges, metres."""
        t = self.transform
        x0, y0 = t.c, t.f
        x1, y1 = t * (self.width, self.height)
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

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0

    def xy_to_pixel(self, x, y):
        """Frame metres -> continuous ``(col, row)`` in the corner convention (``floor`` gives the index)."""
        col, row = ~self.transform * (np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        if np.ndim(col) == 0:
            return float(col), float(row)
        return np.asarray(col), np.asarray(row)

    def pixel_to_xy(self, col, row):
        """Continuous ``(col, row)`` (corner convention) -> frame metres. Use ``col + 0.5`` for a centre."""
        x, y = self.transform * (np.asarray(col, dtype=np.float64), np.asarray(row, dtype=np.float64))
        if np.ndim(x) == 0:
            return float(x), float(y)
        return np.asarray(x), np.asarray(y)

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """``(lon_min, lat_min, lon_max, lat_max)`` of the raster corners, degrees."""
        xmin, ymin, xmax, ymax = self.bounds_xy
        lon, lat = self.frame.to_lonlat(np.array([xmin, xmax, xmax, xmin]), np.array([ymin, ymin, ymax, ymax]))
        return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())

    def cv_from_xy(self, level: int = 0) -> np.ndarray:
        """3x3 matrix: frame ``(x, y, 1)`` -> OpenCV pixel-centre coords of pyramid ``level`` (0 = full res)."""
        inv = ~self.transform
        M = np.array([[inv.a, inv.b, inv.c], [inv.d, inv.e, inv.f], [0.0, 0.0, 1.0]])
        s = 0.5**level
        # corner coords -> scaled corner coords -> centre coords
        S = np.array([[s, 0.0, -0.5], [0.0, s, -0.5], [0.0, 0.0, 1.0]])
        return S @ M

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

    def pyramid_level_for(self, out_gsd_m: float) -> int:
        """The coarsest pyramid level whose GSD is still finer than ``out_gsd_m`` (anti-aliasing)."""
        ratio = out_gsd_m / self.gsd_m
        if not math.isfinite(ratio) or ratio < 2.0:
            return 0
        return int(min(8, math.floor(math.log2(ratio))))

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
        flags_val = _NEAREST | cv2.WARP_INVERSE_MAP
        w, h = int(out_size[0]), int(out_size[1])
        if perspective:
            out = _warp_channels(img, lambda a: cv2.warpPerspective(a, M, (w, h), flags=flags_img, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            ok = cv2.warpPerspective(val.astype(np.uint8), M, (w, h), flags=flags_val, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        else:
            A = M[:2]
            out = _warp_channels(img, lambda a: cv2.warpAffine(a, A, (w, h), flags=flags_img, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
            ok = cv2.warpAffine(val.astype(np.uint8), A, (w, h), flags=flags_val, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out, ok.astype(bool)

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
