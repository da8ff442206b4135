"""Start foenet_node with config/foenet.yaml.

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
    pose_topic         remap of ~/pose, e.g. /mavros/vision_pose/pose_cov (MAVROS recipe)
    fix_topic          remap of ~/fix, e.g. /gps/fix (robot_localization navsat_transform recipe)
    log_level          rclpy log level (debug, info, warn, error)

launch / launch_ros are imported here only: the Python package itself never needs them.
"""

from __future__ import annotations

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "foenet_ros"


def _share_dir() -> Path:
    """The installed share directory, or the source tree when running from a checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, OSError):  # not installed, or no AMENT_PREFIX_PATH at all
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[1]


def _node(context, *args, **kwargs):
    """Build the node once the arguments are known (only non-empty overrides are passed)."""
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {"use_sim_time": get("use_sim_time").lower() in ("true", "1", "yes")}
    if get("index_dir"):
        overrides["index_dir"] = get("index_dir")
    remappings = [
        ("camera/image_raw", get("image_topic")),
        ("camera/image_raw/compressed", get("image_topic").rstrip("/") + "/compressed"),
        ("camera/camera_info", get("camera_info_topic")),
    ]
    if get("pose_topic"):
        remappings.append(("~/pose", get("pose_topic")))
    if get("fix_topic"):
        remappings.append(("~/fix", get("fix_topic")))
    return [
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
            DeclareLaunchArgument("pose_topic", default_value="", description="Remap ~/pose (e.g. /mavros/vision_pose/pose_cov)"),
            DeclareLaunchArgument("fix_topic", default_value="", description="Remap ~/fix (e.g. /gps/fix)"),
            DeclareLaunchArgument("log_level", default_value="info", description="Log level"),
            OpaqueFunction(function=_node),
        ]
    )
