"""Training: ``train(TrainConfig) -> checkpoint path``.

Named recipes (:data:`TRAIN_PRESETS`) plus overrides; AdamW with linear warm-up and cosine decay,
mixed precision on CUDA, gradient clipping, a tqdm bar with loss and images/s, a checkpoint every
epoch (model via :func:`~foenet_ros.model.save_checkpoint`, optimizer state next to it) with
resume, a CSV log (TensorBoard too when it is installed), fixed seeds. Under ``torchrun`` it runs
PyTorch DDP with no change (one process per GPU; rank 0 logs and writes checkpoints).

Data (``TrainConfig.data``):

* ``"shared"``: the shared real imagery, split by place (see :mod:`foenet_ros.data.shared`);
* ``"university1652"``: the University-1652 folder format at ``data_root``;
* ``"synthetic"``: procedural georeferenced towns (:func:`foenet_ros.geo.synthetic_map`), for smoke
  tests and demos without any download.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import (
    ChipPairDataset,
    GroundUnit,
    MixedPairDataset,
    PairCollator,
    Place,
    RasterPairDataset,
    University1652Train,
    ViewConfig,
    negative_mask,
)
from .errors import CheckpointError, ConfigError
from .model import FOENet, create_model, info_nce_loss, load_checkpoint, save_checkpoint, triplet_loss
from .utils import (
    atomic_path,
    atomic_replace_dir,
    first_line,
    make_tmp_dir,
    recover_dir,
    resolve_device,
    write_json_atomic,
)

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
LOG_FILE = "log.csv"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs (the CLI builds one from a preset plus flags).

    Attributes:
        model: model preset (``foenet-mnv2``, ``foenet-mnv2-noosm``...).
        model_overrides: FOENetConfig fields to change, e.g. ``{"input_size": 160}``.
        data: ``shared`` | ``university1652`` | ``synthetic``.
        data_root: dataset folder (default for ``shared``: ``$FOENET_DATA``).
        out_dir: run folder (checkpoints, log.csv, summary.json).
        epochs, samples_per_epoch: pairs seen per epoch (``shared``/``synthetic``; a University-1652
            epoch is every drone image once).
        batch_size: pairs per step and per process (2x images).
        lr, backbone_lr_mult, weight_decay: AdamW; the backbone learns at ``lr * backbone_lr_mult``.
        warmup_steps, min_lr_ratio: linear warm-up, then cosine decay to ``lr * min_lr_ratio``.
        grad_clip: max global gradient norm (0 = off).
        amp: bf16/fp16 autocast on CUDA (ignored on CPU).
        freeze_blocks: leading backbone blocks kept frozen (ImageNet low-level filters; saves time).
        loss: ``triplet`` (batch-hard soft-margin, the paper's) or ``infonce``.
        distill_weight: weight of a relational distillation term (0 = off): the student's cosine
            similarities among the batch's images are pulled towards those of the untrained
            ImageNet backbone + GeM (frozen teacher), so training for appearance change does not
            forget what ImageNet features already separate well (same-source detail).
        heading_range_deg, max_pitch_deg: rendered drone views' heading interval and tilt.
        place_batches: every batch of rendered pairs comes from one place (hard negatives: other
            ground of the same map); off = each pair from a random place.
        neighbours: with place batches, groups of this many pairs centred 0.5-1 tile apart
            (hard negatives for fine localisation); 1 = independent positions.
        neg_radius_frac: same-place tiles closer than this fraction of the tile size are not
            negatives (0.5 = the evaluation's "true match within half a tile").
        num_workers: DataLoader worker processes.
        seed: seeds python, numpy, torch and the data.
        resume: continue from ``out_dir``'s last epoch checkpoint when there is one.
        init_checkpoint: start from these weights instead of the preset's init.
        max_steps: stop after this many optimizer steps in total (smoke tests); 0 = no limit.
        device: ``auto`` | ``cpu`` | ``cuda[:N]``.
        threads: torch CPU threads (0 = torch default).
        command: the command line that started the run (recorded in checkpoints).
    """

    model: str = "foenet-mnv2"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "shared"
    data_root: str | None = None
    out_dir: str = "runs/foenet"
    epochs: int = 6
    samples_per_epoch: int = 4000
    batch_size: int = 32
    lr: float = 3e-4
    backbone_lr_mult: float = 0.3
    weight_decay: float = 0.05
    warmup_steps: int = 60
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    amp: bool = True
    freeze_blocks: int = 7
    loss: str = "triplet"
    distill_weight: float = 0.0
    heading_range_deg: float = 360.0
    max_pitch_deg: float = 25.0
    place_batches: bool = True
    neighbours: int = 1
    neg_radius_frac: float = 1.0
    num_workers: int = 2
    seed: int = 0
    resume: bool = True
    init_checkpoint: str | None = None
    max_steps: int = 0
    device: str = "auto"
    threads: int = 0
    command: str = ""

    def replace(self, **overrides: Any) -> "TrainConfig":
        """A copy with ``overrides`` (ConfigError naming the valid keys on unknown ones; None = keep)."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; valid: {sorted(valid)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> "TrainConfig":
        if self.data not in ("shared", "university1652", "synthetic"):
            raise ConfigError(f"data must be shared, university1652 or synthetic, got {self.data!r}")
        if self.data == "university1652" and not self.data_root:
            raise ConfigError("data=university1652 needs data_root (the folder with train/drone, train/satellite)")
        if self.loss not in ("triplet", "infonce"):
            raise ConfigError(f"loss must be triplet or infonce, got {self.loss!r}")
        if not (self.distill_weight >= 0):
            raise ConfigError(f"distill_weight must be >= 0, got {self.distill_weight}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (the other pairs of the batch are the negatives)")
        if self.epochs < 1 or self.samples_per_epoch < self.batch_size:
            raise ConfigError("need epochs >= 1 and samples_per_epoch >= batch_size")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.grad_clip >= 0):
            raise ConfigError("need lr > 0, 0 <= min_lr_ratio <= 1, grad_clip >= 0")
        return self


#: Named training recipes. CLI flags override them, they do not restate them.
TRAIN_PRESETS: dict[str, TrainConfig] = {
    # The default model's recipe: CPU-sized (input 160, early backbone frozen), shared real data.
    # Heading +-30 deg: the Localizer turns frames heading-up with the compass before encoding,
    # so a short CPU run spends no capacity on full rotation invariance.
    "shared-cpu": TrainConfig(
        model_overrides={"input_size": 160}, epochs=8, samples_per_epoch=2880, batch_size=32,
        lr=4e-4, warmup_steps=40, freeze_blocks=7, heading_range_deg=60.0, num_workers=1, threads=1,
    ),
    # The same data on a GPU: full resolution, whole backbone trained, any heading.
    "shared-gpu": TrainConfig(
        epochs=30, samples_per_epoch=20000, batch_size=64, lr=3e-4, warmup_steps=300, freeze_blocks=0,
        heading_range_deg=360.0, num_workers=8,
    ),
    # University-1652 (set data_root): drone -> satellite pairs, any heading for the satellite view.
    "university1652": TrainConfig(
        data="university1652", epochs=20, samples_per_epoch=40000, batch_size=32, lr=3e-4,
        warmup_steps=500, freeze_blocks=0, num_workers=8,
    ),
    # Seconds-long smoke run on procedural maps (tests, CI).
    "tiny": TrainConfig(
        data="synthetic", model_overrides={"input_size": 64}, epochs=1, samples_per_epoch=16, batch_size=8,
        lr=1e-3, warmup_steps=0, freeze_blocks=0, num_workers=0, heading_range_deg=30.0,
    ),
}
DEFAULT_TRAIN_PRESET = "shared-cpu"


def train_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named recipe with overrides (ConfigError on unknown names/keys)."""
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; valid: {sorted(TRAIN_PRESETS)}")
    base = TRAIN_PRESETS[name]
    mo = dict(base.model_overrides)
    mo.update(overrides.pop("model_overrides", None) or {})
    return base.replace(model_overrides=mo, **overrides).validate()


