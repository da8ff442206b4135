"""Sharded index builds: torchrun with 2 CPU processes (gloo) gives the same bytes as 1 process,
and a build SIGKILLed mid-encoding resumes (with any number of processes) to the same bytes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

VOLATILE = ("created_utc", "build", "manifest_sha256")  # timestamp, wall time / process count, and the seal over them


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    # one thread everywhere: torch's float reductions then run in the same order in every process
    return dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _cmd(tif: Path, out: Path, nproc: int) -> list[str]:
    args = ["-m", "foenet_ros.cli", "-v", "build-index", str(tif), "--out", str(out), "--scales-m", "60", "90",
            "--chunk-tiles", "6", "--batch-size", "6", "--threads", "1", "--device", "cpu", "--no-progress"]
    if nproc == 1:
        return [sys.executable] + args
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"] + args


def _run(tif: Path, out: Path, nproc: int) -> subprocess.CompletedProcess:
    res = subprocess.run(_cmd(tif, out, nproc), capture_output=True, text=True, timeout=600, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (torchrun starts its workers in new sessions: killpg misses them)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _contents(index_dir: Path) -> dict[str, bytes | dict]:
    """Every file's bytes; the manifest as JSON without its timestamp / build-time fields."""
    out: dict[str, bytes | dict] = {}
    for p in sorted(q for q in index_dir.rglob("*") if q.is_file()):  # fine/ holds the fine stage's products
        name = p.relative_to(index_dir).as_posix()
        if name == "manifest.json":
            out[name] = {k: v for k, v in json.loads(p.read_text()).items() if k not in VOLATILE}
        else:
            out[name] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def map_tif(tmp_path_factory) -> Path:
    from foenet_ros.geo import synthetic_map

    # 240 x 180 m at 0.5 m: 50 tiles -> 9 chunks of 6
    return synthetic_map(size_m=(240.0, 180.0), gsd_m=0.5, seed=21).to_geotiff(tmp_path_factory.mktemp("map") / "m.tif")


def test_torchrun_two_processes_equal_one_and_resume_after_sigkill(tmp_path: Path, map_tif: Path) -> None:
    if not Path(sys.executable).with_name("torchrun").exists():
        pytest.skip("torchrun not installed next to this Python")
    one, two = tmp_path / "one", tmp_path / "two"
    _run(map_tif, one, 1)
    res = _run(map_tif, two, 2)
    summary = json.loads(res.stdout)  # printed once, by rank 0
    assert summary["processes"] == 2 and summary["tiles"] > 40
    assert json.loads((one / "manifest.json").read_text())["build"]["world_size"] == 1
    a, b = _contents(one), _contents(two)
    top = sorted(n for n in a if "/" not in n)
    assert sorted(a) == sorted(b) and top == ["index.faiss", "manifest.json", "map.tif", "map_valid.png", "tiles.npz"]
    assert any(n.startswith("fine/level0_") for n in a)  # the fine stage's products, byte-identical too
    for name in a:
        assert a[name] == b[name], f"{name} differs between the 1- and 2-process builds"
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.tmp-*"))

    # --- SIGKILL the whole 2-process build once a few chunks are checkpointed, then resume
    killed = tmp_path / "killed"
    done = killed.with_name("killed.partial") / "descriptors"
    proc = subprocess.Popen(_cmd(map_tif, killed, 2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        deadline = time.monotonic() + 300
        while len(list(done.glob("*.done"))) < 2:
            assert proc.poll() is None, "the build ended before it could be killed: " + proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no chunk was checkpointed within 300 s"
            time.sleep(0.02)
        for pid in _descendants(proc.pid):  # torchrun and both workers at once: no cleanup runs anywhere
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    n_done = len(list(done.glob("*.done")))
    n_chunks = -(-summary["tiles"] // 6)
    assert 2 <= n_done < n_chunks, f"{n_done} of {n_chunks} chunks done when killed"
    assert not killed.exists()  # nothing half-written where the index goes
    # resumed by ONE process: the checkpointed chunks are reused, the result is the same bytes
    res = _run(map_tif, killed, 1)
    # the tile stage's items: the descriptor chunks, then the fine stage's blocks
    assert "resuming:" in res.stderr and f"resuming: {n_done} of " in res.stderr and "descriptors/fine items" in res.stderr, \
        res.stderr[-3000:]
    c = _contents(killed)
    for name in a:
        assert c[name] == a[name], f"{name} differs after the resumed build"
    assert not killed.with_name("killed.partial").exists()
