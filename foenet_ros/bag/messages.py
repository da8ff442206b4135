"""Typed builders and decoders for the ROS messages in our bags (rosbags typestore, no ROS install).

Everything here works on the ROS 2 Jazzy typestore of the ``rosbags`` library: messages are
plain dataclasses that ``typestore.serialize_cdr`` turns into the exact bytes a ROS 2 node sends.

Conventions (see docs/ARCHITECTURE.md):

* images go in as ``uint8`` RGB ``(H, W, 3)`` or mono ``(H, W)`` and come out (:func:`image_from_msg`,
  the codec's decoder shared with the node) as ``uint8`` RGB ``(H, W, 3)``;
* a compass heading (degrees clockwise from TRUE north, of the image's *up* direction) becomes an
  ENU yaw ``radians(90 - heading)`` (REP-103, true-north ENU) in orientations; a heading from a
  map's UTM grid north must be converted first (``GeoFrame.grid_to_true_heading``);
* attitude quaternions describe a body frame FLU (x = image-up / forward, y = left, z = up) in
  ENU. The camera looks down the body's -z. ``CameraPose.pitch_deg`` (optical axis tilted
  forward, towards image-up) is a nose-*up* rotation of the strapdown body, i.e. a negative
  REP-103 pitch; ``roll_deg`` maps to the REP-103 roll. :func:`attitude_to_quaternion` and
  :func:`quaternion_to_attitude` are exact inverses.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ..codec.camera import camera_info_to_intrinsics as intrinsics_from_camera_info  # noqa: F401  (one parser)
from ..codec.image import decode_image as image_from_msg  # noqa: F401  (one decoder, node and replay)
from ..codec.imu import attitude_to_quaternion, quaternion_to_attitude  # noqa: F401  (re-exported)
from ..codec.topics import (  # noqa: F401  (message type names live in codec.topics)
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    FLOAT64,
    IMAGE,
    IMU,
    MARKER_ARRAY,
    NAVSATFIX,
    ODOMETRY,
    PATH,
    POSE_COV_STAMPED,
    POSE_STAMPED,
)
from ..errors import ImageError


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The ROS 2 Jazzy message typestore (cached; building it takes ~0.1 s)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _t(name: str) -> Any:
    return typestore().types[name]


def serialize(msg: Any) -> bytes:
    """CDR bytes of a typestore message (its type comes from ``msg.__msgtype__``)."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


# --------------------------------------------------------------------------- time, header


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (or ROS 1 ``Time``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Any:
    return _t("builtin_interfaces/msg/Time")(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(ns: int, frame_id: str) -> Any:
    return _t("std_msgs/msg/Header")(stamp=ns_to_stamp(ns), frame_id=frame_id)


# --------------------------------------------------------------------------- images


def image_msg(img: np.ndarray, ns: int, frame_id: str = "camera_optical") -> Any:
    """``sensor_msgs/Image`` (``rgb8`` or ``mono8``) from a uint8 RGB ``(H, W, 3)`` / mono ``(H, W)`` array."""
    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ImageError(f"expected uint8 (H, W, 3) RGB or (H, W) mono, got {img.dtype} {img.shape}")
    enc = "rgb8" if img.ndim == 3 else "mono8"
    h, w = img.shape[:2]
    return _t(IMAGE)(
        header=header(ns, frame_id), height=h, width=w, encoding=enc, is_bigendian=0,
        step=w * (3 if img.ndim == 3 else 1), data=img.reshape(-1),
    )


def compressed_image_msg(img: np.ndarray, ns: int, frame_id: str = "camera_optical", quality: int = 90) -> Any:
    """``sensor_msgs/CompressedImage`` (JPEG) from a uint8 RGB or mono array."""
    import cv2

    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return _t(COMPRESSED_IMAGE)(header=header(ns, frame_id), format="jpeg", data=buf.reshape(-1))


# --------------------------------------------------------------------------- camera info


def camera_info_msg(intr: Any, ns: int, frame_id: str = "camera_optical") -> Any:
    """``sensor_msgs/CameraInfo`` (plumb_bob) from a ``geo.CameraIntrinsics``."""
    d = [float(v) for v in (tuple(intr.dist) + (0.0,) * 5)[: max(5, len(intr.dist))]]
    k = np.array([intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1], dtype=np.float64)
    p = np.array([intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0], dtype=np.float64)
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t(CAMERA_INFO)(
        header=header(ns, frame_id), height=int(intr.height), width=int(intr.width),
        distortion_model="plumb_bob" if len(d) <= 5 else "rational_polynomial",
        d=np.array(d, dtype=np.float64), k=k, r=np.eye(3).reshape(-1), p=p,
        binning_x=0, binning_y=0, roi=roi,
    )


def camera_info_from_yaml(path: str) -> Any:
    """``geo.CameraIntrinsics`` from a ROS ``camera_calibration`` YAML file (camera_matrix, distortion_coefficients)."""
    import yaml

    from ..errors import CameraError
    from ..geo import CameraIntrinsics

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        k = np.asarray(doc["camera_matrix"]["data"], dtype=np.float64).reshape(3, 3)
        dist = tuple(float(v) for v in (doc.get("distortion_coefficients") or {}).get("data", []) or [])
        intr = CameraIntrinsics(
            width=int(doc["image_width"]), height=int(doc["image_height"]), fx=float(k[0, 0]),
            fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]),
            dist=dist if any(v != 0 for v in dist) else (),
        )
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise CameraError(
            f"cannot read camera calibration {path}: {exc}; expected the camera_calibration YAML keys "
            "image_width, image_height, camera_matrix.data[9], distortion_coefficients.data"
        ) from exc
    if hasattr(intr, "validate"):
        intr.validate()
    return intr


