"""How the node gets its Localizer with the least memory: FOENet on ONNX Runtime (no timm, no torch model).

Measured on the 2-core CI machine (docs/ros.md, Memory): ``import torch`` alone costs ~580 MiB of
RSS with the pinned torch 2.14.1 wheel (a CUDA build, whose libraries are mapped even on a CPU),
timm and the model another ~200 MiB; ONNX Runtime costs ~20 MiB. The tile index never imports
torch; since the fine stage the Localizer's dense overlap estimation does (its FFTs and warps), so
what ONNX Runtime saves now is timm and the model, not torch itself (docs/ros.md, Memory). The
Localizer only calls ``encoder.encode(images, branch="drone")``, so the node can hand it
:class:`OnnxEncoder` instead of :class:`foenet_ros.model.Encoder`.

The ONNX file is exported once per model (``foenet export``, checked against PyTorch to 1e-4,
in a *child* process so this process never imports torch) into the user cache, keyed by the
model fingerprint the index was built with: ``<cache>/onnx/<fingerprint>-drone.onnx`` plus a
``.json`` with the model's input size and normalisation. Node parameter ``inference``: ``auto``
(ONNX when onnxruntime imports and a dry run of the Localizer with it succeeds, else PyTorch),
``onnx``, ``torch``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from foenet_ros.errors import FoenetError, IndexMismatchError
from foenet_ros.utils import atomic_path, cache_dir

log = logging.getLogger(__name__)
BRANCH = "drone"


class OnnxEncoder:
    """The :class:`foenet_ros.model.Encoder` interface the Localizer uses, on ONNX Runtime (CPU).

    Attributes: ``fingerprint``, ``input_size``, ``dim``, ``device`` ("cpu (onnxruntime)"), ``config``
    (input size, mean, std), ``path`` (the .onnx file).
    """

    def __init__(self, onnx_path: str | Path, meta: dict[str, Any], threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        # one frame at a time: no memory arena growth across batch sizes
        opts.enable_cpu_mem_arena = False
        self.path = Path(onnx_path)
        self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.fingerprint = str(meta["fingerprint"])
        self.input_size = int(meta["input_size"])
        self.dim = int(meta["dim"])
        self._mean = np.asarray(meta["mean"], np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(meta["std"], np.float32).reshape(1, 3, 1, 1)
        self.config = type("OnnxModelConfig", (), {"input_size": self.input_size, "mean": tuple(meta["mean"]),
                                                   "std": tuple(meta["std"])})()  # fmt: skip
        self.device = "cpu (onnxruntime)"
        self.batch_size = 8

    def _batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N,3,S,S] float32, exactly as ``model.encode.preprocess`` (area resize when shrinking)."""
        import cv2

        s = self.input_size
        batch = np.empty((len(images), s, s, 3), dtype=np.uint8)
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.ndim not in (2, 3):
                raise FoenetError(f"the encoder takes uint8 [H,W,3] RGB images, got {img.dtype} {img.shape}")
            if img.ndim == 2 or img.shape[2] == 1:
                img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
            img = img[..., :3]
            interp = cv2.INTER_AREA if min(img.shape[:2]) > s else cv2.INTER_LINEAR
            batch[i] = cv2.resize(img, (s, s), interpolation=interp)
        x = batch.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return (x - self._mean) / self._std

    def encode(self, images: Sequence[np.ndarray], branch: str = BRANCH) -> np.ndarray:
        """images: list of [H,W,3]/[H,W] uint8 RGB -> descriptors float32 [N,D] (L2-normalised)."""
        if branch != BRANCH:
            raise FoenetError(f"the ONNX encoder holds the {BRANCH!r} branch only, not {branch!r}")
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            out[start : start + len(chunk)] = self._session.run(["descriptor"], {"image": self._batch(chunk)})[0]
        return out


def index_fingerprint(index_dir: Path) -> str:
    """The model fingerprint an index was built with (its manifest; no index loaded)."""
    from foenet_ros.index.manifest import read_manifest

    manifest = read_manifest(Path(index_dir))
    try:
        return str(manifest["model"]["fingerprint"])
    except (KeyError, TypeError) as exc:
        raise FoenetError(f"index {index_dir}: manifest has no model fingerprint") from exc


