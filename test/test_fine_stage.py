"""The fine stage's parts on synthetic data: CFOG, correlation + heatmap decoding, patch fits, the map
feature store, guided matching, the acceptance score and the error budget (fast, no shared data)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from foenet_ros.features import FeatureGrid, cfog, dequantize, quantize
from foenet_ros.features.local import SiftDetector, guided_matches
from foenet_ros.geo import CameraIntrinsics, CameraPose, synthetic_map
from foenet_ros.geo.render import render_view
from foenet_ros.localize.budget import altitude_consistent, error_budget, on_map, tilt_consistent
from foenet_ros.localize.overlap import (
    Hypothesis,
    Template,
    correlate,
    decode,
    fit_patches,
    make_templates,
    patch_correspondences,
)


@pytest.fixture(scope="module")
def town():
    return synthetic_map(size_m=(360.0, 300.0), gsd_m=0.5, seed=11)


def _grid(town, cell: float) -> FeatureGrid:
    """CFOG of the whole synthetic map at ``cell`` metres (what the index stores for one level)."""
    from foenet_ros.features import CfogExtractor
    from foenet_ros.index.fine import map_features

    xmin, ymin, xmax, ymax = town.bounds_xy
    H, W = int(math.ceil((ymax - ymin) / cell)), int(math.ceil((xmax - xmin) / cell))
    f, v = map_features(town, CfogExtractor(), cell, (0, H, 0, W), (xmin, ymax))
    return FeatureGrid(f, v, (xmin + 0.5 * cell, ymax - 0.5 * cell), cell)


def test_cfog_is_unit_length_and_survives_a_brightness_inversion(town):
    img = town.image[:200, :200]
    f, v = cfog(img)
    assert f.shape == (9, 200, 200) and v.shape == (200, 200)
    n = np.sqrt((f**2).sum(axis=0))[v]
    assert np.all(n <= 1.0 + 1e-5) and np.median(n) > 0.5
    g, _ = cfog(255 - img)  # near-infrared vs. red: the same edges, opposite signs
    ncc = float((f * g)[:, v].sum() / np.sqrt((f**2)[:, v].sum() * (g**2)[:, v].sum()))
    assert ncc > 0.95, ncc
    q = quantize(f, "u8")
    assert q.dtype == np.uint8 and np.abs(dequantize(q) - f).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("shift_cells", [(0, 0), (7, -12)])
def test_correlation_finds_a_template_cut_from_the_map(town, shift_cells):
    grid = _grid(town, 2.0)
    i0, j0 = 40 + shift_cells[0], 50 + shift_cells[1]
    t = Template(grid.feats[:, i0 : i0 + 40, j0 : j0 + 50].copy(), grid.valid[i0 : i0 + 40, j0 : j0 + 50].copy(),
                 np.array([-49.0, 39.0]), Hypothesis(0.0, 100.0))
    # the nadir is the template's cell (39 rows, 49 cols... ) offset: anchor = cell (0,0) relative to the nadir
    true_nadir = np.array([grid.origin_xy[0] + j0 * 2.0 + 49.0, grid.origin_xy[1] - i0 * 2.0 - 39.0])
    box = (true_nadir[0] - 60, true_nadir[1] - 60, true_nadir[0] + 60, true_nadir[1] + 60)
    for window in (grid, FeatureGrid(grid.feats[:, 10:140, 20:160], grid.valid[10:140, 20:160],
                                     (grid.origin_xy[0] + 40.0, grid.origin_xy[1] - 20.0), 2.0)):
        scores, overlap, hw, full = correlate([t], window)
        res = decode(scores, overlap, window, [t], hw, full, box)
        assert res is not None and np.hypot(*(res.xy - true_nadir)) < 0.3, (res.xy - true_nadir)
        assert res.z_peak > 8 and res.margin > 3
        # the peak restricted to a box that excludes the truth is a different, weaker place
        off = (true_nadir[0] + 30, true_nadir[1] + 30, true_nadir[0] + 60, true_nadir[1] + 60)
        res2 = decode(scores, overlap, window, [t], hw, full, box, peak_box=off)
        assert res2.z_peak < res.z_peak and np.hypot(*(res2.xy - true_nadir)) > 30


def test_direct_and_fft_correlation_agree(town):
    from foenet_ros.localize.overlap import _stack_templates, xcorr, xcorr_valid

    grid = _grid(town, 2.0)
    rng = np.random.default_rng(0)
    ts = [Template(grid.feats[:, 30:60, 40:75].copy(), rng.random((30, 35)) > 0.1, np.zeros(2), Hypothesis(0, 1))
          for _ in range(2)]
    T, M, n = _stack_templates(ts)
    F, V = grid.feats[:, 20:90, 30:110], grid.valid[20:90, 30:110]
    s_full, o_full = xcorr(T, M, n, F[None], V[None])
    s_val, o_val = xcorr_valid(T, M, n, F, V)
    h, w = T.shape[2:]
    np.testing.assert_allclose(s_full[:, h - 1 : F.shape[1], w - 1 : F.shape[2]], s_val, atol=1e-4)
    np.testing.assert_allclose(o_full[:, h - 1 : F.shape[1], w - 1 : F.shape[2]], o_val, atol=1e-4)
    # the FFT at the window's own size (circular, valid mode) gives exactly those placements too,
    # also for window sizes that the FFT pads
    for F2, V2 in ((F, V), (F[:, :-3, :-1], V[:-3, :-1])):
        s_c, o_c = xcorr(T, M, n, F2[None], V2[None], mode="valid")
        s_d, o_d = xcorr_valid(T, M, n, F2, V2)
        assert s_c.shape == (2, F2.shape[1] - h + 1, F2.shape[2] - w + 1)
        np.testing.assert_allclose(s_c, s_d, atol=1e-4)
        np.testing.assert_allclose(o_c, o_d, atol=1e-4)
    with pytest.raises(ValueError, match="at least the template's size"):
        xcorr(T, M, n, F[None, :, :20], V[None, :20], mode="valid")


def test_few_placements_are_computed_one_by_one_and_agree_with_conv2d(town, monkeypatch):
    from foenet_ros.localize import overlap as ov

    grid = _grid(town, 2.0)
    rng = np.random.default_rng(1)
    ts = [Template(grid.feats[:, 30:90, 40:110].copy(), rng.random((60, 70)) > 0.1, np.zeros(2), Hypothesis(0, 1))
          for _ in range(2)]
    T, M, n = ov._stack_templates(ts)
    F, V = grid.feats[:, 28:93, 38:113], grid.valid[28:93, 38:113]  # 6 x 6 placements: the one-by-one path
    s_few, o_few = ov.xcorr_valid(T, M, n, F, V)
    monkeypatch.setattr(ov, "_FEW_PLACEMENTS", 0)  # force conv2d
    s_conv, o_conv = ov.xcorr_valid(T, M, n, F, V)
    assert s_few.shape == s_conv.shape == (2, 6, 6)
    np.testing.assert_allclose(s_few, s_conv, atol=1e-4)
    np.testing.assert_allclose(o_few, o_conv, atol=1e-5)


def test_polish_places_the_template_to_a_fraction_of_the_finer_cell(town):
    from foenet_ros.features import CfogExtractor
    from foenet_ros.localize.overlap import polish_peak

    intr = CameraIntrinsics.from_hfov(70.0, 640, 480)
    xmin, ymin, xmax, ymax = town.bounds_xy
    pose = CameraPose((xmin + xmax) / 2 + 0.37, (ymin + ymax) / 2 - 0.81, 120.0, 20.0, 2.0, 1.0)
    img, _ = render_view(town, intr, pose)
    hyp = Hypothesis(20.0, 120.0, 1.0, 2.0)
    fine = _grid(town, 1.0)
    t = make_templates(img, intr, [hyp], 1.0, [CfogExtractor()], 800)[0]
    truth = np.array([pose.x, pose.y])
    # a prediction 1.6 m off (what a 2 m grid's peak may leave): polished to well under a cell
    for off in ((1.6, 0.0), (-1.1, 1.3)):
        xy = polish_peak(t, fine, truth + np.array(off), search_cells=2)
        assert xy is not None and np.hypot(*(xy - truth)) < 0.4, (off, xy - truth)
    # the truth outside the search square (peak on its border), or a window too small: None
    assert polish_peak(t, fine, truth + np.array([4.0, 0.0]), search_cells=2) is None
    small = FeatureGrid(fine.feats[:, :50, :50], fine.valid[:50, :50], fine.origin_xy, 1.0)
    assert polish_peak(t, small, truth, search_cells=2) is None


def test_projected_frame_is_found_and_patches_recover_heading_and_scale(town):
    from foenet_ros.features import CfogExtractor

    intr = CameraIntrinsics.from_hfov(70.0, 640, 480)
    xmin, ymin, xmax, ymax = town.bounds_xy
    pose = CameraPose((xmin + xmax) / 2, (ymin + ymax) / 2, 90.0, 35.0, 4.0, -1.0)
    img, _ = render_view(town, intr, pose)
    grid = _grid(town, 1.0)
    # a hypothesis 2 degrees and 3 % off: the coarse peak still lands, the patch fit corrects it
    hyp = Hypothesis(37.0, 90.0 * 1.03, -1.0, 4.0)
    t = make_templates(img, intr, [hyp], 1.0, [CfogExtractor()], 400)[0]
    box = (pose.x - 25, pose.y - 25, pose.x + 25, pose.y + 25)
    scores, overlap, hw, full = correlate([t], grid)
    res = decode(scores, overlap, grid, [t], hw, full, box)
    assert np.hypot(res.xy[0] - pose.x, res.xy[1] - pose.y) < 4.0
    src, dst, z, tested = patch_correspondences(t, grid, res.xy, patch_cells=24, stride=12, search_cells=6)
    fit = fit_patches(src, dst, z, tested, 1.0)
    assert fit is not None and fit.inliers >= 6
    s = math.hypot(fit.M[0, 0], fit.M[1, 0])
    assert abs(s * 1.03 - 1.0) < 0.02  # the 3 % scale error measured
    rot = math.degrees(math.atan2(fit.M[1, 0], fit.M[0, 0]))
    assert abs(abs(rot) - 2.0) < 1.0  # and the 2 degree heading error


def test_warped_templates_match_rendered_ones(town):
    from foenet_ros.features import CfogExtractor

    intr = CameraIntrinsics.from_hfov(70.0, 640, 480)
    xmin, ymin, xmax, ymax = town.bounds_xy
    pose = CameraPose((xmin + xmax) / 2, (ymin + ymax) / 2, 90.0, 10.0, 3.0, 0.0)
    img, _ = render_view(town, intr, pose)
    hyps = [Hypothesis(h, 90.0, 0.0, 3.0) for h in (7.5, 10.0, 12.5)]
    warped = make_templates(img, intr, hyps, 1.5, [CfogExtractor()], 300, warp_near=True)
    direct = make_templates(img, intr, hyps, 1.5, [CfogExtractor()], 300, warp_near=False)
    for a, b in zip(warped, direct):
        assert a.feats.shape == b.feats.shape and np.allclose(a.anchor_xy, b.anchor_xy)
        m = a.valid & b.valid
        corr = float((a.feats * b.feats).sum(axis=0)[m].mean() / np.sqrt(((a.feats**2).sum(axis=0)[m].mean()
                                                                           * (b.feats**2).sum(axis=0)[m].mean())))
        assert corr > 0.8, corr


@pytest.mark.parametrize("dh, scale", [(2.5, 1.0), (0.0, 1.05), (-1.25, 0.97)])
def test_a_turned_template_is_the_rendered_one_of_that_heading_and_scale(town, dh, scale):
    """turn_template's similarity about the nadir is the geometry of a heading / altitude change
    (pitched and rolled camera): turned from a hypothesis off by (dh, scale), the base correlates
    like the template rendered at the truth, and better than the base or a turn the other way."""
    from foenet_ros.features import CfogExtractor
    from foenet_ros.localize.overlap import near_peak, turn_template

    intr = CameraIntrinsics.from_hfov(70.0, 640, 480)
    xmin, ymin, xmax, ymax = town.bounds_xy
    pose = CameraPose((xmin + xmax) / 2, (ymin + ymax) / 2, 100.0, 40.0, 10.0, -2.0)
    img, _ = render_view(town, intr, pose)
    fine = _grid(town, 1.0)
    truth = np.array([pose.x, pose.y])
    ex = [CfogExtractor()]
    base = make_templates(img, intr, [Hypothesis(40.0 - dh, 100.0 / scale, -2.0, 10.0)], 1.0, ex, 800)[0]
    rendered = make_templates(img, intr, [Hypothesis(40.0, 100.0, -2.0, 10.0)], 1.0, ex, 800)[0]
    turned = turn_template(base, dh, scale, 1.0)
    assert turned.hyp.heading_grid_deg == pytest.approx(40.0) and turned.hyp.alt_m == pytest.approx(100.0)
    wrong = turn_template(base, -dh, 1.0 / scale, 1.0)
    score = {k: near_peak(t, fine, truth, search_cells=2) for k, t in
             (("turned", turned), ("rendered", rendered), ("base", base), ("wrong", wrong))}
    xy = score["turned"][1]
    assert xy is not None and np.hypot(*(xy - truth)) < 0.5, xy - truth
    assert score["turned"][0] > 0.9 * score["rendered"][0], score
    assert score["turned"][0] > max(score["base"][0], score["wrong"][0]), score


def test_fine_store_windows_and_keypoints(town, tmp_path):
    from foenet_ros.features import CfogExtractor
    from foenet_ros.index.fine import FineConfig, FineStore, build_fine

    entry = build_fine(town, tmp_path, FineConfig(kp_flavours=("upright",)), [90.0, 130.0], {"cfog": CfogExtractor()},
                       progress=False)
    store = FineStore(tmp_path, entry)
    assert all((tmp_path / f).is_file() for f in FineStore.files(entry))
    assert store.cells == sorted(store.cells) and store.cells[0] >= town.gsd_m
    xmin, ymin, xmax, ymax = town.bounds_xy
    c = store.cells[0]
    # a window hanging over the map's edge: the outside is invalid and zero
    win = store.window(0, (xmin - 20, ymin + 50, xmin + 40, ymin + 110), ["cfog"])
    assert not win.valid[:, : int(15 / c)].any() and win.valid[:, -3:].all()
    assert np.all(win.feats[:, ~win.valid] == 0)
    ref = _grid(town, c)
    j = int(round((win.origin_xy[0] - ref.origin_xy[0]) / c))
    i = int(round((ref.origin_xy[1] - win.origin_xy[1]) / c))
    np.testing.assert_allclose(win.feats[:, 5:20, -10:], ref.feats[:, i + 5 : i + 20, j + win.shape[1] - 10 : j + win.shape[1]],
                               atol=2 / 255)
    xy, size, desc, z = store.keypoints_in((xmin + 50, ymin + 50, xmin + 150, ymin + 120), "upright")
    assert np.isnan(z).all() and len(z) == len(xy)  # built without a surface model
    assert len(xy) > 20 and desc.dtype == np.uint8 and desc.shape[1] == 128
    assert np.all((xy[:, 0] >= xmin + 50) & (xy[:, 0] <= xmin + 150) & (xy[:, 1] >= ymin + 50) & (xy[:, 1] <= ymin + 120))
    # by id: overlapping windows share their keypoints' ids (the screen searches their union once)
    ids = store.keypoint_ids((xmin + 50, ymin + 50, xmin + 150, ymin + 120))
    assert np.array_equal(store.keypoints_at(ids, "upright")[0], xy) and np.all(np.diff(ids) > 0)
    right = store.keypoint_ids((xmin + 100, ymin + 50, xmin + 200, ymin + 120))
    both = np.intersect1d(ids, right)
    assert len(both) and np.all(store.keypoints_at(both, "upright")[0][:, 0] >= xmin + 100)


def test_a_polish_level_is_stored_on_request_and_never_searched(town, tmp_path):
    from foenet_ros.features import CfogExtractor
    from foenet_ros.index.fine import FineConfig, FineStore, build_fine, plan_cells

    plain = plan_cells(FineConfig(), [90.0, 130.0], 0.1)
    polished = plan_cells(FineConfig(polish=True), [90.0, 130.0], 0.1)
    assert polished[1:] == plain and polished[0] == pytest.approx(plain[0] / 2)
    # a map without detail finer than 3/4 of the finest cell has nothing to polish with
    for gsd in (plain[0], 0.8 * plain[0]):
        assert plan_cells(FineConfig(polish=True), [90.0, 130.0], gsd) == plan_cells(FineConfig(), [90.0, 130.0], gsd)
    entry = build_fine(town, tmp_path, FineConfig(polish=True, keypoints=False), [180.0, 260.0], {"cfog": CfogExtractor()},
                       progress=False)
    store = FineStore(tmp_path, entry)
    assert store.polish_level == 0 and store.search_levels == list(range(1, len(store.cells)))
    assert store.cells[0] == pytest.approx(max(store.cells[1] / 2, town.gsd_m))
    assert store.cells[1:] == pytest.approx([store.cells[1] * 2**k for k in range(len(store.cells) - 1)])
    # the correlations choose among the search levels only, however many cells they ask for
    assert all(store.level_for(fp, n) >= 1 for fp in (60.0, 130.0, 400.0) for n in (16, 64, 1000))
    win = store.window(0, (town.bounds_xy[0] + 50, town.bounds_xy[1] + 50, town.bounds_xy[0] + 80, town.bounds_xy[1] + 80),
                       ["cfog"])
    assert win.cell_m == pytest.approx(store.cells[0]) and win.valid.all()
    # an index without the marker (built before the polish level existed) searches every level
    legacy = dict(entry, levels=[{k: v for k, v in lv.items() if k != "polish"} for lv in entry["levels"]])
    assert FineStore(tmp_path, legacy).polish_level is None


def test_guided_matching_respects_the_radius():
    rng = np.random.default_rng(1)
    d2 = rng.integers(0, 255, (200, 128)).astype(np.uint8)
    xy2 = rng.uniform(0, 100, (200, 2))
    d1 = d2[:50].copy()
    pred = xy2[:50] + rng.normal(0, 1.0, (50, 2))
    i1, i2, r = guided_matches(d1, pred, d2, xy2, radius=4.0, ratio=0.8)
    assert len(i1) >= 45 and np.all(i1 == i2)
    far = xy2[:50] + 30.0  # predictions far from the true keypoints: nothing may match them
    i1, i2, _ = guided_matches(d1, far, d2, xy2, radius=4.0, ratio=0.8)
    assert not np.any(i1 == i2) or len(i1) == 0


def test_guided_matching_is_one_to_one():
    """Several frame keypoints near one map keypoint (a map coarser than the frame): only the best
    keeps it, so RANSAC cannot collapse part of the frame onto a single map point."""
    rng = np.random.default_rng(2)
    d2 = rng.integers(0, 255, (600, 128)).astype(np.uint8)  # dense enough that every keypoint has rivals
    xy2 = rng.uniform(0, 100, (600, 2))
    d1 = np.concatenate([d2[:1]] * 3 + [d2[1:20]]).astype(np.int16)
    d1[1] += rng.integers(-20, 20, 128).astype(np.int16)  # two blurred copies of map keypoint 0
    d1[2] += rng.integers(-40, 40, 128).astype(np.int16)
    d1 = np.clip(d1, 0, 255).astype(np.uint8)
    pred = np.concatenate([xy2[:1]] * 3 + [xy2[1:20]]) + rng.normal(0, 0.5, (22, 2))
    i1, i2, r = guided_matches(d1, pred, d2, xy2, radius=4.0, ratio=0.8)
    assert len(np.unique(i2)) == len(i2)
    assert np.sum(i2 == 0) == 1 and i1[i2 == 0][0] == 0  # the exact copy, the best of the three
    assert len(i1) == 20 and np.all(np.diff(i1) > 0)  # without the rule: 22, three on map keypoint 0


def test_sift_detector_gives_both_flavours(town):
    kp = SiftDetector(500).detect(town.image[:400, :400])
    assert len(kp) > 50 and set(kp.desc) == {"upright", "oriented"}
    assert kp.desc["upright"].shape == kp.desc["oriented"].shape == (len(kp), 128)
    # one pyramid (detectAndCompute) gives what detect() then compute() give, with a mask too; the
    # index's cached map keypoints were made the second way and must stay comparable
    import cv2

    from foenet_ros.features.local import root_sift_u8

    img = town.image[:400, :400]
    mask = np.ones(img.shape[:2], np.uint8)
    mask[:, :120] = 0
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT_create(nfeatures=500, contrastThreshold=0.03)
    ref_kp, ref_d = sift.compute(gray, sift.detect(gray, mask * 255))
    for flavours in (("oriented",), ("upright", "oriented")):
        got = SiftDetector(500).detect(img, mask.astype(bool), flavours)
        assert np.array_equal(got.xy, np.array([k.pt for k in ref_kp], np.float32)) and np.all(got.xy[:, 0] >= 119)
        assert np.array_equal(got.desc["oriented"], root_sift_u8(ref_d))
    up = SiftDetector(500).detect(img, mask.astype(bool), ("upright",))
    assert np.array_equal(up.desc["upright"], got.desc["upright"]) and np.array_equal(up.xy, got.xy)


@pytest.mark.parametrize("heading", [37.0, 90.0, 212.0])
def test_steered_upright_descriptors_match_the_frame_turned_north_up(town, heading):
    """Upright descriptors steered on the frame (one detection for every heading) match those of the
    frame turned north-up, which is how the map's upright keypoints look: a wrong steering does not."""
    from foenet_ros.features.local import ratio_matches
    from foenet_ros.localize.overlap import apply_h
    from foenet_ros.localize.preprocess import north_up_transform, rotate_north_up

    img = np.ascontiguousarray(town.image[:300, :400])
    det = SiftDetector(500)
    base = det.detect(img, None, ())
    assert base.octave is not None and not base.desc
    turned, R = rotate_north_up(img, heading, return_matrix=True)
    M, wh = north_up_transform(img.shape[1], img.shape[0], heading)
    assert np.allclose(M, R) and wh == turned.shape[1::-1]
    ref = det.detect(turned, (turned.max(axis=2) > 0), ("upright",))  # what a north-up view gives

    def correct_share(kp) -> float:
        i1, i2, _ = ratio_matches(kp.desc["upright"], ref.desc["upright"], 0.8)
        err = np.hypot(*(apply_h(R, kp.xy[i1].astype(np.float64)) - ref.xy[i2]).T)
        return float(np.mean(err < 2.0)) if len(i1) >= 30 else 0.0

    steered = det.steered(img, base, heading)
    assert len(steered) >= 0.9 * len(base)
    assert correct_share(steered) > 0.9
    assert correct_share(det.steered(img, base, -heading)) < 0.3  # steered the other way: no match holds
    with pytest.raises(ValueError, match="octave"):
        det.steered(img, dataclasses.replace(base, octave=None), heading)


