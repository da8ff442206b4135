"""Thin argparse front-ends, one per `foenet` subcommand (see foenet_ros/cli.py)."""
