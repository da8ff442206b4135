"""ROS 2 side of foenet_ros: the ``foenet_node``, message conversions and flight-stack adapters.

This is the only room (besides the live bag player) that imports rclpy and ROS message
packages. Import the submodules directly:

* :mod:`foenet_ros.ros.conversions` - sensor_msgs/geometry_msgs/nav_msgs <-> numpy / GeoEstimate;
* :mod:`foenet_ros.ros.node` - ``FoenetNode`` and the ``foenet_node`` entry point ``main()``;
* :mod:`foenet_ros.ros.adapters` - MAVLink ``GPS_INPUT`` (pymavlink), PX4 ``aux_global_position``.

Nothing is imported here so that ``import foenet_ros.ros`` stays cheap and side-effect free.
"""
