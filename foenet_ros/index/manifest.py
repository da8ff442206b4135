"""The index directory layout, its ``manifest.json``, and the integrity checks run at load.

An index directory holds::

    manifest.json     what built it (model fingerprint, input size, descriptor dim), the frame/CRS,
                      GSD, tile scales, counts, creation time, source maps (+ sha256), and the size +
                      sha256 of every other file in the directory; sealed by its own checksum
                      (``manifest_sha256``: sha256 of the canonical JSON of everything else)
    index.faiss       the FAISS index (one vector per tile, id = row in tiles.npz)
    tiles.npz         tile metadata arrays (no pickle): centers_xy, size_m, scale_idx, polygons_xy, valid_frac
    map.tif           a (downsampled) GeoTIFF copy of the map, in the local frame, for verification and plots
    map_valid.png     its validity mask (255 = real data)

``DATA_FILES`` is the required minimum; every file the manifest lists is verified, so files added
by later versions of the builder (e.g. stored map features) are covered without a code change here.

Integrity at load, in order (each failure is an :class:`IndexCorruptError` with one line):

1. ``manifest.json`` parses, is an object of this format version, and matches its own checksum;
2. its schema: every section, type and range (:func:`validate_manifest`);
3. every listed file exists with the recorded size, and (``verify="hash"``, the default) sha256;
4. ``map.tif``'s CRS, transform and size equal what the manifest records (:func:`check_map_header`);
5. the tiles lie on the map and agree with the manifest (:func:`check_tiles`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConfigError, IndexCorruptError, IndexMismatchError
from ..utils import atomic_path, first_line, sha256_file
from .config import INDEX_TYPES

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAISS_FILE = "index.faiss"
TILES_FILE = "tiles.npz"
MAP_FILE = "map.tif"
MASK_FILE = "map_valid.png"
DATA_FILES = (FAISS_FILE, TILES_FILE, MAP_FILE, MASK_FILE)
CHECKSUM_KEY = "manifest_sha256"
VERIFY_MODES = ("hash", "size")  # "hash": size + sha256 of every file; "size": sizes only (huge indexes)

REBUILD_HINT = "rebuild it with `foenet build-index MAP... --out DIR`"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------- writing
def file_entry(path: Path) -> dict:
    """Size + sha256 of a file, recorded so truncation/corruption is detected at load."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def canonical_json(obj: Any) -> bytes:
    """The bytes the checksum is taken over: sorted keys, no whitespace, UTF-8.

    Python's float repr round-trips exactly, so ``json.loads`` of the written file re-serialises
    to the same bytes; the checksum therefore survives pretty-printing and key order.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_checksum(manifest: dict) -> str:
    """sha256 (hex) of the canonical JSON of ``manifest`` without its checksum field."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def list_files(index_dir: Path) -> list[str]:
    """Every regular file under ``index_dir`` except the manifest and hidden/temporary names.

    POSIX relative paths, sorted: what the manifest records and the loader verifies.
    """
    index_dir = Path(index_dir)
    names = []
    for root, dirs, files in os.walk(index_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            rel = (Path(root) / f).relative_to(index_dir).as_posix()
            if rel != MANIFEST and not f.startswith("."):
                names.append(rel)
    return sorted(names)


def write_manifest(index_dir: str | os.PathLike, manifest: dict) -> dict:
    """Record every file of ``index_dir`` (size + sha256), seal the manifest with its checksum, write it.

    ``manifest["files"]`` is (re)computed from the directory contents, so whatever the builder
    wrote there is covered. Written atomically (temp file + rename). Returns the sealed manifest.

    Raises:
        IndexCorruptError: a required data file (``DATA_FILES``) is missing from ``index_dir``.
    """
    index_dir = Path(index_dir)
    names = list_files(index_dir)
    missing = [n for n in DATA_FILES if n not in names]
    if missing:
        raise IndexCorruptError(f"cannot seal index {index_dir}: required file(s) {missing} were not written")
    sealed = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    sealed["files"] = {name: file_entry(index_dir / name) for name in names}
    sealed[CHECKSUM_KEY] = manifest_checksum(sealed)
    with atomic_path(index_dir / MANIFEST, suffix=".json") as tmp:
        tmp.write_text(json.dumps(sealed, indent=2) + "\n")
    return sealed


# ---------------------------------------------------------------------- reading
def read_manifest(index_dir: Path) -> dict[str, Any]:
    """Read ``manifest.json``, check its checksum and schema; raise :class:`IndexCorruptError` if unusable."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise IndexCorruptError(f"index directory {index_dir} does not exist; {REBUILD_HINT}")
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexCorruptError(
            f"{index_dir} is not a foenet index: {MANIFEST} is missing (an interrupted build?); {REBUILD_HINT}"
        )
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise IndexCorruptError(f"{path} is not valid JSON ({first_line(exc)}); {REBUILD_HINT}") from exc
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{path} must hold a JSON object, got {_kind(manifest)}; {REBUILD_HINT}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise IndexCorruptError(
            f"{path}: unknown index format version {version!r} (this foenet_ros reads version "
            f"{FORMAT_VERSION}); {REBUILD_HINT} with this version of foenet_ros"
        )
    recorded = manifest.get(CHECKSUM_KEY)
    if recorded is None:
        raise IndexCorruptError(
            f"{path} has no {CHECKSUM_KEY} (written by an older foenet_ros, or edited): its contents "
            f"cannot be trusted; {REBUILD_HINT}"
        )
    computed = manifest_checksum(manifest)
    if recorded != computed:
        raise IndexCorruptError(
            f"{path} does not match its own checksum (recorded {str(recorded)[:12]}, computed "
            f"{computed[:12]}): the manifest was modified or corrupted after the build; {REBUILD_HINT}"
        )
    validate_manifest(manifest, where=str(path))
    return manifest


# ---------------------------------------------------------------------- schema
class _Schema:
    """Typed accessors that turn a wrong type or range into one precise :class:`IndexCorruptError`."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, what: str) -> IndexCorruptError:
        return IndexCorruptError(f"{self.where}: {what}; {REBUILD_HINT}")

    def section(self, d: dict, key: str, name: str | None = None) -> dict:
        name = name or key
        if key not in d:
            raise self.fail(f"missing section {name!r}")
        if not isinstance(d[key], dict):
            raise self.fail(f"{name} must be an object, got {_kind(d[key])}")
        return d[key]

    def value(self, d: dict, key: str, name: str, optional: bool = False) -> Any:
        if key not in d:
            if optional:
                return None
            raise self.fail(f"missing {name}")
        return d[key]

    def string(self, d: dict, key: str, name: str, optional: bool = False, nonempty: bool = True) -> str | None:
        v = self.value(d, key, name, optional)
        if v is None and optional:
            return None
        if not isinstance(v, str) or (nonempty and not v):
            raise self.fail(f"{name} must be a {'non-empty ' if nonempty else ''}string, got {_show(v)}")
        return v

    def integer(self, d: dict, key: str, name: str, lo: int | None = None, hi: int | None = None) -> int:
        v = self.value(d, key, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(f"{name} must be an integer, got {_show(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(f"{name} must be in [{lo}, {hi if hi is not None else 'inf'}], got {v}")
        return v

    def number(self, d: dict, key: str, name: str, lo: float | None = None, hi: float | None = None,
               positive: bool = False, optional: bool = False) -> float | None:
        v = self.value(d, key, name, optional)
        if v is None and optional:
            return None
        return self.check_number(v, name, lo, hi, positive)

    def check_number(self, v: Any, name: str, lo: float | None = None, hi: float | None = None,
                     positive: bool = False) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise self.fail(f"{name} must be a number, got {_show(v)}")
        if not math.isfinite(v):
            raise self.fail(f"{name} must be finite, got {v}")
        if positive and not v > 0:
            raise self.fail(f"{name} must be > 0, got {v}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(f"{name} must be in [{lo}, {hi}], got {v}")
        return float(v)

    def numbers(self, d: dict, key: str, name: str, length: int | None = None, min_length: int = 0,
                positive: bool = False, integer: bool = False) -> list:
        v = self.value(d, key, name)
        if not isinstance(v, list):
            raise self.fail(f"{name} must be a list, got {_show(v)}")
        if (length is not None and len(v) != length) or len(v) < min_length:
            want = f"{length}" if length is not None else f">= {min_length}"
            raise self.fail(f"{name} must have {want} values, got {len(v)}")
        out = []
        for i, x in enumerate(v):
            if integer:
                if not isinstance(x, int) or isinstance(x, bool):
                    raise self.fail(f"{name}[{i}] must be an integer, got {_show(x)}")
                if positive and x <= 0:
                    raise self.fail(f"{name}[{i}] must be > 0, got {x}")
                out.append(x)
            else:
                out.append(self.check_number(x, f"{name}[{i}]", positive=positive))
        return out


def validate_manifest(manifest: dict, where: str = MANIFEST) -> None:
    """Check every section, type and range the loader relies on.

    Raises:
        IndexCorruptError: one line naming the field, what it must be and what it is.
    """
    s = _Schema(where)

    model = s.section(manifest, "model")
    s.string(model, "fingerprint", "model.fingerprint")
    name = model.get("name")
    if name is not None and not isinstance(name, str):
        raise s.fail(f"model.name must be a string or null, got {_show(name)}")
    s.integer(model, "input_size", "model.input_size", 16, 8192)
    s.integer(model, "descriptor_dim", "model.descriptor_dim", 1, 1 << 16)

    frame = s.section(manifest, "frame")
    epsg, wkt = frame.get("epsg"), frame.get("wkt")
    if epsg is not None:
        s.integer(frame, "epsg", "frame.epsg", 1024, 999_999)
    elif wkt is not None:
        s.string(frame, "wkt", "frame.wkt")
    else:
        raise s.fail("frame needs 'epsg' (an integer) or 'wkt' (a string)")

    mp = s.section(manifest, "map")
    s.number(mp, "gsd_m", "map.gsd_m", positive=True)
    bounds = s.numbers(mp, "bounds_xy", "map.bounds_xy", length=4)
    if not (bounds[0] < bounds[2] and bounds[1] < bounds[3]):
        raise s.fail(f"map.bounds_xy must be (xmin, ymin, xmax, ymax) with min < max, got {bounds}")
    s.numbers(mp, "size_px", "map.size_px", length=2, positive=True, integer=True)

    copy = s.section(manifest, "map_copy")
    s.string(copy, "file", "map_copy.file")
    s.string(copy, "mask_file", "map_copy.mask_file")
    s.number(copy, "gsd_m", "map_copy.gsd_m", positive=True)
    s.numbers(copy, "size_px", "map_copy.size_px", length=2, positive=True, integer=True)
    t = s.numbers(copy, "transform", "map_copy.transform", length=6)
    # a north-up rasterio transform (a, b, c, d, e, f): x = a*col + c, y = e*row + f, e < 0
    if not (t[0] > 0 and t[4] < 0 and t[1] == 0 and t[3] == 0):
        raise s.fail(f"map_copy.transform must be north-up (a > 0, b = d = 0, e < 0), got {t}")

    tiles = s.section(manifest, "tiles")
    count = s.integer(tiles, "count", "tiles.count", 1)
    scales = s.numbers(tiles, "scales_m", "tiles.scales_m", min_length=1, positive=True)
    per_scale = s.numbers(tiles, "count_per_scale", "tiles.count_per_scale", length=len(scales), integer=True)
    if any(c < 0 for c in per_scale) or sum(per_scale) != count:
        raise s.fail(f"tiles.count_per_scale {per_scale} does not add up to tiles.count {count}")
    s.number(tiles, "overlap", "tiles.overlap", 0.0, 0.95, optional=True)
    s.number(tiles, "min_valid", "tiles.min_valid", 0.0, 1.0, optional=True)
    s.integer(tiles, "tile_px", "tiles.tile_px", 16, 8192)

    faiss = s.section(manifest, "faiss")
    kind = s.string(faiss, "type", "faiss.type")
    if kind not in INDEX_TYPES:
        raise s.fail(f"faiss.type must be one of {INDEX_TYPES}, got {kind!r}")
    metric = s.string(faiss, "metric", "faiss.metric", optional=True)
    if metric is not None and metric != "inner_product":
        raise s.fail(f"faiss.metric must be 'inner_product', got {metric!r}")
    params = faiss.get("params", {})
    if not isinstance(params, dict):
        raise s.fail(f"faiss.params must be an object, got {_kind(params)}")
    for key in params:
        s.integer(params, key, f"faiss.params.{key}", 1)

    files = s.section(manifest, "files")
    for fname, entry in files.items():
        _check_file_name(s, fname)
        if not isinstance(entry, dict):
            raise s.fail(f"files[{fname!r}] must be an object {{size, sha256}}, got {_kind(entry)}")
        s.integer(entry, "size", f"files[{fname!r}].size", 0)
        digest = s.string(entry, "sha256", f"files[{fname!r}].sha256")
        if not _HEX64.match(digest):
            raise s.fail(f"files[{fname!r}].sha256 must be 64 lowercase hex digits, got {digest[:70]!r}")
    required = set(DATA_FILES) | {copy["file"], copy["mask_file"]}
    missing = sorted(required - set(files))
    if missing:
        raise s.fail(f"files does not list {', '.join(missing)}")

    if "fine" in manifest:
        _validate_fine(s, s.section(manifest, "fine"), files)
    s.number(mp, "accuracy_m", "map.accuracy_m", 0.0, 1e4, optional=True)

    maps = manifest.get("maps", [])
    if not isinstance(maps, list) or not all(isinstance(m, dict) for m in maps):
        raise s.fail(f"maps must be a list of objects, got {_show(maps)}")
    for key in ("config",):
        if key in manifest and not isinstance(manifest[key], dict):
            raise s.fail(f"{key} must be an object, got {_kind(manifest[key])}")


def _validate_fine(s: _Schema, fine: dict, files: dict) -> None:
    """The fine stage's section: levels, methods, keypoints, surface model -- and every file they imply listed."""
    from .fine import FineStore

    s.integer(fine, "format", "fine.format", 1, 1)
    s.numbers(fine, "origin_xy", "fine.origin_xy", length=2)
    levels = s.value(fine, "levels", "fine.levels")
    if not isinstance(levels, list) or not levels:
        raise s.fail(f"fine.levels must be a non-empty list, got {_show(levels)}")
    last = 0.0
    for k, lv in enumerate(levels):
        if not isinstance(lv, dict):
            raise s.fail(f"fine.levels[{k}] must be an object, got {_kind(lv)}")
        c = s.number(lv, "cell_m", f"fine.levels[{k}].cell_m", positive=True)
        if c <= last:
            raise s.fail(f"fine.levels must grow in cell size, got {c} after {last}")
        last = c
        s.numbers(lv, "shape", f"fine.levels[{k}].shape", length=2, positive=True, integer=True)
        if "polish" in lv and (not isinstance(lv["polish"], bool) or (lv["polish"] and (k != 0 or len(levels) < 2))):
            raise s.fail(f"fine.levels[{k}].polish must be a boolean, true only for the first of several levels, "
                         f"got {_show(lv['polish'])}")
    methods = s.section(fine, "methods", "fine.methods")
    if not methods:
        raise s.fail("fine.methods must name at least one dense feature method")
    for m, spec in methods.items():
        if m not in ("cfog", "foenet") or not isinstance(spec, dict):
            raise s.fail(f"fine.methods: unknown method {m!r} or not an object")
        s.integer(spec, "channels", f"fine.methods.{m}.channels", 1, 1024)
        s.integer(spec, "stride", f"fine.methods.{m}.stride", 1, 64)
        if spec.get("storage") not in ("u8", "i8"):
            raise s.fail(f"fine.methods.{m}.storage must be 'u8' or 'i8', got {_show(spec.get('storage'))}")
    if "keypoints" in fine:
        kp = s.section(fine, "keypoints", "fine.keypoints")
        s.integer(kp, "count", "fine.keypoints.count", 0)
        s.numbers(kp, "gsd_m", "fine.keypoints.gsd_m", min_length=1, positive=True)
        s.number(kp, "grid_m", "fine.keypoints.grid_m", positive=True)
        s.numbers(kp, "grid_shape", "fine.keypoints.grid_shape", length=2, positive=True, integer=True)
        fl = s.value(kp, "flavours", "fine.keypoints.flavours")
        if not isinstance(fl, list) or not fl or any(f not in ("upright", "oriented") for f in fl):
            raise s.fail(f"fine.keypoints.flavours must list 'upright' and/or 'oriented', got {_show(fl)}")
        if not isinstance(kp.get("has_z", False), bool):
            raise s.fail(f"fine.keypoints.has_z must be true or false, got {_show(kp.get('has_z'))}")
    if "dsm" in fine:
        d = s.section(fine, "dsm", "fine.dsm")
        t = s.numbers(d, "transform", "fine.dsm.transform", length=6)
        if not (t[0] > 0 and t[4] < 0):
            raise s.fail(f"fine.dsm.transform must be north-up, got {t}")
        s.numbers(d, "shape", "fine.dsm.shape", length=2, positive=True, integer=True)
        s.number(d, "relief_m", "fine.dsm.relief_m", 0.0, 1e5)
    missing = sorted(set(FineStore.files(fine)) - set(files))
    if missing:
        raise s.fail(f"files does not list the fine stage's {', '.join(missing[:4])}")


def _check_file_name(s: _Schema, name: str) -> None:
    """A listed file must be a plain relative path inside the index directory (no '..', no absolute path)."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or name == MANIFEST:
        raise s.fail(f"files lists {name!r}, which is not a file name inside the index directory")


# ---------------------------------------------------------------------- files
def check_verify_mode(verify: str) -> str:
    """``verify`` must be one of :data:`VERIFY_MODES`; returns it."""
    if verify not in VERIFY_MODES:
        raise ConfigError(f"verify must be one of {VERIFY_MODES} (full sha256 or sizes only), got {verify!r}")
    return verify


def check_files(index_dir: Path, manifest: dict, *, verify: str = "hash") -> dict:
    """Every file the manifest lists exists with the recorded size, and sha256 when ``verify == "hash"``.

    Hashing is streamed (constant memory). Returns ``{"files": n, "bytes": total, "hashed": bool}``.
    """
    check_verify_mode(verify)
    index_dir = Path(index_dir)
    total = 0
    for name, entry in manifest["files"].items():
        path = index_dir / name
        if not path.is_file():
            raise IndexCorruptError(f"index {index_dir}: file {name} is missing; {REBUILD_HINT}")
        size = path.stat().st_size
        if size != entry["size"]:
            raise IndexCorruptError(
                f"index {index_dir}: {name} has {size} bytes but the manifest records {entry['size']} "
                f"(truncated or modified); {REBUILD_HINT}"
            )
        if verify == "hash" and sha256_file(path) != entry["sha256"]:
            raise IndexCorruptError(
                f"index {index_dir}: {name} does not match its recorded sha256 (corrupt or modified after the "
                f"build); {REBUILD_HINT}"
            )
        total += size
    return {"files": len(manifest["files"]), "bytes": total, "hashed": verify == "hash"}


def check_map_header(index_dir: Path, manifest: dict, frame) -> None:
    """``map.tif``'s CRS, transform and size (read from its header only) equal the manifest's.

    Catches a manifest whose frame or georeference was changed (e.g. EPSG 32637 -> 32633 would
    place every fix in another UTM zone) even when its checksum was recomputed.
    """
    import numpy as np
    import rasterio

    from ..errors import CRSMismatchError
    from ..geo import GeoFrame

    copy = manifest["map_copy"]
    path = Path(index_dir) / copy["file"]
    try:
        with rasterio.open(path) as ds:
            crs, transform, size, count, dtypes = ds.crs, ds.transform, (ds.width, ds.height), ds.count, ds.dtypes
    except rasterio.errors.RasterioError as exc:
        raise IndexCorruptError(f"cannot read the map copy {path}: {first_line(exc)}; {REBUILD_HINT}") from exc
    if crs is None:
        raise IndexCorruptError(f"map copy {path} has no CRS; {REBUILD_HINT}")
    try:
        same = GeoFrame(crs) == frame
    except CRSMismatchError as exc:
        raise IndexCorruptError(f"map copy {path}: {first_line(exc)}; {REBUILD_HINT}") from exc
    if not same:
        raise IndexCorruptError(
            f"index {index_dir}: the manifest's frame {frame!r} differs from the CRS of {copy['file']} "
            f"({crs.to_string()}): the manifest or the map copy was altered; {REBUILD_HINT}"
        )
    if list(size) != list(copy["size_px"]):
        raise IndexCorruptError(
            f"index {index_dir}: {copy['file']} is {size[0]} x {size[1]} px but the manifest records "
            f"{copy['size_px'][0]} x {copy['size_px'][1]}; {REBUILD_HINT}"
        )
    recorded = np.asarray(copy["transform"][:6], np.float64)
    actual = np.asarray(tuple(transform)[:6], np.float64)
    # offsets to a millimetre, pixel sizes to 1e-9 relative (GeoTIFF stores doubles)
    tol = np.array([1e-9 * abs(recorded[0]), 1e-9, 1e-3, 1e-9, 1e-9 * abs(recorded[4]), 1e-3]) + 1e-12
    if not np.all(np.abs(recorded - actual) <= tol):
        raise IndexCorruptError(
            f"index {index_dir}: the georeference of {copy['file']} {_fmt(actual, 3)} differs from the "
            f"manifest's {_fmt(recorded, 3)}; {REBUILD_HINT}"
        )
    if count < 3 or any(d != "uint8" for d in dtypes[:3]):
        raise IndexCorruptError(f"map copy {path} must be 3-band uint8, got {count} bands {dtypes}; {REBUILD_HINT}")
    # the map section (full-resolution map) and the copy must cover the same ground
    w, h = copy["size_px"]
    a, _, c, _, e, f = recorded
    extent = np.array([c, f + e * h, c + a * w, f])
    bounds = np.asarray(manifest["map"]["bounds_xy"], np.float64)
    if not np.all(np.abs(extent - bounds) <= 2.0 * a + 1e-3):
        raise IndexCorruptError(
            f"index {index_dir}: map.bounds_xy {_fmt(bounds, 1)} differs from the extent of "
            f"{copy['file']} {_fmt(extent, 1)}; {REBUILD_HINT}"
        )


def map_copy_extent(manifest: dict) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of the stored map copy, frame metres."""
    copy = manifest["map_copy"]
    a, _, c, _, e, f = (float(v) for v in copy["transform"][:6])
    w, h = copy["size_px"]
    return c, f + e * h, c + a * w, f


def check_tiles(index_dir: Path, manifest: dict, tiles) -> None:
    """Tile arrays are finite, consistent with the manifest, and every centre lies on the map."""
    import numpy as np

    n = manifest["tiles"]["count"]
    scales = np.asarray(manifest["tiles"]["scales_m"], np.float64)
    shapes = {"centers_xy": (n, 2), "size_m": (n,), "scale_idx": (n,), "polygons_xy": (n, 4, 2), "valid_frac": (n,)}
    for key, shape in shapes.items():
        arr = getattr(tiles, key)
        if arr.shape != shape:
            raise IndexCorruptError(
                f"index {index_dir}: tiles.npz {key} has shape {arr.shape}, expected {shape}; {REBUILD_HINT}"
            )
        if not np.all(np.isfinite(arr)):
            raise IndexCorruptError(f"index {index_dir}: tiles.npz {key} holds NaN/inf values; {REBUILD_HINT}")
    if len(tiles.scales_m) != len(scales) or not np.allclose(tiles.scales_m, scales, rtol=1e-9):
        raise IndexCorruptError(
            f"index {index_dir}: tiles.npz scales {list(tiles.scales_m)} differ from the manifest's "
            f"{list(scales)}; {REBUILD_HINT}"
        )
    if n and (tiles.scale_idx.min() < 0 or tiles.scale_idx.max() >= len(scales)
              or not np.allclose(tiles.size_m, scales[tiles.scale_idx], rtol=1e-6)):
        raise IndexCorruptError(
            f"index {index_dir}: tiles.npz sizes/scale ids do not match the scales {list(scales)}; {REBUILD_HINT}"
        )
    xmin, ymin, xmax, ymax = map_copy_extent(manifest)
    tol = 2.0 * float(manifest["map_copy"]["gsd_m"]) + 0.5
    c = tiles.centers_xy
    off = (c[:, 0] < xmin - tol) | (c[:, 0] > xmax + tol) | (c[:, 1] < ymin - tol) | (c[:, 1] > ymax + tol)
    if np.any(off):
        i = int(np.flatnonzero(off)[0])
        raise IndexCorruptError(
            f"index {index_dir}: {int(off.sum())} of {n} tile centres lie outside the map "
            f"(tile {i} at ({c[i, 0]:.1f}, {c[i, 1]:.1f}), map x {xmin:.1f}..{xmax:.1f}, y {ymin:.1f}..{ymax:.1f}); "
            f"{REBUILD_HINT}"
        )
    centre = tiles.polygons_xy.mean(axis=1)
    if n and np.max(np.abs(centre - c)) > 1e-3 * max(1.0, float(scales.max())):
        raise IndexCorruptError(f"index {index_dir}: tile polygons do not surround their centres; {REBUILD_HINT}")


# ---------------------------------------------------------------------- model
def check_model(manifest: dict, *, fingerprint: str | None = None, input_size: int | None = None,
                dim: int | None = None, index_dir: Path | str = "") -> None:
    """Raise :class:`IndexMismatchError` when the index was built with another model than the one in use."""
    built = manifest["model"]
    who = f"model {built.get('name') or '?'} (fingerprint {built.get('fingerprint')})"
    problems = []
    if fingerprint is not None and built.get("fingerprint") != fingerprint:
        problems.append(f"model fingerprint {fingerprint} != {built.get('fingerprint')}")
    if input_size is not None and built.get("input_size") != input_size:
        problems.append(f"input size {input_size} != {built.get('input_size')}")
    if dim is not None and built.get("descriptor_dim") != dim:
        problems.append(f"descriptor dim {dim} != {built.get('descriptor_dim')}")
    if problems:
        names = " ".join(str(m.get("name")) for m in manifest.get("maps", []) if isinstance(m, dict))
        raise IndexMismatchError(
            f"index {index_dir} was built with {who}, not with the model in use ({'; '.join(problems)}): "
            f"use that model (--model), or rebuild the index with this one: "
            f"`foenet build-index {names or 'MAP...'} --out {index_dir or 'DIR'}` with the same --model"
        )


# ---------------------------------------------------------------------- helpers
def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (dict, list, str, int, float, bool, type(None))) else repr(v)
    return f"{_kind(v)} {text[:60]}{'...' if len(text) > 60 else ''}"


def _fmt(values, digits: int) -> str:
    """``(1.0, 2.5, ...)`` with ``digits`` decimals (string formatting: no overflow on huge values)."""
    return "(" + ", ".join(f"{float(v):.{digits}f}" for v in values) + ")"