def test_error_budget_and_plausibility():
    cov, terms = error_budget(np.eye(2) * 0.01, sigma_scale=2.0, map_accuracy_m=1.0, alt_m=100.0, attitude_sigma_deg=1.0,
                              tilt_deg=10.0, hfov_deg=70.0, terrain_relief_m=3.0, calibration_sigma_frac=0.01, floor_m=0.1)
    assert terms.attitude_m == pytest.approx(100 * math.tan(math.radians(1.0)))
    expect = 0.04 + 1.0 + terms.attitude_m**2 + terms.terrain_m**2 + terms.calibration_m**2
    assert np.allclose(cov, np.eye(2) * expect)
    tiny, _ = error_budget(np.zeros((2, 2)), sigma_scale=1.0, map_accuracy_m=0.0, alt_m=math.nan, attitude_sigma_deg=None,
                           tilt_deg=0.0, hfov_deg=60.0, terrain_relief_m=0.0, calibration_sigma_frac=0.0, floor_m=0.2)
    assert np.allclose(np.linalg.eigvalsh(tiny), 0.04)  # never below the floor
    assert on_map(np.array([5.0, 5.0]), (0, 0, 10, 10), 0.0) and not on_map(np.array([50.0, 5.0]), (0, 0, 10, 10), 20.0)
    assert altitude_consistent(105.0, 100.0, 3.0) and not altitude_consistent(300.0, 100.0, 3.0)
    assert not altitude_consistent(-5.0, None, 1.0)
    assert tilt_consistent(5.0, (0.0, 4.0), 1.0) and not tilt_consistent(25.0, (0.0, 4.0), 1.0)


