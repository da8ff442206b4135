"""The index directory layout and its ``manifest.json`` (format version, model, frame, files).

An index directory holds::

    manifest.json     what built it (model fingerprint, input size, descriptor dim), the frame/CRS,
                      GSD, tile scales, counts, creation time, source maps (+ sha256), file sizes
    index.faiss       the FAISS index (one vector per tile, id = row in tiles.npz)
    tiles.npz         tile metadata arrays (no pickle): centers_xy, size_m, scale_idx, polygons_xy, valid_frac
    map.tif           a (downsampled) GeoTIFF copy of the map, in the local frame, for verification and plots
    map_valid.png     its validity mask (255 = real data)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import IndexCorruptError, IndexMismatchError
from ..utils import sha256_file

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAISS_FILE = "index.faiss"
TILES_FILE = "tiles.npz"
MAP_FILE = "map.tif"
MASK_FILE = "map_valid.png"
DATA_FILES = (FAISS_FILE, TILES_FILE, MAP_FILE, MASK_FILE)

REBUILD_HINT = "rebuild it with `foenet build-index MAP... --out DIR`"


def file_entry(path: Path) -> dict:
    """Size + sha256 of a file, recorded so truncation/corruption is detected at load."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """Read and structurally check ``manifest.json``; raise :class:`IndexCorruptError` if unusable."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise IndexCorruptError(f"index directory {index_dir} does not exist; {REBUILD_HINT}")
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexCorruptError(
            f"{index_dir} is not a foenet index: {MANIFEST} is missing (an interrupted build?); {REBUILD_HINT}"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{path} is not valid JSON ({exc}); {REBUILD_HINT}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path}: unknown index format version {version!r} (this foenet_ros reads version "
            f"{FORMAT_VERSION}); {REBUILD_HINT} with this version of foenet_ros"
        )
    for key in ("model", "frame", "tiles", "faiss", "files", "map_copy"):
        if key not in manifest:
            raise IndexCorruptError(f"{path}: missing section {key!r}; {REBUILD_HINT}")
    return manifest


def check_files(index_dir: Path, manifest: dict, *, verify_hash: bool = False) -> None:
    """Every data file exists with the recorded size (and sha256 when ``verify_hash``)."""
    for name in DATA_FILES:
        entry = manifest["files"].get(name)
        path = Path(index_dir) / name
        if entry is None or not path.is_file():
            raise IndexCorruptError(f"index {index_dir}: file {name} is missing; {REBUILD_HINT}")
        size = path.stat().st_size
        if size != entry["size"]:
            raise IndexCorruptError(
                f"index {index_dir}: {name} has {size} bytes but the manifest records {entry['size']} "
                f"(truncated or modified); {REBUILD_HINT}"
            )
        if verify_hash and sha256_file(path) != entry["sha256"]:
            raise IndexCorruptError(f"index {index_dir}: {name} does not match its sha256 (corrupt); {REBUILD_HINT}")


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
        raise IndexMismatchError(
            f"index {index_dir} was built with {who}, not with the model in use ({'; '.join(problems)}): "
            f"use that model (--model), or rebuild the index with this one: "
            f"`foenet build-index {' '.join(m['name'] for m in manifest.get('maps', [])) or 'MAP...'} "
            f"--out {index_dir or 'DIR'}` with the same --model"
        )
