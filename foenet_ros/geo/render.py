"""Render what a camera at a given pose sees of a flat map: the simulator's and the training pairs' eye.

One ``cv2.warpPerspective`` through ``H = (ground -> image) @ (map pixel -> ground)`` renders the
ideal pinhole view; when the camera has lens distortion, a ``cv2.remap`` bends it into the raw
(distorted) image a real camera would deliver. The map is sampled from a pyramid level close to
the view's ground resolution so far-away texture does not alias.
"""

from __future__ import annotations

import functools
import logging
import math

import cv2
import numpy as np

from ..errors import CameraError
from .camera import (
    CameraIntrinsics,
    CameraPose,
    ground_to_image_homography,
    horizon_margin_deg,
    image_center_ground,
    image_corners,
)
from .raster import MapRaster

log = logging.getLogger(__name__)

#: refuse views whose most upward corner ray is closer than this to the horizon (degrees):
#: near the horizon one pixel covers kilometres and the flat-ground model is meaningless
MIN_HORIZON_MARGIN_DEG = 2.0


def view_gsd_m(intr: CameraIntrinsics, pose: CameraPose) -> float:
    """Ground size of one pixel at the principal point, metres (slant range / focal length)."""
    g = image_center_ground(intr, pose)
    rng = math.sqrt((g[0] - pose.x) ** 2 + (g[1] - pose.y) ** 2 + pose.alt_m**2)
    # the slanted ground stretches the pixel by 1/cos(tilt) along the tilt direction: use the mean
    tilt = math.radians(pose.tilt_deg)
    return rng / math.sqrt(intr.fx * intr.fy) / math.sqrt(max(math.cos(tilt), 1e-6))


def render_view(
    map: MapRaster,  # noqa: A002 - the contract's name
    intr: CameraIntrinsics,
    pose: CameraPose,
    *,
    distort: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The perspective image a camera at ``pose`` sees of ``map`` (flat ground at z = 0).

    Args:
        map: the orthophoto (its frame is the pose's frame).
        intr: camera intrinsics; with ``intr.dist`` set and ``distort=True`` the output is the
            raw distorted image (as the camera delivers it), else the ideal pinhole image.
        pose: camera pose in ``map.frame``.

    Returns:
        ``(image, valid)``: ``uint8 [h, w, C]`` (same channels as the map; ``[h, w]`` for a mono
        map) and ``bool [h, w]`` (False where the view leaves the map or the map has no data).

    Raises:
        CameraError: invalid intrinsics/pose, or the horizon (or less than
            ``MIN_HORIZON_MARGIN_DEG`` below it) is in view.
    """
    intr.validate()
    pose.validate()
    margin = horizon_margin_deg(intr, pose)
    if margin < MIN_HORIZON_MARGIN_DEG:
        raise CameraError(
            f"the horizon is (nearly) in view: tilt {pose.tilt_deg:.1f} deg with a "
            f"{intr.vfov_deg:.0f} x {intr.hfov_deg:.0f} deg field of view leaves only {margin:.1f} deg below it; "
            "reduce pitch/roll (flat-ground rendering needs every pixel to see the ground)"
        )
    w, h = intr.width, intr.height
    out_gsd = view_gsd_m(intr, pose)
    H = ground_to_image_homography(intr, pose)
    if not (distort and intr.has_distortion):
        return map.warp(H, (w, h), out_gsd, perspective=True)

    # 1. where do the raw pixels land in the ideal image? (cached per camera: a flight renders
    #    hundreds of frames with the same lens)
    map_x, map_y, finite, (x0, y0, x1, y1) = _lens_maps(intr)
    # 2. render the ideal view over the bounding box of those positions (barrel distortion needs
    #    more than the raw frame), then remap it into the raw frame
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    big_w, big_h = x1 - x0, y1 - y0
    # the bigger canvas may contain the horizon even if the raw frame does not: check its rays
    big = CameraIntrinsics(big_w, big_h, intr.fx, intr.fy, intr.cx - x0, intr.cy - y0)
    if horizon_margin_deg(big, pose) <= 0.0:
        raise CameraError(
            "with this lens distortion the camera sees above the horizon; reduce the tilt or check intr.dist"
        )
    ideal, ideal_valid = map.warp(shift @ H, (big_w, big_h), out_gsd, perspective=True)
    mx, my = map_x - x0, map_y - y0
    img = cv2.remap(ideal, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if ideal.ndim == 3 and img.ndim == 2:
        img = img[:, :, None]
    valid = cv2.remap(ideal_valid.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, valid.astype(bool) & finite


@functools.lru_cache(maxsize=8)
def _lens_maps(intr: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Raw pixel -> ideal pixel maps (``cv2.initInverseRectificationMap``), their finite mask and
    the ideal-image bounding box ``(x0, y0, x1, y1)`` they need. Arrays are read-only (cached)."""
    w, h = intr.width, intr.height
    K = intr.K
    map_x, map_y = cv2.initInverseRectificationMap(K, intr.dist_array(), np.eye(3), K, (w, h), cv2.CV_32FC1)
    finite = np.isfinite(map_x) & np.isfinite(map_y)
    if not finite.any():
        raise CameraError(f"distortion coefficients {intr.dist} map no pixel to a finite ray")
    if not finite.all():
        map_x = np.where(finite, map_x, -1e6).astype(np.float32)
        map_y = np.where(finite, map_y, -1e6).astype(np.float32)
    x0 = math.floor(float(map_x[finite].min())) - 1
    y0 = math.floor(float(map_y[finite].min())) - 1
    x1 = math.ceil(float(map_x[finite].max())) + 2
    y1 = math.ceil(float(map_y[finite].max())) + 2
    # keep the canvas sane for extreme coefficients (the remap just sees black beyond it)
    box = (max(x0, -w), max(y0, -h), min(x1, 2 * w), min(y1, 2 * h))
    for a in (map_x, map_y, finite):
        a.setflags(write=False)
    return map_x, map_y, finite, box


def view_corners_on_map(intr: CameraIntrinsics, pose: CameraPose, map: MapRaster) -> np.ndarray:  # noqa: A002
    """Image corners (TL, TR, BR, BL) projected onto the map, as map pixel ``(col, row)`` (corner convention)."""
    from .camera import image_to_ground

    xy = image_to_ground(intr, pose, image_corners(intr), undistort=False)
    col, row = map.xy_to_pixel(xy[:, 0], xy[:, 1])
    return np.column_stack([col, row])
