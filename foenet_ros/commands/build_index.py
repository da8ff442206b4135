"""Build a FAISS tile index of a georeferenced map for `foenet localize`, the node and the bag replay.

The map (one GeoTIFF/COG, a GDAL VRT mosaic, several files mosaicked by georeference, or an image
with a map_metadata.txt / world-file sidecar) is read window by window -- never whole, so maps of
thousands of km2 fit in a few GB of RAM -- and stored in the index as a tiled Cloud Optimized
GeoTIFF at its native GSD (or the --gsd-m you ask for; the summary says which). It is cut into
overlapping square tiles at several ground sizes, each tile is encoded with FOENet, and everything
lands in ONE directory: index.faiss, tiles.npz, map.tif (COG), map_valid.png (coverage),
fine/ (the fine stage's map side: dense feature grids at a few cell sizes, SIFT keypoints, and
with --dsm their heights), manifest.json (model fingerprint, CRS, GSD, scales, counts, the map's
absolute accuracy, source sha256).

Tile sizes come from --scales-m, or from the camera: --hfov (and --image-size) with the
flight-height range --alt-range (and --max-tilt).

Large maps: run the same command under torchrun to shard the work over processes / GPUs / nodes
(the output directory must be on a file system every node sees). A killed build resumes where it
stopped when rerun with the same arguments (any number of processes). Above 50,000 tiles the index
is IVF-PQ (compressed, memory-mapped, re-ranked exactly) unless --index-type says otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

HELP = "build a FAISS tile index from georeferenced map rasters"

EXAMPLES = """
  # Banepa orthomosaic at its native 0.15 m/px, tiles sized for a 70 deg camera flying 80-150 m
  foenet build-index $FOENET_DATA/oam_banepa/banepa_z19_0.15m.tif --out maps/banepa \\
      --hfov 70 --alt-range 80 150
  # explicit tile sizes (metres), a trained checkpoint, the map stored at 0.3 m/px (reported as resampled)
  foenet build-index ortho1.tif ortho2.tif --out maps/area --scales-m 60 90 130 \\
      --gsd-m 0.3 --model runs/foenet/best
  # a VRT mosaic of many tiles, sharded over 8 GPUs of one box (same command on 1 CPU: drop torchrun)
  torchrun --nproc_per_node=8 -m foenet_ros.cli build-index survey.vrt --out maps/survey \\
      --hfov 70 --alt-range 100 200
  # the two aero-vloc satellite tiles (PNG + map_metadata.txt sidecar); satellite imagery: ~3 m accuracy
  foenet build-index $FOENET_DATA/aerovloc_pair/map/0.png $FOENET_DATA/aerovloc_pair/map/1.png \\
      --out maps/aerovloc --scales-m 80 120 180 --map-accuracy-m 3
  # hilly ground: a surface model makes the map keypoints 3D (PnP poses, no flat-ground error)
  foenet build-index $FOENET_DATA/orthority_odm/ortho/*.tif --out maps/tuniu --hfov 66 --alt-range 80 120 \\
      --max-tilt 30 --dsm $FOENET_DATA/orthority_odm/dsm.tif --map-accuracy-m 0.5
"""

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("maps", nargs="+", metavar="MAP",
                   help="map raster(s): GeoTIFF/COG, GDAL VRT, or image + sidecar / world file")
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
    p.add_argument("--gsd-m", type=float, default=None,
                   help="read and store the map at this GSD, m/px (default: the native GSD, kept for verification)")
    p.add_argument("--map-compression", choices=("jpeg", "deflate"), default="jpeg",
                   help="stored map (COG): jpeg (quality 90, ~10x smaller; default) or lossless deflate")
    p.add_argument("--index-type", choices=("auto", "flat", "hnsw", "ivf", "ivfpq"), default="auto",
                   help="auto (default): exact flat up to 50,000 tiles, ivfpq above; hnsw/ivf on request")
    f = p.add_argument_group("fine stage (map features for the Localizer's overlap estimation and refinement)")
    f.add_argument("--map-accuracy-m", type=float, default=1.0,
                   help="absolute horizontal accuracy of the map's georeference, 1 sigma, metres; goes into every "
                        "fix's covariance (survey/GCP orthomosaic 0.1-0.3, drone mosaic without GCPs 1-3, "
                        "satellite / web tiles 2-5, NAIP 1-6; default 1)")
    f.add_argument("--dsm", default=None, metavar="DSM.tif",
                   help="surface model (height GeoTIFF, any CRS) of the area: 3D map keypoints and the terrain relief")
    f.add_argument("--fine-methods", nargs="+", choices=("cfog", "foenet"), default=["cfog"],
                   help="dense features stored (foenet: the learned overlap head, needs a --model with one)")
    f.add_argument("--fine-polish", action="store_true",
                   help="store one more dense level at half the finest cell (4x that level's storage) for the "
                        "Localizer's polish step, which places fixes on it when its line search is off "
                        "(localizer.fine_line_search: false; the search, on by default, places them better without it)")
    f.add_argument("--no-keypoints", action="store_true", help="store no map keypoints (no keypoint refinement)")
    f.add_argument("--kp-gsd-m", type=float, default=None,
                   help="GSD of the finest map keypoint level, m/px (default: the frames' GSD at the smallest tile, "
                        "never finer than the map). Finer than the map when the drone's frames are much finer than "
                        "the map: Pix4D 0.35 m map, frames ~0.1 m, 0.15 -> 40/40 views verified instead of 39, median "
                        "0.27 instead of 0.44 m")
    p.add_argument("--batch-size", type=int, default=32, help="tiles per forward pass")
    p.add_argument("--chunk-tiles", type=int, default=1024,
                   help="tiles per checkpointed chunk: the unit of resume and of sharding (default 1024)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads per process (default: torch's choice; torchrun sets 1 per process)")
    p.add_argument("--device", default="auto",
                   help="cpu | cuda | auto (under torchrun each process takes the GPU of its LOCAL_RANK)")
    p.add_argument("--force", action="store_true", help="replace an existing --out directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..index import IndexConfig, TileIndex, build_index
    from ..index.fine import FineConfig
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
        map_compression=args.map_compression,
        index_type=args.index_type,
        batch_size=args.batch_size,
        chunk_tiles=args.chunk_tiles,
        map_accuracy_m=args.map_accuracy_m,
        dsm=args.dsm,
        fine=FineConfig(methods=tuple(args.fine_methods), keypoints=not args.no_keypoints,
                        polish=args.fine_polish, kp_gsd_m=args.kp_gsd_m),
    )
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    if args.model:
        model = load_checkpoint(args.model)
    elif args.preset:
        model = create_model(args.preset)
    else:
        model = load_default_model()
    encoder = Encoder(model, device=_device(args.device), batch_size=args.batch_size)
    t0 = time.perf_counter()
    out = build_index(args.maps, encoder, args.out, config, overwrite=args.force, progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: rank 0 reports
        return 0
    index = TileIndex.load(out)
    m, t, mc = index.manifest, index.manifest["tiles"], index.manifest["map_copy"]
    summary = {
        "index": str(out),
        "tiles": t["count"],
        "scales_m": [round(s, 1) for s in t["scales_m"]],
        "count_per_scale": t["count_per_scale"],
        "type": index.index_type,
        "model": m["model"],
        "frame": m["frame"],
        "map_gsd_m": round(mc["gsd_m"], 4),
        "native_gsd_m": round(mc["native_gsd_m"], 4),
        "map_resampled": mc["resampled"],
        "map_size_px": mc["size_px"],
        "processes": m["build"]["world_size"],
        "fine": {"cells_m": [round(lv["cell_m"], 3) for lv in m["fine"]["levels"]], "methods": list(m["fine"]["methods"]),
                 "keypoints": m["fine"].get("keypoints", {}).get("count", 0), "dsm": m["fine"].get("dsm", {}).get("name")},
        "seconds": round(seconds, 1),
    }
    note = "the native GSD of the input" if not mc["resampled"] else (
        f"RESAMPLED as requested by --gsd-m (native {mc['native_gsd_m']:.4g} m/px)")
    print(f"verification map: {mc['gsd_m']:.4g} m/px, {note}", file=sys.stderr)
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _device(device: str) -> str:
    """Under torchrun, ``auto``/``cuda`` mean this process's GPU (``cuda:LOCAL_RANK``)."""
    if device in ("auto", "cuda") and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device
