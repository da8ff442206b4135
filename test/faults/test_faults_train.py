"""Issue 11, hole 7 (training): a truncated ``train_state.pt`` (or a truncated checkpoint) falls back
to the newest intact checkpoint with a warning instead of ending the resumed run in a traceback."""

from __future__ import annotations

import logging
import shutil

import pytest

from foenet_ros.train import STATE_FILE, read_log, train, train_preset


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    cfg = train_preset("tiny", out_dir=str(out), epochs=2, samples_per_epoch=8, batch_size=8, seed=0)
    train(cfg)
    assert (out / "epoch_001").is_dir() and (out / "epoch_002").is_dir() and (out / STATE_FILE).is_file()
    return cfg, out


def _copy(two_epochs, tmp_path):
    cfg, out = two_epochs
    dst = tmp_path / "run"
    shutil.copytree(out, dst)
    return cfg.replace(out_dir=str(dst), epochs=3), dst


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_state_resumes_from_the_newest_intact_checkpoint(two_epochs, tmp_path, caplog):
    cfg, run = _copy(two_epochs, tmp_path)
    _truncate(run / STATE_FILE)
    with caplog.at_level(logging.WARNING, logger="foenet_ros.train"):
        final = train(cfg)
    assert "train_state.pt is unreadable" in caplog.text and "epoch_002" in caplog.text
    assert [r["epoch"] for r in read_log(run)] == [1.0, 2.0, 3.0]  # epoch 3 only was trained now
    assert (run / "epoch_003").is_dir() and (final / "model.safetensors").is_file()


def test_truncated_state_and_checkpoint_fall_back_further(two_epochs, tmp_path, caplog):
    cfg, run = _copy(two_epochs, tmp_path)
    (run / STATE_FILE).write_bytes(b"")
    _truncate(run / "epoch_002" / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="foenet_ros.train"):
        train(cfg)
    assert "skipping checkpoint" in caplog.text and "epoch_001" in caplog.text
    assert [r["epoch"] for r in read_log(run)] == [1.0, 2.0, 2.0, 3.0]  # epochs 2 and 3 trained again


def test_state_naming_a_broken_checkpoint_and_nothing_intact_starts_over(two_epochs, tmp_path, caplog):
    cfg, run = _copy(two_epochs, tmp_path)
    for name in ("epoch_001", "epoch_002"):
        _truncate(run / name / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="foenet_ros.train"):
        train(cfg.replace(epochs=1))
    assert "starts from scratch" in caplog.text
    assert (run / "final" / "model.safetensors").is_file()
