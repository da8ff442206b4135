"""`foenet demo` end to end on the synthetic map (no data needed): index built then cached, flight
simulated, replayed, metrics table and plot path printed."""

from __future__ import annotations

import json

import pytest

from foenet_ros import maps
from foenet_ros.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reuses_its_index(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv(maps.CACHE_ENV, str(tmp_path / "cache"))
    args = ["demo", "--map", "synthetic", "--frames", "5", "--altitude-m", "100", "--no-live", "--device", "cpu",
            "--out", str(tmp_path / "demo")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC MAP" in out and "within 5 / 10 / 25 m" in out
    plot = tmp_path / "demo" / "replay" / "trajectory.png"
    assert f"plot: {plot}" in out and plot.read_bytes()[:4] == b"\x89PNG"
    mt = json.loads((tmp_path / "demo" / "replay" / "metrics.json").read_text())
    assert mt["frames"] == 5 and mt["ground_truth"] and mt["demo"]["synthetic_map"] is True
    assert mt["share_localised"] >= 0.6, mt
    index_dirs = list((tmp_path / "cache" / "demo").glob("index-*"))
    assert len(index_dirs) == 1 and mt["demo"]["index_dir"] == str(index_dirs[0])
    # second run: the cached index is reused, not rebuilt
    with caplog.at_level("INFO", logger="foenet_ros.bag.demo"):
        assert main(args[:3] + ["--frames", "2"] + args[5:]) == 0
    assert "reusing the cached index" in caplog.text
    assert list((tmp_path / "cache" / "demo").glob("index-*")) == index_dirs
