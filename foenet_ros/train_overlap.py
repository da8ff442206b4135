"""Training FOENet's overlap head: a frame projected on the ground must peak at its true place in a map window.

One sample, from the georeferenced training places (``foenet_ros.data.shared``, held-out places
and years excluded) -- the map from one date, the drone view from another date or band::

    view      a perspective camera (random height, heading, tilt, roll) rendered from the query
              raster (another NAIP year, the near-infrared band, a second NEON date; single-date
              places get the photometric changes only), then exposure / colour / haze / blur /
              noise / JPEG
    template  the view projected on the ground with a *noisy* pose hypothesis (heading, scale
              and attitude errors as the Localizer's bins leave them), at cell / 4 m per pixel:
              exactly :func:`foenet_ros.localize.overlap.render_template`
    window    the map around the true camera nadir (random offset), at the same resolution
    target    the window cell where the template's cell (0, 0) lies when its nadir is the truth

The loss: the masked correlation of the template's overlap features with the window's, plus the
classical CFOG correlation times a learned weight, as a softmax over every placement in the
window; cross-entropy against a Gaussian (1 cell) around the target. The head learns what CFOG
misses, and the weight says how much to trust each at query time. Only the head trains (the
backbone's stride-4 stage is shared with retrieval and stays frozen).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as Fn
from torch.utils.data import DataLoader, Dataset

from .errors import CameraError, ConfigError, DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverlapTrainConfig:
    """A training run of the overlap head.

    Attributes:
        out_dir: run folder (checkpoints, log.csv, summary.json).
        init_checkpoint: the FOENet to add the head to (None = the bundled default model).
        data_root: the shared data folder (None = ``$FOENET_DATA``).
        overlap_dim, overlap_hidden: head size (descriptor D, conv width).
        steps, batch_size, lr, weight_decay, warmup_steps: AdamW with warm-up and cosine decay.
        template_cells, window_cells: template and window sizes, cells (window > template).
        image_px: the rendered view's width (4:3), pixels.
        heading_noise_deg, scale_noise, attitude_noise_deg: 1-sigma errors of the pose hypothesis.
        target_sigma_cells: width of the soft target.
        p_cross_date, p_aux_query: as in the retrieval pairs (another date / the NIR band as the view).
        seed, threads, num_workers, device: reproducibility and resources.
    """

    out_dir: str = "runs/overlap"
    init_checkpoint: str | None = None
    data_root: str | None = None
    overlap_dim: int = 16
    overlap_hidden: int = 32
    steps: int = 600
    batch_size: int = 12
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    template_cells: int = 32
    window_cells: int = 64
    image_px: int = 320
    heading_noise_deg: float = 2.0
    scale_noise: float = 0.03
    attitude_noise_deg: float = 0.5
    target_sigma_cells: float = 1.0
    p_cross_date: float = 0.9
    p_aux_query: float = 0.25
    seed: int = 0
    threads: int = 1
    num_workers: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.window_cells <= self.template_cells + 4:
            raise ConfigError(f"window_cells ({self.window_cells}) must exceed template_cells ({self.template_cells}) by > 4")
        for name in ("steps", "batch_size", "template_cells", "overlap_dim", "overlap_hidden", "image_px"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")


# ---------------------------------------------------------------------------------------------- data
class OverlapPairDataset(Dataset):
    """Samples of (template, window, target) from georeferenced places (see the module docstring).

    Every item is a pure function of ``(seed, index)``. Returns dicts of numpy arrays:
    ``t_img [T*4, T*4, 3] uint8``, ``t_valid [T, T] bool``, ``t_cfog [9, T, T]``, and the same for
    the window (``w_*``, W cells), and ``target [2]`` (row, col of template cell (0,0) in the window).
    """

    def __init__(self, places, cfg: OverlapTrainConfig, length: int, seed: int = 0) -> None:
        if not places:
            raise DatasetError("OverlapPairDataset needs at least one place")
        self.places = list(places)
        self.cfg = cfg
        self.length = int(length)
        self.seed = int(seed)
        w = np.array([p.weight for p in self.places], dtype=np.float64)
        self._place_p = w / w.sum()
        self._unit_p = [p.unit_weights() for p in self.places]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(index)])
        for _ in range(40):
            pi = int(rng.choice(len(self.places), p=self._place_p))
            place = self.places[pi]
            unit = place.units[int(rng.choice(len(place.units), p=self._unit_p[pi]))]
            out = self._sample(unit, place.tile_size_m, rng)
            if out is not None:
                return out
        raise DatasetError(f"no valid overlap sample after 40 tries (index {index})")

    def _sample(self, unit, size_range, rng) -> dict[str, Any] | None:
        from .data.augment import photometric
        from .features import cfog
        from .geo import CameraIntrinsics, CameraPose, ground_to_image_homography
        from .localize.overlap import Hypothesis, render_template

        cfg = self.cfg
        n = len(unit.rasters)
        ref_i = int(rng.integers(n))
        q_i = int((ref_i + rng.integers(1, n)) % n) if n > 1 and rng.random() < cfg.p_cross_date else ref_i
        use_aux = bool(unit.aux) and rng.random() < cfg.p_aux_query
        ref_map = unit.rasters[ref_i]
        q_map = unit.aux[q_i] if use_aux else unit.rasters[q_i]
        w_px, h_px = cfg.image_px, cfg.image_px * 3 // 4
        hfov = float(rng.uniform(55.0, 80.0))
        intr = CameraIntrinsics.from_hfov(hfov, w_px, h_px)
        fp = float(rng.uniform(*size_range))  # ground width seen by the frame
        alt = fp / (2.0 * math.tan(math.radians(hfov) / 2.0))
        cell = fp * 1.3 / cfg.template_cells  # the template's bounding box spans up to ~1.3 footprints
        xmin, ymin, xmax, ymax = ref_map.bounds_xy
        half = 0.5 * cfg.window_cells * cell
        if xmax - xmin < 2 * half or ymax - ymin < 2 * half:
            return None
        x, y = rng.uniform(xmin + half, xmax - half), rng.uniform(ymin + half, ymax - half)
        pose = CameraPose(float(x), float(y), float(alt), float(rng.uniform(0, 360)), float(rng.uniform(0, 15)),
                          float(rng.uniform(-3, 3)))
        view, vvalid = q_map.warp(ground_to_image_homography(intr, pose), (w_px, h_px), fp / w_px, perspective=True)
        if vvalid.mean() < 0.9:
            return None
        if view.ndim == 3 and view.shape[2] == 1:
            view = view[:, :, 0]
        if view.ndim == 2:
            view = np.repeat(view[:, :, None], 3, axis=2)
        view = photometric(np.ascontiguousarray(view[:, :, :3]), rng)
        hyp = Hypothesis(pose.heading_deg + rng.normal(0, cfg.heading_noise_deg), alt * math.exp(rng.normal(0, cfg.scale_noise)),
                         pose.roll_deg + rng.normal(0, cfg.attitude_noise_deg), pose.pitch_deg + rng.normal(0, cfg.attitude_noise_deg))
        try:
            t_img, t_val, anchor = render_template(view, intr, hyp, cell, 4, cfg.template_cells)
        except CameraError:  # the footprint does not fit the template: try another sample
            return None
        T = cfg.template_cells
        t_img, t_val = _pad(t_img, T * 4), _pad(t_val, T * 4)
        # the window: cells around the true nadir, shifted so the target lies anywhere in it
        W = cfg.window_cells
        span = W - T
        a_star, b_star = rng.uniform(1, span - 1), rng.uniform(1, span - 1)  # target row, col (cell units)
        # cell (0,0) of the window at ground (wx0, wy0): the template's cell (0,0) = nadir + anchor
        wx0 = x + anchor[0] - b_star * cell
        wy0 = y + anchor[1] + a_star * cell
        px = cell / 4
        o = np.array([wx0 - 0.5 * cell + 0.5 * px, wy0 + 0.5 * cell - 0.5 * px])
        M = np.array([[1 / px, 0, -o[0] / px], [0, -1 / px, o[1] / px], [0, 0, 1.0]])
        w_img, w_val = ref_map.warp(M, (W * 4, W * 4), px)
        if w_val.mean() < 0.95:
            return None
        w_img = w_img[:, :, :3]
        tc, tcv = cfog(_pool(t_img), _pool_mask(t_val))
        wc, wcv = cfog(_pool(w_img), _pool_mask(w_val))
        return {"t_img": np.ascontiguousarray(t_img), "t_valid": t_val, "t_cfog": tc * tcv[None], "t_cvalid": tcv,
                "w_img": np.ascontiguousarray(w_img), "w_valid": w_val, "w_cfog": wc * wcv[None], "w_cvalid": wcv,
                "target": np.array([a_star, b_star], np.float32)}


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size) + a.shape[2:], a.dtype)
    h, w = min(size, a.shape[0]), min(size, a.shape[1])
    out[:h, :w] = a[:h, :w]
    return out


def _pool(img: np.ndarray) -> np.ndarray:
    """4x4 area average: the image at the cell resolution (CFOG's input)."""
    import cv2

    return cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4), interpolation=cv2.INTER_AREA)


