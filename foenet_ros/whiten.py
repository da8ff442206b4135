"""Learned whitening of FOENet's descriptor, folded into its projection layer.

The descriptor before its L2 normalisation, ``g = W p + b`` (``p``: the overlap-weighted GeM vector,
``W, b``: the projection), is whitened with the statistics of *matching* pairs (Radenovic et al.,
"Fine-tuning CNN image retrieval with no human annotation", TPAMI 2018, "learned whitening"):

* ``mu``: the mean descriptor over all training views;
* ``C_s = E[(g_q - g_r)(g_q - g_r)^T]`` over matching (query, reference) pairs: the directions along
  which two views of the same place differ (appearance, tilt, another year);
* ``P = R (C_s')^(-1/2)`` with ``C_s' = (1 - s) C_s + s tr(C_s)/D I`` (shrinkage ``s``: few pairs,
  256 dimensions) and ``R`` the principal axes of the whitened descriptors, largest variance first.

``P (g - mu)`` scales down what differs between views of one place and so lets the directions that
tell places apart dominate the cosine similarity. Both steps are linear, so they fold exactly into the
projection: ``W' = P W``, ``b' = P (b - mu)``. The result is an ordinary checkpoint (same architecture,
new fingerprint: indexes must be rebuilt), nothing changes at run time. The pairs come from the
training places only (:func:`foenet_ros.train.build_dataset`); no held-out set is seen.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WhitenConfig:
    """What ``foenet whiten`` does.

    Attributes:
        out_dir: the whitened checkpoint is written here.
        init_checkpoint: the model to whiten (None: the bundled default).
        data: ``shared`` (the training places, ``$FOENET_DATA``) or ``synthetic`` (procedural maps: tests).
        data_root: shared data folder (default ``$FOENET_DATA``).
        pairs: (query, reference) pairs to estimate the statistics from.
        shrink: shrinkage ``s`` of the pair covariance towards a multiple of the identity, in [0, 1).
        batch_size, threads, num_workers, seed: as for ``foenet train``.
    """

    out_dir: str
    init_checkpoint: str | None = None
    data: str = "shared"
    data_root: str | None = None
    pairs: int = 2880
    shrink: float = 0.1
    batch_size: int = 32
    threads: int = 2
    num_workers: int = 1
    seed: int = 0

    def validate(self) -> WhitenConfig:
        from .errors import ConfigError

        if not 0.0 <= self.shrink < 1.0:
            raise ConfigError(f"shrink must be in [0, 1), got {self.shrink}")
        if self.pairs < 2 or self.batch_size < 1:
            raise ConfigError("need pairs >= 2 and batch_size >= 1")
        if self.data not in ("shared", "synthetic"):
            raise ConfigError(f"data must be shared or synthetic, got {self.data!r}")
        return self


def fit_whitening(q: torch.Tensor, r: torch.Tensor, shrink: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Learned whitening from matching pairs.

    Args:
        q, r: [N, D] un-normalised descriptors of the two views of N places (row i of each: one place).
        shrink: shrinkage of the pair covariance towards ``tr/D * I``, in [0, 1).
    Returns:
        ``(P [D, D], mu [D])`` float64: whitened descriptor = ``P (g - mu)``.
    """
    if q.shape != r.shape or q.ndim != 2 or len(q) < 2:
        raise ValueError(f"need two [N, D] arrays of matching pairs with N >= 2, got {tuple(q.shape)} and {tuple(r.shape)}")
    q, r = q.double(), r.double()
    x = torch.cat([q, r])
    mu = x.mean(0)
    d = q - r
    cs = d.T @ d / len(d)
    dim = cs.shape[0]
    cs = (1.0 - shrink) * cs + shrink * torch.eye(dim, dtype=cs.dtype) * cs.diagonal().mean()
    e, v = torch.linalg.eigh(cs)
    p1 = v @ torch.diag(e.clamp_min(1e-12 * float(e.max())) ** -0.5) @ v.T
    y = (x - mu) @ p1.T
    e2, v2 = torch.linalg.eigh(y.T @ y / len(y))
    rot = v2[:, torch.argsort(e2, descending=True)].T  # principal axes first (a rotation: cosines unchanged)
    return rot @ p1, mu


