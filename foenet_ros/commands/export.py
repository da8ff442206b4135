"""Export a FOENet checkpoint to ONNX. The exported file is run with ONNX Runtime on random
inputs and compared to PyTorch (max abs difference must stay below --atol)."""

from __future__ import annotations

import argparse
import json

HELP = "export a checkpoint to ONNX (checked against PyTorch)"
EXAMPLES = """
  foenet export --out foenet.onnx                           # the bundled default model
  foenet export --checkpoint runs/exp1/best --out exp1.onnx --opset 18
  foenet export --overlap --out overlap.onnx                # the overlap head's dense features (any image size)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="checkpoint directory (default: the bundled default model)")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--branch", choices=["drone", "satellite"], default="drone", help="which branch to export")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    p.add_argument("--atol", type=float, default=1e-4, help="max allowed |onnx - torch| (default: 1e-4)")
    p.add_argument("--overlap", action="store_true",
                   help="export the overlap head's dense path (image -> per-cell features) instead of the descriptor")


def run(args: argparse.Namespace) -> int:
    from ..model import load_checkpoint, load_default_model
    from ..model.export import export_onnx, export_overlap_onnx

    model = load_checkpoint(args.checkpoint) if args.checkpoint else load_default_model()
    if args.overlap:
        info = export_overlap_onnx(model, args.out, opset=args.opset, atol=args.atol)
    else:
        info = export_onnx(model, args.out, branch=args.branch, opset=args.opset, atol=args.atol)
    info["fingerprint"] = model.fingerprint()
    print(json.dumps(info, indent=2))
    return 0