def _pool_mask(m: np.ndarray) -> np.ndarray:
    h, w = m.shape[0] // 4, m.shape[1] // 4
    return m[: h * 4, : w * 4].reshape(h, 4, w, 4).all(axis=(1, 3))


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    out = {}
    for k in items[0]:
        out[k] = torch.from_numpy(np.stack([it[k] for it in items]))
    return out


# ---------------------------------------------------------------------------------------------- loss
def placement_scores(ft: torch.Tensor, mt: torch.Tensor, fw: torch.Tensor, mw: torch.Tensor) -> torch.Tensor:
    """Masked, zero-mean correlation of templates with windows, one pair per batch item.

    ft [B, C, T, T], mt [B, T, T] (template cells valid), fw [B, C, W, W], mw [B, W, W] ->
    scores [B, W-T+1, W-T+1] = num / sqrt(cnt * n_valid), as in :func:`foenet_ros.localize.overlap.correlate`.
    """
    B, C, T, _ = ft.shape
    m = mt.float()[:, None]
    n = m.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
    ft = (ft - (ft * m).sum(dim=(2, 3), keepdim=True) / n) * m
    fw = fw * mw.float()[:, None]
    Wd = fw.shape[-1]
    num = Fn.conv2d(fw.reshape(1, B * C, Wd, Wd), ft, groups=B)[0]
    cnt = Fn.conv2d(mw.float()[None], m, groups=B)[0].clamp(min=1.0)
    return num / torch.sqrt(cnt * n[:, 0])


