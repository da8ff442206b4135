"""Train FOENet from a named recipe plus overrides; writes a checkpoint every epoch (resumable).

Recipes: shared-cpu (the default model's: shared real imagery, CPU-sized), shared-gpu,
university1652 (needs --data-root), tiny (seconds, procedural maps). Multi-GPU: run the same
command under `torchrun --nproc_per_node=N -m foenet_ros.cli train ...` (PyTorch DDP).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

EXAMPLES = """
  FOENET_DATA=/path/to/shared/data foenet train --out runs/default          # shared-cpu recipe (base of the default model)
  foenet train --recipe tiny --out /tmp/tiny                                 # seconds-long smoke run
  foenet train --recipe university1652 --data-root ~/data/University-1652 --out runs/u1652
  foenet train --recipe shared-gpu --model foenet-mnv2-noosm --out runs/noosm  # ablation without the OSM
  torchrun --nproc_per_node=4 -m foenet_ros.cli train --recipe shared-gpu --out runs/ddp
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..train import DEFAULT_TRAIN_PRESET

    p.add_argument("--recipe", default=DEFAULT_TRAIN_PRESET, help="training recipe (default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, summary.json")
    p.add_argument("--model", help="model preset (default: the recipe's, foenet-mnv2)")
    p.add_argument("--input-size", type=int, help="network input side in pixels (multiple of 32)")
    p.add_argument("--data", choices=["shared", "university1652", "synthetic"], help="training data")
    p.add_argument("--data-root", help="dataset folder (shared: default $FOENET_DATA)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--samples-per-epoch", type=int, help="pairs per epoch")
    p.add_argument("--batch-size", type=int, help="pairs per step (per GPU)")
    p.add_argument("--lr", type=float)
    p.add_argument("--freeze-blocks", type=int, help="leading backbone blocks kept frozen")
    p.add_argument("--loss", choices=["triplet", "infonce"])
    p.add_argument("--distill", type=float, dest="distill_weight",
                   help="weight of the relational distillation towards the untrained ImageNet + GeM teacher (0 = off)")
    p.add_argument("--max-pitch", type=float, dest="max_pitch_deg", help="largest tilt of rendered views from nadir, deg")
    p.add_argument("--heading-range", type=float, dest="heading_range_deg", help="heading interval of rendered views, deg")
    p.add_argument("--no-place-batches", action="store_true",
                   help="mix places within a batch (default: each batch of rendered pairs from one place)")
    p.add_argument("--neighbours", type=int, help="pairs per neighbour group (centred 0.5-1 tile apart; 1 = off)")
    p.add_argument("--neg-radius", type=float, dest="neg_radius_frac",
                   help="same-place tiles closer than this fraction of a tile are not negatives")
    p.add_argument("--workers", type=int, dest="num_workers", help="DataLoader worker processes")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda[:N]")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke tests)")
    p.add_argument("--init", dest="init_checkpoint", help="start from this checkpoint's weights")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out has checkpoints")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")


def run(args: argparse.Namespace) -> int:
    from ..train import train, train_preset

    overrides = {
        k: getattr(args, k)
        for k in ("model", "data", "data_root", "epochs", "samples_per_epoch", "batch_size", "lr", "freeze_blocks",
                  "loss", "distill_weight", "max_pitch_deg", "heading_range_deg", "neighbours", "neg_radius_frac", "num_workers", "threads", "seed", "device", "max_steps",
                  "init_checkpoint")
    }
    model_overrides = {"input_size": args.input_size} if args.input_size else {}
    cfg = train_preset(
        args.recipe, out_dir=args.out, model_overrides=model_overrides,
        resume=not args.no_resume, amp=False if args.no_amp else None,
        place_batches=False if args.no_place_batches else None,
        command="foenet " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "",
        **overrides,
    )
    final = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns; one line is enough
        print(f"final checkpoint: {final}")
    return 0
