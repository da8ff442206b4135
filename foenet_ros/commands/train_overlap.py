"""Train FOENet's overlap head: the learned dense features of the Localizer's fine stage.

Adds an overlap head to a trained FOENet (default: the bundled model) and trains only the head on
self-supervised pairs from the shared training places: a frame of one year / band projected on
the ground with a noisy pose, and the map of another year around it; the correlation must peak at
the true place (softmax over placements, cross-entropy). The result is a full checkpoint
(descriptor weights unchanged, fingerprint new): rebuild indexes with it to store its features.
"""

from __future__ import annotations

import argparse
import json

HELP = "train the overlap head (learned dense features of the fine stage)"
EXAMPLES = """
  FOENET_DATA=/path/to/shared/data foenet train-overlap --out runs/overlap          # 600 steps, ~1 h on 1 CPU core
  foenet train-overlap --out runs/ov --steps 20 --batch-size 4                      # a smoke run
  foenet build-index MAP.tif --out maps/x --model runs/overlap/final --fine-methods cfog foenet
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder (log.json, summary.json, final/)")
    p.add_argument("--init", dest="init_checkpoint", help="FOENet checkpoint to add the head to (default: the bundled model)")
    p.add_argument("--data-root", help="shared data folder (default: $FOENET_DATA)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dim", type=int, default=16, dest="overlap_dim", help="descriptor size per cell")
    p.add_argument("--hidden", type=int, default=32, dest="overlap_hidden", help="width of the head's convolutions")
    p.add_argument("--window-cells", type=int, default=96, help="map window side, cells (template: 32)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, dest="num_workers", help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..train_overlap import OverlapTrainConfig, train_overlap

    cfg = OverlapTrainConfig(
        out_dir=args.out, init_checkpoint=args.init_checkpoint, data_root=args.data_root, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, overlap_dim=args.overlap_dim, overlap_hidden=args.overlap_hidden,
        window_cells=args.window_cells, threads=args.threads, num_workers=args.num_workers, seed=args.seed)
    final = train_overlap(cfg)
    print(json.dumps({"final": str(final), **json.loads((final.parent / "summary.json").read_text())["last_100"]}))
    return 0
