"""bag/: rosbags tools: simulate flights, replay bags through the Localizer, play bags live.

Public API::

    from foenet_ros.bag import (BagReader, BagWriter, TopicConfig, detect_topics,
        SimConfig, simulate_flight, ReplayConfig, replay_bag, compute_metrics, format_table)

Everything here works without a ROS installation (the ``rosbags`` library reads and writes
rosbag2 MCAP/sqlite3 and ROS 1 bags); only :mod:`foenet_ros.bag.live` imports rclpy.
"""

from .io import BagMessage, BagReader, BagWriter, TopicInfo
from .metrics import FrameRecord, compute_metrics, format_table
from .replay import ReplayConfig, ReplayResult, replay_bag
from .simulate import CameraEffects, SimConfig, SimResult, simulate_flight
from .topics import AUTO, TopicConfig, detect_topics
from .trajectory import FlightState, MotionConfig

__all__ = [
    "AUTO", "BagMessage", "BagReader", "BagWriter", "CameraEffects", "FlightState", "FrameRecord",
    "MotionConfig", "ReplayConfig", "ReplayResult", "SimConfig", "SimResult", "TopicConfig", "TopicInfo",
    "compute_metrics", "detect_topics", "format_table", "replay_bag", "simulate_flight",
]
