"""Model size and speed: parameters, GFLOPs at the input size, median forward time."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .foenet import FOENet


@dataclass(frozen=True)
class ModelBench:
    """One row of ``foenet bench``. Times in milliseconds, medians over ``runs``."""

    preset: str
    backbone: str
    input_size: int
    dim: int
    params_m: float
    gflops: float
    device: str
    batch: int
    forward_ms_median: float
    forward_ms_p90: float
    images_per_s: float
    runs: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def count_gflops(model: FOENet, input_size: int) -> float:
    """Forward GFLOPs for one image (multiply-add counted as 2 FLOPs), via torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops() / 1e9


@torch.inference_mode()
def bench_model(model: FOENet, device: str = "cpu", batch: int = 1, runs: int = 20, warmup: int = 3) -> ModelBench:
    """Time ``runs`` forward passes (after ``warmup``) and report medians."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    s = model.config.input_size
    x = torch.randn(batch, 3, s, s, device=dev)
    times = []
    for i in range(warmup + runs):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    med = statistics.median(times)
    return ModelBench(
        preset=model.config.preset,
        backbone=model.config.backbone,
        input_size=s,
        dim=model.out_dim,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        gflops=count_gflops(model, s),
        device=str(dev),
        batch=batch,
        forward_ms_median=med,
        forward_ms_p90=times[int(0.9 * (len(times) - 1))],
        images_per_s=batch * 1e3 / med,
        runs=runs,
        threads=torch.get_num_threads(),
    )
