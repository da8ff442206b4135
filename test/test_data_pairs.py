"""Self-supervised pairs: the rendered view and the tile show the ground the metadata says they do."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from affine import Affine

from foenet_ros.data import (
    NO_PHOTOMETRIC,
    ChipPairDataset,
    GroundUnit,
    MixedPairDataset,
    PairCollator,
    Place,
    RasterPairDataset,
    ViewConfig,
    negative_mask,
)
from foenet_ros.geo import GeoFrame, MapRaster, image_to_ground

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def dotted_map(gsd: float = 0.25, size_m: float = 200.0, step_m: float = 10.0):
    """A grey map with coloured discs (radius 1.5 m) on a 10 m grid; returns (raster, dots_xy, colours)."""
    n = int(size_m / gsd)
    img = np.full((n, n, 3), 128, np.uint8)
    x0, y0 = 500000.0, 4000000.0  # UTM 33N-ish, top-left corner
    dots, cols = [], []
    k = 0
    for gy in np.arange(step_m, size_m, step_m):
        for gx in np.arange(step_m, size_m, step_m):
            c = COLORS[k % len(COLORS)]
            k += 1
            cv2.circle(img, (int(gx / gsd), int(gy / gsd)), int(1.5 / gsd), c, -1)
            dots.append((x0 + gx + gsd / 2, y0 - gy - gsd / 2))  # pixel centre of the disc
            cols.append(c)
    raster = MapRaster(img, np.ones((n, n), bool), Affine(gsd, 0, x0, 0, -gsd, y0), GeoFrame(32633), gsd, "dots")
    return raster, np.array(dots), np.array(cols)


def _check_points(image: np.ndarray, M: np.ndarray, dots: np.ndarray, cols: np.ndarray, margin: int = 3) -> int:
    """Project dots through M (xy -> pixel) and check the colour found there; returns #checked."""
    uvw = np.c_[dots, np.ones(len(dots))] @ M.T
    uv = uvw[:, :2] / uvw[:, 2:3]
    h, w = image.shape[:2]
    checked = 0
    for (u, v), c in zip(uv, cols):
        if not (margin <= u < w - margin and margin <= v < h - margin):
            continue
        px = image[int(round(v)), int(round(u))].astype(int)
        assert np.abs(px - np.array(c)).max() < 60, f"expected {c} at ({u:.1f},{v:.1f}), found {px}"
        checked += 1
    return checked


@pytest.mark.parametrize("index", range(6))
def test_rendered_view_and_tile_footprints_match_metadata(index):
    raster, dots, cols = dotted_map()
    cfg = ViewConfig(image_size=128, photometric=NO_PHOTOMETRIC, heading_range_deg=360.0, max_pitch_deg=30.0,
                     min_valid=0.99)
    ds = RasterPairDataset([Place("dots", [GroundUnit([raster], name="dots")], (50.0, 70.0))], 8, cfg, seed=11)
    pair = ds.generate(index)
    n_view = _check_points(pair.sample["query"], pair.view_from_xy, dots, cols)
    n_tile = _check_points(pair.sample["ref"], pair.tile_from_xy, dots, cols)
    assert n_view >= 8 and n_tile >= 8  # a 50-70 m footprint holds many 10 m grid dots
    # the tile is centred where the metadata says, and the view looks near it
    c = (pair.sample["ref"].shape[0] - 1) / 2.0
    np.testing.assert_allclose(pair.tile_from_xy @ np.r_[pair.center_xy, 1.0], [c, c, 1.0], atol=1e-6)
    aim = image_to_ground(pair.intrinsics, pair.pose, np.array([[c, c]]))[0]
    assert np.linalg.norm(aim - pair.center_xy) <= 0.15 * pair.size_m * np.sqrt(2) + 1e-6
    np.testing.assert_array_equal(pair.sample["xy"], pair.center_xy)
    assert pair.sample["radius"] == pytest.approx(pair.size_m)


def test_pairs_are_deterministic_and_cross_date():
    raster, _, _ = dotted_map()
    other = MapRaster(255 - raster.image, raster.valid, raster.transform, raster.frame, raster.gsd_m, "other-date")
    cfg = ViewConfig(image_size=64, p_cross_date=1.0)
    make = lambda: RasterPairDataset([Place("p", [GroundUnit([raster, other])], (50.0, 60.0))], 4, cfg, seed=5)
    a, b = make(), make()
    pa, pb = a.generate(2), b.generate(2)
    np.testing.assert_array_equal(pa.sample["query"], pb.sample["query"])
    assert pa.query_date != pa.ref_date
    a.set_epoch(1)
    assert not np.array_equal(a.generate(2).sample["query"], pa.sample["query"])


