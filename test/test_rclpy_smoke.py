"""The ROS install story: real rclpy from the ros-jazzy wheels imports and a publisher /
subscriber pair exchanges a message over Fast DDS."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-jazzy-rclpy wheels) not installed")

pytestmark = pytest.mark.ros


def test_publisher_subscriber_exchange_one_message() -> None:
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import NavSatFix

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("foenet_smoke", context=context)
        received: list[NavSatFix] = []
        node.create_subscription(NavSatFix, "smoke_fix", received.append, 10)
        pub = node.create_publisher(NavSatFix, "smoke_fix", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        msg = NavSatFix(latitude=27.63, longitude=85.52, altitude=1450.0)
        deadline = time.monotonic() + 20.0
        while not received and time.monotonic() < deadline:
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
        assert received, "no message came back over Fast DDS within 20 s"
        assert received[0].latitude == pytest.approx(27.63)
        assert received[0].longitude == pytest.approx(85.52)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
