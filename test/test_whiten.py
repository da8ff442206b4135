"""Learned whitening (foenet_ros.whiten): the statistics, the exact fold into the projection, retrieval
that improves on views with a nuisance the whitening learned, and the command end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from foenet_ros.errors import ConfigError, ModelError
from foenet_ros.model import create_model, load_checkpoint
from foenet_ros.whiten import WhitenConfig, fit_whitening, fold_whitening, whiten


def _pairs(n: int, dim: int, nuisance: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n places in ``dim`` dimensions seen twice; the two views differ strongly along 3 fixed directions
    (a nuisance such as another year's colours: the same for every seed) and a little along the rest."""
    axes = torch.linalg.qr(torch.randn(dim, 3, generator=torch.Generator().manual_seed(123), dtype=torch.float64))[0]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, dim, generator=g, dtype=torch.float64) + 2.0  # places (off-centre: the mean matters)

    def view():
        return z + nuisance * torch.randn(n, 3, generator=g, dtype=torch.float64) @ axes.T \
            + 0.1 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return view(), view()


def test_the_whitened_pair_differences_have_unit_covariance():
    q, r = _pairs(4000, 12, nuisance=3.0, seed=0)
    P, mu = fit_whitening(q, r, shrink=0.0)
    d = (q - r) @ P.T
    cov = d.T @ d / len(d)
    assert torch.allclose(cov, torch.eye(12, dtype=cov.dtype), atol=1e-6)
    assert torch.allclose(mu, torch.cat([q, r]).mean(0))
    # principal axes first: the whitened descriptors' variance decreases along the output dimensions
    y = (torch.cat([q, r]) - mu) @ P.T
    var = y.var(0)
    assert torch.all(var[:-1] >= var[1:] - 1e-9)


def test_whitening_improves_retrieval_under_a_learned_nuisance():
    q, r = _pairs(3000, 16, nuisance=4.0, seed=1)
    P, mu = fit_whitening(q, r, shrink=0.1)
    qt, rt = _pairs(300, 16, nuisance=4.0, seed=2)  # the same nuisance, other places

    def r1(a, b):
        s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
        return float((s.argmax(1) == torch.arange(len(a))).double().mean())

    before = r1(qt, rt)
    after = r1((qt - mu) @ P.T, (rt - mu) @ P.T)
    assert after > before + 0.2, (before, after)


def test_fold_is_exact_and_the_model_stays_a_plain_checkpoint(tmp_path):
    model = create_model("foenet-mnv2", pretrained=False, input_size=64).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        raw = model.raw_descriptor(x).double()
        assert torch.allclose(F.normalize(raw, dim=1).float(), model(x), atol=1e-6)
        g = torch.Generator().manual_seed(0)
        P = torch.randn(raw.shape[1], raw.shape[1], generator=g, dtype=torch.float64) / raw.shape[1] ** 0.5
        mu = torch.randn(raw.shape[1], generator=g, dtype=torch.float64)
        folded = fold_whitening(model, P, mu).eval()
        want = (raw - mu) @ P.T
        assert torch.allclose(folded.raw_descriptor(x).double(), want, atol=1e-4)
        assert torch.allclose(folded(x), F.normalize(want, dim=1).float(), atol=1e-5)
        # the source model is untouched
        assert torch.allclose(model.raw_descriptor(x).double(), raw)
    assert folded.fingerprint() != model.fingerprint()


def test_a_model_without_projection_cannot_be_whitened():
    model = create_model("gem-mnv2", pretrained=False, input_size=64)
    with pytest.raises(ModelError, match="projection"):
        fold_whitening(model, torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("kw", [{"shrink": 1.0}, {"shrink": -0.1}, {"pairs": 1}, {"data": "university1652"}])
def test_bad_configurations_are_refused(kw):
    with pytest.raises(ConfigError):
        WhitenConfig(out_dir="x", **kw).validate()


def test_whiten_command_end_to_end_on_synthetic_pairs(tmp_path):
    from foenet_ros.cli import main
    from foenet_ros.model import save_checkpoint

    src = tmp_path / "src"
    save_checkpoint(create_model("foenet-mnv2", pretrained=False, input_size=64), src, extra={"commands": ["x"]})
    out = tmp_path / "w"
    rc = main(["whiten", "--init", str(src), "--out", str(out), "--data", "synthetic", "--pairs", "48",
               "--batch-size", "16", "--workers", "0", "--threads", "1"])
    assert rc == 0
    m = load_checkpoint(out)
    doc = json.loads((out / "config.json").read_text())
    assert doc["train"]["commands"][0] == "x" and doc["train"]["commands"][1].startswith("foenet whiten")  # history kept
    rec = doc["train"]["whitening"]
    assert rec["pairs_used"] == 48 and rec["from_fingerprint"] == load_checkpoint(src).fingerprint()
    assert m.fingerprint() != rec["from_fingerprint"]
    # the whitening changed the projection, nothing else
    a, b = load_checkpoint(src).state_dict(), m.state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed == {"proj.weight", "proj.bias"}


def test_whiten_config_api():
    cfg = WhitenConfig(out_dir="x")
    assert cfg.validate() is cfg and cfg.shrink == 0.1 and cfg.pairs == 2880
    with pytest.raises(ConfigError, match="data"):
        whiten(WhitenConfig(out_dir="x", data="other"))
