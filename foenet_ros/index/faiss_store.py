"""Thin FAISS wrapper: build an inner-product index of a given type from descriptors too large for
memory, read it memory-mapped, search it.

All descriptors are L2-normalised, so inner product = cosine similarity (higher is better).

Types: ``flat`` (exact), ``hnsw`` (graph), ``ivf`` (IVF-Flat) and ``ivfpq`` (IVF with product-quantised
codes: ~``pq_m`` bytes per tile, for 10^5..10^7 tiles; its approximate scores are re-ranked
exactly from the float16 descriptors the index keeps next to it, see :class:`TileIndex`).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import IndexCorruptError

log = logging.getLogger(__name__)

ADD_BATCH = 65_536  # vectors added to FAISS at once (bounded memory for any index size)
#: OpenMP threads for a search of a few queries. One query scans ~1 ms on one core; FAISS's OpenMP
#: threads on a busy CPU (the encoder, the node, other processes) spin-wait instead: measured on this
#: 2-core box at load 6, 12,769 tiles flat: p50 16 ms with 2 threads, 0.9 ms with 1.
SEARCH_THREADS = 1
_omp_lock = threading.Lock()


def ivf_nlist_for(n: int, power_of_two: bool = False) -> int:
    """IVF cell count for ``n`` vectors: ~4*sqrt(n), but keep >= 39 training points per cell."""
    target = 4 * math.sqrt(max(n, 1))
    if power_of_two:
        target = 2 ** round(math.log2(max(target, 1)))
    return int(max(1, min(round(target), n // 39)))


def pq_m_for(dim: int, requested: int | None) -> int:
    """Sub-quantizer count: ``requested`` (or dim // 8), lowered to the nearest divisor of ``dim``."""
    m = max(1, min(dim, requested or max(1, dim // 8)))
    while dim % m:
        m -= 1
    return m


def make_index(
    batches: Callable[[], Iterable[np.ndarray]] | np.ndarray,
    index_type: str,
    *,
    n: int | None = None,
    dim: int | None = None,
    sample: Callable[[np.ndarray], np.ndarray] | None = None,
    hnsw_m: int = 32,
    hnsw_ef_search: int = 128,
    ivf_nlist: int | None = None,
    ivf_nprobe: int | None = None,
    pq_m: int | None = None,
    rerank: int = 100,
    train_max: int = 100_000,
) -> tuple["faiss.Index", dict]:  # noqa: F821
    """Build a FAISS inner-product index over ``n`` descriptors of ``dim`` floats.

    Args:
        batches: an ``[N, D]`` array, or a callable returning an iterable of ``[b, D]`` arrays in
            tile order (called once or twice: streamed, never concatenated).
        n, dim: total count and dimension (needed with a callable; taken from an array).
        sample: ``sample(sorted_ids) -> [len(ids), D]`` rows by id (IVF training); default: from ``batches``.
        index_type: ``flat | hnsw | ivf | ivfpq``.
    Returns ``(index, params)``; ``params`` (JSON, integers) records what was built so a loader can
    restore the search-time knobs (efSearch, nprobe, rerank) that FAISS does not keep in the file.
    """
    import faiss

    if isinstance(batches, np.ndarray):
        arr = batches
        n, dim = arr.shape
        batches = lambda: (arr[i : i + ADD_BATCH] for i in range(0, len(arr), ADD_BATCH))  # noqa: E731
        sample = sample or (lambda ids: arr[ids])
    params: dict = {}
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        params = {"hnsw_m": hnsw_m, "ef_search": hnsw_ef_search}
    elif index_type in ("ivf", "ivfpq"):
        pq = index_type == "ivfpq"
        nlist = max(1, min(ivf_nlist or ivf_nlist_for(n, power_of_two=pq), n))
        if pq:
            m = pq_m_for(dim, pq_m)
            nbits = 8 if n >= 256 * 39 else max(1, min(8, int(math.log2(max(2, n // 39)))))
            index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x{nbits}", faiss.METRIC_INNER_PRODUCT)
            nprobe = ivf_nprobe or 32
            params = {"nlist": nlist, "nprobe": min(nprobe, nlist), "pq_m": m, "pq_nbits": nbits, "rerank": int(rerank)}
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            nprobe = ivf_nprobe or max(8, nlist // 4)
            params = {"nlist": nlist, "nprobe": min(nprobe, nlist)}
        train = _training_sample(batches, sample, n, train_max, nlist)
        log.info("training %s on %d of %d vectors (nlist %d)", index_type, len(train), n, nlist)
        index.train(train)
        del train
    else:  # guarded by IndexConfig
        raise ValueError(f"unknown index type {index_type!r}")
    added = 0
    for b in batches():
        b = np.ascontiguousarray(b, dtype=np.float32)
        index.add(b)
        added += len(b)
    if added != n:
        raise ValueError(f"expected {n} descriptors, got {added}")
    configure(index, index_type, params)
    return index, params


def _training_sample(batches, sample, n: int, train_max: int, nlist: int = 1) -> np.ndarray:
    """Up to ``max(train_max, 40 * nlist)`` rows (k-means wants >= 39 points per cell), chosen with a
    fixed seed: the same descriptors always give the same index."""
    train_max = max(train_max, 40 * nlist)
    if n <= train_max:
        return np.ascontiguousarray(np.concatenate(list(batches()), axis=0), dtype=np.float32)
    ids = np.sort(np.random.default_rng(0).choice(n, size=train_max, replace=False))
    if sample is None:
        raise ValueError("a training sample of a streamed index needs sample(ids)")
    return np.ascontiguousarray(sample(ids), dtype=np.float32)


def configure(index, index_type: str, params: dict) -> None:
    """Apply the search-time parameters (and the IVF-Flat direct map needed to reconstruct by id)."""
    import faiss

    if index_type == "hnsw":
        index.hnsw.efSearch = int(params.get("ef_search", 128))
    elif index_type in ("ivf", "ivfpq"):
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = int(params.get("nprobe", 8))
        if index_type == "ivf":
            ivf.make_direct_map()


def write(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read(path: Path, index_type: str, params: dict | None, *, mmap: bool = True):
    """Read a FAISS index file; a truncated/corrupt file becomes :class:`IndexCorruptError`.

    ``params``: the search-time knobs to apply (:func:`configure`); None leaves the index as read
    (a loader that first checks the file holds the kind it expects).
    ``mmap``: map the codes / inverted lists instead of copying them (``IO_FLAG_MMAP_IFC``, flat
    and IVF types): loading is instant and the pages are shared with the page cache, so a 1M-tile
    index costs little resident memory until searched. HNSW is always read into memory.
    """
    import faiss

    flags = 0
    if mmap and index_type in ("flat", "ivf", "ivfpq") and hasattr(faiss, "IO_FLAG_MMAP_IFC"):
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
    try:
        index = faiss.read_index(str(path), flags)
    except Exception as exc:  # faiss raises RuntimeError with a C++ message
        raise IndexCorruptError(
            f"cannot read FAISS index {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
            "the file is truncated or corrupt: rebuild it with `foenet build-index`"
        ) from exc
    if params is not None:
        configure(index, index_type, params)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` search: ``queries`` [Q, D] -> (scores [Q, k], ids [Q, k]); ids of -1 are padding."""
    import faiss

    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = int(min(k, index.ntotal))
    if len(q) > 16:  # batches: let FAISS use every core
        return index.search(q, k)
    with _omp_lock:  # the thread count is process-global in FAISS
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(SEARCH_THREADS)
        try:
            return index.search(q, k)
        finally:
            faiss.omp_set_num_threads(before)


def reconstruct(index, ids: np.ndarray) -> np.ndarray:
    """Stored descriptors of ``ids`` -> [len(ids), D] float32 (exact for Flat/HNSWFlat/IVFFlat)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) == 0:
        return np.zeros((0, index.d), np.float32)
    return index.reconstruct_batch(ids)
