"""foenet_ros: absolute visual geo-localization for drones with FOENet, as a ROS 2 package.

The package is organised in rooms with one job each (see docs/ARCHITECTURE.md):
``model`` -> ``geo`` -> ``data``/``index`` -> ``localize`` -> ``bag``/``ros``.
Nothing here imports rclpy except ``foenet_ros.ros`` (and the live bag player).
"""

__version__ = "0.1.0"
