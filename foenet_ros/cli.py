"""``foenet <command>``: the command-line entry point.

Each subcommand lives in its own thin module under ``foenet_ros.commands`` exposing

* ``HELP``: one line for ``foenet --help``;
* ``EXAMPLES``: a block of working examples shown by ``foenet <command> --help``;
* ``add_arguments(parser)``: declares the flags;
* ``run(args) -> int``: turns the flags into library calls (argparse stops there).

Modules are imported lazily so ``foenet --help`` does not pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from typing import Sequence

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("foenet_ros.commands.demo", "end-to-end demo: index a map, simulate a flight, replay it, print metrics"),
    "build-index": ("foenet_ros.commands.build_index", "build a FAISS tile index from georeferenced map rasters"),
    "verify-index": ("foenet_ros.commands.verify_index", "check an index's checksums, files, georeference and tiles"),
    "localize": ("foenet_ros.commands.localize", "localize drone images against a tile index (JSON out)"),
    "simulate": ("foenet_ros.commands.simulate", "render a simulated drone flight over a map into a rosbag"),
    "replay": ("foenet_ros.commands.replay", "run the Localizer over a rosbag and score it (metrics, plot, MCAP)"),
    "play": ("foenet_ros.commands.play", "publish a bag on live ROS topics at its recorded rate (with /clock)"),
    "train": ("foenet_ros.commands.train", "train FOENet (presets + overrides; torchrun for multi-GPU)"),
    "train-overlap": ("foenet_ros.commands.train_overlap", "train the overlap head (the fine stage's learned dense features)"),
    "whiten": ("foenet_ros.commands.whiten", "learned whitening of the descriptor, folded into the model (minutes)"),
    "eval": ("foenet_ros.commands.eval", "retrieval evaluation: Recall@K, AP, distance-based recall (JSON out)"),
    "bench": ("foenet_ros.commands.bench", "measure model size, GFLOPs and forward time per preset"),
    "export": ("foenet_ros.commands.export", "export a checkpoint to ONNX (checked against PyTorch)"),
}

EPILOG = """examples:
  foenet demo                                   # the end-to-end demo on the bundled default
  foenet bench --presets foenet-mnv2            # model size / speed
  foenet export --out foenet.onnx               # default model -> ONNX
  foenet <command> --help                       # each command's flags and examples
"""


def _available(name: str) -> bool:
    module, _ = COMMANDS[name]
    return importlib.util.find_spec(module) is not None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; when ``command`` is given its module is imported and wired in."""
    import importlib.util  # noqa: F401 - used by _available

    parser = argparse.ArgumentParser(
        prog="foenet",
        description="FOENet visual geo-localization for drones.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module_name, help_line) in COMMANDS.items():
        if not _available(name):
            continue
        if name != command:
            sub.add_parser(name, help=help_line)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_line,
            description=getattr(module, "__doc__", None) or help_line,
            epilog="examples:\n" + module.EXAMPLES.strip("\n"),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``foenet`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _setup_logging(args.verbose)
    from .errors import FoenetError

    try:
        return int(args._run(args) or 0)
    except FoenetError as exc:
        print(f"foenet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
