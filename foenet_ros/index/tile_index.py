"""``TileIndex``: a loaded index directory (FAISS + tile geo metadata + manifest + map copy).

Search is exact inner product over the whole map by default (``IndexFlatIP``); HNSW/IVF indexes
trade a little recall for speed on very large maps. A radius-gated search (near a prior or the
track) is always exact: it scores only the tiles whose centre lies within the radius.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import EmptyIndexError, ImageError, IndexCorruptError, RasterError
from . import faiss_store
from .manifest import (
    FAISS_FILE,
    MAP_FILE,
    MASK_FILE,
    REBUILD_HINT,
    TILES_FILE,
    check_files,
    check_model,
    read_manifest,
)

log = logging.getLogger(__name__)

class TileIndex:
    """A tile index loaded from disk. Build one with :func:`foenet_ros.index.build_index`.

    Attributes:
        path: the index directory.
        manifest: the parsed ``manifest.json``.
        frame: the local metric frame (:class:`foenet_ros.geo.GeoFrame`) of all tile coordinates.
        tiles: :class:`foenet_ros.geo.TileSet` (centres, sizes, polygons in frame metres).
    """

    def __init__(self, path: Path, manifest: dict, faiss_index, tiles, frame) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._index = faiss_index
        self.tiles = tiles
        self.frame = frame
        self._map = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, expect_fingerprint: str | None = None, *, verify_hash: bool = False) -> "TileIndex":
        """Load an index directory, checking its manifest, files and (optionally) the model fingerprint.

        Raises:
            IndexCorruptError: a missing/truncated file, an unreadable manifest, an unknown format version.
            IndexMismatchError: ``expect_fingerprint`` differs from the model that built the index.
        """
        from ..geo import GeoFrame, TileSet

        path = Path(path)
        manifest = read_manifest(path)
        check_files(path, manifest, verify_hash=verify_hash)
        if expect_fingerprint is not None:
            check_model(manifest, fingerprint=expect_fingerprint, index_dir=path)
        faiss_meta = manifest["faiss"]
        index = faiss_store.read(path / FAISS_FILE, faiss_meta["type"], faiss_meta.get("params", {}))
        try:
            with np.load(path / TILES_FILE, allow_pickle=False) as z:
                tiles = TileSet.from_arrays(z)
        except (OSError, ValueError, KeyError, RasterError) as exc:
            raise IndexCorruptError(f"cannot read {path / TILES_FILE}: {exc}; {REBUILD_HINT}") from exc
        n = manifest["tiles"]["count"]
        dim = manifest["model"]["descriptor_dim"]
        if index.ntotal != n or len(tiles) != n or index.d != dim:
            raise IndexCorruptError(
                f"index {path}: inconsistent sizes (faiss {index.ntotal} x {index.d}, tiles "
                f"{len(tiles)}, manifest {n} x {dim}); {REBUILD_HINT}"
            )
        frame = GeoFrame.from_json(manifest["frame"])
        log.info("loaded index %s: %d tiles, dim %d, %s", path, n, dim, faiss_meta["type"])
        return cls(path, manifest, index, tiles, frame)

    def check_encoder(self, encoder) -> None:
        """Raise :class:`IndexMismatchError` unless ``encoder`` is the model (and input size) that built this index."""
        check_model(self.manifest, fingerprint=encoder.fingerprint, input_size=encoder.input_size,
                    index_dir=self.path)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def fingerprint(self) -> str:
        return self.manifest["model"]["fingerprint"]

    @property
    def input_size(self) -> int:
        return int(self.manifest["model"]["input_size"])

    @property
    def index_type(self) -> str:
        return self.manifest["faiss"]["type"]

    @property
    def scales_m(self) -> list[float]:
        return list(self.manifest["tiles"]["scales_m"])

    def map_path(self) -> Path:
        """The GeoTIFF map copy stored in the index (open it in QGIS; used for verification)."""
        return self.path / MAP_FILE

    map_paths = map_path  # contract alias

    def map_raster(self):
        """The stored map copy as a :class:`foenet_ros.geo.MapRaster` (loaded once, then cached)."""
        if self._map is None:
            self._map = _read_map_copy(self.path, self.manifest, self.frame)
        return self._map

    # ------------------------------------------------------------------ search
    def search(self, desc: np.ndarray, k: int, near_xy: tuple[float, float] | None = None,
               radius_m: float | None = None) -> list[tuple[int, float]]:
        """Top-``k`` tiles for one descriptor ``desc`` [D] (L2-normalised): ``[(tile_id, score), ...]``.

        With ``near_xy`` (frame metres) and ``radius_m`` only tiles whose centre lies within the
        radius are scored, exactly. Scores are cosine similarities in [-1, 1], best first.

        Raises:
            EmptyIndexError: the index is empty, or no tile lies within the radius.
        """
        desc = np.asarray(desc, dtype=np.float32).reshape(-1)
        if desc.shape[0] != self.dim or not np.all(np.isfinite(desc)):
            raise ImageError(f"descriptor must be a finite vector of length {self.dim}, got shape {desc.shape}")
        if len(self) == 0:
            raise EmptyIndexError(f"index {self.path} has no tiles; {REBUILD_HINT}")
        if k < 1:
            return []
        if near_xy is None or radius_m is None:
            scores, ids = faiss_store.search(self._index, desc[None], k)
            return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        ids = self.tiles_within(near_xy, radius_m)
        if len(ids) == 0:
            raise EmptyIndexError(
                f"no tile centre within {radius_m:.0f} m of ({near_xy[0]:.1f}, {near_xy[1]:.1f}) in index {self.path}"
            )
        vecs = faiss_store.reconstruct(self._index, ids)
        scores = vecs @ desc
        order = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[j]), float(scores[j])) for j in order]

    def tiles_within(self, near_xy: tuple[float, float], radius_m: float) -> np.ndarray:
        """Ids of the tiles whose centre is within ``radius_m`` of ``near_xy`` (frame metres)."""
        d2 = np.sum((self.tiles.centers_xy - np.asarray(near_xy, dtype=np.float64)[None]) ** 2, axis=1)
        return np.flatnonzero(d2 <= float(radius_m) ** 2)

    def descriptors(self, ids: np.ndarray | None = None) -> np.ndarray:
        """Stored descriptors [len(ids), D] (all tiles when ``ids`` is None)."""
        if ids is None:
            ids = np.arange(len(self))
        return faiss_store.reconstruct(self._index, np.asarray(ids))

    def __repr__(self) -> str:
        return f"TileIndex({str(self.path)!r}, tiles={len(self)}, dim={self.dim}, type={self.index_type!r})"


def _read_map_copy(path: Path, manifest: dict, frame):
    """Read ``map.tif`` + ``map_valid.png`` into a MapRaster in the index frame."""
    import cv2
    import rasterio
    from affine import Affine

    from ..geo import MapRaster

    meta = manifest["map_copy"]
    try:
        with rasterio.open(path / MAP_FILE) as ds:
            image = np.ascontiguousarray(np.moveaxis(ds.read([1, 2, 3]), 0, -1))
    except rasterio.errors.RasterioError as exc:
        raise IndexCorruptError(f"cannot read the map copy {path / MAP_FILE}: {exc}; {REBUILD_HINT}") from exc
    mask = cv2.imread(str(path / MASK_FILE), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != image.shape[:2]:
        raise IndexCorruptError(f"map mask {path / MASK_FILE} is unreadable or of the wrong size; {REBUILD_HINT}")
    return MapRaster(image=image, valid=mask > 127, transform=Affine(*meta["transform"][:6]), frame=frame,
                     gsd_m=float(meta["gsd_m"]), name=str(meta.get("name", "map")))
