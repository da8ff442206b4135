"""The learned overlap head: model, checkpoint, ONNX, training loop, index + Localizer with learned features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from foenet_ros.geo import CameraIntrinsics, CameraPose, synthetic_map
from foenet_ros.geo.render import render_view
from foenet_ros.model import create_model, load_checkpoint, load_default_model, save_checkpoint


@pytest.fixture(scope="module")
def head_model():
    m = create_model("foenet-mnv2", input_size=160, overlap_dim=8, overlap_hidden=16)
    return m.eval()


def test_models_without_a_head_keep_their_fingerprint():
    """The committed default carries an overlap head; its descriptor part alone (a model without a
    head, like every checkpoint made before heads existed) has the fingerprint recorded for it in
    models/README.md when the default was made (stage 3 without the head was 14085ddde8167644; the
    whitening changed the projection)."""
    import json

    from foenet_ros.model.checkpoint import default_model_dir

    m = load_default_model()
    stored = json.loads((default_model_dir() / "config.json").read_text())["fingerprint"]
    assert m.overlap_head is not None and m.fingerprint() == stored
    bare = create_model("foenet-mnv2", input_size=160, pretrained=False)
    bare.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("overlap_head.")}, strict=True)
    assert bare.overlap_head is None
    assert bare.fingerprint() == "7153ea55d535dbb3"  # the whitened default's descriptor part (model card)


def test_dense_features_shape_norm_and_checkpoint_round_trip(head_model, tmp_path):
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        f = head_model.dense_features(x)
    assert f.shape == (2, 8, 24, 32)
    assert torch.allclose(f.norm(dim=1), torch.ones(2, 24, 32), atol=1e-4)
    save_checkpoint(head_model, tmp_path / "ck")
    back = load_checkpoint(tmp_path / "ck")
    assert back.fingerprint() == head_model.fingerprint() != load_default_model().fingerprint()
    with torch.inference_mode():
        assert torch.allclose(back.dense_features(x), f, atol=1e-6)
    # the descriptor path is untouched by the head
    with torch.inference_mode():
        assert back(torch.randn(1, 3, 160, 160)).shape == (1, 256)


def test_overlap_onnx_export_matches_torch(head_model, tmp_path):
    from foenet_ros.model.export import export_overlap_onnx

    info = export_overlap_onnx(head_model, tmp_path / "ov.onnx")
    assert info["max_abs_diff"] < 1e-4 and (tmp_path / "ov.onnx").stat().st_size > 10_000


def test_learned_extractor_masks_invalid_cells(head_model):
    from foenet_ros.features.learned import LearnedExtractor

    ex = LearnedExtractor(head_model)
    img = np.random.default_rng(0).integers(0, 255, (64, 96, 3)).astype(np.uint8)
    valid = np.ones((64, 96), bool)
    valid[:, :20] = False
    f, v = ex.extract(img, valid)
    assert f.shape == (8, 16, 24) and v.shape == (16, 24)
    assert not v[:, :7].any() and v[4:-4, 10:-4].all()  # invalid cells + a 2-cell border around them
    assert np.all(f[:, ~v] == 0)


def test_training_loop_smoke_and_index_with_learned_features(tmp_path):
    """Two training steps on a synthetic place, then an index storing both CFOG and the learned
    features, and a Localizer that correlates both."""
    from foenet_ros.data.pairs import GroundUnit, Place
    from foenet_ros.index import IndexConfig, TileIndex, build_index
    from foenet_ros.index.fine import FineConfig
    from foenet_ros.localize import Localizer, LocalizerConfig
    from foenet_ros.model import Encoder
    from foenet_ros.train_overlap import OverlapPairDataset, OverlapTrainConfig, collate, overlap_loss

    town = synthetic_map(size_m=(420.0, 340.0), gsd_m=0.4, seed=7)
    cfg = OverlapTrainConfig(out_dir=str(tmp_path / "run"), steps=2, batch_size=2, template_cells=16, window_cells=24,
                             image_px=160, overlap_dim=8, overlap_hidden=16)
    ds = OverlapPairDataset([Place("town", [GroundUnit([town], name="town")], (60.0, 90.0))], cfg, length=4)
    batch = collate([ds[0], ds[1]])
    assert batch["t_img"].shape == (2, 64, 64, 3) and batch["w_img"].shape == (2, 96, 96, 3)
    model = create_model("foenet-mnv2", input_size=160, overlap_dim=8, overlap_hidden=16)
    # the default's descriptor weights (its own, larger head is not this one)
    model.load_state_dict({k: v for k, v in load_default_model().state_dict().items()
                           if not k.startswith("overlap_head.")}, strict=False)
    loss, stats = overlap_loss(model, batch, cfg)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and model.overlap_head.out.weight.grad is not None
    assert set(stats) >= {"acc_combined", "acc_learned", "acc_cfog", "tau", "cfog_weight"}
    # an index with both feature methods, used by the Localizer
    enc = Encoder(model.eval(), device="cpu", batch_size=16)
    build_index(town, enc, tmp_path / "idx", IndexConfig(hfov_deg=70.0, image_size=(640, 480), alt_range_m=(80.0, 120.0),
                                                          fine=FineConfig(methods=("cfog", "foenet"), keypoints=False)),
                progress=False)
    idx = TileIndex.load(tmp_path / "idx")
    assert set(idx.manifest["fine"]["methods"]) == {"cfog", "foenet"}
    loc = Localizer(idx, enc, LocalizerConfig(fine_methods=("cfog", "foenet"), refine="never"))
    assert [e.name for e in loc.extractors] == ["cfog", "foenet"]
    intr = CameraIntrinsics.from_hfov(70.0, 640, 480)
    xmin, ymin, xmax, ymax = town.bounds_xy
    pose = CameraPose((xmin + xmax) / 2, (ymin + ymax) / 2, 100.0, 40.0, 3.0, 1.0)
    img, _ = render_view(town, intr, pose)
    est = loc.localize(img, camera=intr, heading_deg=town.frame.grid_to_true_heading(40.0, pose.x, pose.y),
                       altitude_m=100.0, attitude=(1.0, 3.0))
    assert est.status == "verified" and est.pose["source"] == "dense"
    assert math.hypot(est.x - pose.x, est.y - pose.y) < 3.0


def test_relational_distillation_is_zero_for_the_teacher_itself():
    from foenet_ros.train import relational_distillation

    teacher = create_model("gem-mnv2", input_size=64).eval()
    q, r = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        t = teacher(torch.cat([q, r]))
    assert float(relational_distillation(t[:3], t[3:], teacher, q, r)) < 1e-10
    assert float(relational_distillation(torch.nn.functional.normalize(torch.randn(3, 1280), dim=1),
                                         torch.nn.functional.normalize(torch.randn(3, 1280), dim=1), teacher, q, r)) > 1e-4
