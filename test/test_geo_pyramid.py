"""The map pyramid keeps geometry: a point sampled through any pyramid level lands where it is.

Regression test: ``MapRaster.cv_from_xy(level)`` once scaled *corner* coordinates, while
``cv2.pyrDown`` centres level-k pixel j on level-0 pixel 2^k j, so every coarse sample of a map
(map features of the fine stage, views rendered from high up) was shifted by (1 - 2^-k) / 2 of
a level-0 pixel per axis: 2.5 m at level 1 of a 5 m map, 7.5 m at level 2.
"""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from foenet_ros.geo import GeoFrame, MapRaster
from foenet_ros.geo.raster import crop_matrix


def _dot_map(gsd: float = 5.0, size: int = 512) -> tuple[MapRaster, tuple[float, float]]:
    """A dark map with one bright Gaussian blob at a known ground position."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    col, row = 301.3, 187.6  # blob centre in level-0 pixel-centre coordinates
    img = (255 * np.exp(-((xx - col) ** 2 + (yy - row) ** 2) / (2 * 6.0**2))).astype(np.uint8)
    x0, y1 = 500_000.0, 5_000_000.0
    tf = Affine(gsd, 0, x0, 0, -gsd, y1)
    mp = MapRaster(np.repeat(img[:, :, None], 3, axis=2), np.ones((size, size), bool), tf, GeoFrame(32632), gsd)
    return mp, (x0 + (col + 0.5) * gsd, y1 - (row + 0.5) * gsd)


@pytest.mark.parametrize("out_gsd", [5.0, 11.0, 23.0, 41.0])
def test_blob_lands_where_it_is_at_every_pyramid_level(out_gsd):
    mp, (bx, by) = _dot_map()
    assert mp.pyramid_level_for(out_gsd) == {5.0: 0, 11.0: 1, 23.0: 2, 41.0: 3}[out_gsd]
    n = 64
    center = (bx + 13.0, by - 7.0)  # not on the blob, so the crop's centre pixel is not the answer
    img, _ = mp.crop(center, n * out_gsd, n)
    g = img[:, :, 0].astype(np.float64)
    g = np.clip(g - np.median(g), 0, None)
    ys, xs = np.mgrid[0:n, 0:n]
    u, v = (g * xs).sum() / g.sum(), (g * ys).sum() / g.sum()  # blob centroid, crop pixel centres
    M = crop_matrix(center, n * out_gsd, n)
    expect = M @ np.array([bx, by, 1.0])
    err_m = np.hypot(u - expect[0], v - expect[1]) * out_gsd
    # a quarter of a crop pixel: the old bug was 0.5-1.5 level-0 pixels (2.5-7.5 m) of systematic shift
    assert err_m < 0.25 * out_gsd, (out_gsd, err_m)
