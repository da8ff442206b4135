"""The shared real imagery (``$FOENET_DATA``) as training places and held-out evaluation maps.

The split is **by place**, never by tile (the same ground appears at several zooms and dates):

* training: UC Merced (2100 chips, US cities), the OpenAerialMap tiles of Zanzibar, Nairobi,
  Kampala and Catanduanes, the NEON plots (4 US sites; San Joaquin at two dates) and the NAIP
  North Dakota stack for the years in :data:`NAIP_TRAIN_YEARS`;
* evaluation only: the Banepa orthomosaic (and every Banepa OAM tile), NAIP
  :data:`NAIP_HELDOUT_YEARS`, the Pix4D Bali orthomosaic.

Only code reaches this data, through :func:`foenet_ros.utils.shared_data_dir`; nothing is copied.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
from affine import Affine

from ..errors import DatasetError
from ..utils import shared_data_dir
from .common import read_image_rgb
from .pairs import GroundUnit, Place

log = logging.getLogger(__name__)

OAM_TRAIN_PLACES = ("zanzibar_tz", "nairobi_ke", "kampala_ug", "catanduanes_ph")
HELDOUT_PLACES = ("banepa_np", "naip 2019/2020", "pix4d_bali")
NAIP_YEARS = (2009, 2010, 2012, 2014, 2015, 2016, 2017, 2018, 2019, 2020)
NAIP_HELDOUT_YEARS = (2019, 2020)
NAIP_TRAIN_YEARS = tuple(y for y in NAIP_YEARS if y not in NAIP_HELDOUT_YEARS)

BANEPA_MAP = "oam_banepa/banepa_z19_0.15m.tif"
PIX4D_MAP = "pix4d_bali_ortho/pix4d_alpha_nodata.tif"


def require_data_root(root: str | Path | None = None) -> Path:
    """``root`` or ``$FOENET_DATA``; DatasetError when neither exists."""
    path = Path(root) if root is not None else shared_data_dir()
    if path is None or not path.is_dir():
        raise DatasetError(
            f"shared aerial data folder not found ({root or '$FOENET_DATA unset'}); "
            "set FOENET_DATA to the folder with naip_nd_5m/, oam_tiles/, ucmerced_landuse/ ..."
        )
    return path


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{path} is missing: expected {what}")
    return path


def naip_path(root: Path, year: int) -> Path:
    """The NAIP GeoTIFF of ``year`` (one file per year in ``naip_nd_5m/``)."""
    folder = _need(root / "naip_nd_5m", "the NAIP North Dakota stack (naip_nd_5m/*.tif)")
    hits = sorted(folder.glob(f"*_{year}????.tif"))
    if not hits:
        raise DatasetError(f"{folder}: no NAIP file for year {year} (expected *_{year}MMDD.tif)")
    return hits[0]


def read_naip(root: Path, year: int, band: str = "rgb"):
    """NAIP of ``year`` as a MapRaster: ``band="rgb"`` (bands 1-3) or ``"nir"`` (band 4, single channel)."""
    from ..geo import read_map

    path = naip_path(root, year)
    if band == "rgb":
        return read_map(path)
    if band == "nir":
        r = read_map(path, bands=[4])
        if r.image.ndim == 3:
            r.image = np.ascontiguousarray(r.image[:, :, 0])
        return r
    raise DatasetError(f"unknown NAIP band set {band!r}; valid: rgb, nir")


# ------------------------------------------------------------------------------------ OAM tiles
def _oam_rows(root: Path) -> list[dict]:
    table = _need(root / "oam_tiles" / "tiles.csv", "the OpenAerialMap tile table oam_tiles/tiles.csv")
    with open(table, newline="") as f:
        return list(csv.DictReader(f))


def _blocks(tiles: list[dict]) -> list[list[dict]]:
    """Group tiles of one (place, zoom) into 4-connected blocks of tile indices."""
    by_xy = {(int(t["x"]), int(t["y"])): t for t in tiles}
    seen: set = set()
    blocks = []
    for key in sorted(by_xy):
        if key in seen:
            continue
        stack, block = [key], []
        seen.add(key)
        while stack:
            k = stack.pop()
            block.append(by_xy[k])
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                n = (k[0] + dx, k[1] + dy)
                if n in by_xy and n not in seen:
                    seen.add(n)
                    stack.append(n)
        blocks.append(block)
    return blocks


def oam_block_raster(root: Path, block: Sequence[dict], gsd_m: float | None = None, name: str = "oam"):
    """Stitch a block of web-mercator tiles and reproject it into its UTM zone as a MapRaster.

    Args:
        block: rows of ``tiles.csv`` (same zoom, contiguous).
        gsd_m: output ground resolution (default: the tiles' ``ground_m_per_px``).
    """
    import rasterio.warp
    from rasterio.crs import CRS

    from ..geo import GeoFrame, MapRaster

    xs = [int(t["x"]) for t in block]
    ys = [int(t["y"]) for t in block]
    x0, y0 = min(xs), min(ys)
    tw = int(block[0]["width"])
    h, w = (max(ys) - y0 + 1) * tw, (max(xs) - x0 + 1) * tw
    mosaic = np.zeros((h, w, 3), dtype=np.uint8)
    valid = np.zeros((h, w), dtype=np.uint8)
    skipped = 0
    for t in block:
        img = read_image_rgb(root / "oam_tiles" / t["file"])
        if img is None or img.shape[0] != tw or img.shape[1] != tw:
            skipped += 1
            continue
        r, c = (int(t["y"]) - y0) * tw, (int(t["x"]) - x0) * tw
        mosaic[r : r + tw, c : c + tw] = img
        valid[r : r + tw, c : c + tw] = 255
    if skipped:
        log.warning("%s: skipped %d unreadable/odd-sized tile(s) of %d", name, skipped, len(block))
    left = min(float(t["epsg3857_left"]) for t in block)
    top = max(float(t["epsg3857_top"]) for t in block)
    merc_px = (float(block[0]["epsg3857_right"]) - float(block[0]["epsg3857_left"])) / tw
    src_tf = Affine(merc_px, 0.0, left, 0.0, -merc_px, top)
    lat = float(np.mean([float(t["center_lat"]) for t in block]))
    lon = float(np.mean([float(t["center_lon"]) for t in block]))
    frame = GeoFrame.for_lonlat(lon, lat)
    res = float(gsd_m or float(block[0]["ground_m_per_px"]))
    src_crs, dst_crs = CRS.from_epsg(3857), frame.to_rasterio()
    dst_tf, dw, dh = rasterio.warp.calculate_default_transform(src_crs, dst_crs, w, h, *_bounds(src_tf, w, h), resolution=res)
    out = np.zeros((3, dh, dw), dtype=np.uint8)
    rasterio.warp.reproject(
        np.moveaxis(mosaic, 2, 0), out, src_transform=src_tf, src_crs=src_crs, dst_transform=dst_tf,
        dst_crs=dst_crs, resampling=rasterio.warp.Resampling.average if res > merc_px * 1.5 else rasterio.warp.Resampling.bilinear,
    )
    vout = np.zeros((dh, dw), dtype=np.uint8)
    rasterio.warp.reproject(
        valid, vout, src_transform=src_tf, src_crs=src_crs, dst_transform=dst_tf, dst_crs=dst_crs,
        resampling=rasterio.warp.Resampling.nearest,
    )
    return MapRaster(np.ascontiguousarray(np.moveaxis(out, 0, 2)), vout > 0, dst_tf, frame, res, name)


def _bounds(tf: Affine, w: int, h: int) -> tuple[float, float, float, float]:
    x0, y0 = tf * (0, 0)
    x1, y1 = tf * (w, h)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def oam_places(
    root: Path, places: Sequence[str] = OAM_TRAIN_PLACES, min_block_m: float = 60.0, tile_size_m=(40.0, 90.0),
    max_gsd_m: float = 0.15,
) -> list[Place]:
    """One :class:`Place` per OAM place: every contiguous block of every zoom, in the place's UTM frame.

    Blocks smaller than ``min_block_m`` on a side are dropped; zoom-21 tiles (0.07 m) are
    resampled to ``max_gsd_m`` (finer detail than a 160-224 px view of 40-90 m needs).
    """
    rows = _oam_rows(root)
    by_place: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["place"] in places:
            by_place[r["place"]][int(r["z"])].append(r)
    out = []
    for name in places:
        if name not in by_place:
            raise DatasetError(f"{root / 'oam_tiles'}: no tiles of place {name!r} in tiles.csv")
        units, frame = [], None
        for z in sorted(by_place[name]):
            for block in _blocks(by_place[name][z]):
                gsd = max(float(block[0]["ground_m_per_px"]), max_gsd_m)
                r = oam_block_raster(root, block, gsd, f"{name}_z{z}")
                if frame is not None and r.frame != frame:  # keep one metric frame per place
                    continue
                frame = r.frame
                if min(r.size_m) >= min_block_m:
                    units.append(GroundUnit([r], name=f"{name}_z{z}"))
        if units:
            lo = min(tile_size_m[0], min(min(u.rasters[0].size_m) for u in units) * 0.9)
            out.append(Place(name, units, (lo, tile_size_m[1])))
    return out


# ------------------------------------------------------------------------------------ NEON
def neon_place(root: Path, tile_size_m=(22.0, 32.0)) -> list[Place]:
    """The NEON plots: one Place per site (one UTM frame each); a plot with a second date
    (``<plot>_2017.jpg`` next to ``<plot>.jpg``) becomes a two-date unit."""
    from ..geo import GeoFrame, MapRaster

    table = _need(root / "neon_plots" / "plots.csv", "the NEON plot table neon_plots/plots.csv")
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    by_site: dict[str, dict[tuple, list]] = defaultdict(dict)
    skipped = 0
    for r in rows:
        img = read_image_rgb(root / "neon_plots" / r["file"])
        if img is None:
            skipped += 1
            continue
        res = float(r["res_m"])
        tf = Affine(res, 0.0, float(r["left"]), 0.0, -res, float(r["top"]))
        ras = MapRaster(img, np.ones(img.shape[:2], bool), tf, GeoFrame(int(r["epsg"])), res, Path(r["file"]).stem)
        key = (round(float(r["left"]), 1), round(float(r["top"]), 1))
        by_site[r["site"]].setdefault(key, []).append(ras)
    if skipped:
        log.warning("NEON: skipped %d unreadable plot image(s)", skipped)
    return [
        Place(f"neon_{site}", [GroundUnit(v, name=f"neon_{site}") for _, v in sorted(plots.items())], tile_size_m, 0.5)
        for site, plots in sorted(by_site.items())
    ]


# ------------------------------------------------------------------------------------ NAIP
def naip_place(root: Path, years: Sequence[int] = NAIP_TRAIN_YEARS, tile_size_m=(350.0, 700.0)) -> Place:
    """The NAIP stack of ``years`` as one multi-date unit with the NIR band as auxiliary queries."""
    held = set(years) & set(NAIP_HELDOUT_YEARS)
    if held:
        log.warning("NAIP years %s are the held-out evaluation years", sorted(held))
    rgb = [read_naip(root, y, "rgb") for y in years]
    nir = [read_naip(root, y, "nir") for y in years]
    return Place("naip_nd", [GroundUnit(rgb, nir, name="naip_nd")], tile_size_m, 1.0)


def ucmerced_paths(root: Path) -> list[Path]:
    """Every UC Merced chip (sorted)."""
    folder = _need(root / "ucmerced_landuse", "UC Merced Land Use chips (ucmerced_landuse/<class>/*.jpg)")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"))
    if not paths:
        raise DatasetError(f"{folder}: no chips found (expected <class>/*.jpg)")
    return paths


def training_places(root: Path, naip_years: Sequence[int] = NAIP_TRAIN_YEARS) -> list[Place]:
    """All georeferenced training places (OAM x4, NEON sites, NAIP train years), held-out places excluded."""
    places = oam_places(root) + neon_place(root) + [naip_place(root, naip_years)]
    for p in places:
        if any(h.split()[0].split("_")[0] in p.name for h in ("banepa", "pix4d")):
            raise DatasetError(f"held-out place {p.name} must not be in the training set")
    return places
