"""TileIndex: build -> load round trip, manifest checks, corrupt/mismatched indexes, radius search,
resumable and atomic builds, approximate index types, and the `foenet build-index` CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from foenet_ros.errors import ConfigError, EmptyIndexError, IndexCorruptError, IndexMismatchError, RasterError
from foenet_ros.index import IndexConfig, TileIndex, build_index

SCALES = (60.0, 90.0)


@pytest.fixture(scope="session")
def encoder():
    from foenet_ros.model import Encoder, load_default_model

    return Encoder(load_default_model(), device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def small_map():
    from foenet_ros.geo import synthetic_map

    return synthetic_map(size_m=(360.0, 270.0), gsd_m=0.4, seed=11)


class _CachingEncoder:
    """Memoises descriptors by crop content, so tests that rebuild the same tiles skip the CNN."""

    def __init__(self, enc) -> None:
        self.enc, self.cache = enc, {}
        self.fingerprint, self.input_size, self.dim, self.config = enc.fingerprint, enc.input_size, enc.dim, enc.config

    def encode(self, images, branch="drone"):
        keys = [hash((img.tobytes(), branch)) for img in images]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            for i, d in zip(todo, self.enc.encode([images[i] for i in todo], branch=branch)):
                self.cache[keys[i]] = d
        return np.stack([self.cache[k] for k in keys])


@pytest.fixture(scope="session")
def caching_encoder(encoder):
    return _CachingEncoder(encoder)


@pytest.fixture(scope="session")
def built(tmp_path_factory, small_map, caching_encoder) -> Path:
    out = tmp_path_factory.mktemp("idx") / "syn"
    build_index(small_map, caching_encoder, out, IndexConfig(scales_m=SCALES), progress=False)
    return out


def test_round_trip_and_manifest(built, small_map, encoder):
    idx = TileIndex.load(built, expect_fingerprint=encoder.fingerprint)
    m = idx.manifest
    assert m["format_version"] == 1
    assert m["model"]["fingerprint"] == encoder.fingerprint
    assert m["model"]["input_size"] == encoder.input_size == idx.input_size
    assert m["model"]["descriptor_dim"] == encoder.dim == idx.dim
    assert idx.frame == small_map.frame
    assert 60 <= len(idx) <= 300 and m["tiles"]["count"] == len(idx)
    assert sum(m["tiles"]["count_per_scale"]) == len(idx)
    assert m["tiles"]["scales_m"] == list(SCALES)
    from foenet_ros.index.fine import FineStore

    # the data files, and the fine stage's map products (dense feature levels, keypoints) that its entry implies
    assert set(m["files"]) == {"index.faiss", "tiles.npz", "map.tif", "map_valid.png", *FineStore.files(m["fine"])}
    assert any(f.startswith("fine/level0_cfog") for f in m["files"]) and "fine/kp_xy.npy" in m["files"]
    # no temp or partial directories left next to it
    assert [p.name for p in built.parent.iterdir()] == [built.name]
    # tile metadata: centres inside the map, polygons are squares of the tile size around the centre
    xmin, ymin, xmax, ymax = small_map.bounds_xy
    c = idx.tiles.centers_xy
    assert np.all((c[:, 0] > xmin) & (c[:, 0] < xmax) & (c[:, 1] > ymin) & (c[:, 1] < ymax))
    side = np.linalg.norm(idx.tiles.polygons_xy[:, 1] - idx.tiles.polygons_xy[:, 0], axis=1)
    assert np.allclose(side, idx.tiles.size_m, rtol=1e-6)
    assert np.allclose(idx.tiles.polygons_xy.mean(axis=1), c, atol=1e-6)
    # the map copy comes back georeferenced like the original
    mp = idx.map_raster()
    assert np.allclose(mp.bounds_xy, small_map.bounds_xy, atol=small_map.gsd_m)
    crop0, _ = small_map.crop(tuple(c[0]), 40.0, 64)
    crop1, _ = mp.crop(tuple(c[0]), 40.0, 64)
    assert np.mean(np.abs(crop0.astype(int) - crop1.astype(int))) < 12  # JPEG-compressed copy


def test_search_finds_the_tile_itself(built, small_map, encoder):
    idx = TileIndex.load(built)
    ids = [0, len(idx) // 2, len(idx) - 1]
    crops = [small_map.crop(tuple(idx.tiles.centers_xy[i]), float(idx.tiles.size_m[i]), encoder.input_size)[0]
             for i in ids]
    desc = encoder.encode(crops, branch="satellite")
    for i, d in zip(ids, desc):
        hits = idx.search(d, 5)
        assert hits[0][0] == i and hits[0][1] > 0.99
        assert [s for _, s in hits] == sorted([s for _, s in hits], reverse=True)


def test_radius_search_is_exact_over_the_subset(built):
    idx = TileIndex.load(built)
    all_desc = idx.descriptors()
    q = all_desc[7] + 0.3 * all_desc[40]
    q /= np.linalg.norm(q)
    near = tuple(idx.tiles.centers_xy[40])
    radius = 70.0
    hits = idx.search(q, 10, near_xy=near, radius_m=radius)
    inside = idx.tiles_within(near, radius)
    assert 0 < len(hits) <= min(10, len(inside))
    for tid, _ in hits:
        assert np.hypot(*(idx.tiles.centers_xy[tid] - near)) <= radius + 1e-9
    # exact: equals brute force over the tiles inside the radius
    brute = inside[np.argsort(-(all_desc[inside] @ q))][: len(hits)]
    assert [t for t, _ in hits] == list(brute)
    with pytest.raises(EmptyIndexError, match="no tile centre within"):
        idx.search(q, 5, near_xy=(0.0, 0.0), radius_m=10.0)


def test_fingerprint_mismatch_names_the_model_and_how_to_rebuild(built, encoder):
    with pytest.raises(IndexMismatchError, match="rebuild"):
        TileIndex.load(built, expect_fingerprint="0123456789abcdef")
    from foenet_ros.model import Encoder, create_model

    other = Encoder(create_model("foenet-mnv2", pretrained=False), device="cpu")
    idx = TileIndex.load(built)
    with pytest.raises(IndexMismatchError, match=encoder.fingerprint):
        idx.check_encoder(other)
    from foenet_ros.localize import Localizer

    with pytest.raises(IndexMismatchError):
        Localizer(idx, other)


def test_corrupt_indexes_raise_specific_errors(built, tmp_path):
    # truncated FAISS file
    bad = tmp_path / "truncated"
    shutil.copytree(built, bad)
    data = (bad / "index.faiss").read_bytes()
    (bad / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorruptError, match="truncated"):
        TileIndex.load(bad)
    # the size and hash checks aside (manifest re-sealed over the truncated file), FAISS itself rejects it
    from foenet_ros.index.manifest import write_manifest

    write_manifest(bad, json.loads((bad / "manifest.json").read_text()))
    with pytest.raises(IndexCorruptError, match="FAISS"):
        TileIndex.load(bad)
    # missing manifest (an interrupted copy)
    bad2 = tmp_path / "nomanifest"
    shutil.copytree(built, bad2)
    (bad2 / "manifest.json").unlink()
    with pytest.raises(IndexCorruptError, match="manifest.json is missing"):
        TileIndex.load(bad2)
    # unknown format version
    bad3 = tmp_path / "future"
    shutil.copytree(built, bad3)
    manifest = json.loads((bad3 / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bad3 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="format version"):
        TileIndex.load(bad3)
    # missing data file
    bad4 = tmp_path / "nomap"
    shutil.copytree(built, bad4)
    (bad4 / "tiles.npz").unlink()
    with pytest.raises(IndexCorruptError, match="tiles.npz is missing"):
        TileIndex.load(bad4)
    with pytest.raises(IndexCorruptError, match="does not exist"):
        TileIndex.load(tmp_path / "nowhere")


class _FailingEncoder:
    """Wraps an encoder and raises after ``fail_after`` encode calls (a crash mid-build)."""

    def __init__(self, enc, fail_after: int | None) -> None:
        self.enc, self.fail_after, self.calls = enc, fail_after, 0
        self.fingerprint, self.input_size, self.dim = enc.fingerprint, enc.input_size, enc.dim
        self.config = enc.config

    def encode(self, images, branch="drone"):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated crash")
        return self.enc.encode(images, branch=branch)


def test_interrupted_build_leaves_nothing_and_resumes(tmp_path, encoder):
    from foenet_ros.geo import synthetic_map

    mp = synthetic_map(size_m=(200.0, 150.0), gsd_m=0.5, seed=5)
    cfg = IndexConfig(scales_m=(50.0,), chunk_tiles=8, batch_size=8)
    out = tmp_path / "idx"
    crashing = _FailingEncoder(encoder, fail_after=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(mp, crashing, out, cfg, progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob("idx.tmp-*"))
    partial = tmp_path / "idx.partial"
    assert len(list(partial.glob("descriptors/*.done"))) == 2  # two chunks checkpointed before the crash
    assert len(list(partial.glob("descriptors/[0-9]*.npy"))) == 2
    assert len(list(partial.glob("map/*.done"))) == 1  # the map (one part) was stored before encoding began
    resumed = _FailingEncoder(encoder, fail_after=None)
    build_index(mp, resumed, out, cfg, progress=False)
    n = TileIndex.load(out).manifest["tiles"]["count"]
    n_chunks = -(-n // 8)
    assert resumed.calls == n_chunks - 2  # the checkpointed chunks were not encoded again
    assert not partial.exists()
    with pytest.raises(ConfigError, match="already exists"):
        build_index(mp, encoder, out, cfg, progress=False)


def test_no_tile_fits_and_bad_config(tmp_path, encoder):
    from foenet_ros.geo import synthetic_map

    mp = synthetic_map(size_m=(100.0, 80.0), gsd_m=0.5, seed=1)
    with pytest.raises(RasterError, match="smaller tiles"):
        build_index(mp, encoder, tmp_path / "x", IndexConfig(scales_m=(500.0,)), progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="scales_m"):
        IndexConfig()
    with pytest.raises(ConfigError, match="index_type"):
        IndexConfig(scales_m=(50.0,), index_type="lsh")


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_index_types_match_flat(built, small_map, caching_encoder, tmp_path, index_type):
    out = tmp_path / index_type
    build_index(small_map, caching_encoder, out, IndexConfig(scales_m=SCALES, index_type=index_type), progress=False)
    flat, approx = TileIndex.load(built), TileIndex.load(out)
    assert approx.index_type == index_type and len(approx) == len(flat)
    q = flat.descriptors(np.arange(0, len(flat), 5))
    agree = np.mean([flat.search(d, 1)[0][0] == approx.search(d, 1)[0][0] for d in q])
    assert agree >= 0.9
    # gated search works on approximate indexes too (exact over the subset)
    near = tuple(flat.tiles.centers_xy[3])
    assert flat.search(q[0], 3, near, 80.0) == approx.search(q[0], 3, near, 80.0)


def test_build_index_cli_on_a_geotiff(tmp_path, small_map):
    tif = small_map.to_geotiff(tmp_path / "map.tif")
    out = tmp_path / "cli_idx"
    cmd = [sys.executable, "-m", "foenet_ros.cli", "build-index", str(tif), "--out", str(out),
           "--scales-m", "90", "--no-progress", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["tiles"] == TileIndex.load(out).manifest["tiles"]["count"] > 0
    assert TileIndex.load(out).manifest["maps"][0]["name"] == "map.tif"
    # existing output without --force: a clear error, exit code 2
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "already exists" in res.stderr
    # --kp-gsd-m: map keypoints from a finer level than the map's 0.4 m pixels (the map upsampled)
    default_gsds = TileIndex.load(out).manifest["fine"]["keypoints"]["gsd_m"]
    res = subprocess.run([*cmd, "--force", "--kp-gsd-m", "0.2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    gsds = TileIndex.load(out).manifest["fine"]["keypoints"]["gsd_m"]
    assert gsds[0] == pytest.approx(0.2) and default_gsds[0] >= 0.4, (gsds, default_gsds)
    res = subprocess.run([*cmd, "--force", "--kp-gsd-m", "0"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "kp_gsd_m must be > 0" in res.stderr, res.stderr
