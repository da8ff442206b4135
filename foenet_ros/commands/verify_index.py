"""Verify an index directory: the manifest's own checksum and schema, the size and sha256 of every
file it lists, map.tif's CRS/transform/size against the manifest, the tiles against the map, and
a full decode of the map copy. Prints one JSON summary and exits 0 when the index is intact;
prints one error line and exits 2 when it is not (the same checks run whenever an index loads).
"""

from __future__ import annotations

import argparse
import json

HELP = "check an index directory's checksums, files, georeference and tiles"
EXAMPLES = """
  foenet verify-index maps/banepa                 # full check: every file re-hashed (streamed sha256)
  foenet verify-index /data/big_index --sizes-only   # huge index: sizes + structure only, no hashing
  foenet verify-index maps/banepa && ros2 run foenet_ros foenet_node --ros-args -p index_dir:=maps/banepa
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", metavar="DIR", help="index directory from `foenet build-index`")
    p.add_argument("--sizes-only", action="store_true",
                   help="check file sizes but do not re-hash their contents (fast on very large indexes)")


def run(args: argparse.Namespace) -> int:
    from ..index.tile_index import verify_index

    report = verify_index(args.index, verify="size" if args.sizes_only else "hash")
    report = {"index": report.pop("path"), "ok": True, **report}
    report["files_s"] = round(report["files_s"], 3)
    report["seconds"] = round(report["seconds"], 3)
    print(json.dumps(report, indent=2))
    return 0