def cached_onnx(fingerprint: str, model_path: str | None, timeout_s: float = 600.0) -> tuple[Path, dict[str, Any]]:
    """``(onnx path, meta)`` of the model with ``fingerprint``, exporting it once (child process).

    Raises:
        IndexMismatchError: the model (``model_path`` or the bundled default) is not the one with
            ``fingerprint`` (checked from its config.json before any export).
        FoenetError: the export failed (its last line of output as the reason).
    """
    root = cache_dir() / "onnx"
    onnx, meta_path = root / f"{fingerprint}-{BRANCH}.onnx", root / f"{fingerprint}-{BRANCH}.json"
    if onnx.is_file() and meta_path.is_file():
        return onnx, json.loads(meta_path.read_text())
    model = model_config(model_path)
    if model.get("fingerprint") != fingerprint:
        raise IndexMismatchError(
            f"the index was built with model {fingerprint}, the model in use ({model.get('path')}) is "
            f"{model.get('fingerprint')}: set model_path to the index's model, or rebuild the index"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{fingerprint}-{BRANCH}.{os.getpid()}.onnx"
    cmd = [sys.executable, "-m", "foenet_ros.cli", "export", "--out", str(tmp), "--branch", BRANCH,
           "--checkpoint", str(model["path"])]
    log.info("exporting the model to ONNX once (fingerprint %s): %s", fingerprint, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
            raise FoenetError(f"ONNX export failed: {last}")
        info = json.loads(proc.stdout[proc.stdout.index("{"):])
        if info["fingerprint"] != fingerprint:
            raise IndexMismatchError(f"the exported model is {info['fingerprint']}, the index needs {fingerprint}")
        cfg = model.get("config") or {}
        meta = {"fingerprint": fingerprint, "input_size": info["input_size"], "dim": info["dim"],
                "mean": cfg.get("mean", [0.485, 0.456, 0.406]), "std": cfg.get("std", [0.229, 0.224, 0.225]),
                "max_abs_diff_vs_torch": info.get("max_abs_diff")}  # fmt: skip
        tmp.replace(onnx)
        with atomic_path(meta_path, suffix=".json") as t:
            t.write_text(json.dumps(meta, indent=2) + "\n")
        return onnx, meta
    finally:
        tmp.unlink(missing_ok=True)


@lru_cache(maxsize=1)
def _default_model_dir() -> str:
    # model.checkpoint imports torch: ask a child process, once, so this one never does
    proc = subprocess.run([sys.executable, "-c", "from foenet_ros.model.checkpoint import default_model_dir; "
                           "print(default_model_dir())"], capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise FoenetError("cannot locate the default model (set model_path)")
    return lines[-1]


def model_config(model_path: str | None) -> dict[str, Any]:
    """A checkpoint's config.json (fingerprint, model config) read as JSON, plus its ``path`` (no torch)."""
    path = Path(model_path) if model_path else Path(_default_model_dir())
    folder = path if path.is_dir() else path.parent
    try:
        doc = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise FoenetError(f"cannot read the model config {folder / 'config.json'}: {exc}") from exc
    if not isinstance(doc, dict):
        raise FoenetError(f"model config {folder / 'config.json'} is not a JSON object")
    return dict(doc, path=str(folder))


def set_cpu_threads(n: int) -> None:
    """torch's intra-op threads for this process (the dense stage's FFTs, warps and convolutions, and a
    PyTorch encoder); 0 leaves torch's default, one per core.

    Why the node defaults to 1: torch's OpenMP pool spin-waits at every parallel region; with another
    busy process on a 2-core machine (a camera driver) one of its two threads keeps waiting for a core,
    and the dense stage's many small operations each pay that wait (docs/ros.md, Slow frames).

    OpenMP keeps the count per thread (a thread that already ran torch keeps its own): call this in
    the thread that runs the Localizer.
    """
    if n > 0:
        import torch

        torch.set_num_threads(int(n))


def onnx_localizer(index_dir: Path, model_path: str | None, config: Any, threads: int = 0) -> Any:
    """A Localizer over ``index_dir`` whose encoder is :class:`OnnxEncoder` (``threads`` intra-op
    threads, 0 = ONNX Runtime's default), checked by a dry run.

    Raises:
        ImportError: onnxruntime is not installed.
        FoenetError: export, index or dry-run failure (the reason in one line).
    """
    import onnxruntime  # noqa: F401  (ImportError = not available: the caller falls back to torch)

    from foenet_ros.index import TileIndex
    from foenet_ros.localize import Localizer

    fingerprint = index_fingerprint(index_dir)
    onnx, meta = cached_onnx(fingerprint, model_path)
    encoder = OnnxEncoder(onnx, meta, threads)
    index = TileIndex.load(index_dir, expect_fingerprint=encoder.fingerprint)
    loc = Localizer(index, encoder, config)
    _dry_run(loc)
    return loc


def _dry_run(loc: Any) -> None:
    """One localisation of a map crop: proves this Localizer needs nothing but ``encode`` from its encoder."""
    raster = loc.index.map_raster()
    c = np.asarray(loc.index.tiles.centers_xy, float)[0]
    size = float(np.asarray(loc.index.tiles.size_m, float)[0])
    crop, _ = raster.crop(tuple(c), size, 256)
    try:
        loc.localize(np.ascontiguousarray(crop[..., :3]))
    except (AttributeError, TypeError, NotImplementedError) as exc:
        raise FoenetError(f"this Localizer needs more of the model than ONNX provides ({type(exc).__name__}: {exc})") from exc
    finally:
        loc.reset()
