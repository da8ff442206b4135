"""The node's heap hygiene (foenet_ros/ros/heap.py): glibc takes the arena limit, and a trim gives
freed heap memory back to the OS (RSS drops) where malloc alone keeps it."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from foenet_ros.ros.heap import limit_malloc_arenas, release_free_heap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                                reason="glibc malloc_trim/mallopt are Linux-only")


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) / 1024.0 for line in f if line.startswith("VmRSS:"))


def test_trim_returns_freed_heap_that_malloc_keeps():
    assert limit_malloc_arenas(2) is True
    # 200 MiB in 64 KiB blocks (below the mmap threshold: from the heap), every other one kept alive so
    # that the freed half is scattered through the heap, not at its top where malloc returns it itself
    blocks = [bytearray(64 * 1024) for _ in range(3200)]
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    keep = blocks[::2]
    del blocks
    before = _rss_mib()
    assert release_free_heap() is True
    after = _rss_mib()
    assert before - after > 50.0, (before, after)  # ~100 MiB was free but resident
    assert len(keep) == 1600
