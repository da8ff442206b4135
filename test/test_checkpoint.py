"""Checkpoints: bit-exact round trip, strict loading, clear errors; ONNX parity; console scripts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foenet_ros.errors import CheckpointError
from foenet_ros.model import create_model, load_checkpoint, load_default_model, save_checkpoint


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    model = create_model("foenet-mnv2", input_size=64)
    with torch.no_grad():  # make the OSM non-trivial so the round trip covers real values
        for p in model.osm.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


def test_round_trip_is_bit_exact(tmp_path: Path, small_model) -> None:
    out = save_checkpoint(small_model, tmp_path / "ckpt", extra={"command": "test"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(out)
    a, b = small_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert loaded.fingerprint() == small_model.fingerprint()
    doc = json.loads((out / "config.json").read_text())
    assert doc["fingerprint"] == small_model.fingerprint()
    assert doc["config"]["input_size"] == 64 and doc["train"] == {"command": "test"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(small_model(x), loaded(x))
    # the safetensors file path works as well as the directory
    assert load_checkpoint(out / "model.safetensors").fingerprint() == small_model.fingerprint()


def test_truncated_weights_raise_clear_error(tmp_path: Path, small_model) -> None:
    out = save_checkpoint(small_model, tmp_path / "ckpt")
    w = out / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(out)


def test_modified_weights_fail_the_fingerprint_check(tmp_path: Path, small_model) -> None:
    from safetensors.torch import load_file, save_file

    out = save_checkpoint(small_model, tmp_path / "ckpt")
    state = load_file(str(out / "model.safetensors"))
    state["proj.bias"] = state["proj.bias"] + 1.0
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(out)


def test_wrong_architecture_names_missing_and_unexpected_keys(tmp_path: Path, small_model) -> None:
    out = save_checkpoint(small_model, tmp_path / "ckpt")
    doc = json.loads((out / "config.json").read_text())
    doc["config"]["use_osm"] = False  # the weights contain OSM keys, this config has none
    (out / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unexpected keys .*osm"):
        load_checkpoint(out)


def test_missing_files_and_bad_json(tmp_path: Path, small_model) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    out = save_checkpoint(small_model, tmp_path / "ckpt")
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(out)
    shutil.rmtree(out)
    out = save_checkpoint(small_model, tmp_path / "ckpt2")
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(out)


def test_bundled_default_model_loads() -> None:
    model = load_default_model()
    with torch.no_grad():
        d = model(torch.randn(1, 3, model.config.input_size, model.config.input_size))
    assert d.shape == (1, model.out_dim)


def test_onnx_export_matches_pytorch(tmp_path: Path, small_model) -> None:
    import numpy as np
    import onnxruntime as ort

    from foenet_ros.model.export import export_onnx

    info = export_onnx(small_model, tmp_path / "m.onnx")
    assert info["max_abs_diff"] < 1e-4
    # an independent check at another batch size (dynamic batch axis)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((5, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = small_model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {"image": x})[0]
    assert got.shape == (5, 256)
    assert np.abs(got - ref).max() < 1e-4


def _script(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"console script {name} not installed (run `pip install -e .`)")
    return str(path)


@pytest.mark.parametrize("args", [["--help"], ["export", "--help"], ["bench", "--help"]])
def test_foenet_console_script_help(args: list[str]) -> None:
    res = subprocess.run([_script("foenet"), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "usage: foenet" in res.stdout
    assert "example" in res.stdout


def test_every_registered_command_has_help_with_examples() -> None:
    from foenet_ros.cli import COMMANDS, _available

    names = [n for n in COMMANDS if _available(n)]
    assert {"export", "bench"} <= set(names)
    for name in names:
        res = subprocess.run([_script("foenet"), name, "--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"foenet {name} --help failed: {res.stderr}"
        assert "examples:" in res.stdout, name


def test_export_command_writes_onnx(tmp_path: Path) -> None:
    out = tmp_path / "default.onnx"
    res = subprocess.run([_script("foenet"), "export", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["max_abs_diff"] < 1e-4
    assert out.stat().st_size > 1_000_000


def test_bench_command_reports_measured_rows(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [_script("foenet"), "bench", "--presets", "gem-mnv2", "--runs", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())
    assert rows[0]["preset"] == "gem-mnv2" and rows[0]["params_m"] == pytest.approx(2.22, abs=0.01)
    assert 0.3 < rows[0]["gflops"] < 1.0 and rows[0]["forward_ms_median"] > 0


def test_node_console_script_help() -> None:
    script = Path(sys.executable).with_name("foenet_node")
    if not script.exists():
        pytest.skip("foenet_node console script not installed")
    try:
        import foenet_ros.ros.node  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"node module not importable yet: {exc}")
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
