"""Node memory by component: RSS after each piece the node loads, for the ONNX and the PyTorch runtime.

    PYTHONPATH=. python bench/node_memory.py --index ~/.cache/foenet/demo/index-<key> --frames 20

Each runtime is measured in a fresh process that adds one component at a time (rclpy + the node
module; the runtime; the index; the Localizer with the map copy; frames): Linux VmRSS, MiB.
``--torch-free-check-frame`` measures what the ONNX node takes once
``localize.preprocess.check_frame`` stops importing ``foenet_ros.model.encode`` (whose package
imports torch): the bench pre-registers a torch-free module holding the same ``to_rgb_uint8`` --
a measurement of that change, not something the node does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, types
from pathlib import Path
import numpy as np
def rss():
    with open('/proc/self/status') as f:
        for l in f:
            if l.startswith('VmRSS'):
                return int(l.split()[1]) / 1024
index_dir, backend, frames, shim = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if shim:
    src = open(sys.argv[5]).read()
    mod = types.ModuleType("foenet_ros.model.encode")
    from foenet_ros.errors import ImageError
    mod.np, mod.ImageError = np, ImageError
    exec(src[src.index("def to_rgb_uint8"):src.index("def preprocess")], mod.__dict__)
    sys.modules["foenet_ros.model.encode"] = mod
rows = [("python + numpy", rss())]
import rclpy, foenet_ros.ros.node  # noqa: F401
rows.append(("rclpy + node module (codec, cv2, messages)", rss()))
from foenet_ros.localize import Localizer, LocalizerConfig
from foenet_ros.index import TileIndex
if backend == "onnx":
    from foenet_ros.ros.runtime import OnnxEncoder, cached_onnx, index_fingerprint
    onnx, meta = cached_onnx(index_fingerprint(Path(index_dir)), None)
    enc = OnnxEncoder(onnx, meta)
    rows.append(("FOENet on ONNX Runtime", rss()))
else:
    from foenet_ros.model import Encoder, load_default_model
    enc = Encoder(load_default_model(), device="cpu")
    rows.append(("FOENet on PyTorch (torch, timm, weights)", rss()))
index = TileIndex.load(index_dir, expect_fingerprint=enc.fingerprint)
rows.append((f"tile index ({len(index)} tiles, FAISS + tile table)", rss()))
loc = Localizer(index, enc, LocalizerConfig())
raster = index.map_raster()
rows.append((f"Localizer + map copy ({raster.image.shape[1]}x{raster.image.shape[0]} px)", rss()))
from foenet_ros.geo import CameraIntrinsics, CameraPose, render_view
intr = CameraIntrinsics.from_hfov(70.0, 640, 480)
c = np.asarray(index.tiles.centers_xy, float).mean(0)
alt = float(np.median(index.tiles.size_m)) * 0.7
imgs = [render_view(raster, intr, CameraPose(c[0] + 10 * i, c[1], alt), distort=False)[0] for i in range(5)]
statuses = [loc.localize(imgs[i % 5], camera=intr, heading_deg=0.0, stamp=float(i)).status for i in range(frames)]
rows.append((f"after {frames} frames (SIFT, verification buffers)", rss()))
print(json.dumps({"rows": rows, "torch_imported": "torch" in sys.modules, "statuses": statuses}))
"""


def measure(index: str, backend: str, frames: int, shim: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, index, backend, str(frames), "1" if shim else "0",
                          str(REPO / "foenet_ros" / "model" / "encode.py")],
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO), **__import__("os").environ})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--torch-free-check-frame", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(argv)
    runs = {"torch": measure(args.index, "torch", args.frames, False), "onnx": measure(args.index, "onnx", args.frames, False)}
    if args.torch_free_check_frame:
        runs["onnx, torch-free check_frame"] = measure(args.index, "onnx", args.frames, True)
    for name, r in runs.items():
        print(f"\n{name} (torch imported: {r['torch_imported']}; statuses: {sorted(set(r['statuses']))})")
        prev = 0.0
        for label, v in r["rows"]:
            print(f"  {label:55s} {v:7.0f} MiB  (+{v - prev:.0f})")
            prev = v
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