def soft_target(target: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """[B, 2] (row, col) -> [B, size, size] Gaussian probabilities over placements."""
    r = torch.arange(size, dtype=torch.float32)
    dr = (r[None, :, None] - target[:, 0, None, None]) ** 2
    dc = (r[None, None, :] - target[:, 1, None, None]) ** 2
    p = torch.exp(-(dr + dc) / (2 * sigma**2))
    return p / p.sum(dim=(1, 2), keepdim=True)


def normalise_images(img: torch.Tensor, mean, std) -> torch.Tensor:
    """[B, H, W, 3] uint8 -> [B, 3, H, W] float, ImageNet-normalised."""
    x = img.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def overlap_loss(model, batch: dict[str, torch.Tensor], cfg: OverlapTrainConfig) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the placement softmax (learned + weighted CFOG scores) against the soft target."""
    mean, std = model.config.mean, model.config.std
    stem = model._stem()
    with torch.no_grad():
        st = stem(normalise_images(batch["t_img"], mean, std))
        sw = stem(normalise_images(batch["w_img"], mean, std))
    head = model.overlap_head
    ft, fw = head(st), head(sw)
    mt = batch["t_valid"].reshape(*ft.shape[:1], ft.shape[2], 4, ft.shape[3], 4).all(dim=4).all(dim=2)
    mw = batch["w_valid"].reshape(*fw.shape[:1], fw.shape[2], 4, fw.shape[3], 4).all(dim=4).all(dim=2)
    s_learned = placement_scores(ft, mt, fw, mw)
    with torch.no_grad():
        s_cfog = placement_scores(batch["t_cfog"].float(), batch["t_cvalid"], batch["w_cfog"].float(), batch["w_cvalid"])
    tau = head.log_tau.exp()
    cfog_weight = head.cfog_weight
    logits = (s_learned + cfog_weight * s_cfog) / tau
    B, U, V = logits.shape
    tgt = soft_target(batch["target"], U, cfg.target_sigma_cells)
    loss = -(tgt * torch.log_softmax(logits.reshape(B, -1), dim=1).reshape(B, U, V)).sum(dim=(1, 2)).mean()
    with torch.no_grad():
        def hits(s):
            idx = s.reshape(B, -1).argmax(dim=1)
            pr = torch.stack([idx // V, idx % V], dim=1).float()
            return float(((pr - batch["target"]).norm(dim=1) <= 2.0).float().mean())
        stats = {"acc_combined": hits(logits), "acc_learned": hits(s_learned), "acc_cfog": hits(s_cfog),
                 "tau": float(tau), "cfog_weight": float(cfog_weight)}
    return loss, stats


# ---------------------------------------------------------------------------------------------- loop
def train_overlap(cfg: OverlapTrainConfig, progress: bool = True) -> Path:
    """Train the overlap head; write ``out_dir/final`` (a full FOENet checkpoint with the head); return it."""
    from tqdm.auto import tqdm

    from .data.shared import require_data_root, training_places
    from .model import load_checkpoint, load_default_model, save_checkpoint
    from .model.foenet import FOENet

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = load_default_model() if cfg.init_checkpoint is None else load_checkpoint(cfg.init_checkpoint)
    mcfg = base.config.replace(overlap_dim=cfg.overlap_dim, overlap_hidden=cfg.overlap_hidden, pretrained=False)
    model = FOENet(mcfg, pretrained=False)
    own = model.state_dict()
    # the base's descriptor weights; its own overlap head too when it has the same shape (fine-tuning it),
    # else a fresh head of the asked size
    state = {k: v for k, v in base.state_dict().items()
             if not k.startswith("overlap_head.") or (k in own and own[k].shape == v.shape)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("overlap_head.") for k in missing):
        raise ConfigError(f"cannot add an overlap head to {cfg.init_checkpoint}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.overlap_head.parameters():
        p.requires_grad_(True)
    model.eval()
    model.overlap_head.train()
    root = require_data_root(cfg.data_root)
    places = training_places(root)
    ds = OverlapPairDataset(places, cfg, length=cfg.steps * cfg.batch_size, seed=cfg.seed)
    dl = DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, collate_fn=collate,
                    persistent_workers=cfg.num_workers > 0)
    params = list(model.overlap_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    log_rows = []
    t0 = time.time()
    bar = tqdm(total=cfg.steps, desc="overlap head", unit="step", disable=not progress)
    ema: dict[str, float] = {}
    for step, batch in enumerate(dl):
        if step >= cfg.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss, stats = overlap_loss(model, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            model.overlap_head.cfog_weight.clamp_(min=0.0)
        row = {"step": step, "loss": float(loss.detach()), **stats, "lr": lr_at(step), "time_s": time.time() - t0}
        log_rows.append(row)
        for k in ("loss", "acc_combined", "acc_learned", "acc_cfog"):
            ema[k] = 0.95 * ema.get(k, row[k]) + 0.05 * row[k]
        bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()})
        bar.update(1)
    bar.close()
    model.overlap_head.eval()
    summary = {"config": dataclasses.asdict(cfg), "steps": len(log_rows), "wall_s": time.time() - t0,
               "cfog_weight": float(model.overlap_head.cfog_weight), "tau": float(model.overlap_head.log_tau.exp()),
               "last_100": {k: float(np.mean([r[k] for r in log_rows[-100:]])) for k in ("loss", "acc_combined", "acc_learned", "acc_cfog")}}
    (out / "log.json").write_text(json.dumps(log_rows))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    final = save_checkpoint(model, out / "final", extra={"overlap_train": summary})
    log.info("overlap head trained: %s", summary["last_100"])
    return final
