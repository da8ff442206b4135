"""Large-map index builds on small maps: the stored map keeps the requested GSD (no silent cap), the
map is only ever read by window, VRT mosaics and single files give the same index, IVF-PQ with
exact re-ranking, memory-mapped loading, and the map-product extension point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from foenet_ros.geo import MapRaster, synthetic_map
from foenet_ros.geo.raster import MapSource
from foenet_ros.geo.windowed import WindowedMap, write_vrt
from foenet_ros.index import IndexConfig, TileIndex, build_index
from foenet_ros.index.products import BuildContext, WorkItem
from test_geo_windowed import quadrant_tifs
from test_index import _CachingEncoder  # the memoising encoder wrapper
from test_index import caching_encoder, encoder  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def map_400(tmp_path_factory) -> tuple[MapRaster, Path]:
    """400 x 300 m at 0.4 m (1000 x 750 px) with a no-data band, and its GeoTIFF."""
    m = synthetic_map(size_m=(400.0, 300.0), gsd_m=0.4, seed=31)
    m.valid[:, :60] = False
    m.image[:, :60] = 0
    return m, m.to_geotiff(tmp_path_factory.mktemp("m") / "map.tif")


def test_cli_stored_gsd_is_the_requested_one_and_says_so(tmp_path, map_400):
    """Default: the native GSD is kept; --gsd-m: stored exactly at that GSD, reported as resampled."""
    m, tif = map_400
    outs = {}
    for name, extra in (("native", []), ("coarse", ["--gsd-m", "0.8"])):
        out = tmp_path / name
        cmd = [sys.executable, "-m", "foenet_ros.cli", "build-index", str(tif), "--out", str(out), "--scales-m", "150",
               "--no-progress", "--device", "cpu"] + extra
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        outs[name] = (out, json.loads(res.stdout), res.stderr)
    out, summary, err = outs["native"]
    assert summary["map_gsd_m"] == summary["native_gsd_m"] == 0.4 and summary["map_resampled"] is False
    assert "0.4 m/px, the native GSD" in err
    idx = TileIndex.load(out)
    mc = idx.manifest["map_copy"]
    assert mc["gsd_m"] == 0.4 and mc["size_px"] == [1000, 750] and mc["format"] == "COG"
    with rasterio.open(out / "map.tif") as ds:
        assert ds.transform.a == 0.4 and (ds.width, ds.height) == (1000, 750) and ds.overviews(1)
    assert idx.map_raster().gsd_m == 0.4
    assert "map_copy_max_px" not in idx.manifest["config"]  # the old silent 40 MP cap is gone

    out, summary, err = outs["coarse"]
    assert summary["map_gsd_m"] == 0.8 and summary["native_gsd_m"] == 0.4 and summary["map_resampled"] is True
    assert "RESAMPLED as requested by --gsd-m (native 0.4 m/px)" in err
    mc = TileIndex.load(out).manifest["map_copy"]
    assert mc["gsd_m"] == mc["requested_gsd_m"] == 0.8 and mc["resampled"] is True and mc["size_px"] == [500, 375]
    with rasterio.open(out / "map.tif") as ds:
        assert ds.transform.a == 0.8 and ds.transform.c == m.transform.c and ds.transform.f == m.transform.f
        mask = ds.dataset_mask()
    assert not mask[:, :29].any() and mask[:, 31:].all()  # the no-data band kept in the stored map's mask


def test_the_build_reads_the_map_only_by_window(tmp_path, map_400, caching_encoder, monkeypatch):
    """part_px=512: no read is larger than a part; read_map / read_all are never called; same index as big parts."""
    m, tif = map_400
    sizes = []
    orig = MapSource.read_window

    def spy(self, bounds_xy, gsd_m=None):
        win = orig(self, bounds_xy, gsd_m)
        sizes.append(win.image.shape[:2])
        return win

    def refuse(*a, **k):
        raise AssertionError("the build read the whole map")

    monkeypatch.setattr(MapSource, "read_window", spy)
    monkeypatch.setattr(MapSource, "read_all", refuse)
    monkeypatch.setattr("foenet_ros.geo.raster.read_map", refuse)
    cfg = IndexConfig(scales_m=(60.0,), part_px=512, map_compression="deflate")
    small = build_index(tif, caching_encoder, tmp_path / "small", cfg, progress=False)
    assert len(sizes) == 4 and max(max(s) for s in sizes) <= 512  # 1000 x 750 px -> 2 x 2 parts
    big = build_index(tif, caching_encoder, tmp_path / "big", cfg.replace(part_px=4096), progress=False)
    for name in ("tiles.npz", "index.faiss", "map_valid.png"):
        assert (small / name).read_bytes() == (big / name).read_bytes(), name
    a, b = WindowedMap(small / "map.tif"), WindowedMap(big / "map.tif")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.image, m.image)  # lossless storage: the very pixels of the input
    np.testing.assert_array_equal(a.valid, m.valid)
    idx = TileIndex.load(small)
    # tile validity came from the parts' coverage: the no-data band (24 m) leaves its edge tiles at ~60 %
    assert (idx.tiles.valid_frac >= 0.6).all() and idx.tiles.valid_frac.min() < 0.7
    assert idx.manifest["products"] == {"map": 1, "descriptors": 1, "fine": 1}


def test_a_vrt_mosaic_indexes_like_the_single_file(tmp_path, map_400, caching_encoder):
    m, tif = map_400
    vrt = write_vrt(quadrant_tifs(m, tmp_path), tmp_path / "mosaic.vrt")
    cfg = IndexConfig(scales_m=(60.0,))
    a = build_index(tif, caching_encoder, tmp_path / "tif", cfg, progress=False)
    b = build_index(vrt, caching_encoder, tmp_path / "vrt", cfg, progress=False)
    for name in ("tiles.npz", "index.faiss", "map.tif", "map_valid.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert TileIndex.load(b).manifest["maps"][0]["name"] == "mosaic.vrt"


def test_ivfpq_reranks_exactly_and_auto_picks_it_above_the_threshold(tmp_path, map_400, caching_encoder):
    m, _ = map_400
    flat = TileIndex.load(build_index(m, caching_encoder, tmp_path / "flat", IndexConfig(scales_m=(60.0,)),
                                      progress=False))
    cfg = IndexConfig(scales_m=(60.0,), auto_exact_max_tiles=50)
    out = build_index(m, caching_encoder, tmp_path / "pq", cfg, progress=False)
    pq = TileIndex.load(out)
    f = pq.manifest["faiss"]
    assert f["type"] == "ivfpq" and f["chosen"].startswith("auto:") and len(flat) > 50
    assert f["descriptors"]["dtype"] == "float16" and set(f["params"]) >= {"nlist", "nprobe", "pq_m", "rerank"}
    stored = np.load(out / "descriptors.npy", mmap_mode="r")
    assert stored.dtype == np.float16 and stored.shape == (len(pq), pq.dim)
    # the stored descriptors are the flat index's to float16 precision
    assert np.abs(pq.descriptors() - flat.descriptors()).max() < 2e-3
    q = flat.descriptors(np.arange(0, len(flat), 3))
    hits = [pq.search(d, 5) for d in q]
    assert np.mean([h[0][0] == i for h, i in zip(hits, range(0, len(flat), 3))]) >= 0.95
    for h, d in zip(hits, q):  # scores are exact cosines, best first
        ids = [t for t, _ in h]
        np.testing.assert_allclose([s for _, s in h], pq.descriptors(np.array(ids)) @ d, rtol=1e-5)
        assert [s for _, s in h] == sorted([s for _, s in h], reverse=True)
    near = tuple(flat.tiles.centers_xy[7])
    got = [t for t, _ in pq.search(q[2], 4, near, 90.0)]
    assert got == [t for t, _ in flat.search(q[2], 4, near, 90.0)]  # radius search: exact on both


def test_memory_mapped_load_equals_a_full_read(tmp_path, map_400, caching_encoder):
    m, _ = map_400
    out = build_index(m, caching_encoder, tmp_path / "i", IndexConfig(scales_m=(60.0,), index_type="ivfpq"),
                      progress=False)
    a, b = TileIndex.load(out, mmap=True), TileIndex.load(out, mmap=False)
    assert isinstance(a._desc, np.memmap) and not isinstance(b._desc, np.memmap)
    for d in b.descriptors()[:10]:
        assert a.search(d, 3) == b.search(d, 3)


class _CornerMean:
    """A test-only map product: the mean colour of each map part (a "map" stage product) -> one JSON file."""

    name, version, stage = "corner_mean", 1, "map"
    runs: list[int] = []

    def plan(self, ctx: BuildContext) -> list[WorkItem]:
        p = ctx.config.part_px
        return [WorkItem(self.name, i, {"row": r}) for i, r in enumerate(range(0, ctx.grid.height, p))]

    def run(self, ctx: BuildContext, item: WorkItem) -> None:
        g = ctx.grid
        r0 = item.payload["row"]
        x0, y1 = g.pixel_to_xy(0, r0)
        x1, y0 = g.pixel_to_xy(g.width, min(g.height, r0 + ctx.config.part_px))
        win = ctx.source.read_window((x0, y0, x1, y1), g.gsd_m)
        np.save(ctx.item_path(item, ".npy"), win.image[win.valid].mean(axis=0))
        self.runs.append(item.idx)

    def merge(self, ctx: BuildContext, items: list[WorkItem], out_dir: Path) -> dict:
        means = [np.load(ctx.item_path(it, ".npy")).tolist() for it in items]
        (out_dir / "corner_mean.json").write_text(json.dumps(means))
        return {"corner_mean": {"file": "corner_mean.json", "parts": len(means)}}


def test_an_extra_map_product_plugs_in_and_resumes(tmp_path, map_400, caching_encoder):
    m, _ = map_400
    cfg = IndexConfig(scales_m=(60.0,), part_px=512)
    product = _CornerMean()
    # a crash in the tile stage: the extra product's items are done and checkpointed
    crashing = _CachingEncoder(caching_encoder.enc)
    crashing.encode = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        build_index(m, crashing, tmp_path / "x", cfg, progress=False, extra_products=[product])
    assert sorted(product.runs) == [0, 1] and len(list((tmp_path / "x.partial" / "corner_mean").glob("*.done"))) == 2
    out = build_index(m, caching_encoder, tmp_path / "x", cfg, progress=False, extra_products=[product])
    assert sorted(product.runs) == [0, 1]  # not run again
    idx = TileIndex.load(out)
    assert idx.manifest["corner_mean"] == {"file": "corner_mean.json", "parts": 2}
    assert idx.manifest["products"] == {"map": 1, "descriptors": 1, "fine": 1, "corner_mean": 1}
    assert len(json.loads((out / "corner_mean.json").read_text())) == 2


def test_a_stale_partial_build_is_discarded(tmp_path, map_400, caching_encoder):
    m, _ = map_400
    out = tmp_path / "i"
    partial = tmp_path / "i.partial"
    (partial / "descriptors").mkdir(parents=True)
    (partial / "state.json").write_text(json.dumps({"key": "another map"}))
    (partial / "descriptors" / "00000.npy").write_bytes(b"junk")
    (partial / "descriptors" / "00000.done").write_text("")
    build_index(m, caching_encoder, out, IndexConfig(scales_m=(60.0,)), progress=False)
    assert TileIndex.load(out).search(TileIndex.load(out).descriptors([0])[0], 1)[0][0] == 0
    assert not partial.exists()
