"""Measure model size and speed for one or more presets (or a checkpoint): parameters,
GFLOPs at the preset's input size, and the median forward time over repeated runs.
Results are printed as a table and optionally written as JSON."""

from __future__ import annotations

import argparse

HELP = "measure model size, GFLOPs and forward time per preset"
EXAMPLES = """
  foenet bench                                              # every offline preset, CPU, batch 1
  foenet bench --presets foenet-mnv2 gem-mnv2 --runs 50 --json bench.json
  foenet bench --checkpoint models/default --device cuda --batch 32
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", nargs="+", help="presets to measure (default: all offline presets)")
    p.add_argument("--checkpoint", help="measure this checkpoint instead of presets")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument("--runs", type=int, default=20, help="timed runs; the median is reported (default: 20)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", dest="json_out", help="also write the results to this JSON file")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..model import OFFLINE_PRESETS, create_model, load_checkpoint
    from ..model.bench import bench_model
    from ..utils import resolve_device, write_json_atomic

    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    rows = []
    if args.checkpoint:
        rows.append(bench_model(load_checkpoint(args.checkpoint), device, args.batch, args.runs))
    else:
        for name in tqdm(args.presets or list(OFFLINE_PRESETS), desc="bench", unit="preset"):
            rows.append(bench_model(create_model(name, pretrained=False), device, args.batch, args.runs))
    header = f"{'preset':<20} {'backbone':<20} {'S':>4} {'D':>5} {'params M':>9} {'GFLOPs':>7} {'ms/fwd':>8} {'img/s':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.preset:<20} {r.backbone:<20} {r.input_size:>4} {r.dim:>5} {r.params_m:>9.2f} "
            f"{r.gflops:>7.3f} {r.forward_ms_median:>8.1f} {r.images_per_s:>7.1f}"
        )
    print(f"device={device} batch={args.batch} runs={args.runs} threads={torch.get_num_threads()} (medians)")
    if args.json_out:
        write_json_atomic(args.json_out, [r.to_dict() for r in rows])
        print(f"wrote {args.json_out}")
    return 0