def test_acceptance_score_grows_with_evidence():
    from types import SimpleNamespace

    from foenet_ros.localize import LocalizerConfig
    from foenet_ros.localize.fine_score import dense_score

    w = LocalizerConfig().fine_score_weights

    def fix(z, rival, patches, tested, fz):
        return SimpleNamespace(coarse=SimpleNamespace(z_peak=z), rival_z=rival, inliers=patches, tested=tested,
                               info={"fine_z": fz})

    weak = dense_score(fix(5.0, 4.5, 0, 50, 3.0), w)
    strong = dense_score(fix(14.0, 4.0, 20, 50, 12.0), w)
    assert 0.0 <= weak < 0.5 < 0.95 < strong <= 1.0


def test_orientation_diversity_separates_ground_from_test_patterns():
    """A frame of ground has edges in every direction; stripes, a checkerboard, a gradient or a constant
    frame do not, and the Localizer refuses any fix from them (they correlate with straight map edges)."""
    from foenet_ros.geo import CameraIntrinsics, CameraPose, synthetic_map
    from foenet_ros.geo.render import render_view
    from foenet_ros.localize.preprocess import orientation_diversity

    town = synthetic_map(size_m=(300.0, 240.0), gsd_m=0.5, seed=3)
    cx, cy = town.center_xy
    for heading in (0.0, 37.0):
        img, _ = render_view(town, CameraIntrinsics.from_hfov(70.0, 640, 480), CameraPose(cx, cy, 100.0, heading),
                             distort=False)
        assert orientation_diversity(img) > 7.0
    yy, xx = np.mgrid[0:240, 0:320]
    stripes = np.repeat((((xx + yy) // 7) % 2 * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    checker = np.repeat(((((yy // 16) + (xx // 16)) % 2) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    ramp = np.repeat((xx * 255 // 319).astype(np.uint8)[:, :, None], 3, axis=2)
    for pattern in (stripes, checker, ramp):
        assert orientation_diversity(pattern) < 3.0
    assert orientation_diversity(np.full((240, 320, 3), 128, np.uint8)) == 0.0


@pytest.mark.parametrize("shape", [(37, 53, 3), (20, 31, 4), (16, 16, 1), (16, 16)])
def test_channel_max_equals_numpys(shape):
    """The per-plane maximum the templates' data masks use is exactly numpy's max over channels."""
    from foenet_ros.utils import channel_max

    rng = np.random.default_rng(3)
    img = rng.integers(0, 4, size=shape, dtype=np.uint8)  # many zeros: the no-data test matters
    want = img.max(axis=2) if img.ndim == 3 else img
    got = channel_max(img)
    assert got.shape == shape[:2] and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