# --------------------------------------------------------------------------- orientation


def quaternion_msg(q: Sequence[float]) -> Any:
    return _t("geometry_msgs/msg/Quaternion")(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))


def imu_msg(ns: int, heading_deg: float, pitch_deg: float, roll_deg: float, frame_id: str = "base_link", sigma_deg: float = 1.0) -> Any:
    """``sensor_msgs/Imu`` carrying only an orientation (angular velocity / acceleration marked unknown: cov[0] = -1)."""
    vec = _t("geometry_msgs/msg/Vector3")(x=0.0, y=0.0, z=0.0)
    unknown = np.zeros(9)
    unknown[0] = -1.0
    ocov = np.diag([math.radians(sigma_deg) ** 2] * 3).reshape(-1)
    return _t(IMU)(
        header=header(ns, frame_id), orientation=quaternion_msg(attitude_to_quaternion(heading_deg, pitch_deg, roll_deg)),
        orientation_covariance=ocov, angular_velocity=vec, angular_velocity_covariance=unknown.copy(),
        linear_acceleration=vec, linear_acceleration_covariance=unknown.copy(),
    )


def float64_msg(value: float) -> Any:
    return _t(FLOAT64)(data=float(value))


# --------------------------------------------------------------------------- positions


def navsatfix_msg(ns: int, lat: float, lon: float, alt: float, cov_enu: np.ndarray | None = None,
                  frame_id: str = "gps", status: int = 0) -> Any:
    """``sensor_msgs/NavSatFix``; ``cov_enu`` is a 3x3 ENU covariance in m^2 (None = unknown)."""
    status_msg = _t("sensor_msgs/msg/NavSatStatus")(status=int(status), service=1)
    if cov_enu is None:
        cov, cov_type = np.zeros(9), 0
    else:
        cov, cov_type = np.asarray(cov_enu, dtype=np.float64).reshape(-1), 3
    return _t(NAVSATFIX)(
        header=header(ns, frame_id), status=status_msg, latitude=float(lat), longitude=float(lon),
        altitude=float(alt), position_covariance=cov, position_covariance_type=cov_type,
    )


def pose_msg(x: float, y: float, z: float, q: Sequence[float]) -> Any:
    point = _t("geometry_msgs/msg/Point")(x=float(x), y=float(y), z=float(z))
    return _t("geometry_msgs/msg/Pose")(position=point, orientation=quaternion_msg(q))


