"""Topic names of a drone bag: the defaults we write, and auto-detection for any bag we read.

The simulator names topics like a PX4/ArduPilot drone running MAVROS with a ROS camera driver,
so a replay of a simulated flight and of a real recording take the same path. Every name can be
overridden (``foenet simulate --topic-prefix`` / ``TopicConfig`` fields, ``foenet replay --image-topic`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable

from ..codec import topics as names
from ..errors import BagError
from . import messages as m
from .io import TopicInfo


@dataclass(frozen=True)
class TopicConfig:
    """Topic names; ``None`` in a replay means "auto-detect" (or "absent" when nothing matches)."""

    image: str | None = names.BAG_IMAGE                # sensor_msgs/Image (or .../compressed)
    camera_info: str | None = names.BAG_CAMERA_INFO    # sensor_msgs/CameraInfo
    gt_fix: str | None = names.BAG_GT_FIX              # sensor_msgs/NavSatFix (ground truth)
    gt_pose: str | None = names.BAG_GT_POSE            # geometry_msgs/PoseStamped, map frame (UTM E/N)
    imu: str | None = names.BAG_IMU                    # sensor_msgs/Imu (orientation)
    altitude: str | None = names.BAG_ALTITUDE          # std_msgs/Float64 (m above take-off ground)

    def with_compressed(self, compressed: bool) -> "TopicConfig":
        """The same names with the camera on ``<image>/compressed`` when ``compressed``."""
        if not compressed or self.image is None or self.image.endswith("/compressed"):
            return self
        base = self.image[: -len("/image_raw")] if self.image.endswith("/image_raw") else self.image
        return replace(self, image=f"{base}/image_raw/compressed")

    def as_dict(self) -> dict[str, str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


AUTO = TopicConfig(image=None, camera_info=None, gt_fix=None, gt_pose=None, imu=None, altitude=None)

# what each role accepts, and name hints ranking several candidates (earlier hint = better)
_ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "image": (m.IMAGE, m.COMPRESSED_IMAGE),
    "camera_info": (m.CAMERA_INFO,),
    "gt_fix": (m.NAVSATFIX,),
    "gt_pose": (m.POSE_STAMPED, m.POSE_COV_STAMPED, m.ODOMETRY),
    "imu": (m.IMU,),
    "altitude": (m.FLOAT64,),
}
_ROLE_HINTS: dict[str, tuple[str, ...]] = {
    "image": ("image_raw", "image_rect", "image", "camera", "color"),
    "camera_info": ("camera_info",),
    "gt_fix": ("ground_truth", "gt", "global_position/global", "fix", "gps", "navsat"),
    "gt_pose": ("ground_truth", "gt", "groundtruth", "vicon", "mocap"),
    "imu": ("imu/data", "imu"),
    "altitude": ("rel_alt", "altitude", "alt"),
}
# our own outputs must never be mistaken for ground truth when replaying a replay
_EXCLUDE = ("foenet", "estimate", "localization", "debug")


def _score(role: str, t: TopicInfo) -> tuple[int, int, int]:
    name = t.name.lower()
    hints = _ROLE_HINTS[role]
    hint_rank = next((i for i, h in enumerate(hints) if h in name), len(hints))
    type_rank = _ROLE_TYPES[role].index(t.msgtype)
    return (hint_rank, type_rank, -t.count)


def detect_topics(available: Iterable[TopicInfo], given: TopicConfig = AUTO) -> TopicConfig:
    """Fill the ``None`` fields of ``given`` from the bag's topics; check the given ones exist.

    Raises BagError when a given topic is missing or has the wrong type, or when no camera
    topic can be found, listing the bag's topics so the user can pass the right ``--*-topic``.
    """
    avail = list(available)
    by_name = {t.name: t for t in avail}
    listing = ", ".join(f"{t.name} [{t.msgtype}]" for t in avail) or "(no topics)"
    out: dict[str, str | None] = {}
    for role, types in _ROLE_TYPES.items():
        name = getattr(given, role)
        if name is not None:
            t = by_name.get(name)
            if t is None:
                raise BagError(f"topic {name} ({role}) is not in the bag; the bag has: {listing}")
            if t.msgtype not in types:
                raise BagError(f"topic {name} is {t.msgtype}, but {role} needs one of {types}")
            out[role] = name
            continue
        cands = [t for t in avail if t.msgtype in types and t.count > 0
                 and not any(x in t.name.lower() for x in _EXCLUDE)]
        if role == "image":
            cands = [t for t in cands if "depth" not in t.name.lower()]
        out[role] = min(cands, key=lambda t: _score(role, t)).name if cands else None
    if out["image"] is None:
        raise BagError(f"no camera topic (sensor_msgs/Image or CompressedImage) in the bag; it has: {listing}")
    return TopicConfig(**out)
