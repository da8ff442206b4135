"""Replay a recorded flight: foenet_node on sim time, the bag played once the index is loaded, RViz when present.

    ros2 launch foenet_ros replay.launch.py bag:=/path/to/flight.mcap index_dir:=/path/to/index

Order of events: the node starts (sim time, Fast DDS profile for large frames); a small waiter
(``python -m foenet_ros.ros.wait_ready``) exits when the node's /diagnostics say the index is
loaded; only then the bag is played with /clock (``ros2 bag play --clock`` where rosbag2 is
installed, else ``foenet play``, which needs no rosbag2). RViz starts only where rviz2 exists.

Arguments:
    bag                the bag to play (rosbag2 directory, .mcap/.db3; ROS 1 .bag with player:=foenet) -- required
    rate               playback rate (default 1.0; lower it when inference is slower than the camera)
    params_file        node parameters (default: the installed config/foenet.yaml)
    namespace          namespace of the node (and of RViz: its topics follow it)
    index_dir          overrides index_dir from params_file when not empty
    image_topic        camera topic in the bag (remapped onto the node's camera/image_raw)
    camera_info_topic  CameraInfo topic in the bag
    player             auto (ros2 bag play when rosbag2 is installed, else foenet play) | ros2 | foenet
    rviz               auto (when rviz2 is installed) | true | false
    rviz_config        another RViz config
    wait_timeout_s     give up (and play nothing) when the index is not loaded within this (default 300)
    fastdds_profile    as in foenet.launch.py

launch / launch_ros are imported here only.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo, OpaqueFunction,
                            RegisterEventHandler)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

HERE = Path(__file__).resolve().parent


def _share_dir() -> Path:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory("foenet_ros"))
        except (PackageNotFoundError, OSError, ValueError):  # not installed, or no AMENT_PREFIX_PATH at all
            pass
    except ImportError:
        pass
    return HERE.parent


def player_cmd(choice: str, bag: str, rate: str) -> list[str]:
    """The bag player: rosbag2's when asked for or installed (auto), else ours (rosbags, no rosbag2)."""
    rosbag2 = shutil.which("ros2") is not None and importlib.util.find_spec("ros2bag") is not None
    if choice == "ros2" or (choice == "auto" and rosbag2):
        return ["ros2", "bag", "play", bag, "--clock", "--rate", rate]
    return [sys.executable, "-m", "foenet_ros.cli", "play", bag, "--rate", rate]


def rviz_available() -> bool:
    if shutil.which("rviz2"):
        return True
    try:
        from ament_index_python.packages import get_package_prefix

        return Path(get_package_prefix("rviz2"), "lib", "rviz2", "rviz2").exists()
    except Exception:  # noqa: BLE001 - no ament index, no rviz2
        return False


def _replay(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    ns = get("namespace").strip("/")
    node_fqn = f"/{ns}/foenet_node" if ns else "/foenet_node"
    actions: list = [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(HERE / "foenet.launch.py")),
            launch_arguments={
                "params_file": get("params_file"), "namespace": ns, "use_sim_time": "true",
                "index_dir": get("index_dir"), "image_topic": get("image_topic"),
                "camera_info_topic": get("camera_info_topic"), "fastdds_profile": get("fastdds_profile"),
            }.items(),
        )
    ]
    waiter = ExecuteProcess(cmd=[sys.executable, "-m", "foenet_ros.ros.wait_ready", "--node", node_fqn,
                                 "--timeout", get("wait_timeout_s")], name="wait_for_index", output="screen")
    player = ExecuteProcess(cmd=player_cmd(get("player"), get("bag"), get("rate")), name="bag_player", output="screen")

    def after_wait(event, _context):
        if event.returncode == 0:
            return [LogInfo(msg=f"{node_fqn} has its index: playing {get('bag')}"), player]
        return [LogInfo(msg=f"{node_fqn} did not load its index (see its /diagnostics): the bag is not played")]

    actions += [waiter, RegisterEventHandler(OnProcessExit(target_action=waiter, on_exit=after_wait))]
    rviz = get("rviz").lower()
    if rviz in ("true", "auto", "1", "yes") and rviz_available():
        actions.append(Node(
            package="rviz2", executable="rviz2", name="rviz2", namespace=ns,
            arguments=["-d", get("rviz_config")], parameters=[{"use_sim_time": True}],
            # the RViz config's topics are relative ("foenet_node/pose"): they follow the namespace
            remappings=[("camera/image_raw", get("image_topic"))], output="screen",
        ))  # fmt: skip
    elif rviz in ("true", "1", "yes"):
        actions.append(LogInfo(msg="rviz:=true but rviz2 is not installed here: running without RViz"))
    return actions


def generate_launch_description() -> LaunchDescription:
    share = _share_dir()
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="bag to play (rosbag2 directory or .mcap/.db3 file)"),
            DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate"),
            DeclareLaunchArgument("params_file", default_value=str(share / "config" / "foenet.yaml")),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument("index_dir", default_value=""),
            DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera topic in the bag"),
            DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info"),
            DeclareLaunchArgument("player", default_value="auto", description="auto | ros2 | foenet"),
            DeclareLaunchArgument("rviz", default_value="auto", description="auto | true | false"),
            DeclareLaunchArgument("rviz_config", default_value=str(share / "rviz" / "foenet.rviz")),
            DeclareLaunchArgument("wait_timeout_s", default_value="300"),
            DeclareLaunchArgument("fastdds_profile", default_value="auto"),
            OpaqueFunction(function=_replay),
        ]
    )
