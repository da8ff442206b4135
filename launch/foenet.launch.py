"""Start foenet_node with config/foenet.yaml and the Fast DDS profile for large camera frames.

    ros2 launch foenet_ros foenet.launch.py index_dir:=/path/to/index \
        namespace:=uav1 image_topic:=/camera/image_raw camera_info_topic:=/camera/camera_info

Arguments:
    params_file        node parameters (default: the installed config/foenet.yaml)
    namespace          namespace of the node and its relative topics ('' = none)
    use_sim_time       'true' when time comes from /clock (bag replay, simulators)
    index_dir          overrides index_dir from params_file when not empty
    image_topic        remap of the camera topic (the node subscribes 'camera/image_raw'; with
                       image_transport: compressed, '<image_topic>/compressed')
    camera_info_topic  remap of 'camera/camera_info'
    camera_qos         auto (match the driver) | reliable | best_effort
    pose_topic         remap of ~/pose, e.g. /mavros/vision_pose/pose_cov (MAVROS recipe)
    fix_topic          remap of ~/fix, e.g. /gps/fix (robot_localization navsat_transform recipe)
    fastdds_profile    auto: config/fastdds_large_frames.xml unless FASTRTPS_DEFAULT_PROFILES_FILE is
                       already set; a path: that file; '': leave the environment alone. Start the
                       camera driver with the same profile (docs/ros.md, Transport).
    log_level          rclpy log level (debug, info, warn, error)

launch / launch_ros are imported here only: the Python package itself never needs them.
"""

from __future__ import annotations

import os
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "foenet_ros"
PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def _share_dir() -> Path:
    """The installed share directory, or the source tree when running from a checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, OSError, ValueError):  # not installed, or no AMENT_PREFIX_PATH at all
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[1]


def profile_actions(choice: str, share: Path, environ: dict) -> list:
    """SetEnvironmentVariable actions for the Fast DDS profile (see ``fastdds_profile`` above)."""
    if choice == "":
        return []
    if choice == "auto":
        if any(environ.get(k) for k in PROFILE_ENV):
            return [LogInfo(msg="Fast DDS profile from the environment kept: " + str(environ.get(PROFILE_ENV[0]) or environ.get(PROFILE_ENV[1])))]
        choice = str(share / "config" / "fastdds_large_frames.xml")
    return [SetEnvironmentVariable(k, choice) for k in PROFILE_ENV]


def _node(context, *args, **kwargs):
    """Build the node once the arguments are known (only non-empty overrides are passed)."""
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {"use_sim_time": get("use_sim_time").lower() in ("true", "1", "yes")}
    if get("index_dir"):
        overrides["index_dir"] = get("index_dir")
    if get("camera_qos"):
        overrides["camera_qos"] = get("camera_qos")
    remappings = [
        ("camera/image_raw", get("image_topic")),
        ("camera/image_raw/compressed", get("image_topic").rstrip("/") + "/compressed"),
        ("camera/camera_info", get("camera_info_topic")),
    ]
    if get("pose_topic"):
        remappings.append(("~/pose", get("pose_topic")))
    if get("fix_topic"):
        remappings.append(("~/fix", get("fix_topic")))
    return profile_actions(get("fastdds_profile"), _share_dir(), dict(os.environ)) + [
        Node(
            package=PACKAGE,
            executable="foenet_node",
            name="foenet_node",
            namespace=get("namespace"),
            parameters=[get("params_file"), overrides],
            remappings=remappings,
            arguments=["--ros-args", "--log-level", get("log_level")],
            output="screen",
            emulate_tty=True,
            # ros2 launch sends SIGINT itself on Ctrl-C: the node exits cleanly on one or two
            sigterm_timeout="10",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = _share_dir()
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=str(share / "config" / "foenet.yaml"),
                                  description="YAML file with the foenet_node parameters"),
            DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (true for bag replay)"),
            DeclareLaunchArgument("index_dir", default_value="", description="Tile index directory (overrides params_file)"),
            DeclareLaunchArgument("image_topic", default_value="camera/image_raw", description="Camera image topic"),
            DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info", description="CameraInfo topic"),
            DeclareLaunchArgument("camera_qos", default_value="", description="auto | reliable | best_effort ('' = params_file)"),
            DeclareLaunchArgument("pose_topic", default_value="", description="Remap ~/pose (e.g. /mavros/vision_pose/pose_cov)"),
            DeclareLaunchArgument("fix_topic", default_value="", description="Remap ~/fix (e.g. /gps/fix)"),
            DeclareLaunchArgument("fastdds_profile", default_value="auto",
                                  description="auto | path to a Fast DDS XML profile | '' (leave the environment alone)"),
            DeclareLaunchArgument("log_level", default_value="info", description="Log level"),
            OpaqueFunction(function=_node),
        ]
    )