def pose_stamped_msg(ns: int, x: float, y: float, z: float, q: Sequence[float], frame_id: str = "map") -> Any:
    return _t(POSE_STAMPED)(header=header(ns, frame_id), pose=pose_msg(x, y, z, q))


def pose_cov_stamped_msg(ns: int, x: float, y: float, z: float, q: Sequence[float], cov6: np.ndarray,
                         frame_id: str = "map") -> Any:
    """``PoseWithCovarianceStamped``; ``cov6`` is the 6x6 (x, y, z, rotX, rotY, rotZ) covariance."""
    pwc = _t("geometry_msgs/msg/PoseWithCovariance")(
        pose=pose_msg(x, y, z, q), covariance=np.asarray(cov6, dtype=np.float64).reshape(36)
    )
    return _t(POSE_COV_STAMPED)(header=header(ns, frame_id), pose=pwc)


def path_msg(ns: int, poses: list[Any], frame_id: str = "map") -> Any:
    return _t(PATH)(header=header(ns, frame_id), poses=list(poses))


def color(r: float, g: float, b: float, a: float = 1.0) -> Any:
    return _t("std_msgs/msg/ColorRGBA")(r=float(r), g=float(g), b=float(b), a=float(a))


def marker_msg(ns: int, marker_ns: str, marker_id: int, mtype: int, points_xyz: np.ndarray, rgba: Sequence[float],
               scale: float = 1.0, frame_id: str = "map", lifetime_s: float = 0.0, text: str = "") -> Any:
    """``visualization_msgs/Marker`` (ADD) with ``points_xyz`` ``(N, 3)``; type codes as in the message."""
    M = _t("visualization_msgs/msg/Marker")
    pts = [_t("geometry_msgs/msg/Point")(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in np.asarray(points_xyz)]
    pos = pts[0] if mtype in (M.SPHERE, M.CUBE, M.TEXT_VIEW_FACING) and pts else _t("geometry_msgs/msg/Point")(x=0.0, y=0.0, z=0.0)
    life = _t("builtin_interfaces/msg/Duration")(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    return M(
        header=header(ns, frame_id), ns=marker_ns, id=int(marker_id), type=int(mtype), action=M.ADD,
        pose=pose_msg(pos.x, pos.y, pos.z, (0.0, 0.0, 0.0, 1.0)),
        scale=_t("geometry_msgs/msg/Vector3")(x=float(scale), y=float(scale), z=float(scale)),
        color=color(*rgba), lifetime=life, frame_locked=False,
        points=[] if mtype in (M.SPHERE, M.CUBE, M.TEXT_VIEW_FACING) else pts, colors=[], texture_resource="",
        texture=_t("sensor_msgs/msg/CompressedImage")(header=header(0, ""), format="", data=np.zeros(0, np.uint8)),
        uv_coordinates=[], text=text, mesh_resource="",
        mesh_file=_t("visualization_msgs/msg/MeshFile")(filename="", data=np.zeros(0, np.uint8)),
        mesh_use_embedded_materials=False,
    )


def marker_array_msg(markers: list[Any]) -> Any:
    return _t(MARKER_ARRAY)(markers=list(markers))


# --------------------------------------------------------------------------- from codec output fields


def navsatfix_from_fields(ns: int, f: Any, frame_id: str = "base_link") -> Any:
    """``sensor_msgs/NavSatFix`` from :class:`foenet_ros.codec.outputs.NavSatFixFields` (what the node publishes)."""
    status_msg = _t("sensor_msgs/msg/NavSatStatus")(status=int(f.status), service=0)
    return _t(NAVSATFIX)(
        header=header(ns, frame_id), status=status_msg, latitude=float(f.latitude), longitude=float(f.longitude),
        altitude=float(f.altitude), position_covariance=np.asarray(f.position_covariance, dtype=np.float64),
        position_covariance_type=int(f.position_covariance_type),
    )


def pose_cov_from_fields(ns: int, f: Any, frame_id: str = "map") -> Any:
    """``PoseWithCovarianceStamped`` from :class:`foenet_ros.codec.outputs.PoseFields`."""
    return pose_cov_stamped_msg(ns, *f.position, f.orientation, np.asarray(f.covariance), frame_id=frame_id)
