"""The demo data registry: named public maps, where they come from, and how to get them.

Each :class:`DataFile` records a file's path relative to the data root (the layout of the
shared data folder, whose ``SHA256SUMS`` lists the same files), its sha256, its licence, and
how to obtain it: a direct public URL, or an *assembly recipe* (the Banepa mosaic is stitched
from 374 OpenAerialMap XYZ tiles committed in github:hotosm/fAIr-models, listed with their
git blob SHA-1 in ``maps/banepa_z19_tiles.csv``).

:func:`resolve_map` looks, in order, in

1. ``$FOENET_DATA`` (CI and the project machines point it at the shared data folder),
2. the user cache ``~/.cache/foenet/data`` (``$FOENET_CACHE`` overrides ``~/.cache/foenet``),
3. the network: downloads (or tile-stitches) into the cache and verifies the checksums,

and returns ``None`` when none of them works; :func:`demo_map` then falls back to
``geo.synthetic_map()`` and says loudly that the map is synthetic.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import FoenetError, RasterError
# the user cache and the default-index pointer live in utils (the node reads them without this registry)
from .utils import (  # noqa: F401  (re-exported: CACHE_ENV, DEFAULT_INDEX_POINTER, default_index, set_default_index)
    CACHE_ENV,
    DEFAULT_INDEX_POINTER,
    atomic_path,
    cache_dir,
    default_index,
    set_default_index,
    sha256_file,
    shared_data_dir,
)

log = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).resolve().parent.parent / "maps"
WEB_MERCATOR_HALF = 20037508.342789244  # metres: half the EPSG:3857 world width
RAW_GITHUB = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
MAX_FAILURES_BEFORE_FIRST_TILE = 5  # give up early when offline instead of trying every tile


class DataFetchError(FoenetError):
    """A registry file could not be found locally nor downloaded (or failed its checksum)."""


@dataclass(frozen=True)
class DataFile:
    """One public file: path under the data root, sha256 of the canonical copy, licence and origin.

    ``url``: direct download. ``recipe``: name of an assembly recipe (see :data:`ASSEMBLERS`) used
    when there is no single file to download; an assembled file is verified tile by tile (its
    bytes depend on the GeoTIFF encoder, so its sha256 may differ from the canonical copy).
    """

    rel_path: str
    sha256: str
    licence: str
    url: str | None = None
    recipe: str | None = None


@dataclass(frozen=True)
class MapEntry:
    """A named map: its files (several = one mosaic or a time series), attribution and notes."""

    name: str
    description: str
    files: tuple[DataFile, ...]
    attribution: str
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_NAIP_COMMIT = "15702be1b124db7b77a33d20df08f01e3ba0f4e9"
_NAIP = {
    "2009": ("m_4709963_se_14_1_20090818.tif", "568f0d3dc3118d6df63510361db6c627b81541ad4c65122caf54e18030fc7100"),
    "2010": ("m_4709963_se_14_1_20100629.tif", "9d9033eb670025c10c0ce3deff5112aa08aad64b56c5a28f99649cefccf9899b"),
    "2012": ("m_4709963_se_14_1_20120731.tif", "695ff3bef666f84b9d8bee8292c21be1edf5fbd52b0db839a40a949403799dc4"),
    "2014": ("m_4709963_se_14_1_20140720.tif", "cbb65d34c3f8ad566800677d1f0ba15b221305e46b9873ddb20b5fc922ab6104"),
    "2015": ("m_4709963_se_14_1_20150926.tif", "e2f4898eaada52f53a0cf7920836a4ff42e41a05357c0f082cfbfcb048b21b9d"),
    "2016": ("m_4709963_se_14_1_20160816.tif", "6e60094af5a5b605178277831a0bb5e28650ef4729cb5eb91ac94ec5643462b4"),
    "2017": ("m_4709963_se_14_1_20170827.tif", "d1138bef2d496ed4ff731f48def08e0695e326aeb55dc291ebb9b415e7bda2f8"),
    "2018": ("m_4709963_se_14_1_20180716.tif", "599bb9bb7f78e9a1f3e0e712290e6423e2f513c69afc00a18ff586a6fcd4aba7"),
    "2019": ("m_4709963_se_14_1_20190904.tif", "bfa915b54ad6e4e4fe60ad6afdd9115ff5d00c363d4d1ccfaaa33ebb3cad2df2"),
    "2020": ("m_4709963_se_14_1_20200831.tif", "e8eb18475678d16a98a44f28b1c777fd0b2c56e9c8afed302a5e071e2e237f90"),
}


def _naip(year: str) -> DataFile:
    name, sha = _NAIP[year]
    return DataFile(f"naip_nd_5m/{name}", sha, "US public domain (USDA NAIP)",
                    url=RAW_GITHUB.format(repo="opengeos/data", commit=_NAIP_COMMIT, path=f"naip/{name}"))


REGISTRY: dict[str, MapEntry] = {
    "banepa": MapEntry(
        name="banepa",
        description="Banepa town, Nepal: seamless 0.15 m orthomosaic (11264 x 8704 px, 1.68 x 1.30 km, EPSG:3857)",
        files=(DataFile("oam_banepa/banepa_z19_0.15m.tif",
                        "986217ea8769d95d37beba524a3965d7ba6497945ecaa95c9fd33f69d9ed455c",
                        "CC BY 4.0 (OpenAerialMap contributors)", recipe="banepa_z19_tiles"),),
        attribution="Imagery: OpenAerialMap contributors, CC BY 4.0, via github:hotosm/fAIr-models",
        notes="stitched from the 374 zoom-19 XYZ tiles (512 px) listed in maps/banepa_z19_tiles.csv",
    ),
} | {
    f"naip_{year}": MapEntry(
        name=f"naip_{year}",
        description=f"North Dakota farmland and town, NAIP {year}, 5 m, 4.67 x 3.62 km, RGB+NIR (EPSG:26914)",
        files=(_naip(year),),
        attribution="USDA NAIP (public domain), redistributed in github:opengeos/data (MIT)",
    )
    for year in _NAIP
}


def list_maps() -> list[str]:
    """Names in the registry (plus ``synthetic``, always available)."""
    return sorted(REGISTRY) + ["synthetic"]


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's bytes (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _content_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def record_content(path: Path, **provenance: Any) -> Path:
    """Write ``<path>.sha256.json``: the sha256 and size of a file this cache just produced.

    Assembled mosaics and demo crops have no canonical checksum (their bytes depend on the
    GeoTIFF encoder); this record is what :func:`content_ok` re-checks before every use.
    """
    record = {"sha256": sha256_file(path), "size": path.stat().st_size, **provenance}
    with atomic_path(_content_sidecar(path), suffix=".json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return _content_sidecar(path)


def content_ok(path: Path, digest: str | None = None) -> bool:
    """Re-hash ``path`` (its content: never trusted by mtime) and compare with its ``.sha256.json`` record.

    False when the record is missing or unreadable, or the content changed since it was written.
    """
    try:
        record = json.loads(_content_sidecar(path).read_text())
        expected = record["sha256"] if isinstance(record, dict) else None
    except (OSError, ValueError, KeyError):
        return False
    return isinstance(expected, str) and (digest or sha256_file(path)) == expected


def _download(url: str, dest: Path, timeout_s: float = 60.0) -> Path:
    """Stream ``url`` into ``dest`` atomically (``file://`` URLs work too, for tests and mirrors)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, atomic_path(dest) as tmp:
            with open(tmp, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataFetchError(f"cannot download {url}: {exc}") from exc
    return dest


def _fetch_bytes(url: str, timeout_s: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataFetchError(f"cannot download {url}: {exc}") from exc


# ------------------------------------------------------------------------------------------ XYZ tiles


def xyz_tile_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    """EPSG:3857 bounds ``(left, bottom, right, top)`` of slippy-map tile ``x/y/z`` (y grows south)."""
    size = 2 * WEB_MERCATOR_HALF / (1 << z)
    left = -WEB_MERCATOR_HALF + x * size
    top = WEB_MERCATOR_HALF - y * size
    return left, top - size, left + size, top


@dataclass(frozen=True)
class TileRef:
    """One XYZ tile of a recipe and where its bytes live (``url``) with the git blob id to check."""

    x: int
    y: int
    z: int
    url: str
    git_blob_sha1: str | None = None


def read_tile_recipe(path: Path) -> list[TileRef]:
    """Rows ``x,y,z,repo,commit,path,git_blob_sha1`` -> tiles with raw.githubusercontent.com URLs."""
    with open(path, newline="") as f:
        return [TileRef(int(r["x"]), int(r["y"]), int(r["z"]),
                        r.get("url") or RAW_GITHUB.format(repo=r["repo"], commit=r["commit"], path=r["path"]),
                        r.get("git_blob_sha1") or None) for r in csv.DictReader(f)]


def _decode_tile(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Tile bytes (GeoTIFF/PNG/JPEG) -> (RGB uint8 [h,w,3], valid [h,w]); alpha 0 = no data."""
    from rasterio.io import MemoryFile

    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():  # XYZ tiles are georeferenced by their x/y/z, not internally
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(data) as mem, mem.open() as ds:
                arr = ds.read()
    except Exception as exc:  # rasterio raises many types for undecodable buffers
        raise RasterError(f"undecodable tile ({len(data)} bytes): {exc}") from exc
    arr = np.moveaxis(arr, 0, -1)
    if arr.dtype != np.uint8:
        raise RasterError(f"tile is {arr.dtype}, expected 8-bit")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    valid = arr[..., 3] > 0 if arr.shape[2] >= 4 else np.ones(arr.shape[:2], bool)
    return np.ascontiguousarray(arr[..., :3]), valid


def stitch_xyz_tiles(tiles: Sequence[TileRef], out: Path, *, fetch: Callable[[str], bytes] = _fetch_bytes,
                     progress: bool = True) -> Path:
    """Download, verify (git blob SHA-1) and stitch XYZ tiles of one zoom into an EPSG:3857 GeoTIFF.

    Missing or failing tiles become no-data (the internal mask), and are reported; the output is
    JPEG-compressed, tiled, with overviews, written atomically.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from tqdm import tqdm

    if not tiles:
        raise DataFetchError("the tile recipe is empty")
    zs = {t.z for t in tiles}
    if len(zs) != 1:
        raise DataFetchError(f"tiles of several zoom levels {sorted(zs)}; stitch one zoom at a time")
    z = zs.pop()
    x0, x1 = min(t.x for t in tiles), max(t.x for t in tiles)
    y0, y1 = min(t.y for t in tiles), max(t.y for t in tiles)
    mosaic = valid = None
    tile_px = None
    failed: list[str] = []
    for t in tqdm(tiles, desc="tiles", unit="tile", disable=not progress):
        try:
            data = fetch(t.url)
            if t.git_blob_sha1 and git_blob_sha1(data) != t.git_blob_sha1:
                raise DataFetchError(f"checksum mismatch for {t.url}")
            img, ok = _decode_tile(data)
        except (DataFetchError, RasterError) as exc:
            log.warning("tile %d/%d/%d: %s", t.z, t.x, t.y, exc)
            failed.append(f"{t.z}/{t.x}/{t.y}")
            if mosaic is None and len(failed) >= MAX_FAILURES_BEFORE_FIRST_TILE:
                raise DataFetchError(
                    f"the first {len(failed)} tiles all failed (last: {exc}); offline, or the source moved"
                ) from exc
            continue
        if tile_px is None:
            tile_px = img.shape[0]
            mosaic = np.zeros(((y1 - y0 + 1) * tile_px, (x1 - x0 + 1) * tile_px, 3), np.uint8)
            valid = np.zeros(mosaic.shape[:2], bool)
        if img.shape[:2] != (tile_px, tile_px):
            import cv2

            img = cv2.resize(img, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
            ok = cv2.resize(ok.astype(np.uint8), (tile_px, tile_px), interpolation=cv2.INTER_NEAREST) > 0
        r, c = (t.y - y0) * tile_px, (t.x - x0) * tile_px
        mosaic[r:r + tile_px, c:c + tile_px] = img
        valid[r:r + tile_px, c:c + tile_px] = ok
    if mosaic is None:
        raise DataFetchError(f"none of the {len(tiles)} tiles could be fetched (offline?)")
    if failed:
        log.warning("%d of %d tiles missing (left as no-data): %s", len(failed), len(tiles), ", ".join(failed[:10]))
    left, _, _, top = xyz_tile_bounds(x0, y0, z)
    _, bottom, right, _ = xyz_tile_bounds(x1, y1, z)
    h, w = mosaic.shape[:2]
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:3857",
                   transform=from_bounds(left, bottom, right, top, w, h), tiled=True, blockxsize=512,
                   blockysize=512, compress="jpeg", photometric="ycbcr", jpeg_quality=92)
    with atomic_path(out, suffix=".tif") as tmp:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(tmp, "w", **profile) as ds:
                ds.write(np.moveaxis(mosaic, -1, 0))
                ds.write_mask(valid.astype(np.uint8) * 255)
                levels = [f for f in (2, 4, 8) if min(h, w) // f >= 256]
                if levels:
                    ds.build_overviews(levels, Resampling.average)
    return out


ASSEMBLERS: dict[str, Callable[..., Path]] = {}


def _assemble_banepa(out: Path, progress: bool = True, fetch: Callable[[str], bytes] = _fetch_bytes) -> Path:
    return stitch_xyz_tiles(read_tile_recipe(RECIPES_DIR / "banepa_z19_tiles.csv"), out, fetch=fetch, progress=progress)


ASSEMBLERS["banepa_z19_tiles"] = _assemble_banepa


# ------------------------------------------------------------------------------------------ resolve


def _roots() -> list[tuple[str, Path]]:
    roots = []
    shared = shared_data_dir()
    if shared is not None:
        roots.append(("$FOENET_DATA", shared))
    roots.append(("cache", cache_dir() / "data"))
    return roots


def resolve_file(f: DataFile, *, download: bool = True, verify: bool = True, progress: bool = True) -> Path | None:
    """Local path of ``f`` ($FOENET_DATA, then the cache, then a download/assembly into the cache), or None."""
    for label, root in _roots():
        p = root / f.rel_path
        if p.is_file():
            if not verify:
                return p
            # re-hashed at every use (content, not mtime: ~50 ms for the 48 MB Banepa mosaic);
            # an assembled copy in the cache matches the record written when it was assembled
            digest = sha256_file(p)
            if digest == f.sha256 or (f.recipe and label == "cache" and content_ok(p, digest)):
                log.info("%s: using %s (%s)", f.rel_path, p, label)
                return p
            log.warning("%s fails its sha256 check (%s); ignoring it%s", p, label,
                        " (it will be assembled again)" if f.recipe and label == "cache" else "")
    if not download:
        return None
    dest = cache_dir() / "data" / f.rel_path
    try:
        if f.url:
            log.info("downloading %s -> %s", f.url, dest)
            _download(f.url, dest)
            if verify and sha256_file(dest) != f.sha256:
                dest.unlink(missing_ok=True)
                raise DataFetchError(f"{f.url} does not match its sha256 {f.sha256}")
            return dest
        if f.recipe:
            log.info("assembling %s from recipe %s -> %s", f.rel_path, f.recipe, dest)
            out = ASSEMBLERS[f.recipe](dest, progress=progress)
            record_content(out, recipe=f.recipe)
            return out
    except DataFetchError as exc:
        log.warning("%s unavailable: %s", f.rel_path, exc)
    return None


def resolve_map(name: str, *, download: bool = True, verify: bool = True, progress: bool = True) -> list[Path] | None:
    """Local paths of every file of map ``name``, or None when any is unavailable."""
    if name not in REGISTRY:
        from .errors import ConfigError

        raise ConfigError(f"unknown map {name!r}; known: {', '.join(list_maps())}")
    paths = []
    for f in REGISTRY[name].files:
        p = resolve_file(f, download=download, verify=verify, progress=progress)
        if p is None:
            return None
        paths.append(p)
    return paths


def crop_to_geotiff(src: Path, dst: Path, center_frac: tuple[float, float] = (0.5, 0.5),
                    size_frac: tuple[float, float] = (0.4, 0.4), max_side_px: int | None = None) -> Path:
    """Write a window of ``src`` (fractions of its width/height) to ``dst`` as a GeoTIFF, mask kept.

    ``max_side_px`` decimates the window (average) so its longer side is at most that.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        w, h = int(ds.width * size_frac[0]), int(ds.height * size_frac[1])
        col = int(ds.width * center_frac[0] - w / 2)
        row = int(ds.height * center_frac[1] - h / 2)
        col, row = max(0, min(col, ds.width - w)), max(0, min(row, ds.height - h))
        win = Window(col, row, w, h)
        scale = 1.0 if not max_side_px else min(1.0, max_side_px / max(w, h))
        ow, oh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        bands = list(range(1, min(ds.count, 3) + 1))
        data = ds.read(bands, window=win, out_shape=(len(bands), oh, ow), resampling=Resampling.average)
        mask = ds.read_masks(1, window=win, out_shape=(oh, ow), resampling=Resampling.nearest)
        transform = ds.window_transform(win) @ rasterio.Affine.scale(w / ow, h / oh)
        profile = dict(driver="GTiff", width=ow, height=oh, count=len(bands), dtype="uint8", crs=ds.crs,
                       transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with atomic_path(dst, suffix=".tif") as tmp:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            with rasterio.open(tmp, "w", **profile) as out:
                out.write(data)
                out.write_mask(mask)
    return dst


@dataclass
class DemoMap:
    """The map the demo uses: path(s) to read (None for synthetic), a label, and whether it is real."""

    paths: list[Path] | None
    name: str
    synthetic: bool
    attribution: str
    raster: Any = None  # the MapRaster when synthetic (nothing on disk)


def demo_map(name: str = "banepa", *, crop_frac: tuple[float, float] | None = (0.35, 0.35),
             center_frac: tuple[float, float] = (0.5, 0.5), max_side_px: int | None = 3000,
             download: bool = True, progress: bool = True) -> DemoMap:
    """The demo's map: ``name`` from the registry (cropped to ``crop_frac`` of it around ``center_frac``,
    cached as a GeoTIFF under the cache dir), or ``geo.synthetic_map()`` when it is unavailable.

    The synthetic fallback is announced with a WARNING, and ``DemoMap.synthetic`` is True.
    """
    if name != "synthetic":
        paths = resolve_map(name, download=download, progress=progress)
        if paths is not None:
            entry = REGISTRY[name]
            if crop_frac is None or len(paths) != 1:
                return DemoMap(paths, name, False, entry.attribution)
            tag = f"{name}_c{center_frac[0]:.2f}_{center_frac[1]:.2f}_s{crop_frac[0]:.2f}_{crop_frac[1]:.2f}_{max_side_px}"
            dst = cache_dir() / "demo" / f"{tag}.tif"
            intact = dst.is_file() and content_ok(dst)
            if dst.is_file() and not intact:
                log.warning("cached demo crop %s does not match its recorded sha256 (corrupt or modified): "
                            "cropping it again", dst)
            if not intact:
                log.info("cropping %s -> %s", paths[0], dst)
                crop_to_geotiff(paths[0], dst, center_frac, crop_frac, max_side_px)
                record_content(dst, source=str(paths[0]))
            return DemoMap([dst], f"{name} (part)", False, entry.attribution)
        log.warning(
            "\n" + "!" * 78 + "\n!! map %r is not available (no $FOENET_DATA, no cache, no network):\n"
            "!! falling back to a SYNTHETIC procedurally generated map. Results are NOT real-imagery results.\n"
            + "!" * 78, name,
        )
    from .geo import synthetic_map

    return DemoMap(None, "synthetic", True, "procedurally generated (geo.synthetic_map)", raster=synthetic_map())