# ------------------------------------------------------------------------------------ data
def build_dataset(cfg: TrainConfig, input_size: int) -> torch.utils.data.Dataset:
    """The training pairs of ``cfg.data`` at ``input_size`` pixels."""
    view = ViewConfig(image_size=input_size, heading_range_deg=cfg.heading_range_deg, max_pitch_deg=cfg.max_pitch_deg,
                      neg_radius_frac=cfg.neg_radius_frac)
    if cfg.data == "university1652":
        ds = University1652Train(cfg.data_root, image_size=input_size, seed=cfg.seed)
        return ds
    if cfg.data == "synthetic":
        from .geo import synthetic_map

        maps = [synthetic_map((300.0, 240.0), gsd_m=0.5, seed=s) for s in (1, 2)]
        places = [Place(m.name, [GroundUnit([m], name=m.name)], (50.0, 80.0)) for m in maps]
        return RasterPairDataset(places, cfg.samples_per_epoch, view, seed=cfg.seed,
                                 place_block=cfg.batch_size if cfg.place_batches else 1, neighbours=cfg.neighbours)
    from .data import shared

    root = shared.require_data_root(cfg.data_root)
    places = shared.training_places(root)
    for p in places:  # NAIP is one place of 8 dates; give it a fair share next to 4 OAM places
        p.weight = 1.5 if p.name == "naip_nd" else (0.5 if p.name.startswith("neon") else 1.0)
    block = cfg.batch_size if cfg.place_batches else 1
    n_raster = int(round(cfg.samples_per_epoch * 0.7 / block)) * block
    rasters = RasterPairDataset(places, n_raster, view, seed=cfg.seed, place_block=block, neighbours=cfg.neighbours)
    chips = ChipPairDataset(
        shared.ucmerced_paths(root), cfg.samples_per_epoch - n_raster, view, seed=cfg.seed + 1,
        group_offset=len(places),
    )
    return MixedPairDataset([rasters, chips], seed=cfg.seed, block=block)


