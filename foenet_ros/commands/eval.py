"""Retrieval evaluation: Recall@1/5/10, Recall@top-1%, AP (University-1652 definition) and, on
geo-referenced sets, distance-based recall and SDM@K. Exact FAISS inner-product search.

Sets: banepa, naip, naip-nir, pix4d (held-out places of $FOENET_DATA), university1652:<folder>
(--protocol drone2sat|sat2drone; SUES-200 / DenseUAV folders too), map:<geotiff>.
Writes a JSON report (model fingerprint, dataset descriptions, metrics) and prints a table.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

EXAMPLES = """
  FOENET_DATA=/path/to/shared/data foenet eval --sets banepa naip naip-nir pix4d --out eval.json
  foenet eval --preset gem-mnv2 --input-size 160 --sets banepa --out baseline.json   # untrained ImageNet + GeM
  foenet eval --model runs/u1652/final --sets university1652:~/data/University-1652 --protocol sat2drone --out u1652.json
  foenet eval --sets map:maps/town.tif --tile-size 100 --queries 200 --out town.json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default="default", help="checkpoint folder, or 'default' (models/default)")
    src.add_argument("--preset", help="evaluate an untrained model preset (ImageNet init), e.g. gem-mnv2")
    p.add_argument("--input-size", type=int, help="with --preset: network input side (default: the preset's)")
    p.add_argument("--sets", nargs="+", default=["banepa", "naip", "naip-nir", "pix4d"], help="evaluation sets")
    p.add_argument("--protocol", default="drone2sat", choices=["drone2sat", "sat2drone"], help="University-1652 protocol")
    p.add_argument("--data-root", help="shared data folder (default $FOENET_DATA)")
    p.add_argument("--queries", type=int, default=300, help="rendered queries per geo-referenced set")
    p.add_argument("--tile-size", type=float, help="tile side (m) for map:<file> sets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", help="JSON report path (default: print only)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..evaluate import QueryConfig, build_eval_set, evaluate_set, format_table, model_info
    from ..model import Encoder, create_model, load_checkpoint, load_default_model
    from ..utils import write_json_atomic

    if args.preset:
        overrides = {"input_size": args.input_size} if args.input_size else {}
        model = create_model(args.preset, **overrides)
        source = f"untrained preset {args.preset}"
    elif args.model == "default":
        model = load_default_model()
        source = "default model"
    else:
        model = load_checkpoint(args.model)
        source = str(args.model)
    encoder = Encoder(model, device=args.device, batch_size=args.batch_size)
    qcfg = replace(QueryConfig(), n_queries=args.queries)
    reports = []
    for spec in args.sets:
        es = build_eval_set(spec, model.config.input_size, seed=args.seed, qcfg=qcfg, data_root=args.data_root,
                            protocol=args.protocol, tile_size_m=args.tile_size)
        reports.append(evaluate_set(encoder, es))
    doc = {
        "model": {**model_info(model), "source": source},
        "sets": reports,
        "command": "foenet " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"model: {source} (fingerprint {doc['model']['fingerprint']}, input {model.config.input_size}px)")
    print(format_table(reports))
    if args.out:
        write_json_atomic(args.out, doc)
        print(f"report: {args.out}")
    return 0
