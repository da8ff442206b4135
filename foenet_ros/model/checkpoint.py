"""Checkpoints: a directory with ``model.safetensors`` (weights) and ``config.json``.

Loading never unpickles anything: safetensors + JSON, ``strict=True``, and the stored
fingerprint is re-checked so a silently corrupted file cannot pass for the real model.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError, FoenetError
from ..utils import atomic_path, write_json_atomic
from .config import FOENetConfig
from .foenet import FOENet, fingerprint_state

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT = "foenet-checkpoint"
FORMAT_VERSION = 1

# models/default next to the package (source tree) or share/foenet_ros/models (colcon/pip data files)
_PKG_ROOT = Path(__file__).resolve().parents[2]


def default_model_dir() -> Path:
    """Where the bundled default model lives; ``$FOENET_MODEL`` overrides it."""
    env = os.environ.get("FOENET_MODEL")
    if env:
        return Path(env)
    candidates = [_PKG_ROOT / "models" / "default"]
    try:  # installed with colcon: share/foenet_ros/models/default
        from ament_index_python.packages import get_package_share_directory  # type: ignore

        candidates.append(Path(get_package_share_directory("foenet_ros")) / "models" / "default")
    except Exception:  # ament_index not installed or package not found: source tree only
        pass
    import sys

    candidates.append(Path(sys.prefix) / "share" / "foenet_ros" / "models" / "default")
    for c in candidates:
        if (c / WEIGHTS).is_file():
            return c
    return candidates[0]


def save_checkpoint(model: FOENet, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path/model.safetensors`` + ``path/config.json`` atomically; returns ``path``.

    ``extra`` (e.g. training command, data, metrics) is stored under ``"train"`` in config.json.
    """
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    fp = fingerprint_state(model.config, state)
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "fingerprint": fp}
    with atomic_path(out / WEIGHTS, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": fp,
        "preset": model.config.preset,
        "config": model.config.to_dict(),
        "descriptor_dim": model.out_dim,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "foenet_ros_version": __version__,
        "train": extra or {},
    }
    write_json_atomic(out / CONFIG, doc)
    return out


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and check a checkpoint's config.json (CheckpointError with the reason on problems).

    Every field the loader uses is type- and range-checked (:func:`validate_checkpoint_doc`), so a
    config.json of ``[]``, a wrong type or a missing key ends in one precise line, never a traceback.
    """
    ckpt = _resolve(path)
    cfg_path = ckpt / CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing: a checkpoint is a directory with {WEIGHTS} and {CONFIG}")
    try:
        doc = json.loads(cfg_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{cfg_path} cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{cfg_path} is not valid JSON ({msg}); the file is corrupt or truncated") from None
    validate_checkpoint_doc(doc, str(cfg_path))
    return doc


# config.json "config" fields: (type, low, high) -- bounds keep a corrupt file from allocating absurd layers
_CONFIG_FIELDS: dict[str, tuple[str, float | None, float | None]] = {
    "backbone": ("str", None, None),
    "pretrained": ("bool", None, None),
    "input_size": ("int", 32, 4096),
    "use_osm": ("bool", None, None),
    "osm_channels": ("int", 0, 8192),
    "osm_groups": ("int", 1, 1024),
    "osm_depth": ("int", 1, 16),
    "dim": ("int", 0, 65536),
    "gem_p": ("float", 1.0, 100.0),
    "shared_weights": ("bool", None, None),
    "mean": ("vec3", 0.0, 1.0),
    "std": ("vec3", 1e-6, 10.0),
    "preset": ("str", None, None),
    "overlap_dim": ("int", 0, 256),
    "overlap_hidden": ("int", 1, 1024),
}


def validate_checkpoint_doc(doc: Any, where: str = CONFIG) -> None:
    """Check a parsed config.json: format, version, fingerprint, and every model config field.

    Raises:
        CheckpointError: one line naming the field, what it must be and what it is.
    """
    import math

    def fail(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: {what}; re-save the checkpoint (foenet train / save_checkpoint)")

    if not isinstance(doc, dict):
        raise fail(f"must hold a JSON object, got {type(doc).__name__}")
    version = doc.get("format_version")
    if doc.get("format") != FORMAT or version != FORMAT_VERSION or isinstance(version, bool):
        raise CheckpointError(
            f"{where}: unsupported checkpoint format {doc.get('format')!r} v{version}; "
            f"this foenet_ros reads {FORMAT} v{FORMAT_VERSION}"
        )
    fp = doc.get("fingerprint")
    if fp is not None and not (isinstance(fp, str) and fp):
        raise fail(f"fingerprint must be a non-empty string, got {fp!r:.40}")
    for key, kind in (("preset", str), ("train", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            raise fail(f"{key} must be {'a string' if kind is str else 'an object'}, got {type(doc[key]).__name__}")
    dim = doc.get("descriptor_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        raise fail(f"descriptor_dim must be a positive integer, got {dim!r:.40}")
    config = doc.get("config")
    if config is None:
        raise fail("missing the model 'config' section")
    if not isinstance(config, dict):
        raise fail(f"config must be an object, got {type(config).__name__}")
    for key, value in config.items():
        if key not in _CONFIG_FIELDS:
            raise fail(f"config has an unknown field {key!r} (valid: {sorted(_CONFIG_FIELDS)})")
        kind, lo, hi = _CONFIG_FIELDS[key]
        name = f"config.{key}"
        if kind == "str":
            ok = isinstance(value, str) and bool(value)
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = (isinstance(value, list) and len(value) == 3
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        if not ok:
            want = {"str": "a non-empty string", "bool": "true or false", "int": "an integer",
                    "float": "a finite number", "vec3": "a list of 3 finite numbers"}[kind]
            raise fail(f"{name} must be {want}, got {json.dumps(value)[:40]}")
        values = value if kind == "vec3" else [value] if kind in ("int", "float") else []
        if any((lo is not None and v < lo) or (hi is not None and v > hi) for v in values):
            raise fail(f"{name} must be in [{lo}, {hi}], got {value}")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> FOENet:
    """Load a checkpoint directory (or its model.safetensors) into a FOENet in eval mode.

    Raises CheckpointError naming missing/unexpected keys, shape mismatches, truncation, or a
    fingerprint that does not match the stored one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ckpt = _resolve(path)
    doc = read_checkpoint_config(ckpt)
    try:
        config = FOENetConfig.from_dict(doc["config"])
    except FoenetError as exc:  # ConfigError from the dataclass checks (e.g. channels not divisible by groups)
        raise CheckpointError(f"{ckpt / CONFIG}: invalid model config: {exc}") from exc
    weights = ckpt / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} cannot be read ({exc}); the file is corrupt or truncated") from None
    try:
        model = FOENet(config, pretrained=False)
    except FoenetError as exc:  # ModelError: an unknown backbone, missing offline weights
        raise CheckpointError(f"{ckpt / CONFIG} describes a model that cannot be built: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match the {config.backbone} FOENet described in {CONFIG}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise CheckpointError(f"{weights}: shape mismatch for {bad[:8]}")
    model.load_state_dict(state, strict=True)
    fp = fingerprint_state(config, state)
    if doc.get("fingerprint") and doc["fingerprint"] != fp:
        raise CheckpointError(
            f"{ckpt}: weights fingerprint {fp} differs from the recorded {doc['fingerprint']}: "
            "the weights file was modified or corrupted"
        )
    return model.to(device).eval()


def load_default_model(device: str | torch.device = "cpu") -> FOENet:
    """The bundled default model (``models/default``; ``$FOENET_MODEL`` overrides)."""
    path = default_model_dir()
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(
            f"default model not found at {path}; run `make setup` from the source tree or set $FOENET_MODEL"
        )
    return load_checkpoint(path, device=device)


def _resolve(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file() and p.name.endswith(".safetensors"):
        return p.parent
    if p.is_dir():
        return p
    raise CheckpointError(f"checkpoint {p} does not exist (expected a directory with {WEIGHTS} and {CONFIG})")