def test_nir_auxiliary_queries_are_single_channel_views():
    raster, _, _ = dotted_map()
    nir = MapRaster(np.ascontiguousarray(raster.image[:, :, 0]), raster.valid, raster.transform, raster.frame, raster.gsd_m, "nir")
    cfg = ViewConfig(image_size=64, p_aux_query=1.0, photometric=NO_PHOTOMETRIC)
    ds = RasterPairDataset([Place("p", [GroundUnit([raster], [nir])], (50.0, 60.0))], 2, cfg, seed=0)
    pair = ds.generate(0)
    q = pair.sample["query"]
    assert pair.aux_query and q.shape == (64, 64, 3)
    np.testing.assert_array_equal(q[..., 0], q[..., 1])


def test_chip_pairs_and_mixture(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"chip{i}.png"
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 255, (96, 96, 3), dtype=np.uint8))
        paths.append(p)
    (tmp_path / "broken.jpg").write_bytes(b"xx")
    chips = ChipPairDataset(paths + [tmp_path / "broken.jpg"], 6, ViewConfig(image_size=48), seed=0, group_offset=10)
    assert len(chips.paths) == 3  # the unreadable chip is skipped (and logged)
    s = chips[0]
    assert s["query"].shape == (48, 48, 3) and 10 <= s["group"] < 13
    raster, _, _ = dotted_map()
    rasters = RasterPairDataset([Place("d", [GroundUnit([raster])], (50.0, 60.0))], 4, ViewConfig(image_size=48))
    mixed = MixedPairDataset([rasters, chips], seed=0)
    assert len(mixed) == 10
    batch = PairCollator(64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))([mixed[i] for i in range(len(mixed))])
    assert batch["query"].shape == (10, 3, 64, 64) and batch["xy"].shape == (10, 2)


def test_negative_mask_by_ground_distance():
    group = torch.tensor([0, 0, 0, 1, 2, 2])
    xy = torch.tensor([[0.0, 0.0], [30.0, 0.0], [200.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1e6, 0.0]])
    radius = torch.tensor([50.0, 50.0, 50.0, 50.0, float("inf"), float("inf")])
    m = negative_mask(group, xy, radius)
    assert not m.diagonal().any()
    assert not m[0, 1] and not m[1, 0]  # 30 m apart: overlapping tiles are not negatives
    assert m[0, 2] and m[2, 1]  # 200 m / 170 m apart: negatives
    assert m[0, 3]  # other frame/place: always a negative
    assert not m[4, 5]  # radius inf (same building / same chip): never a negative


def test_place_blocks_give_batches_from_one_place(tmp_path):
    a, _, _ = dotted_map()
    b = MapRaster(255 - a.image, a.valid, a.transform, a.frame, a.gsd_m, "b")
    places = [Place("a", [GroundUnit([a])], (50.0, 60.0)), Place("b", [GroundUnit([b])], (50.0, 60.0))]
    ds = RasterPairDataset(places, 16, ViewConfig(image_size=32), seed=1, place_block=4)
    groups = [ds[i]["group"] for i in range(16)]
    assert all(len(set(groups[k : k + 4])) == 1 for k in range(0, 16, 4))
    assert len(set(groups)) == 2  # both places still appear
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((40, 40, 3), np.uint8))
    chips = ChipPairDataset([tmp_path / "c.png"], 8, ViewConfig(image_size=32), group_offset=5)
    mixed = MixedPairDataset([ds, chips], seed=0, block=4)
    for k in range(0, len(mixed), 4):
        assert len({int(mixed._owner[i]) for i in range(k, k + 4)}) == 1  # one source per block
    assert sorted(zip(mixed._owner.tolist(), mixed._local.tolist())) == [(0, i) for i in range(16)] + [(1, i) for i in range(8)]


def test_neighbour_groups_are_half_to_one_tile_apart():
    a, _, _ = dotted_map(size_m=300.0)
    cfg = ViewConfig(image_size=32, neg_radius_frac=0.5, min_valid=0.5)
    ds = RasterPairDataset([Place("a", [GroundUnit([a])], (50.0, 50.0))], 16, cfg, seed=2, place_block=8, neighbours=4)
    pairs = [ds.generate(i) for i in range(16)]
    dists = np.array([
        np.linalg.norm(p.center_xy - pairs[g].center_xy) for g in range(0, 16, 4) for p in pairs[g + 1 : g + 4]
    ])
    # a neighbour that would fall off the map is replaced by a random spot (far away); none is closer
    in_ring = (dists >= 25.0 - 1e-6) & (dists <= 50.0 + 1e-6)
    assert in_ring.sum() >= 8 and not ((dists > 1e-6) & (dists < 25.0 - 1e-6)).any()
    assert pairs[0].sample["radius"] == pytest.approx(25.0)  # neg_radius_frac * tile size
    m = negative_mask(torch.tensor([0, 0]), torch.tensor(np.stack([pairs[0].center_xy, pairs[1].center_xy])),
                      torch.tensor([25.0, 25.0], dtype=torch.float64))
    assert bool(m[0, 1]) == (np.linalg.norm(pairs[1].center_xy - pairs[0].center_xy) > 25.0)
