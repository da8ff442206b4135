"""Issue 11, hole 7: files after a crash. A SIGKILL between the two renames of
`foenet build-index --force` must not lose the index: the next start restores the previous
version and removes the leftovers of dead processes (never those of a live one)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from foenet_ros.index import TileIndex
from foenet_ros.index.manifest import MANIFEST
from foenet_ros.utils import atomic_replace_dir, make_tmp_dir, recover_dir


def _dead_pid() -> int:
    """A PID that belonged to a process that has exited."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sigkill_between_the_two_renames_of_build_index(index_dir, fault_map, tmp_path):
    dst = tmp_path / "live_index"
    import shutil

    shutil.copytree(index_dir, dst)
    before = json.loads((dst / MANIFEST).read_text())
    tif = fault_map.to_geotiff(tmp_path / "small.tif")
    env = dict(os.environ, FOENET_TEST_PAUSE_BETWEEN_RENAMES="60", PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "foenet_ros.cli", "build-index", str(tif), "--out", str(dst), "--scales-m", "120",
           "--force", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        old = dst.with_name(f"{dst.name}.old-{proc.pid}")
        deadline = time.monotonic() + 240
        while not old.exists():  # the first rename happened: dst is now missing
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "build-index never reached its directory swap"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    # the crash state the issue describes: the configured path missing, two leftovers
    assert not dst.exists()
    assert old.is_dir()
    tmps = list(tmp_path.glob(f"{dst.name}.tmp-{proc.pid}-*"))
    assert len(tmps) == 1 and (tmps[0] / MANIFEST).is_file()
    # the next start (here: loading the index) restores the previous index and cleans up
    idx = TileIndex.load(dst)
    assert json.loads((dst / MANIFEST).read_text()) == before and len(idx) == before["tiles"]["count"]
    assert not old.exists() and not tmps[0].exists()
    # what remains is the index and the build's resume checkpoints (a rerun reuses them)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live_index", "live_index.partial", "small.tif"]


def test_build_index_recovers_before_it_builds(tmp_path):
    """A rerun of build-index (without --force) after the crash sees the restored index."""
    dst = tmp_path / "idx"
    old = tmp_path / f"idx.old-{_dead_pid()}"
    old.mkdir()
    (old / "marker").write_text("previous")
    from foenet_ros.errors import ConfigError
    from foenet_ros.index import IndexConfig, build_index

    with pytest.raises(ConfigError, match="already exists"):
        build_index(object(), None, dst, IndexConfig(scales_m=(50.0,)), progress=False)  # type: ignore[arg-type]
    assert (dst / "marker").read_text() == "previous" and not old.exists()


def test_recover_dir_restores_the_newest_and_spares_live_writers(tmp_path):
    dst = tmp_path / "out"
    dead1, dead2 = _dead_pid(), _dead_pid()
    older = tmp_path / f"out.old-{dead1}"
    newer = tmp_path / f"out.old-{dead2}"
    for d, text in ((older, "older"), (newer, "newer")):
        d.mkdir()
        (d / "v").write_text(text)
    os.utime(older, (time.time() - 100, time.time() - 100))
    stale_tmp = tmp_path / f"out.tmp-{dead1}-abcd"
    stale_tmp.mkdir()
    live_tmp = tmp_path / f"out.tmp-{os.getpid()}-efgh"  # a writer that is running now
    live_tmp.mkdir()
    legacy = tmp_path / "out.tmp-xyz"  # no PID in the name: owner unknown, left alone
    legacy.mkdir()
    unrelated = tmp_path / "outer.old-1"
    unrelated.mkdir()
    done = recover_dir(dst)
    assert (dst / "v").read_text() == "newer"
    assert not older.exists() and not stale_tmp.exists()
    assert live_tmp.exists() and legacy.exists() and unrelated.exists()
    assert any("restored" in line for line in done)
    assert recover_dir(dst) == []  # idempotent
    # a live process's .old- while dst is missing: that process is mid-swap, do not touch it
    dst2 = tmp_path / "busy"
    live_old = tmp_path / f"busy.old-{os.getpid()}"
    live_old.mkdir()
    assert recover_dir(dst2) == [] and live_old.exists() and not dst2.exists()
    assert recover_dir(tmp_path / "no" / "such" / "dir") == []


def test_atomic_replace_dir_swaps_and_leaves_nothing(tmp_path):
    dst = tmp_path / "d"
    for version in ("one", "two"):
        tmp = make_tmp_dir(dst)
        assert tmp.name.startswith(f"d.tmp-{os.getpid()}-")
        assert (tmp.stat().st_mode & 0o777) == (0o777 & ~_umask())
        (tmp / "v").write_text(version)
        atomic_replace_dir(tmp, dst)
        assert (dst / "v").read_text() == version
        assert [p.name for p in tmp_path.iterdir()] == ["d"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_recovery_errors_are_logged_not_raised(tmp_path, monkeypatch, caplog):
    """Recovery is best effort: a read-only folder (rename fails) logs a warning; the reader goes on."""
    old = tmp_path / f"x.old-{_dead_pid()}"
    old.mkdir()

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    assert recover_dir(tmp_path / "x") == []
    assert old.exists() and "cannot clean up" in caplog.text


# ---------------------------------------------------------------------- the demo data cache
def test_assembled_map_in_the_cache_is_rehashed_and_rebuilt(tmp_path, monkeypatch):
    """A tile-assembled map has no canonical sha256; its content is checked against the record
    written when it was assembled (not its mtime), and a mismatch re-assembles it."""
    from foenet_ros import maps

    monkeypatch.delenv("FOENET_DATA", raising=False)
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    calls = []

    def assemble(out, progress=True):
        calls.append(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"assembled mosaic v%d" % len(calls))
        return out

    monkeypatch.setitem(maps.ASSEMBLERS, "fake_recipe", assemble)
    f = maps.DataFile("fake/mosaic.tif", "0" * 64, "test", recipe="fake_recipe")
    p = maps.resolve_file(f, progress=False)
    assert p.read_bytes() == b"assembled mosaic v1" and len(calls) == 1
    assert maps.resolve_file(f, download=False) == p and len(calls) == 1  # intact: reused
    # same size, same mtime, other content (bit rot): detected by content
    st = p.stat()
    p.write_bytes(b"assembled mosaic X1")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert maps.resolve_file(f, download=False) is None  # refused, not used
    assert maps.resolve_file(f, progress=False) == p and len(calls) == 2  # rebuilt
    assert p.read_bytes() == b"assembled mosaic v2" and maps.content_ok(p)
    # a cached copy without its record (an older cache) is not trusted either
    (p.parent / "mosaic.tif.sha256.json").unlink()
    assert maps.resolve_file(f, download=False) is None


def test_downloaded_file_is_rehashed_at_every_use(tmp_path, monkeypatch):
    from foenet_ros import maps

    monkeypatch.delenv("FOENET_DATA", raising=False)
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    src = tmp_path / "remote.bin"
    src.write_bytes(b"payload-1")
    f = maps.DataFile("x/remote.bin", maps.hashlib.sha256(b"payload-1").hexdigest(), "test", url=src.as_uri())
    p = maps.resolve_file(f)
    st = p.stat()
    p.write_bytes(b"payload-2")  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert maps.resolve_file(f, download=False) is None
    assert maps.resolve_file(f) == p and p.read_bytes() == b"payload-1"  # downloaded again


def test_cached_demo_crop_is_rehashed_and_recropped(tmp_path, monkeypatch, fault_map, caplog):
    from foenet_ros import maps

    monkeypatch.delenv("FOENET_DATA", raising=False)
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    src = fault_map.to_geotiff(tmp_path / "src.tif")
    monkeypatch.setattr(maps, "resolve_map", lambda name, **kw: [src])
    monkeypatch.setitem(maps.REGISTRY, "faultmap", maps.MapEntry("faultmap", "test", (), "test"))
    dm = maps.demo_map("faultmap", crop_frac=(0.5, 0.5), max_side_px=200, download=False)
    crop = dm.paths[0]
    good = crop.read_bytes()
    assert maps.content_ok(crop)
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    crop.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="foenet_ros.maps"):
        dm2 = maps.demo_map("faultmap", crop_frac=(0.5, 0.5), max_side_px=200, download=False)
    assert "cropping it again" in caplog.text and dm2.paths[0] == crop and crop.read_bytes() == good
