"""PX4 uXRCE-DDS: publish GeoEstimates on ``/fmu/in/aux_global_position`` (EKF2 auxiliary global position).

Needs ``px4_msgs`` matching the PX4 firmware (built in your ROS workspace). PX4 >= 1.17 uses
``px4_msgs/AuxGlobalPosition``; 1.16 used ``px4_msgs/VehicleGlobalPosition`` on the same topic;
whichever the installed px4_msgs has is used. ``timestamp_sample`` is the camera frame's capture
time, ``id`` the ``px4_source_id`` parameter. PX4 side (docs/ros.md): ``EKF2_AGP_CTRL`` = 1,
``EKF2_AGP_DELAY`` = the node's capture-to-publish latency, ``EKF2_AGP_NOISE`` as a floor,
``EKF2_AGP_GATE``. Where px4_msgs is not importable,
:func:`make_px4_publisher` returns ``None`` and logs why (the node keeps running).
"""

from __future__ import annotations

from typing import Any

from foenet_ros.codec.autopilot import px4_aux_fields

SOURCE_VISION = 2  # AuxGlobalPosition.SOURCE_VISION


def load_px4_message() -> tuple[type, str]:
    """``(message class, name)`` for aux global position from px4_msgs.

    Raises:
        ImportError: with the reason (px4_msgs not installed, or too old for either message).
    """
    try:
        import px4_msgs.msg as px4  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            f"px4_msgs is not importable ({exc}); build PX4/px4_msgs (matching your PX4 version) in your "
            "ROS 2 workspace and source it to publish /fmu/in/aux_global_position"
        ) from exc
    for name in ("AuxGlobalPosition", "VehicleGlobalPosition"):
        cls = getattr(px4, name, None)
        if cls is not None:
            return cls, name
    raise ImportError("px4_msgs has neither AuxGlobalPosition nor VehicleGlobalPosition; update px4_msgs")


def fill_aux_global_position(msg: Any, est: Any, now_us: int, ground_altitude_amsl_m: float, alt_sigma_m: float,
                             source_id: int = 1, sample_us: int | None = None) -> Any:
    """Fill an AuxGlobalPosition (or VehicleGlobalPosition) from a GeoEstimate; unknowns become NaN.

    ``now_us`` is the publish time, ``sample_us`` the frame's capture time (``timestamp_sample``;
    ``now_us`` when not given); ``ground_altitude_amsl_m`` is the AMSL height of the map's ground plane.
    """
    values = px4_aux_fields(est, now_us, now_us if sample_us is None else sample_us, ground_altitude_amsl_m,
                            alt_sigma_m, source_id, SOURCE_VISION)
    fields = msg.get_fields_and_field_types() if hasattr(msg, "get_fields_and_field_types") else {}
    for key, value in values.items():
        if key in fields:
            setattr(msg, key, value)
    return msg


class Px4AuxGlobalPositionPublisher:
    """Publishes usable GeoEstimates to PX4 (construct via :func:`make_px4_publisher`)."""

    def __init__(self, node: Any, msg_cls: type, topic: str, source_id: int = 1) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self._node = node
        self._cls = msg_cls
        self._source_id = source_id
        # reliable depth 1 matches both reliable and best-effort readers of the XRCE agent
        self._pub = node.create_publisher(msg_cls, topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def publish(self, est: Any, ground_altitude_amsl_m: float, alt_sigma_m: float, sample_us: int | None = None) -> None:
        """Publish ``est``; ``sample_us`` = the frame's capture time in the node clock's microseconds."""
        now_us = self._node.get_clock().now().nanoseconds // 1000
        self._pub.publish(fill_aux_global_position(self._cls(), est, now_us, ground_altitude_amsl_m, alt_sigma_m,
                                                   self._source_id, sample_us))

    def destroy(self) -> None:
        self._node.destroy_publisher(self._pub)


def make_px4_publisher(node: Any, topic: str = "/fmu/in/aux_global_position", source_id: int = 1) -> Px4AuxGlobalPositionPublisher | None:
    """A publisher when px4_msgs is importable, else ``None`` after logging the reason on the node."""
    try:
        cls, name = load_px4_message()
    except ImportError as exc:
        node.get_logger().warning(f"PX4 adapter disabled: {exc}")
        return None
    node.get_logger().info(f"PX4 adapter: publishing px4_msgs/{name} on {topic}")
    return Px4AuxGlobalPositionPublisher(node, cls, topic, source_id)
