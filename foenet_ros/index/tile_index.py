"""``TileIndex``: a loaded index directory (FAISS + tile geo metadata + manifest + map copy).

Search is exact inner product over the whole map for up to ``auto_exact_max_tiles`` tiles
(``IndexFlatIP``); larger maps get IVF-PQ (a shortlist from compressed codes, re-scored exactly
from memory-mapped float16 descriptors), HNSW/IVF-Flat on request. A radius-gated search (near a
prior or the track) is always exact: it scores only the tiles whose centre lies within the radius.
The map is opened for windowed reads (:meth:`TileIndex.map_raster`), never loaded whole.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import CRSMismatchError, EmptyIndexError, ImageError, IndexCorruptError, RasterError
from ..utils import first_line, recover_dir
from . import faiss_store
from .manifest import (
    FAISS_FILE,
    MAP_FILE,
    REBUILD_HINT,
    TILES_FILE,
    check_files,
    check_map_header,
    check_model,
    check_tiles,
    check_verify_mode,
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

    #: decoded-map-block cache of :meth:`map_raster` (MiB): bounds the run-time memory of any map size
    MAP_CACHE_MB = 128

    def __init__(self, path: Path, manifest: dict, faiss_index, tiles, frame, descriptors=None) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._index = faiss_index
        self._desc = descriptors  # float16 [N, D] memory map (ivfpq indexes) or None
        self.tiles = tiles
        self.frame = frame
        self._map = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, expect_fingerprint: str | None = None, *, verify: str = "hash",
             mmap: bool = True) -> "TileIndex":
        """Load an index directory after checking its integrity (see :mod:`foenet_ros.index.manifest`).

        Args:
            path: the index directory.
            expect_fingerprint: the fingerprint of the model that will query it (None: not checked).
            verify: ``"hash"`` (default) re-hashes every file the manifest lists (streamed sha256);
                ``"size"`` checks sizes only, for indexes too large to hash at every start.
            mmap: memory-map the FAISS codes (flat / IVF types) and the float16 descriptors instead of
                reading them: a 10^6-tile index opens in under a second and costs resident memory only
                for the pages a search touches. The map is opened, never read whole (:meth:`map_raster`).

        Raises:
            IndexCorruptError: a manifest that fails its checksum or schema, a missing, truncated or
                modified file, a map copy whose CRS/transform/size differ from the manifest, tiles off
                the map, an unreadable FAISS file. One line, naming the file and what differs.
            IndexMismatchError: ``expect_fingerprint`` differs from the model that built the index.
            ConfigError: an unknown ``verify`` mode.
        """
        index, _ = cls._load_checked(path, expect_fingerprint, verify, mmap)
        return index

    @classmethod
    def _load_checked(cls, path: str | Path, expect_fingerprint: str | None, verify: str,
                      mmap: bool = True) -> tuple["TileIndex", dict]:
        """:meth:`load` plus a report of what was checked (for ``foenet verify-index``)."""
        import time

        from ..errors import CRSMismatchError
        from ..geo import GeoFrame, TileSet

        t0 = time.perf_counter()
        path = Path(path)
        check_verify_mode(verify)
        recover_dir(path)  # a build killed between its two renames: put the previous index back
        manifest = read_manifest(path)
        report = check_files(path, manifest, verify=verify)
        report["files_s"] = time.perf_counter() - t0
        if expect_fingerprint is not None:
            check_model(manifest, fingerprint=expect_fingerprint, index_dir=path)
        try:
            frame = GeoFrame.from_json(manifest["frame"])
        except CRSMismatchError as exc:
            raise IndexCorruptError(f"index {path}: unusable frame in the manifest ({exc}); {REBUILD_HINT}") from exc
        check_map_header(path, manifest, frame)
        faiss_meta = manifest["faiss"]
        # read without search-time knobs, check the kind, then apply the recorded knobs
        index = faiss_store.read(path / FAISS_FILE, faiss_meta["type"], None, mmap=mmap)
        _check_faiss_kind(path, index, faiss_meta["type"])
        faiss_store.configure(index, faiss_meta["type"], faiss_meta.get("params", {}))
        descriptors = _open_descriptors(path, manifest, mmap)
        try:
            with np.load(path / TILES_FILE, allow_pickle=False) as z:
                tiles = TileSet.from_arrays(z)
        except (OSError, ValueError, KeyError, EOFError, RasterError, zipfile.BadZipFile, zlib.error) as exc:
            raise IndexCorruptError(f"cannot read {path / TILES_FILE}: {first_line(exc)}; {REBUILD_HINT}") from exc
        n = manifest["tiles"]["count"]
        dim = manifest["model"]["descriptor_dim"]
        if index.ntotal != n or len(tiles) != n or index.d != dim:
            raise IndexCorruptError(
                f"index {path}: inconsistent sizes (faiss {index.ntotal} x {index.d}, tiles "
                f"{len(tiles)}, manifest {n} x {dim}); {REBUILD_HINT}"
            )
        if descriptors is not None and descriptors.shape != (n, dim):
            raise IndexCorruptError(f"index {path}: descriptors {descriptors.shape} != ({n}, {dim}); {REBUILD_HINT}")
        check_tiles(path, manifest, tiles)
        crs = f"EPSG:{frame.epsg}" if frame.epsg else frame.name
        report.update(tiles=n, dim=dim, type=faiss_meta["type"], crs=crs, seconds=time.perf_counter() - t0)
        log.info("loaded index %s: %d tiles, dim %d, %s (%d files %s in %.2f s)", path, n, dim, faiss_meta["type"],
                 report["files"], "hashed" if report["hashed"] else "size-checked", report["seconds"])
        return cls(path, manifest, index, tiles, frame, descriptors), report

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
        return self.path / self.manifest["map_copy"].get("file", MAP_FILE)

    map_paths = map_path  # contract alias

    def map_raster(self):
        """The stored map, opened for windowed reads: a :class:`foenet_ros.geo.windowed.WindowedMap` (cached).

        It has what the Localizer uses from a MapRaster -- ``crop``, ``warp``, ``gsd_m`` (the stored,
        native GSD), ``frame``, ``bounds_xy``, ``transform``, ``xy_to_pixel`` -- plus ``read_window``
        and ``overview`` (for plots), and decodes only the 512 px blocks a read touches, through an
        LRU cache of ``MAP_CACHE_MB``. ``.image`` / ``.valid`` / ``.level(k)`` work for maps up to
        100 Mpx (per level); larger maps raise RasterError there (use ``overview()``).
        """
        if self._map is None:
            from ..geo.windowed import WindowedMap

            try:
                self._map = WindowedMap(self.map_path(), self.frame, name=str(self.manifest["map_copy"].get("name", "map")),
                                        cache_mb=self.MAP_CACHE_MB)
            except (RasterError, CRSMismatchError) as exc:
                raise IndexCorruptError(f"cannot open the map of index {self.path}: {exc}; {REBUILD_HINT}") from exc
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
            if self._desc is None:
                scores, ids = faiss_store.search(self._index, desc[None], k)
                return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
            # IVF-PQ: approximate shortlist, then exact cosine from the stored descriptors
            rerank = max(k, int(self.manifest["faiss"].get("params", {}).get("rerank", 100)))
            _, ids = faiss_store.search(self._index, desc[None], rerank)
            ids = np.sort(ids[0][ids[0] >= 0])  # sorted ids: sequential page reads of the memory map
            return self._exact_top(ids, desc, k)
        ids = self.tiles_within(near_xy, radius_m)
        if len(ids) == 0:
            raise EmptyIndexError(
                f"no tile centre within {radius_m:.0f} m of ({near_xy[0]:.1f}, {near_xy[1]:.1f}) in index {self.path}"
            )
        return self._exact_top(ids, desc, k)

    def _exact_top(self, ids: np.ndarray, desc: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The ``k`` best of ``ids`` by exact cosine (ties: lower id first)."""
        scores = self.descriptors(ids) @ desc
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
        ids = np.asarray(ids, dtype=np.int64)
        if self._desc is not None:
            return np.asarray(self._desc[ids], dtype=np.float32)
        return faiss_store.reconstruct(self._index, ids)

    def __repr__(self) -> str:
        return f"TileIndex({str(self.path)!r}, tiles={len(self)}, dim={self.dim}, type={self.index_type!r})"


