"""Issue 11, hole 1: a damaged index is refused at load with one clear line, never trusted.

Each case damages a copy of a valid index the way the issue reproduced it (a 1-bit EPSG flip,
same-size corruption of index.faiss / tiles.npz, a NaN transform, tiles shifted by 300 m,
malformed manifests) and checks the refusal. Where a case is also "re-sealed" (manifest checksum
and file hashes recomputed after the damage), the semantic checks must catch it on their own.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from foenet_ros.errors import ConfigError, FoenetError, IndexCorruptError
from foenet_ros.index import TileIndex
from foenet_ros.index.manifest import CHECKSUM_KEY, DATA_FILES, MANIFEST, manifest_checksum, write_manifest

from .faultlib import DELETE, flip_bytes, reseal, set_path, write_sealed


def _refused(path, match: str, **kw) -> str:
    """Load must raise IndexCorruptError matching ``match``; returns the (single-line) message."""
    with pytest.raises(IndexCorruptError, match=match) as info:
        TileIndex.load(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and "rebuild" in msg
    return msg


def test_valid_index_is_sealed_and_verifies(index_dir, index):
    m = json.loads((index_dir / MANIFEST).read_text())
    assert m[CHECKSUM_KEY] == manifest_checksum(m)
    assert set(DATA_FILES) <= set(m["files"])
    for name, entry in m["files"].items():
        assert entry["size"] == (index_dir / name).stat().st_size and len(entry["sha256"]) == 64
    for verify in ("hash", "size"):
        assert len(TileIndex.load(index_dir, verify=verify)) == len(index)
    with pytest.raises(ConfigError, match="verify must be one of"):
        TileIndex.load(index_dir, verify="none")


def test_one_bit_epsg_flip_in_the_manifest_is_refused(copy_index, index):
    """The issue's case: EPSG 32637 -> 32633 is one bit (0x37 ^ 0x04 = 0x33) and gave a 'verified'
    fix 1,502 km away. Here the frame is EPSG:32632; flipping the same bit gives 32636."""
    epsg = index.frame.epsg
    bad = copy_index("epsg")
    raw = (bad / MANIFEST).read_bytes()
    needle = f'"epsg": {epsg}'.encode()
    pos = raw.index(needle) + len(needle) - 1
    flipped = bytearray(raw)
    flipped[pos] ^= 0x04
    (bad / MANIFEST).write_bytes(bytes(flipped))
    assert json.loads(flipped)["frame"]["epsg"] != epsg
    _refused(bad, "does not match its own checksum")
    # even re-sealed (checksum recomputed), the CRS of map.tif gives it away
    reseal(bad, lambda m: m["frame"].update(epsg=int(str(epsg)[:-1] + "6")))
    _refused(bad, r"frame GeoFrame\('EPSG:32636'\) differs from the CRS of map.tif")


@pytest.mark.parametrize("name", ["index.faiss", "tiles.npz", "map.tif", "map_valid.png"])
def test_same_size_corruption_of_a_data_file_is_refused(copy_index, name):
    bad = copy_index(name)
    size = (bad / name).stat().st_size
    flip_bytes(bad / name, size // 2)
    assert (bad / name).stat().st_size == size
    _refused(bad, f"{name} does not match its recorded sha256")


@pytest.mark.parametrize("name", ["index.faiss", "tiles.npz"])
def test_corruption_in_size_only_mode_is_never_a_traceback(copy_index, name):
    """verify="size" skips hashing; damage must still end in an IndexCorruptError or a loadable index
    whose contents are structurally sound, never a BadZipFile/RuntimeError traceback."""
    for offset in (0, 40, 200, 1000):
        bad = copy_index(f"{name}-{offset}")
        flip_bytes(bad / name, offset, n=8)
        try:
            idx = TileIndex.load(bad, verify="size")
        except IndexCorruptError as exc:
            assert "\n" not in str(exc)
        else:  # damage inside descriptor payload: the structure still checks out
            assert len(idx) == idx.manifest["tiles"]["count"]
        with pytest.raises(IndexCorruptError, match="sha256"):
            TileIndex.load(bad)


def test_truncated_files_are_refused(copy_index):
    bad = copy_index("trunc")
    data = (bad / "tiles.npz").read_bytes()
    (bad / "tiles.npz").write_bytes(data[:-100])
    _refused(bad, r"tiles.npz has \d+ bytes but the manifest records \d+ \(truncated")
    reseal(bad)  # sizes and hashes recomputed over the truncated file: the zip itself is broken
    _refused(bad, "cannot read .*tiles.npz")


def test_nan_and_inf_transforms_are_refused(copy_index):
    bad = copy_index("nan")
    reseal(bad, lambda m: m["map_copy"]["transform"].__setitem__(2, math.nan))
    _refused(bad, r"map_copy.transform\[2\] must be finite, got nan")
    reseal(bad, lambda m: m["map_copy"]["transform"].__setitem__(0, math.inf))
    _refused(bad, r"map_copy.transform\[0\] must be finite")
    reseal(bad, lambda m: m["map"]["bounds_xy"].__setitem__(0, -math.inf))
    _refused(bad, r"map.bounds_xy\[0\] must be finite")


def test_georeference_that_differs_from_map_tif_is_refused(copy_index):
    bad = copy_index("geo")

    def shift(m):
        m["map_copy"]["transform"][2] += 300.0
        m["map"]["bounds_xy"][0] += 300.0
        m["map"]["bounds_xy"][2] += 300.0

    reseal(bad, shift)
    _refused(bad, "georeference of map.tif .* differs from the manifest")
    bad2 = copy_index("size")
    reseal(bad2, lambda m: m["map_copy"]["size_px"].__setitem__(0, m["map_copy"]["size_px"][0] + 1))
    _refused(bad2, "map.tif is .* px but the manifest records")
    bad3 = copy_index("bounds")
    reseal(bad3, lambda m: m["map"]["bounds_xy"].__setitem__(2, m["map"]["bounds_xy"][2] + 500.0))
    _refused(bad3, "map.bounds_xy .* differs from the extent of map.tif")


def test_tiles_shifted_by_300_m_are_refused(copy_index, index):
    bad = copy_index("shift")
    with np.load(bad / "tiles.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["centers_xy"] = arrays["centers_xy"] + 300.0
    arrays["polygons_xy"] = arrays["polygons_xy"] + 300.0
    np.savez(bad / "tiles.npz", **arrays)
    _refused(bad, "tiles.npz does not match its recorded sha256")
    reseal(bad)  # hashes recomputed: the bounds check catches it
    msg = _refused(bad, "tile centres lie outside the map")
    assert f"of {len(index)} tile centres" in msg


def test_inconsistent_tile_arrays_are_refused(copy_index):
    def rewrite(name, edit):
        bad = copy_index(name)
        with np.load(bad / "tiles.npz") as z:
            arrays = {k: z[k] for k in z.files}
        edit(arrays)
        np.savez(bad / "tiles.npz", **arrays)
        reseal(bad)
        return bad

    _refused(rewrite("nan", lambda a: a["centers_xy"].__setitem__((0, 0), np.nan)), "centers_xy holds NaN")
    _refused(rewrite("idx", lambda a: a["scale_idx"].__setitem__(0, 7)), "sizes/scale ids do not match")
    _refused(rewrite("poly", lambda a: a["polygons_xy"].__setitem__((0, 0, 0), a["polygons_xy"][0, 0, 0] + 90)),
             "polygons do not surround")
    _refused(rewrite("missing", lambda a: a.pop("size_m")), "tile arrays lack")


def test_faiss_file_of_another_type_is_refused(copy_index):
    bad = copy_index("type")
    reseal(bad, lambda m: m["faiss"].update(type="hnsw", params={"hnsw_m": 32, "ef_search": 64}))
    _refused(bad, "holds a IndexFlatIP .* not the inner-product 'hnsw' index")


# ------------------------------------------------------------------ malformed manifests
MALFORMED = [
    # (what, edit, expected message) -- the cases first
    ("files as int", set_path(["files"], 3), "files must be an object, got an integer"),
    ("gsd 0", set_path(["map_copy", "gsd_m"], 0), "map_copy.gsd_m must be > 0, got 0"),
    ("map gsd 0", set_path(["map", "gsd_m"], 0.0), "map.gsd_m must be > 0"),
    ("model as list", set_path(["model"], ["foenet-mnv2"]), "model must be an object, got a list"),
    ("missing faiss type", set_path(["faiss", "type"], DELETE), "missing faiss.type"),
    ("unknown faiss type", set_path(["faiss", "type"], "lsh"), "faiss.type must be one of"),
    ("faiss params as str", set_path(["faiss", "params"], "fast"), "faiss.params must be an object"),
    ("missing frame", set_path(["frame"], DELETE), "missing section 'frame'"),
    ("frame without crs", set_path(["frame"], {"name": "x"}), "frame needs 'epsg'"),
    ("epsg as str", set_path(["frame", "epsg"], "32632"), "frame.epsg must be an integer"),
    ("unknown epsg", set_path(["frame", "epsg"], 999999), "unusable frame"),
    ("geographic epsg", set_path(["frame", "epsg"], 4326), "unusable frame"),
    ("tile count negative", set_path(["tiles", "count"], -1), r"tiles.count must be in \[1, inf\]"),
    ("tile count as float", set_path(["tiles", "count"], 12.0), "tiles.count must be an integer"),
    ("tile count as bool", set_path(["tiles", "count"], True), "tiles.count must be an integer"),
    ("scales empty", set_path(["tiles", "scales_m"], []), "tiles.scales_m must have >= 1 values"),
    ("scale negative", set_path(["tiles", "scales_m"], [-5.0, 1.0, 2.0]), r"tiles.scales_m\[0\] must be > 0"),
    ("per-scale sum", set_path(["tiles", "count_per_scale"], None), "tiles.count_per_scale must be a list"),
    ("input size zero", set_path(["model", "input_size"], 0), "model.input_size must be in"),
    ("dim as str", set_path(["model", "descriptor_dim"], "256"), "model.descriptor_dim must be an integer"),
    ("fingerprint null", set_path(["model", "fingerprint"], None), "model.fingerprint must be a non-empty string"),
    ("transform short", set_path(["map_copy", "transform"], [1.0, 0.0]), "map_copy.transform must have 6 values"),
    ("transform rotated", set_path(["map_copy", "transform", 1], 0.5), "must be north-up"),
    ("size_px float", set_path(["map_copy", "size_px"], [800.5, 640]), r"map_copy.size_px\[0\] must be an integer"),
    ("bounds inverted", set_path(["map", "bounds_xy"], [10.0, 0.0, 0.0, 10.0]), "min < max"),
    ("maps as dict", set_path(["maps"], {"a": 1}), "maps must be a list of objects"),
    ("config as list", set_path(["config"], [1, 2]), "config must be an object"),
    ("polish as str", set_path(["fine", "levels", 0, "polish"], "yes"), r"fine.levels\[0\].polish must be a boolean"),
    ("polish on a later level", set_path(["fine", "levels", 1, "polish"], True),
     r"fine.levels\[1\].polish must be a boolean, true only for the first"),
    # the file list
    ("tiles.npz not listed", lambda m: m["files"].pop("tiles.npz"), "files does not list tiles.npz"),
    ("path traversal", set_path(["files", "../../etc/passwd"], {"size": 1, "sha256": "0" * 64}),
     "not a file name inside"),
    ("absolute path", set_path(["files", "/etc/passwd"], {"size": 1, "sha256": "0" * 64}), "not a file name inside"),
    ("sha256 not hex", set_path(["files", "index.faiss", "sha256"], "xyz"), "must be 64 lowercase hex digits"),
    ("size as str", set_path(["files", "index.faiss", "size"], "big"),
     r"files\['index.faiss'\].size must be an integer"),
    ("entry as int", set_path(["files", "map.tif"], 5), r"files\['map.tif'\] must be an object"),
]


@pytest.mark.parametrize("what,edit,expected", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_manifest_gives_a_precise_error(copy_index, what, edit, expected):
    bad = copy_index("m")
    manifest = json.loads((bad / MANIFEST).read_text())
    edit(manifest)
    write_sealed(bad, manifest)
    _refused(bad, expected)


@pytest.mark.parametrize("text,expected", [
    ("[]", "must hold a JSON object, got a list"),
    ("", "is not valid JSON"),
    ("{\"format_version\": 1", "is not valid JSON"),
    ("\xff\xfe garbage", "is not valid JSON"),
    ("[" * 100000, "is not valid JSON"),
    ("{\"format_version\": \"1\"}", "unknown index format version '1'"),
    ("{\"format_version\": true}", "unknown index format version True"),
    ("{\"format_version\": 1}", "has no manifest_sha256"),
])
def test_unreadable_manifest_gives_a_precise_error(copy_index, text, expected):
    bad = copy_index("u")
    (bad / MANIFEST).write_bytes(text.encode("latin-1"))
    _refused(bad, expected)


def test_unsealed_manifest_is_refused(copy_index):
    bad = copy_index("old")
    m = json.loads((bad / MANIFEST).read_text())
    del m[CHECKSUM_KEY]
    (bad / MANIFEST).write_text(json.dumps(m))
    _refused(bad, "has no manifest_sha256 .* older foenet_ros")


_BAD_VALUES = [None, "x", [], {}, -1, 0, 1e308, math.nan, True, [math.nan] * 6]


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list) and obj and not isinstance(obj[0], (dict, list)):
        yield path
        for i in range(len(obj)):
            yield path + (i,)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    else:
        yield path


def test_every_manifest_field_mutated_never_gives_a_traceback(index_dir, tmp_path):
    """Mutation fuzz: every leaf and list of the manifest replaced by each of a set of bad values,
    re-sealed. Loading must end in an index that works or a FoenetError: never another exception."""
    import shutil

    bad = tmp_path / "mut"
    shutil.copytree(index_dir, bad)
    original = json.loads((bad / MANIFEST).read_text())
    paths = [p for p in _leaves(original) if p[0] not in (CHECKSUM_KEY,) and p]
    loaded = refused = 0
    for path in paths:
        for value in _BAD_VALUES:
            m = json.loads(json.dumps(original))
            d = m
            for key in path[:-1]:
                d = d[key]
            d[path[-1]] = value
            write_sealed(bad, m)
            try:
                idx = TileIndex.load(bad, verify="size")
                idx.map_raster()
                idx.search(idx.descriptors([0])[0], 3)
                assert idx.frame.epsg and idx.scales_m and idx.input_size >= 16
                loaded += 1
            except FoenetError as exc:
                assert "\n" not in str(exc), (path, value, exc)
                refused += 1
    # many mutations are refused; harmless ones load: created_utc, the build report, the map storage
    # report (overviews, mask_meaning, requested_gsd_m...) and the config are informational
    assert refused > 0.4 * len(_BAD_VALUES) * len(paths)
    assert loaded > 0


def test_extra_files_listed_by_the_manifest_are_verified_too(copy_index):
    """Files added by a later builder (e.g. stored map features, .npy) are covered with no code change."""
    bad = copy_index("extra")
    (bad / "features").mkdir()
    np.save(bad / "features" / "level0.npy", np.arange(1000, dtype=np.float32))
    m = reseal(bad)
    assert "features/level0.npy" in m["files"]
    TileIndex.load(bad)
    flip_bytes(bad / "features" / "level0.npy", 500)
    _refused(bad, "features/level0.npy does not match its recorded sha256")
    (bad / "features" / "level0.npy").unlink()
    _refused(bad, "file features/level0.npy is missing")


def test_write_manifest_needs_the_data_files(tmp_path):
    (tmp_path / "index.faiss").write_bytes(b"x")
    with pytest.raises(IndexCorruptError, match="required file"):
        write_manifest(tmp_path, {"format_version": 1})


def test_verify_index_cli(index_dir, copy_index):
    cmd = [sys.executable, "-m", "foenet_ros.cli", "verify-index"]
    res = subprocess.run(cmd + [str(index_dir)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    # the 4 core files + the fine stage's (dense levels, keypoints): every file the manifest lists is verified
    assert report["ok"] and report["hashed"] and report["files"] == len(json.loads((index_dir / "manifest.json").read_text())["files"]) > 4
    assert report["crs"].startswith("EPSG:")
    res = subprocess.run(cmd + [str(index_dir), "--sizes-only"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and json.loads(res.stdout)["hashed"] is False
    bad = copy_index("cli")
    flip_bytes(bad / "index.faiss", 4000)
    res = subprocess.run(cmd + [str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("foenet verify-index: error:") and "index.faiss" in lines[0]
    res = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--sizes-only" in res.stdout and "examples:" in res.stdout
