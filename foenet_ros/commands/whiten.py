"""Learned whitening of a FOENet checkpoint's descriptor (see :mod:`foenet_ros.whiten`).

Encodes matching (query, reference) pairs of the training places, estimates how two views of one
place differ, and folds the whitening that discounts those directions into the projection layer.
Minutes on a CPU, no gradient steps. The output is an ordinary checkpoint with a new fingerprint:
rebuild indexes with it.
"""

from __future__ import annotations

import argparse
import json

HELP = "learned whitening of the descriptor, folded into the model (minutes, no training)"
EXAMPLES = """
  FOENET_DATA=/path/to/shared/data foenet whiten --out runs/whitened          # the bundled model, 2880 pairs
  foenet whiten --init runs/s3/final --out runs/s3w --pairs 5000 --shrink 0.2
  foenet eval --model runs/whitened --sets banepa naip naip-nir pix4d          # compare with the input model
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder of the whitened checkpoint")
    p.add_argument("--init", dest="init_checkpoint", help="checkpoint to whiten (default: the bundled model)")
    p.add_argument("--data-root", help="shared data folder (default: $FOENET_DATA)")
    p.add_argument("--data", choices=["shared", "synthetic"], default="shared",
                   help="training pairs: the shared places, or procedural maps (a smoke run)")
    p.add_argument("--pairs", type=int, default=2880, help="training pairs to estimate the statistics from")
    p.add_argument("--shrink", type=float, default=0.1, help="covariance shrinkage towards the identity, [0, 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, dest="num_workers", help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..model import load_checkpoint
    from ..whiten import WhitenConfig, whiten

    cfg = WhitenConfig(out_dir=args.out, init_checkpoint=args.init_checkpoint, data=args.data, data_root=args.data_root,
                       pairs=args.pairs, shrink=args.shrink, batch_size=args.batch_size, threads=args.threads,
                       num_workers=args.num_workers, seed=args.seed)
    path = whiten(cfg)
    print(json.dumps({"checkpoint": str(path), "fingerprint": load_checkpoint(path).fingerprint()}))
    return 0