# ------------------------------------------------------------------------------------ model bits
class PairModel(nn.Module):
    """Encodes a (drone, satellite) batch in one forward, so DDP sees one call per step.

    With shared weights both views go through the network together (one BatchNorm statistic).
    """

    def __init__(self, net: FOENet) -> None:
        super().__init__()
        self.net = net

    def forward(self, q: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net.config.shared_weights:
            out = self.net(torch.cat([q, r]))
            return out[: len(q)], out[len(q) :]
        return self.net(q, branch="drone"), self.net(r, branch="satellite")


def relational_distillation(d: torch.Tensor, s: torch.Tensor, teacher: nn.Module, q: torch.Tensor,
                            r: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the batch's cosine-similarity matrix (queries and references, 2B x 2B,
    diagonal excluded) between the student's descriptors (d [B,D], s [B,D]) and the frozen teacher's."""
    with torch.no_grad():
        t = teacher(torch.cat([q, r]))
    x = torch.cat([d, s])
    n = len(x)
    off = ~torch.eye(n, dtype=torch.bool, device=x.device)
    return ((x @ x.T - t @ t.T)[off] ** 2).mean()


def frozen_modules(net: FOENet, n_blocks: int) -> list[nn.Module]:
    """The first ``n_blocks`` blocks of the backbone(s) (torchvision ``features`` or timm stem+blocks)."""
    if n_blocks <= 0:
        return []
    out: list[nn.Module] = []
    for bb in (net.backbone, net.backbone_satellite):
        if bb is None:
            continue
        if hasattr(bb, "features"):
            out.extend(list(bb.features.children())[:n_blocks])
        elif hasattr(bb, "model"):
            m = bb.model
            stem = [x for x in (getattr(m, "conv_stem", None), getattr(m, "bn1", None), getattr(m, "stem", None)) if x is not None]
            blocks = list(getattr(m, "blocks", getattr(m, "stages", [])))
            out.extend((stem + blocks)[:n_blocks])
    return out


def _param_groups(net: FOENet, cfg: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        is_bb = name.startswith("backbone")
        no_decay = p.ndim <= 1  # biases, norms, GeM p: no weight decay
        groups.setdefault((is_bb, no_decay), []).append(p)
    return [
        {"params": ps, "lr": cfg.lr * (cfg.backbone_lr_mult if bb else 1.0),
         "weight_decay": 0.0 if nd else cfg.weight_decay, "name": f"{'backbone' if bb else 'head'}{'-nodecay' if nd else ''}"}
        for (bb, nd), ps in sorted(groups.items())
    ]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: start the process group (nccl on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------ train
def train(config: TrainConfig) -> Path:
    """Run a training; returns the final checkpoint directory (``<out_dir>/final``).

    Resumable: rerunning with the same ``out_dir`` continues after the last finished epoch.
    """
    cfg = config.validate()
    dist = _init_distributed(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    _seed_everything(cfg.seed + dist.rank)
    out = Path(cfg.out_dir)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    net = create_model(cfg.model, **cfg.model_overrides)
    if cfg.init_checkpoint:
        src = load_checkpoint(cfg.init_checkpoint)
        if src.config.replace(preset="x", pretrained=False) != net.config.replace(preset="x", pretrained=False):
            raise CheckpointError(f"init checkpoint {cfg.init_checkpoint} has another architecture than {cfg.model}")
        net.load_state_dict(src.state_dict(), strict=True)
    frozen = frozen_modules(net, cfg.freeze_blocks)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    input_size = net.config.input_size

    dataset = build_dataset(cfg, input_size)
    steps_per_epoch = len(dataset) // (cfg.batch_size * dist.world)
    if steps_per_epoch < 1:
        raise ConfigError(f"dataset of {len(dataset)} pairs is smaller than one batch of {cfg.batch_size} x {dist.world} processes")
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)

    net.to(device)
    model: nn.Module = PairModel(net)
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    opt = torch.optim.AdamW(_param_groups(net, cfg), lr=cfg.lr)
    base_lrs = [g["lr"] for g in opt.param_groups]
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, step = 0, 0
    state_path = out / STATE_FILE
    resumed_from: Path | None = None
    if cfg.resume and (state_path.is_file() or _epoch_dirs(out)):
        resumed_from, start_epoch, step = _resume(out, net, opt, scaler)
        if resumed_from is not None and dist.main:
            print(f"resuming from {resumed_from} (epoch {start_epoch} of {cfg.epochs})")

    teacher = None
    if cfg.distill_weight > 0:
        teacher = create_model("gem-mnv2", input_size=input_size).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    collate = PairCollator(input_size, net.config.mean, net.config.std)
    csv_path = out / LOG_FILE
    tb = _tensorboard(out) if dist.main else None
    record = {
        "config": {**dataclasses.asdict(cfg)},
        "model_config": net.config.to_dict(),
        "dataset": _describe(dataset),
        "frozen_blocks": cfg.freeze_blocks,
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "world_size": dist.world,
        "device": str(device),
    }
    if dist.main:
        write_json_atomic(out / "run.json", record)
    last_ckpt: Path | None = None
    t_run = time.time()
    images_seen, train_time = 0, 0.0
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps and step >= cfg.max_steps:
            break
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        indices = list(range(dist.rank, len(dataset), dist.world))  # each rank its own share
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices), batch_size=cfg.batch_size, shuffle=False,
            num_workers=cfg.num_workers, collate_fn=collate, drop_last=True,
            pin_memory=device.type == "cuda", persistent_workers=False,
        )
        model.train()
        for m in frozen:  # frozen blocks keep their ImageNet BatchNorm statistics
            m.eval()
        bar = _progress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}", dist.main)
        losses: list[float] = []
        t_last = time.time()
        for batch in loader:
            if cfg.max_steps and step >= cfg.max_steps:
                break
            f = lr_factor(step, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * f
            q = batch["query"].to(device, non_blocking=True)
            r = batch["ref"].to(device, non_blocking=True)
            valid = negative_mask(batch["group"], batch["xy"], batch["radius"]).to(device)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                d, s = model(q, r)
            d, s = d.float(), s.float()
            loss = triplet_loss(d, s, valid) if cfg.loss == "triplet" else info_nce_loss(d, s, valid_neg=valid)
            if teacher is not None:
                loss = loss + cfg.distill_weight * relational_distillation(d, s, teacher, q, r)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr (now {cfg.lr})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                gnorm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip))
            else:
                gnorm = float("nan")
            scaler.step(opt)
            scaler.update()
            now = time.time()
            dt = now - t_last
            t_last = now
            n_img = 2 * len(q) * dist.world
            if step > 0 or len(loader) == 1:  # the first step pays for worker start-up
                images_seen += n_img
                train_time += dt
            step += 1
            losses.append(float(loss.detach()))
            ips = n_img / max(dt, 1e-9)
            if dist.main:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", img_s=f"{ips:.1f}", lr=f"{cfg.lr * f:.2e}")
                bar.update(1)
                _append_csv(csv_path, {
                    "step": step, "epoch": epoch + 1, "loss": f"{losses[-1]:.5f}", "lr": f"{cfg.lr * f:.3e}",
                    "grad_norm": f"{gnorm:.4f}", "img_per_s": f"{ips:.2f}", "elapsed_s": f"{now - t_run:.1f}",
                })
                if tb is not None:
                    tb.add_scalar("loss", losses[-1], step)
                    tb.add_scalar("lr", cfg.lr * f, step)
                    tb.add_scalar("img_per_s", ips, step)
        bar.close()
        if dist.main and losses:
            last_ckpt = _save_epoch(out, net, opt, scaler, cfg, epoch, step, float(np.mean(losses)), record)
            log.info("epoch %d: mean loss %.4f -> %s", epoch + 1, np.mean(losses), last_ckpt)
    throughput = images_seen / train_time if train_time > 0 else float("nan")
    final = out / "final"
    if dist.main:
        if last_ckpt is None:
            if resumed_from is None:
                raise ConfigError("training ran no step (max_steps=0 reached or empty loader)")
            last_ckpt = resumed_from
        recover_dir(final)
        tmp = make_tmp_dir(final)
        try:
            shutil.copytree(last_ckpt, tmp, dirs_exist_ok=True)
            atomic_replace_dir(tmp, final)  # a crash never leaves the run without a final/
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        write_json_atomic(out / "summary.json", {
            **record, "steps": step, "epochs_done": epoch + 1, "final_checkpoint": str(final),
            "train_images_per_s": throughput, "wall_s": time.time() - t_run,
        })
        if tb is not None:
            tb.close()
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()
    return final


def _epoch_dirs(out: Path) -> list[Path]:
    """``epoch_NNN`` checkpoint directories of a run, newest first."""
    dirs = [p for p in out.glob("epoch_*") if p.is_dir() and p.name[6:].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name[6:]), reverse=True)


def _resume(out: Path, net: FOENet, opt, scaler) -> tuple[Path | None, int, int]:
    """Restore model (+ optimizer and scaler when their state is intact); return ``(checkpoint, start_epoch, step)``.

    ``train_state.pt`` normally names the last checkpoint and holds the optimizer state. When it is
    truncated or corrupt, or names a checkpoint that no longer loads, training falls back to the
    newest intact ``epoch_NNN`` checkpoint with a WARNING (fresh optimizer moments, the schedule
    continues from that epoch) instead of ending in a traceback. No intact checkpoint: start over.
    """
    state, why = None, ""
    state_path = out / STATE_FILE
    if state_path.is_file():
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not {"epoch", "step", "checkpoint", "optimizer", "scaler"} <= set(state):
                raise ValueError("missing keys")
        except Exception as exc:  # truncated zip, unpickling refused by weights_only, wrong content
            state, why = None, f"{STATE_FILE} is unreadable ({first_line(exc)[:120]})"
    candidates = _epoch_dirs(out)
    if state is not None:
        named = out / str(state["checkpoint"])
        candidates = [named] + [c for c in candidates if c != named]
    for ckpt in candidates:
        try:
            resumed = load_checkpoint(ckpt)
            net.load_state_dict(resumed.state_dict(), strict=True)
        except (CheckpointError, RuntimeError) as exc:
            why = why or f"checkpoint {ckpt.name} does not load ({exc})"
            log.warning("skipping checkpoint %s: %s", ckpt, exc)
            continue
        if state is not None and ckpt == out / str(state["checkpoint"]):
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        else:
            train_info = json.loads((ckpt / "config.json").read_text()).get("train") or {}
            start_epoch = int(train_info.get("epoch", int(ckpt.name[6:])))
            step = int(train_info.get("step", 0))
            log.warning("%s: resuming from the newest intact checkpoint %s (epoch %d, step %d) with a fresh optimizer "
                        "state", why or "no training state", ckpt, start_epoch, step)
        log.info("resuming %s after epoch %d (step %d)", out, start_epoch - 1, step)
        return ckpt, start_epoch, step
    log.warning("%s and no intact epoch checkpoint in %s: training starts from scratch",
                why or "no training state", out)
    return None, 0, 0


def _save_epoch(out: Path, net: FOENet, opt, scaler, cfg: TrainConfig, epoch: int, step: int, loss: float, record: dict) -> Path:
    name = f"epoch_{epoch + 1:03d}"
    ckpt = save_checkpoint(net, out / name, extra={
        "command": cfg.command, "recipe": dataclasses.asdict(cfg), "epoch": epoch + 1, "step": step,
        "mean_loss": loss, "dataset": record["dataset"],
    })
    with atomic_path(out / STATE_FILE, suffix=".pt") as tmp:
        torch.save({"epoch": epoch, "step": step, "checkpoint": name, "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict()}, tmp)
    return ckpt


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True, mininterval=2.0)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed: the CSV log is the record
        return None
    return SummaryWriter(str(out / "tb"))


def _describe(ds) -> dict:
    from .data.common import describe

    return describe(ds)


def read_log(out_dir: str | Path) -> list[dict]:
    """The rows of a run's ``log.csv`` (strings converted to floats)."""
    with open(Path(out_dir) / LOG_FILE, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def summary(out_dir: str | Path) -> dict:
    """A finished run's ``summary.json``."""
    return json.loads((Path(out_dir) / "summary.json").read_text())
