"""Multi-scale, overlapping, north-up square tiles of a map, sized from the camera footprint.

A tile is a ground square (metres), not a pixel window: the same tile set works for any map
resolution, and its scales come from what the camera sees (``tile_scales_for_camera``) so a
query frame and its best tile cover about the same ground.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from ..errors import CameraError, RasterError
from .camera import CameraIntrinsics, CameraPose, footprint
from .raster import MapRaster

log = logging.getLogger(__name__)


@dataclass
class TileSet:
    """Tiles as parallel arrays (row ``i`` = tile id ``i``).

    Attributes:
        centers_xy: ``float64 [N, 2]`` tile centres in the map frame, metres.
        size_m: ``float64 [N]`` side length of the (square, north-up) tile, metres.
        scale_idx: ``int32 [N]`` index into ``scales_m``.
        polygons_xy: ``float64 [N, 4, 2]`` ground corners TL, TR, BR, BL, metres.
        valid_frac: ``float32 [N]`` share of the tile covered by valid map pixels.
        scales_m: the distinct tile sizes, metres (``size_m == scales_m[scale_idx]``).
    """

    centers_xy: np.ndarray
    size_m: np.ndarray
    scale_idx: np.ndarray
    polygons_xy: np.ndarray
    valid_frac: np.ndarray
    scales_m: tuple[float, ...] = ()

    def __len__(self) -> int:
        return int(self.centers_xy.shape[0])

    def subset(self, idx: np.ndarray | Sequence[int]) -> "TileSet":
        """The tiles at ``idx`` (indices or a boolean mask), in that order."""
        idx = np.asarray(idx)
        return TileSet(
            self.centers_xy[idx], self.size_m[idx], self.scale_idx[idx], self.polygons_xy[idx],
            self.valid_frac[idx], self.scales_m,
        )

    def crop(self, map: MapRaster, i: int, out_px: int, heading_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # noqa: A002
        """Image of tile ``i`` resampled to ``out_px`` square (see :meth:`MapRaster.crop`)."""
        return map.crop(self.centers_xy[i], float(self.size_m[i]), out_px, heading_deg)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` (no pickle needed to load them back)."""
        return {
            "centers_xy": self.centers_xy, "size_m": self.size_m, "scale_idx": self.scale_idx,
            "polygons_xy": self.polygons_xy, "valid_frac": self.valid_frac,
            "scales_m": np.asarray(self.scales_m, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> "TileSet":
        """Inverse of :meth:`to_arrays` (accepts an ``NpzFile``)."""
        try:
            return cls(
                np.asarray(d["centers_xy"], np.float64), np.asarray(d["size_m"], np.float64),
                np.asarray(d["scale_idx"], np.int32), np.asarray(d["polygons_xy"], np.float64),
                np.asarray(d["valid_frac"], np.float32), tuple(float(s) for s in np.asarray(d["scales_m"]).ravel()),
            )
        except KeyError as exc:
            raise RasterError(f"tile arrays lack {exc}; the tile metadata file is incomplete") from exc

    def nearest(self, xy: Sequence[float], scale_idx: int | None = None) -> int:
        """Id of the tile whose centre is closest to ``xy`` (optionally at one scale)."""
        d = np.hypot(self.centers_xy[:, 0] - xy[0], self.centers_xy[:, 1] - xy[1])
        if scale_idx is not None:
            d = np.where(self.scale_idx == scale_idx, d, np.inf)
        return int(np.argmin(d))


def square_polygon(cx: np.ndarray, cy: np.ndarray, size: np.ndarray) -> np.ndarray:
    """North-up square corners TL, TR, BR, BL ``[N, 4, 2]``."""
    h = np.asarray(size, np.float64) / 2.0
    cx, cy = np.asarray(cx, np.float64), np.asarray(cy, np.float64)
    return np.stack(
        [np.stack([cx - h, cy + h], -1), np.stack([cx + h, cy + h], -1),
         np.stack([cx + h, cy - h], -1), np.stack([cx - h, cy - h], -1)], axis=1,
    )


def _axis_centres(lo: float, hi: float, size: float, stride: float) -> np.ndarray:
    """Centres along one axis: first tile flush with ``lo``, last flush with ``hi``, even spacing <= stride."""
    span = hi - lo
    if span <= size:
        return np.array([(lo + hi) / 2.0])
    n = int(math.ceil((span - size) / stride - 1e-9)) + 1
    return np.linspace(lo + size / 2.0, hi - size / 2.0, n)


def make_tiles(map: MapRaster, scales_m: Sequence[float], overlap: float = 0.5, min_valid: float = 0.6) -> TileSet:  # noqa: A002
    """Cover ``map`` with square north-up tiles of each ground size in ``scales_m``.

    Tiles of one scale sit on a regular grid with at least ``overlap`` (0..1) overlap between
    neighbours, the first and last flush with the map edges so every map pixel is covered.
    Tiles with less than ``min_valid`` of their area on valid map pixels are dropped.

    Raises:
        RasterError: bad arguments, or no tile passes ``min_valid`` (map smaller than the tiles,
            or mostly nodata).
    """
    scales = [float(s) for s in scales_m]
    if not scales or any(not (math.isfinite(s) and s > 0) for s in scales):
        raise RasterError(f"scales_m must be positive tile sizes in metres, got {list(scales_m)}")
    if not 0.0 <= overlap < 1.0:
        raise RasterError(f"overlap must be in [0, 1), got {overlap}")
    if not 0.0 <= min_valid <= 1.0:
        raise RasterError(f"min_valid must be in [0, 1], got {min_valid}")
    xmin, ymin, xmax, ymax = map.bounds_xy
    # integral image of the valid mask: O(1) valid fraction per tile
    integral = cv2.integral(map.valid.astype(np.uint8), sdepth=cv2.CV_64F)
    parts = []
    for k, size in enumerate(scales):
        stride = size * (1.0 - overlap)
        xs = _axis_centres(xmin, xmax, size, stride)
        ys = _axis_centres(ymin, ymax, size, stride)[::-1]  # north to south
        cx, cy = np.meshgrid(xs, ys)
        cx, cy = cx.ravel(), cy.ravel()
        frac = _valid_fraction(map, integral, cx, cy, size)
        keep = frac >= min_valid
        parts.append((cx[keep], cy[keep], np.full(int(keep.sum()), size), np.full(int(keep.sum()), k, np.int32), frac[keep]))
        log.debug("scale %.1f m: %d of %d tiles kept (min_valid %.2f)", size, int(keep.sum()), keep.size, min_valid)
    cx = np.concatenate([p[0] for p in parts])
    if cx.size == 0:
        w, h = map.size_m
        raise RasterError(
            f"no tile of sizes {scales} m has >= {min_valid:.0%} valid pixels on map {map.name!r} "
            f"({w:.0f} x {h:.0f} m, {map.valid_fraction:.0%} valid); use smaller tiles or a lower min_valid"
        )
    cy = np.concatenate([p[1] for p in parts])
    size = np.concatenate([p[2] for p in parts]).astype(np.float64)
    return TileSet(
        centers_xy=np.column_stack([cx, cy]),
        size_m=size,
        scale_idx=np.concatenate([p[3] for p in parts]).astype(np.int32),
        polygons_xy=square_polygon(cx, cy, size),
        valid_frac=np.concatenate([p[4] for p in parts]).astype(np.float32),
        scales_m=tuple(scales),
    )


def _valid_fraction(map: MapRaster, integral: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: float) -> np.ndarray:  # noqa: A002
    """Share of each tile's ground area on valid pixels (area outside the map counts as invalid)."""
    c0, r0 = map.xy_to_pixel(cx - size / 2, cy + size / 2)
    c1, r1 = map.xy_to_pixel(cx + size / 2, cy - size / 2)
    H, W = map.valid.shape
    c0, c1, r0, r1 = (np.round(v).astype(np.int64) for v in (c0, c1, r0, r1))
    # the tile's whole pixel area (also the part off the map) is the denominator
    area_px = np.maximum((c1 - c0) * (r1 - r0), 1)
    c0, c1 = np.clip(c0, 0, W), np.clip(c1, 0, W)
    r0, r1 = np.clip(r0, 0, H), np.clip(r1, 0, H)
    count = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return np.clip(count / area_px, 0.0, 1.0)


def tile_scales_for_camera(
    intr: CameraIntrinsics, alt_range_m: Sequence[float] | float, max_tilt_deg: float = 0.0
) -> list[float]:
    """Tile sizes (metres) matched to the camera's ground footprint over an altitude range.

    For each of the minimum, geometric-mean and maximum altitude the footprint of the camera
    tilted by ``max_tilt_deg / 2`` (the typical tilt of a range 0..max) is computed; the tile
    size is the larger side of its bounding box in the camera's own orientation (for a nadir
    landscape camera: ``2 * alt * tan(hfov / 2)``). Sizes within 20 % of each other are merged.

    Raises:
        CameraError: non-positive altitudes, or a tilt that shows the horizon.
    """
    alts = [float(alt_range_m)] if np.ndim(alt_range_m) == 0 else [float(a) for a in alt_range_m]
    if not alts or any(not (math.isfinite(a) and a > 0) for a in alts):
        raise CameraError(f"altitudes must be positive metres above ground, got {alt_range_m}")
    lo, hi = min(alts), max(alts)
    candidates = [lo, math.sqrt(lo * hi), hi] if hi > lo else [lo]
    sizes: list[float] = []
    for alt in candidates:
        fp = footprint(intr, CameraPose(0.0, 0.0, alt, 0.0, max_tilt_deg / 2.0, 0.0))
        size = float(max(np.ptp(fp[:, 0]), np.ptp(fp[:, 1])))
        if not sizes or size > sizes[-1] * 1.2:
            sizes.append(round(size, 1))
    return sizes
