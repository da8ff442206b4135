"""Build a FAISS tile index of a georeferenced map for `foenet localize`, the node and the bag replay.

The map (one GeoTIFF, several GeoTIFFs mosaicked by georeference, or an image with a
map_metadata.txt / world-file sidecar) is cut into overlapping square tiles at several ground
sizes, each tile is encoded with FOENet, and everything lands in ONE directory: index.faiss,
tiles.npz, manifest.json (model fingerprint, CRS, GSD, scales, counts, source sha256) and a
GeoTIFF copy of the map (map.tif) used for geometric verification and plots.

Tile sizes come from --scales-m, or from the camera: --hfov (and --image-size) with the
flight-height range --alt-range (and --max-tilt).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

HELP = "build a FAISS tile index from georeferenced map rasters"

EXAMPLES = """
  # Banepa orthomosaic read at 0.3 m/px, tiles sized for a 70 deg camera flying 80-150 m
  foenet build-index $FOENET_DATA/oam_banepa/banepa_z19_0.15m.tif --out maps/banepa \\
      --gsd-m 0.3 --hfov 70 --alt-range 80 150
  # explicit tile sizes (metres), HNSW for a very large map, a trained checkpoint
  foenet build-index ortho1.tif ortho2.tif --out maps/area --scales-m 60 90 130 \\
      --index-type hnsw --model runs/foenet/best
  # the two aero-vloc satellite tiles (PNG + map_metadata.txt sidecar)
  foenet build-index $FOENET_DATA/aerovloc_pair/map/0.png $FOENET_DATA/aerovloc_pair/map/1.png \\
      --out maps/aerovloc --scales-m 80 120 180
"""

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("maps", nargs="+", metavar="MAP", help="map raster(s): GeoTIFF, or image + sidecar / world file")
    p.add_argument("--out", required=True, help="index directory to create")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--model", default=None, help="checkpoint directory (default: the bundled default model)")
    m.add_argument("--preset", default=None, help="an untrained model preset (ImageNet backbone), e.g. foenet-mnv2")
    s = p.add_argument_group("tile sizes (one of --scales-m or --hfov + --alt-range)")
    s.add_argument("--scales-m", type=float, nargs="+", default=None, help="tile side lengths on the ground, metres")
    s.add_argument("--hfov", type=float, default=None, help="camera horizontal field of view, degrees")
    s.add_argument("--image-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"),
                   help="camera image size (aspect of the footprint; default 640 480)")
    s.add_argument("--alt-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="flight heights above ground, metres")
    s.add_argument("--max-tilt", type=float, default=0.0, help="expected camera tilt from nadir, degrees")
    p.add_argument("--overlap", type=float, default=0.5, help="tile overlap fraction (default 0.5)")
    p.add_argument("--min-valid", type=float, default=0.6, help="drop tiles with less valid data (default 0.6)")
    p.add_argument("--gsd-m", type=float, default=None, help="read the map at this resolution, m/px (default native)")
    p.add_argument("--index-type", choices=("flat", "hnsw", "ivf"), default="flat",
                   help="flat = exact (default); hnsw/ivf = approximate, for very large maps")
    p.add_argument("--batch-size", type=int, default=32, help="tiles per forward pass")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--force", action="store_true", help="replace an existing --out directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..index import IndexConfig, TileIndex, build_index
    from ..model import Encoder, create_model, load_checkpoint, load_default_model

    config = IndexConfig(
        scales_m=tuple(args.scales_m) if args.scales_m else None,
        hfov_deg=args.hfov,
        image_size=tuple(args.image_size),
        alt_range_m=tuple(args.alt_range) if args.alt_range else None,
        max_tilt_deg=args.max_tilt,
        overlap=args.overlap,
        min_valid=args.min_valid,
        map_gsd_m=args.gsd_m,
        index_type=args.index_type,
        batch_size=args.batch_size,
    )
    if args.model:
        model = load_checkpoint(args.model)
    elif args.preset:
        model = create_model(args.preset)
    else:
        model = load_default_model()
    encoder = Encoder(model, device=args.device, batch_size=args.batch_size)
    out = build_index(args.maps, encoder, args.out, config, overwrite=args.force, progress=not args.no_progress)
    index = TileIndex.load(out)
    t = index.manifest["tiles"]
    summary = {
        "index": str(out),
        "tiles": t["count"],
        "scales_m": [round(s, 1) for s in t["scales_m"]],
        "count_per_scale": t["count_per_scale"],
        "type": index.index_type,
        "model": index.manifest["model"],
        "frame": index.manifest["frame"],
        "map_gsd_m": round(index.manifest["map"]["gsd_m"], 4),
    }
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