def fold_whitening(model, p: torch.Tensor, mu: torch.Tensor):
    """A copy of ``model`` whose projection includes the whitening: ``W' = P W``, ``b' = P (b - mu)``."""
    from .errors import ModelError

    if getattr(model, "proj", None) is None:
        raise ModelError("whitening folds into the projection layer; this model has none (config.dim = 0)")
    out = copy.deepcopy(model)
    w, b = out.proj.weight.data.double(), out.proj.bias.data.double()
    out.proj.weight.data = (p @ w).to(out.proj.weight.dtype)
    out.proj.bias.data = (p @ (b - mu)).to(out.proj.bias.dtype)
    return out


@torch.no_grad()
def collect_pairs(model, cfg: WhitenConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-normalised descriptors ``(q [N, D], r [N, D])`` of ``cfg.pairs`` training pairs."""
    from tqdm import tqdm

    from .data.common import PairCollator
    from .train import build_dataset, train_preset

    preset = "tiny" if cfg.data == "synthetic" else "shared-cpu"
    tcfg = train_preset(preset, data=cfg.data, data_root=cfg.data_root, samples_per_epoch=cfg.pairs,
                        batch_size=min(cfg.batch_size, cfg.pairs), place_batches=False, seed=cfg.seed)
    size = model.config.input_size
    ds = build_dataset(tcfg, size)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                         collate_fn=PairCollator(size, model.config.mean, model.config.std))
    model.eval()
    qs, rs = [], []
    for batch in tqdm(loader, desc="whiten: encode pairs", unit="batch"):
        qs.append(model.raw_descriptor(batch["query"], "drone"))
        rs.append(model.raw_descriptor(batch["ref"], "satellite"))
    return torch.cat(qs), torch.cat(rs)


def whiten(cfg: WhitenConfig) -> Path:
    """Estimate the whitening on training pairs, fold it into the model, save ``cfg.out_dir``."""
    from .model import load_checkpoint, load_default_model, save_checkpoint

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    model = load_checkpoint(cfg.init_checkpoint) if cfg.init_checkpoint else load_default_model()
    t0 = time.perf_counter()
    q, r = collect_pairs(model, cfg)
    p, mu = fit_whitening(q, r, cfg.shrink)
    out = fold_whitening(model, p, mu)
    info: dict[str, Any] = {"whitening": {**asdict(cfg), "from_fingerprint": model.fingerprint(), "pairs_used": len(q),
                                          "seconds": round(time.perf_counter() - t0, 1)}}
    prev = _train_info(cfg.init_checkpoint)
    cmd = (f"foenet whiten --init {cfg.init_checkpoint or '<bundled default>'} --data {cfg.data} --pairs {cfg.pairs} "
           f"--shrink {cfg.shrink} --seed {cfg.seed} --out {cfg.out_dir}")
    info = {**prev, **info, "commands": [*prev.get("commands", []), cmd]}
    path = save_checkpoint(out, cfg.out_dir, extra=info)
    log.info("whitened %s -> %s (%s) from %d pairs", model.fingerprint(), out.fingerprint(), path, len(q))
    return path


def _train_info(checkpoint: str | None) -> dict[str, Any]:
    """The ``train`` record of the source checkpoint (kept: it says how the weights were trained)."""
    from .model.checkpoint import default_model_dir, read_checkpoint_config

    try:
        return dict(read_checkpoint_config(checkpoint or default_model_dir()).get("train") or {})
    except Exception:  # an unreadable record is not a reason to fail: the weights were loaded
        return {}


__all__ = ["WhitenConfig", "collect_pairs", "fit_whitening", "fold_whitening", "whiten"]
