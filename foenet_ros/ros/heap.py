"""Keep the node's heap from ratcheting up: few malloc arenas, and freed memory given back between
frames (glibc ``mallopt(M_ARENA_MAX)`` and ``malloc_trim``).

Every frame allocates tens of MiB of short-lived buffers (the correlations' FFT volumes, keypoint
matrices; a trim after a tracking frame of the soak returns ~65 MiB), a cold start more, in the
worker thread's malloc arena. glibc keeps freed chunks of an arena for
reuse instead of returning them, so the node's RSS ratchets up with the largest frames it has
seen and wanders with their mix, which makes a long flight's memory look like a leak and hides a
real one. Every thread that allocates gets an arena of its own (up to 8 per core): the executor's
threads, the DDS threads and the worker each keep their freed chunks.

Measured with the 10-minute soak (``bench/soak_node.py``, 30 Hz, docs/ros.md), one-minute RSS
medians after warm-up: 1,156-1,253 MiB (8.1 % spread) without either; trimming after cold starts
only: 967-1,061 MiB (9.2 %: the heap crept up during tracking and fell at each trim); plus at most
2 arenas: 918-984 MiB (6.9 %); trimming after a frame at most once a second (~7 ms each) and 2
arenas: 869-890 MiB (2.4 %) and, in the final run, **876-887 MiB (1.3 %)**. Linux/glibc only;
elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


@functools.lru_cache(maxsize=2)
def _libc_fn(name: str):
    """A glibc function taking and returning C ints/size_t, or None where the C library lacks it."""
    lib_name = ctypes.util.find_library("c")
    try:
        fn = getattr(ctypes.CDLL(lib_name), name, None) if lib_name else None
    except OSError:
        return None
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_int] if name == "mallopt" else [ctypes.c_size_t]
        fn.restype = ctypes.c_int
    return fn


def limit_malloc_arenas(n: int = 2) -> bool:
    """``mallopt(M_ARENA_MAX, n)``: at most ``n`` malloc arenas for the whole process. Call it first,
    before threads start allocating (arenas already made stay). True when the C library took it."""
    fn = _libc_fn("mallopt")
    return bool(fn(_M_ARENA_MAX, int(n))) if fn is not None else False


def release_free_heap() -> bool:
    """``malloc_trim(0)``: return free heap pages of every arena to the OS. True when something was
    released, False when nothing was (or the C library has no ``malloc_trim``)."""
    fn = _libc_fn("malloc_trim")
    return bool(fn(0)) if fn is not None else False
