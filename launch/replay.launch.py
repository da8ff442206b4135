"""Replay a recorded flight: `ros2 bag play --clock`, foenet_node on sim time, and RViz.

    ros2 launch foenet_ros replay.launch.py bag:=/path/to/flight.mcap index_dir:=/path/to/index

Arguments:
    bag                the rosbag2 to play (directory or .mcap/.db3 file) -- required
    rate               playback rate (default 1.0; lower it when inference is slower than the camera)
    params_file        node parameters (default: the installed config/foenet.yaml)
    namespace          namespace of the node
    index_dir          overrides index_dir from params_file when not empty
    image_topic        camera topic in the bag (remapped onto the node's camera/image_raw)
    camera_info_topic  CameraInfo topic in the bag
    rviz               'true' to open RViz with rviz/foenet.rviz
    rviz_config        another RViz config

launch / launch_ros are imported here only.
"""

from __future__ import annotations

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _share_dir() -> Path:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory("foenet_ros"))
        except (PackageNotFoundError, OSError):  # not installed, or no AMENT_PREFIX_PATH at all
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[1]


def generate_launch_description() -> LaunchDescription:
    share = _share_dir()
    here = Path(__file__).resolve().parent
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="rosbag2 to play (directory or .mcap file)"),
            DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate"),
            DeclareLaunchArgument("params_file", default_value=str(share / "config" / "foenet.yaml")),
            DeclareLaunchArgument("namespace", default_value=""),
            DeclareLaunchArgument("index_dir", default_value=""),
            DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
            DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info"),
            DeclareLaunchArgument("rviz", default_value="true", description="Open RViz"),
            DeclareLaunchArgument("rviz_config", default_value=str(share / "rviz" / "foenet.rviz")),
            ExecuteProcess(
                cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate")],
                output="screen",
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(here / "foenet.launch.py")),
                launch_arguments={
                    "params_file": LaunchConfiguration("params_file"),
                    "namespace": LaunchConfiguration("namespace"),
                    "use_sim_time": "true",
                    "index_dir": LaunchConfiguration("index_dir"),
                    "image_topic": LaunchConfiguration("image_topic"),
                    "camera_info_topic": LaunchConfiguration("camera_info_topic"),
                }.items(),
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", LaunchConfiguration("rviz_config")],
                parameters=[{"use_sim_time": True}],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
