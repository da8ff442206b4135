"""A 2-step training run on a tiny procedural set lowers the loss and writes a checkpoint that
``foenet eval`` loads; resume, presets and the LR schedule."""

from __future__ import annotations

import json

import pytest
import torch

from foenet_ros.cli import main as cli_main
from foenet_ros.data import PairCollator, negative_mask
from foenet_ros.errors import ConfigError
from foenet_ros.model import create_model, load_checkpoint, triplet_loss
from foenet_ros.train import build_dataset, lr_factor, read_log, summary, train, train_preset


def _batch_loss(model, batch) -> float:
    model.train()  # batch statistics, as during the optimisation
    with torch.no_grad():
        x = torch.cat([batch["query"], batch["ref"]])
        out = model(x)
        d, s = out[: len(batch["query"])], out[len(batch["query"]) :]
        return float(triplet_loss(d, s, negative_mask(batch["group"], batch["xy"], batch["radius"])))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = train_preset("tiny", out_dir=str(out), max_steps=2, samples_per_epoch=16, batch_size=8, lr=3e-4, seed=0)
    final = train(cfg)
    return cfg, out, final


def test_two_steps_lower_the_loss_and_write_a_checkpoint(tiny_run):
    cfg, out, final = tiny_run
    assert (final / "model.safetensors").is_file() and (final / "config.json").is_file()
    assert (out / "epoch_001").is_dir() and (out / "train_state.pt").is_file()
    rows = read_log(out)
    assert [r["step"] for r in rows] == [1.0, 2.0]
    # the first batch the run trained on, under the initial and the trained weights
    torch.manual_seed(0)
    init = create_model(cfg.model, **cfg.model_overrides)
    ds = build_dataset(cfg, init.config.input_size)
    ds.set_epoch(0)
    batch = PairCollator(init.config.input_size, init.config.mean, init.config.std)([ds[i] for i in range(8)])
    trained = load_checkpoint(final)
    before, after = _batch_loss(init, batch), _batch_loss(trained, batch)
    assert after < before, f"loss did not go down: {before:.4f} -> {after:.4f}"
    s = summary(out)
    assert s["steps"] == 2 and s["train_images_per_s"] > 0
    doc = json.loads((final / "config.json").read_text())
    assert doc["train"]["step"] == 2 and doc["train"]["recipe"]["data"] == "synthetic"


def test_foenet_eval_loads_the_checkpoint(tiny_run, tmp_path, capsys):
    from foenet_ros.geo import synthetic_map

    _, _, final = tiny_run
    tif = synthetic_map((200.0, 160.0), gsd_m=0.5, seed=9).to_geotiff(tmp_path / "town.tif")
    report = tmp_path / "eval.json"
    rc = cli_main(["eval", "--model", str(final), "--sets", f"map:{tif}", "--tile-size", "60", "--queries", "12",
                   "--device", "cpu", "--out", str(report)])
    assert rc == 0
    doc = json.loads(report.read_text())
    assert doc["model"]["fingerprint"] == load_checkpoint(final).fingerprint()
    m = doc["sets"][0]["metrics"]
    assert {"R@1", "R@5", "R@10", "R@1%", "AP", "SDM@1"} <= set(m)
    assert 0.0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100.0
    assert doc["sets"][0]["n_queries"] == 12
    assert "R@1" in capsys.readouterr().out  # the terminal table


def test_resume_continues_after_the_last_epoch(tmp_path):
    cfg = train_preset("tiny", out_dir=str(tmp_path), epochs=2, samples_per_epoch=8, batch_size=8)
    train(cfg.replace(epochs=1))
    assert [r["epoch"] for r in read_log(tmp_path)] == [1.0]
    train(cfg)  # resumes: epoch 2 only
    assert [r["epoch"] for r in read_log(tmp_path)] == [1.0, 2.0]
    assert (tmp_path / "epoch_002").is_dir()


def test_presets_overrides_and_schedule():
    with pytest.raises(ConfigError, match="unknown training preset"):
        train_preset("nope")
    with pytest.raises(ConfigError, match="unknown training option"):
        train_preset("tiny", colour="red")
    with pytest.raises(ConfigError, match="university1652 needs data_root"):
        train_preset("university1652")
    cfg = train_preset("shared-cpu", epochs=2, model_overrides={"dim": 128})
    assert cfg.epochs == 2 and cfg.model_overrides == {"input_size": 160, "dim": 128}
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, 0.0) == pytest.approx(0.5)
