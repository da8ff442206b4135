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
from ..errors import CheckpointError
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
    """Parse and check a checkpoint's config.json (CheckpointError with the reason on problems)."""
    ckpt = _resolve(path)
    cfg_path = ckpt / CONFIG
    try:
        doc = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{cfg_path} is missing: a checkpoint is a directory with {WEIGHTS} and {CONFIG}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc}); the file is corrupt or truncated") from None
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: unsupported checkpoint format {doc.get('format')!r} v{doc.get('format_version')}; "
            f"this foenet_ros reads {FORMAT} v{FORMAT_VERSION}"
        )
    return doc


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
    except Exception as exc:
        raise CheckpointError(f"{ckpt / CONFIG}: invalid model config: {exc}") from exc
    weights = ckpt / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} cannot be read ({exc}); the file is corrupt or truncated") from None
    model = FOENet(config, pretrained=False)
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
