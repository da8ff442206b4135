"""Thin, optional flight-stack adapters fed by the node's GeoEstimates.

* :mod:`.mavlink_gps` - MAVLink ``GPS_INPUT`` straight to the autopilot through pymavlink
  (ArduPilot ``GPS1_TYPE=14`` / PX4), UDP or serial, rate limited;
* :mod:`.px4` - PX4 uXRCE-DDS ``/fmu/in/aux_global_position`` when ``px4_msgs`` is importable.

MAVROS ``vision_pose/pose_cov`` and robot_localization's ``navsat_transform`` need no code: they
are remaps/params of the node's ``~/pose`` and ``~/fix`` (see ``config/`` and docs/ros.md).
"""
