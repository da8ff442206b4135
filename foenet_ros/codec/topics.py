"""Every topic name and message type name of foenet_ros, in one place.

* node inputs/outputs: names *relative to the node* (``camera/...`` follows the namespace,
  ``~/...`` is private to the node); remap them in the launch file or with ``-r FROM:=TO``;
* bag names: what ``foenet simulate`` writes and ``foenet replay`` looks for first (like a drone
  running MAVROS with a ROS camera driver), and the topics of the replay's estimates bag;
* message type names in rosbag2 spelling (``pkg/msg/Name``).
"""

from __future__ import annotations

# --------------------------------------------------------------------------- message types
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
IMU = "sensor_msgs/msg/Imu"
RANGE = "sensor_msgs/msg/Range"
FLOAT64 = "std_msgs/msg/Float64"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
POSE_COV_STAMPED = "geometry_msgs/msg/PoseWithCovarianceStamped"
ODOMETRY = "nav_msgs/msg/Odometry"
PATH = "nav_msgs/msg/Path"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"

# --------------------------------------------------------------------------- node inputs (relative)
CAMERA_IMAGE = "camera/image_raw"
COMPRESSED_SUFFIX = "/compressed"
CAMERA_INFO_TOPIC = "camera/camera_info"

# --------------------------------------------------------------------------- node outputs (private)
FIX = "~/fix"
POSE = "~/pose"
ODOM = "~/odometry"
PATH_TOPIC = "~/path"
CANDIDATES = "~/candidates"
MAP_TILES = "~/map_tiles"
DEBUG_IMAGE = "~/debug_image"
RESET_SERVICE = "~/reset"
DIAGNOSTICS = "/diagnostics"
TF = "/tf"
CLOCK = "/clock"

# --------------------------------------------------------------------------- bags (absolute)
BAG_IMAGE = "/camera/image_raw"
BAG_CAMERA_INFO = "/camera/camera_info"
BAG_GT_FIX = "/mavros/global_position/global"
BAG_GT_POSE = "/ground_truth/pose"
BAG_IMU = "/mavros/imu/data"
BAG_ALTITUDE = "/mavros/global_position/rel_alt"

# the replay's estimates bag: the node's outputs under /foenet (what `foenet_node` in namespace
# /foenet would publish without its node name)
REPLAY_OUT = {
    "fix": "/foenet/fix",
    "pose": "/foenet/pose",
    "path": "/foenet/path",
    "candidates": "/foenet/candidates",
    "gt_path": "/ground_truth/path",
}


def compressed_topic(image_topic: str) -> str:
    """``camera/image_raw`` -> ``camera/image_raw/compressed`` (image_transport's convention)."""
    return image_topic.rstrip("/") + COMPRESSED_SUFFIX


def node_topic(node_fqn: str, private: str) -> str:
    """Absolute name of a private topic: ``("/uav1/foenet_node", "~/fix")`` -> ``/uav1/foenet_node/fix``."""
    return node_fqn.rstrip("/") + "/" + private[2:] if private.startswith("~/") else private