def verify_index(path: str | Path, verify: str = "hash", expect_fingerprint: str | None = None) -> dict:
    """Run every load-time integrity check on an index directory; return what was checked.

    Returns ``{"path", "files", "bytes", "hashed", "files_s", "tiles", "dim", "type", "crs", "seconds"}``.

    Raises:
        IndexCorruptError / IndexMismatchError: as :meth:`TileIndex.load`.
    """
    index, report = TileIndex._load_checked(path, expect_fingerprint, verify)
    _decode_map(index)  # catches pixel damage a size check cannot see
    report["path"] = str(index.path)
    return report


def _check_faiss_kind(path: Path, index, index_type: str) -> None:
    """The FAISS file holds the index type and metric the manifest records."""
    import faiss

    expected = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSW, "ivf": faiss.IndexIVFFlat,
                "ivfpq": faiss.IndexIVFPQ}[index_type]
    if not isinstance(index, expected) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexCorruptError(
            f"index {path}: {FAISS_FILE} holds a {type(index).__name__} (metric {index.metric_type}), not the "
            f"inner-product {index_type!r} index the manifest records; {REBUILD_HINT}"
        )


def _decode_map(index: TileIndex) -> None:
    """Decode every block of the stored map (full resolution and overviews), one block at a time."""
    try:
        index.map_raster().decode_all()
    except RasterError as exc:
        raise IndexCorruptError(f"index {index.path}: {exc}; {REBUILD_HINT}") from exc


def _open_descriptors(path: Path, manifest: dict, mmap: bool):
    """The float16 descriptors an IVF-PQ index keeps for exact re-ranking (memory-mapped), or None."""
    entry = manifest["faiss"].get("descriptors")
    if not entry:
        return None
    file = path / entry.get("file", "descriptors.npy")
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"cannot read {file}: {first_line(exc)}; {REBUILD_HINT}") from exc
