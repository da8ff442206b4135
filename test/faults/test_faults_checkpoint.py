"""Issue 11, hole 1 (model side): a malformed checkpoint config.json ends in one CheckpointError line,
never a TypeError / AttributeError / KeyError traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from foenet_ros.errors import CheckpointError
from foenet_ros.model import load_checkpoint, read_checkpoint_config
from foenet_ros.model.checkpoint import default_model_dir

from .faultlib import DELETE, set_path


@pytest.fixture()
def ckpt(tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(default_model_dir(), dst)
    return dst


def _doc(ckpt):
    return json.loads((ckpt / "config.json").read_text())


CASES = [
    ("whole file a list", lambda d: [], "must hold a JSON object, got list"),
    ("whole file a number", lambda d: 3, "must hold a JSON object, got int"),
    ("format missing", set_path(["format"], DELETE), "unsupported checkpoint format None"),
    ("version as string", set_path(["format_version"], "1"), "unsupported checkpoint format"),
    ("version as bool", set_path(["format_version"], True), "unsupported checkpoint format"),
    ("config missing", set_path(["config"], DELETE), "missing the model 'config' section"),
    ("config a list", set_path(["config"], [1, 2]), "config must be an object, got list"),
    ("input size a string", set_path(["config", "input_size"], "160"), "config.input_size must be an integer"),
    ("input size huge", set_path(["config", "input_size"], 10**9), r"config.input_size must be in \[32, 4096\]"),
    ("dim negative", set_path(["config", "dim"], -1), r"config.dim must be in"),
    ("dim a float", set_path(["config", "dim"], 256.0), "config.dim must be an integer"),
    ("use_osm as int", set_path(["config", "use_osm"], 1), "config.use_osm must be true or false"),
    ("backbone null", set_path(["config", "backbone"], None), "config.backbone must be a non-empty string"),
    ("gem_p NaN", set_path(["config", "gem_p"], float("nan")), "config.gem_p must be a finite number"),
    ("mean short", set_path(["config", "mean"], [0.5]), "config.mean must be a list of 3 finite numbers"),
    ("std zero", set_path(["config", "std"], [0.0, 0.2, 0.2]), r"config.std must be in"),
    ("unknown field", set_path(["config", "layers"], 3), "unknown field 'layers'"),
    ("groups do not divide", set_path(["config", "osm_groups"], 7), "invalid model config: osm_channels"),
    ("unknown backbone", set_path(["config", "backbone"], "no_such_net_xyz"), "cannot be built: unknown backbone"),
    ("fingerprint a list", set_path(["fingerprint"], []), "fingerprint must be a non-empty string"),
    ("train a string", set_path(["train"], "yes"), "train must be an object"),
    ("descriptor_dim zero", set_path(["descriptor_dim"], 0), "descriptor_dim must be a positive integer"),
]


@pytest.mark.parametrize("what,edit,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_config_json(ckpt, what, edit, expected):
    (ckpt / "config.json").write_text(json.dumps(edit(_doc(ckpt))))
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(ckpt)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("raw,expected", [
    (b"", "is not valid JSON"),
    (b"\xff\xfe\x00", "is not valid JSON"),
    (b"[" * 100000, "is not valid JSON"),
    (b"{\"format\": ", "is not valid JSON"),
])
def test_unreadable_config_json(ckpt, raw, expected):
    (ckpt / "config.json").write_bytes(raw)
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint_config(ckpt)


def test_config_json_that_is_a_directory(ckpt):
    (ckpt / "config.json").unlink()
    (ckpt / "config.json").mkdir()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(ckpt)


def test_every_field_mutated_never_gives_a_traceback(ckpt):
    """Every key of config.json (and of its config section) replaced by each bad value: a model or a
    CheckpointError, nothing else."""
    doc = _doc(ckpt)
    bad_values = [None, "", "x", [], {}, -1, 0, 1e308, True, [1, 2, 3]]
    paths = [[k] for k in doc] + [["config", k] for k in doc["config"]]
    outcomes = {"ok": 0, "refused": 0}
    for path in paths:
        for value in bad_values:
            mutated = set_path(path, value)(json.loads(json.dumps(doc)))
            (ckpt / "config.json").write_text(json.dumps(mutated))
            try:
                read_checkpoint_config(ckpt)
                load_checkpoint(ckpt)  # the rest of the load (model build, weights, fingerprint)
                outcomes["ok"] += 1
            except CheckpointError as exc:
                assert "\n" not in str(exc)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 5 * len(paths)
