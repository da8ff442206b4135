"""Thin FAISS wrapper: make an inner-product index of a given type, search it, read/write it.

All descriptors are L2-normalised, so inner product = cosine similarity (higher is better).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError

log = logging.getLogger(__name__)


def ivf_nlist_for(n: int) -> int:
    """IVF cell count for ``n`` vectors: ~4*sqrt(n), but keep >= 39 training points per cell."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))


def make_index(desc: np.ndarray, index_type: str, *, hnsw_m: int = 32, hnsw_ef_search: int = 128,
               ivf_nlist: int | None = None, ivf_nprobe: int | None = None) -> tuple["faiss.Index", dict]:  # noqa: F821
    """Build a FAISS inner-product index over ``desc`` [N, D] float32.

    Returns ``(index, params)``; ``params`` (JSON) records what was built so a loader can restore
    the search-time knobs (efSearch, nprobe) that FAISS does not keep in the file.
    """
    import faiss

    desc = np.ascontiguousarray(desc, dtype=np.float32)
    n, d = desc.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(d)
        params: dict = {}
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        params = {"hnsw_m": hnsw_m, "ef_search": hnsw_ef_search}
    elif index_type == "ivf":
        nlist = ivf_nlist or ivf_nlist_for(n)
        nlist = max(1, min(nlist, n))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(desc)
        nprobe = ivf_nprobe or max(8, nlist // 4)
        params = {"nlist": nlist, "nprobe": min(nprobe, nlist)}
    else:  # guarded by IndexConfig
        raise ValueError(f"unknown index type {index_type!r}")
    index.add(desc)
    configure(index, index_type, params)
    return index, params


def configure(index, index_type: str, params: dict) -> None:
    """Apply the search-time parameters (and the IVF direct map needed to reconstruct by id)."""
    import faiss

    if index_type == "hnsw":
        index.hnsw.efSearch = int(params.get("ef_search", 128))
    elif index_type == "ivf":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = int(params.get("nprobe", 8))
        ivf.make_direct_map()


def write(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read(path: Path, index_type: str, params: dict):
    """Read a FAISS index file; a truncated/corrupt file becomes :class:`IndexCorruptError`."""
    import faiss

    try:
        index = faiss.read_index(str(path))
    except Exception as exc:  # faiss raises RuntimeError with a C++ message
        raise IndexCorruptError(
            f"cannot read FAISS index {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
            "the file is truncated or corrupt: rebuild it with `foenet build-index`"
        ) from exc
    configure(index, index_type, params)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` search: ``queries`` [Q, D] -> (scores [Q, k], ids [Q, k]); ids of -1 are padding."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = int(min(k, index.ntotal))
    scores, ids = index.search(q, k)
    return scores, ids


def reconstruct(index, ids: np.ndarray) -> np.ndarray:
    """Stored descriptors of ``ids`` -> [len(ids), D] float32 (exact for Flat/HNSWFlat/IVFFlat)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return np.zeros((0, index.d), np.float32)
    return index.reconstruct_batch(ids)
