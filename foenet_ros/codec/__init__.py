"""codec/: the one ROS-free path between messages and the Localizer, shared by the node and replay.

Every function here works on *any* object with the fields of the ROS message (rclpy messages,
rosbags typestore dataclasses, ROS 1 messages read by rosbags, plain test objects): nothing
imports rclpy, and message classes are never constructed here. The node (:mod:`foenet_ros.ros`)
and the bag replay (:mod:`foenet_ros.bag.replay`) both decode with these functions and turn
GeoEstimates into output *fields* with them, then build their own message objects from those
fields, so a live run and a replay of the same frames give the same numbers.

Modules (import them directly; this package imports nothing on purpose):

* :mod:`.topics` - every topic name and message type name, in one place;
* :mod:`.image` - ``sensor_msgs/Image`` and ``CompressedImage`` -> uint8 RGB, with a pixel budget
  checked from the message / the compressed header *before* anything is allocated or decoded;
* :mod:`.camera` - ``sensor_msgs/CameraInfo`` -> validated ``geo.CameraIntrinsics``;
* :mod:`.imu` - orientations: ``sensor_msgs/Imu`` -> heading, camera attitude and their sigmas;
  REP-103 yaw <-> compass heading; quaternions;
* :mod:`.aiding` - GNSS prior validation and the ``Localizer.localize`` keyword arguments (the one
  place where optional Localizer arguments such as the IMU sigmas are wired);
* :mod:`.outputs` - GeoEstimate -> NavSatFix / pose / odometry / TF fields; the status policy
  (which estimates are a fix); the map frame (true-north ENU tangent plane);
* :mod:`.autopilot` - GeoEstimate propagated to "now" -> MAVLink ``GPS_INPUT`` / PX4 fields;
* :mod:`.timeline` - frame stamps: out-of-order frames, time jumps (bag loops), lost frames.

Room order (docs/ARCHITECTURE.md): codec uses geo (and duck-typed GeoEstimates); bag/ and ros/
use codec, never the other way round.
"""
