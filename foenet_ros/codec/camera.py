"""``sensor_msgs/CameraInfo`` -> validated :class:`~foenet_ros.geo.CameraIntrinsics` (node and replay alike).

Reads ROS 2 field names (``k``, ``d``, ``roi``, ``binning_x``) and ROS 1 ones (``K``, ``D``) from
rclpy messages, rosbags dataclasses or anything with those attributes. Binning divides the image
size, focal lengths and principal point; a set ROI crops them. ``plumb_bob`` /
``rational_polynomial`` coefficients pass through as OpenCV ``dist``; an all-zero ``d`` means no
distortion.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import CameraError

DISTORTION_MODELS = ("", "plumb_bob", "rational_polynomial")


def _field(msg: Any, name: str) -> Any:
    if hasattr(msg, name):
        return getattr(msg, name)
    if hasattr(msg, name.upper()):
        return getattr(msg, name.upper())
    raise CameraError(f"CameraInfo has no field {name!r}")


def camera_info_to_intrinsics(msg: Any) -> Any:
    """Turn a ``sensor_msgs/CameraInfo`` into a validated ``geo.CameraIntrinsics``.

    Raises:
        CameraError: NaN/inf/zero/negative K entries, a zero image size, a K of the wrong length,
            non-finite distortion, an unsupported distortion model (e.g. ``equidistant``), or
            intrinsics that fail :meth:`CameraIntrinsics.validate`.
    """
    from ..geo import CameraIntrinsics

    try:
        k = [float(v) for v in _field(msg, "k")]
        dist = tuple(float(v) for v in _field(msg, "d"))
        width, height = int(msg.width), int(msg.height)
    except (TypeError, ValueError) as exc:
        raise CameraError(f"CameraInfo fields are not numbers: {exc}") from exc
    if len(k) != 9:
        raise CameraError(f"CameraInfo K must have 9 entries, got {len(k)}")
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        raise CameraError(f"CameraInfo K has non-finite entries: fx={fx} fy={fy} cx={cx} cy={cy}")
    if fx <= 0 or fy <= 0:
        raise CameraError(f"CameraInfo K has a zero or negative focal length (fx={fx}, fy={fy}): uncalibrated camera?")
    if width <= 0 or height <= 0:
        raise CameraError(f"CameraInfo has zero image size ({width}x{height})")
    model = str(getattr(msg, "distortion_model", "") or "")
    if model not in DISTORTION_MODELS:
        raise CameraError(f"distortion model {model!r} is not supported; use plumb_bob or rational_polynomial")
    if not all(math.isfinite(v) for v in dist):
        raise CameraError(f"CameraInfo distortion coefficients are not finite: {dist}")
    if not any(v != 0.0 for v in dist):
        dist = ()
    roi = getattr(msg, "roi", None)
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0:
        cx -= float(roi.x_offset)
        cy -= float(roi.y_offset)
        width, height = int(roi.width), int(roi.height)
    bx, by = max(1, int(getattr(msg, "binning_x", 0) or 0)), max(1, int(getattr(msg, "binning_y", 0) or 0))
    if bx > 1 or by > 1:
        fx, cx, width = fx / bx, cx / bx, width // bx
        fy, cy, height = fy / by, cy / by, height // by
    intr = CameraIntrinsics(width=width, height=height, fx=fx, fy=fy, cx=cx, cy=cy, dist=dist)
    intr.validate()
    return intr
