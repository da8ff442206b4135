"""Surface models (DSM/DTM): ground heights for keypoints, and the terrain relief under a footprint.

The flat-ground homography is wrong over hills: at 100 m above a valley with 40 m of relief, an
oblique frame's camera position comes out 20-30 m off (measured on the orthority frames). With a
surface model the map keypoints become 3D points and the pose comes from a perspective-n-point
solve (``cv2.solvePnPRansac``) instead -- decimetres on the same frames.

``read_dsm`` reprojects a single-band height raster (GeoTIFF/COG/VRT, any CRS, metres in its own
vertical datum) onto a north-up grid of the index frame; ``DsmGrid`` samples it bilinearly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from ..errors import RasterError
from .crs import GeoFrame

log = logging.getLogger(__name__)


@dataclass
class DsmGrid:
    """Heights on a north-up grid of the local frame.

    Attributes:
        z: [H, W] float32 heights (metres), NaN where the model has no data.
        transform: pixel (col, row) corner convention -> frame (x, y).
        name: source label.
    """

    z: np.ndarray
    transform: Affine
    name: str = "dsm"

    @property
    def gsd_m(self) -> float:
        return float(self.transform.a)

    def sample(self, xy: np.ndarray) -> np.ndarray:
        """Bilinear heights at frame points ``xy [N, 2]`` (NaN outside the grid or next to no-data)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        inv = ~self.transform
        col = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c - 0.5  # pixel-centre coordinates
        row = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f - 0.5
        H, W = self.z.shape
        c0, r0 = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
        fc, fr = col - c0, row - r0
        ok = (c0 >= 0) & (r0 >= 0) & (c0 + 1 < W) & (r0 + 1 < H)
        out = np.full(len(xy), np.nan)
        if ok.any():
            c, r, a, b = c0[ok], r0[ok], fc[ok], fr[ok]
            z = self.z
            out[ok] = ((1 - a) * (1 - b) * z[r, c] + a * (1 - b) * z[r, c + 1] + (1 - a) * b * z[r + 1, c]
                       + a * b * z[r + 1, c + 1])
        return out

    def relief(self, box: tuple[float, float, float, float] | None = None) -> float:
        """Height spread (p95 - p5, metres) of the model inside ``box`` (frame metres; whole grid when None)."""
        z = self.z
        if box is not None:
            inv = ~self.transform
            c0, r0 = inv @ (box[0], box[3])
            c1, r1 = inv @ (box[2], box[1])
            H, W = z.shape
            z = z[max(0, int(math.floor(r0))) : min(H, int(math.ceil(r1))), max(0, int(math.floor(c0))) : min(W, int(math.ceil(c1)))]
        v = z[np.isfinite(z)]
        return float(np.percentile(v, 95) - np.percentile(v, 5)) if v.size >= 4 else 0.0


def read_dsm(path: str | Path, frame: GeoFrame, bounds_xy: tuple[float, float, float, float],
             gsd_m: float | None = None) -> DsmGrid:
    """Reproject a height raster onto a north-up grid of ``frame`` covering ``bounds_xy``.

    Args:
        path: a single-band GeoTIFF/COG/VRT of heights in metres (nodata honoured).
        frame: the index frame.
        bounds_xy: (xmin, ymin, xmax, ymax) to cover, frame metres.
        gsd_m: grid spacing (default: the raster's own, at least 0.5 m).

    Raises:
        RasterError: unreadable, no CRS, or no overlap with ``bounds_xy``.
    """
    import rasterio
    import rasterio.warp
    from rasterio.errors import RasterioError

    path = Path(path)
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise RasterError(f"surface model {path} has no CRS: a DSM must be a georeferenced GeoTIFF")
            native = float(abs(ds.res[0]))
            if ds.crs.is_geographic:
                native *= 111_000.0
            g = float(gsd_m or max(native, 0.5))
            xmin, ymin, xmax, ymax = bounds_xy
            W, H = max(1, int(math.ceil((xmax - xmin) / g))), max(1, int(math.ceil((ymax - ymin) / g)))
            tf = Affine(g, 0.0, xmin, 0.0, -g, ymax)
            out = np.full((H, W), np.nan, np.float32)
            rasterio.warp.reproject(
                rasterio.band(ds, 1), out, dst_transform=tf, dst_crs=frame.to_rasterio(), dst_nodata=np.nan,
                resampling=rasterio.warp.Resampling.bilinear if g <= native * 1.5 else rasterio.warp.Resampling.average)
    except RasterioError as exc:
        raise RasterError(f"cannot read the surface model {path}: {exc}") from exc
    if not np.isfinite(out).any():
        raise RasterError(f"surface model {path} does not overlap the map ({bounds_xy})")
    log.info("surface model %s: %d x %d at %.2f m, heights %.1f-%.1f m", path.name, W, H, g, np.nanmin(out), np.nanmax(out))
    return DsmGrid(out, tf, path.stem)
