"""Pinhole camera geometry over a flat ground plane: intrinsics, pose, homographies, footprints.

Frames (see docs/geo.md for a figure):

* **world** = the map's local metric frame: ``x`` east, ``y`` north, ``z`` up, metres; the
  ground is the plane ``z = 0``.
* **camera** = OpenCV: ``x`` right, ``y`` down, ``z`` forward (optical axis), pixels ``(u, v)``
  with ``u`` to the right, ``v`` down, pixel centres at integer coordinates.
* **body** (used only to define the attitude angles) = right / forward / up of the *image*:
  ``x`` = image right, ``y`` = image up, ``z`` = opposite to the optical axis for a nadir camera.

Attitude (``CameraPose``):

* ``heading_deg``: compass heading of the image's *up* direction (clockwise from north).
* ``pitch_deg``: tilt of the optical axis from nadir, right-handed about the image-right axis:
  positive tilts the view forward (towards image-up).
* ``roll_deg``: right-handed rotation about the (pitched) forward axis: positive lowers the
  image-right side, which swings the view towards image-*left*.

``R_world_from_cam = Rz(-heading) @ Rx(pitch) @ Ry(roll) @ R0`` with
``R0 = diag(1, -1, -1)`` (nadir, heading 0: image up = north, image right = east).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import CameraError
from .validate import check_distortion, check_intrinsics

log = logging.getLogger(__name__)

# body (image right, image up, up) <- camera (right, down, forward); symmetric and its own inverse
_R0 = np.diag([1.0, -1.0, -1.0])


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels plus OpenCV distortion coefficients.

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (pixel centres at integer coordinates).
        dist: OpenCV distortion ``(k1, k2, p1, p2[, k3[, k4, k5, k6]])``; empty = none.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        # normalise types so frozen instances compare/hash predictably (lists -> tuples)
        object.__setattr__(self, "dist", tuple(float(d) for d in (self.dist if self.dist is not None else ())))

    @classmethod
    def from_hfov(
        cls, hfov_deg: float, width: int, height: int, dist: tuple[float, ...] = ()
    ) -> "CameraIntrinsics":
        """Square pixels, centred principal point, horizontal field of view ``hfov_deg`` (edge to edge)."""
        if not (math.isfinite(hfov_deg) and 0.0 < hfov_deg < 180.0):
            raise CameraError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        intr = cls(int(width), int(height), f, f, (width - 1) / 2.0, (height - 1) / 2.0, tuple(dist))
        intr.validate()
        return intr

    @property
    def K(self) -> np.ndarray:
        """3x3 float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view, degrees (edge to edge, ignoring distortion)."""
        return math.degrees(2.0 * math.atan((self.width / 2.0) / self.fx))

    @property
    def vfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan((self.height / 2.0) / self.fy))

    @property
    def has_distortion(self) -> bool:
        return any(d != 0.0 for d in self.dist)

    def dist_array(self) -> np.ndarray:
        """Distortion as a float64 array for OpenCV (length >= 4, zeros when none)."""
        d = list(self.dist) if self.dist else []
        while len(d) < 4:
            d.append(0.0)
        return np.asarray(d, dtype=np.float64)

    def scaled(self, s: float) -> "CameraIntrinsics":
        """Intrinsics of the same camera with the image resized by factor ``s`` (distortion unchanged)."""
        if not (math.isfinite(s) and s > 0):
            raise CameraError(f"scale must be positive, got {s}")
        w, h = max(1, int(round(self.width * s))), max(1, int(round(self.height * s)))
        sx, sy = w / self.width, h / self.height
        # pixel centres at integers: a continuous coordinate c maps to (c + 0.5) * s - 0.5
        return CameraIntrinsics(
            w, h, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, self.dist
        )

    def validate(self) -> "CameraIntrinsics":
        """Raise a :class:`CameraError` subclass unless a real camera can have these intrinsics; return ``self``.

        Checks (see :mod:`foenet_ros.geo.validate` for the bounds and why): finite values, integer
        size >= 2, fx/fy in [0.05, 20] x width, principal point inside the image
        (:class:`IntrinsicsError`); distortion coefficients of a real lens (:class:`DistortionError`).
        """
        _validate_intrinsics(self)
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"dist": list(self.dist)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CameraIntrinsics":
        return cls(
            int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]),
            tuple(d.get("dist") or ()),
        ).validate()


@lru_cache(maxsize=64)
def _validate_intrinsics(intr: CameraIntrinsics) -> None:
    """Cached: a stream's CameraInfo is validated once, not at every frame (a failure is not cached)."""
    check_intrinsics(intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)
    check_distortion(intr.dist, intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraPose:
    """Camera position and attitude in the map's local metric frame.

    Attributes:
        x, y: camera centre (easting, northing), metres.
        alt_m: camera height above the flat ground plane ``z = 0``, metres (> 0).
        heading_deg: compass heading of the image-up direction, degrees clockwise from north.
        pitch_deg: optical-axis tilt from nadir, degrees; positive looks forward (towards image-up).
        roll_deg: rotation about the forward axis, degrees; positive lowers the image-right side.
    """

    x: float
    y: float
    alt_m: float
    heading_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0

    @property
    def R_world_from_cam(self) -> np.ndarray:
        """3x3 rotation taking OpenCV camera-frame vectors to world (E, N, U) vectors."""
        return (
            _rz(-math.radians(self.heading_deg))
            @ _rx(math.radians(self.pitch_deg))
            @ _ry(math.radians(self.roll_deg))
            @ _R0
        )

    @property
    def center_xyz(self) -> np.ndarray:
        """Camera centre ``[x, y, alt_m]`` in the world frame, metres."""
        return np.array([self.x, self.y, self.alt_m], dtype=np.float64)

    @property
    def tilt_deg(self) -> float:
        """Angle between the optical axis and nadir, degrees (combines pitch and roll)."""
        d = self.R_world_from_cam[:, 2]
        return math.degrees(math.acos(max(-1.0, min(1.0, -d[2]))))

    def validate(self) -> "CameraPose":
        vals = (self.x, self.y, self.alt_m, self.heading_deg, self.pitch_deg, self.roll_deg)
        if not all(math.isfinite(float(v)) for v in vals):
            raise CameraError(f"camera pose contains NaN/inf: {self}")
        if self.alt_m <= 0:
            raise CameraError(f"camera altitude above ground must be positive, got {self.alt_m} m")
        return self

    def replace(self, **changes: float) -> "CameraPose":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CameraPose":
        required = {k: float(d[k]) for k in ("x", "y", "alt_m")}
        angles = {k: float(d.get(k, 0.0)) for k in ("heading_deg", "pitch_deg", "roll_deg")}
        return cls(**required, **angles)

    @classmethod
    def from_rotation(cls, R_world_from_cam: np.ndarray, center_xyz: np.ndarray) -> "CameraPose":
        """Pose from a camera->world rotation and a centre (inverse of :attr:`R_world_from_cam`)."""
        R_wb = np.asarray(R_world_from_cam, dtype=np.float64) @ _R0  # world <- body
        # R_wb = Rz(-h) Rx(p) Ry(r); its third row is [-cos p sin r, sin p, cos p cos r]
        pitch = math.asin(max(-1.0, min(1.0, R_wb[2, 1])))
        roll = math.atan2(-R_wb[2, 0], R_wb[2, 2])
        # second column = Rz(-h) (0, cos p, sin p) = (cos p sin h, cos p cos h, sin p)
        if abs(math.cos(pitch)) > 1e-9:
            heading = math.atan2(R_wb[0, 1], R_wb[1, 1])
        else:  # looking at the horizon straight up/down the forward axis: use the right axis
            heading = math.atan2(-R_wb[1, 0], R_wb[0, 0])
        c = np.asarray(center_xyz, dtype=np.float64).reshape(3)
        return cls(
            float(c[0]), float(c[1]), float(c[2]),
            math.degrees(heading) % 360.0, math.degrees(pitch), math.degrees(roll),
        )


# ---------------------------------------------------------------------------------------------
def _check(intr: CameraIntrinsics, pose: CameraPose) -> None:
    intr.validate()
    pose.validate()


def world_to_camera(pose: CameraPose) -> tuple[np.ndarray, np.ndarray]:
    """``(R_cw, t)`` so that ``X_cam = R_cw @ X_world + t`` (OpenCV extrinsics)."""
    R_cw = pose.R_world_from_cam.T
    return R_cw, -R_cw @ pose.center_xyz


def project_points(intr: CameraIntrinsics, pose: CameraPose, xyz: np.ndarray) -> np.ndarray:
    """Project world points ``xyz[N,3]`` (metres) to ideal (undistorted) pixels ``[N,2]``.

    Points behind the camera come back as NaN.
    """
    R_cw, t = world_to_camera(pose)
    pc = np.asarray(xyz, dtype=np.float64).reshape(-1, 3) @ R_cw.T + t
    uvw = pc @ intr.K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / uvw[:, 2:3]
    uv[pc[:, 2] <= 0] = np.nan
    return uv


def ground_to_image_homography(intr: CameraIntrinsics, pose: CameraPose) -> np.ndarray:
    """3x3 homography mapping ground ``(x, y, 1)`` (metres, plane z=0) to ideal pixels ``(u, v, 1)``.

    ``H = K [r1 r2 t]`` with ``r1, r2`` the first two columns of ``R_cw``. Lens distortion is not
    included (pixels are those of the undistorted image). Normalised so that ``H[2, 2] = 1`` where
    possible, and the sign is such that ground points in front of the camera have ``w > 0``.
    """
    _check(intr, pose)
    R_cw, t = world_to_camera(pose)
    H = intr.K @ np.column_stack([R_cw[:, 0], R_cw[:, 1], t])
    # scaling by a positive factor keeps the "w > 0 in front" property
    return H / abs(H[2, 2]) if abs(H[2, 2]) > 1e-12 else H


def _undistort_uv(intr: CameraIntrinsics, uv: np.ndarray) -> np.ndarray:
    import cv2

    pts = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
    und = cv2.undistortPointsIter(
        pts, intr.K, intr.dist_array(), None, intr.K,
        (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-9),
    )
    return und.reshape(-1, 2)


def distort_uv(intr: CameraIntrinsics, uv: np.ndarray) -> np.ndarray:
    """Map ideal pixels ``[N,2]`` to the distorted (raw) image's pixels with ``intr.dist``."""
    import cv2

    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    if not intr.has_distortion:
        return uv.copy()
    norm = np.column_stack([(uv[:, 0] - intr.cx) / intr.fx, (uv[:, 1] - intr.cy) / intr.fy, np.ones(len(uv))])
    out, _ = cv2.projectPoints(norm.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), intr.K, intr.dist_array())
    return out.reshape(-1, 2)


def pixel_rays(intr: CameraIntrinsics, pose: CameraPose, uv: np.ndarray, *, undistort: bool = True) -> np.ndarray:
    """World-frame ray directions ``[N,3]`` (not normalised) through pixels ``uv[N,2]``."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    if undistort and intr.has_distortion:
        uv = _undistort_uv(intr, uv)
    homog = np.column_stack([uv, np.ones(len(uv))])
    d_cam = homog @ np.linalg.inv(intr.K).T
    return d_cam @ pose.R_world_from_cam.T


def image_to_ground(
    intr: CameraIntrinsics, pose: CameraPose, uv: np.ndarray, *, undistort: bool = True
) -> np.ndarray:
    """Intersect the rays through pixels ``uv[N,2]`` with the ground plane; return ``xy[N,2]`` metres.

    With ``undistort=True`` and distortion in ``intr``, ``uv`` are raw (distorted) image pixels.

    Raises:
        CameraError: a pixel's ray does not hit the ground (at or above the horizon).
    """
    _check(intr, pose)
    d = pixel_rays(intr, pose, uv, undistort=undistort)
    # a ray must go down by a sane amount; 1e-6 ~ hitting the ground a million altitudes away
    bad = d[:, 2] >= -1e-6 * np.linalg.norm(d, axis=1)
    if np.any(bad):
        raise CameraError(
            f"{int(bad.sum())} of {len(d)} pixels look at or above the horizon (pitch={pose.pitch_deg} deg, "
            f"roll={pose.roll_deg} deg); a flat-ground position needs the view to hit the ground"
        )
    s = -pose.alt_m / d[:, 2]
    return np.column_stack([pose.x + s * d[:, 0], pose.y + s * d[:, 1]])


def image_corners(intr: CameraIntrinsics) -> np.ndarray:
    """Outer corners of the image ``[4,2]`` (TL, TR, BR, BL) at the pixel edges."""
    w, h = intr.width, intr.height
    return np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]], dtype=np.float64)


def footprint(intr: CameraIntrinsics, pose: CameraPose, *, undistort: bool = False) -> np.ndarray:
    """Ground polygon ``xy[4,2]`` (metres) seen by the image corners TL, TR, BR, BL.

    For a nadir camera the width is ``2 * alt * tan(hfov / 2)``. With ``undistort=True`` the raw
    image corners are undistorted first (barrel distortion widens the footprint).

    Raises:
        CameraError: a corner looks at or above the horizon.
    """
    return image_to_ground(intr, pose, image_corners(intr), undistort=undistort)


def image_center_ground(intr: CameraIntrinsics, pose: CameraPose) -> np.ndarray:
    """Ground point ``[2]`` seen at the principal point (NOT the camera position when tilted)."""
    return image_to_ground(intr, pose, np.array([[intr.cx, intr.cy]]), undistort=False)[0]


def horizon_margin_deg(intr: CameraIntrinsics, pose: CameraPose) -> float:
    """Degrees between the most upward image-corner ray and the horizon (positive = all rays hit ground)."""
    d = pixel_rays(intr, pose, image_corners(intr), undistort=False)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    return float(np.degrees(np.arcsin(np.clip(-d[:, 2], -1, 1))).min())


# ---------------------------------------------------------------------------------------------
def pose_from_homography(
    intr: CameraIntrinsics, H_img_to_ground: np.ndarray
) -> tuple[CameraPose, dict[str, float]]:
    """Recover the camera centre and attitude from a frame-pixel -> ground-metre homography.

    ``H_img_to_ground`` maps *undistorted* frame pixels ``(u, v, 1)`` to ground ``(x, y, 1)`` in the
    map's metric frame (x east, y north: right-handed, z up). Its inverse is ``s K [r1 r2 t]``;
    the columns are rescaled to unit norm, ``r3 = r1 x r2``, the rotation is orthonormalised by
    SVD, and the camera centre is ``C = -R^T t``. Note the camera position is NOT where the
    image centre lands on the ground: at 100 m and 12 deg tilt they are ~21 m apart.

    Returns:
        ``(pose, info)`` where ``info`` holds diagnostics: ``scale_ratio`` (|r1|/|r2|, 1 for a
        consistent H + K), ``orthogonality`` (|cos| between r1 and r2, 0 ideal), ``reproj_rms_px``
        (RMS pixel distance between the input H and the re-composed one over an image grid),
        ``center_ground_x/y`` (where the principal point lands), ``tilt_deg``.

    Raises:
        CameraError: non-finite/singular H, or a solution below the ground (mirrored ground axes,
            e.g. pixel rows passed as y).
    """
    intr.validate()
    Hi = np.asarray(H_img_to_ground, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(Hi)) or abs(np.linalg.det(Hi)) < 1e-300:
        raise CameraError("image->ground homography is singular or non-finite; the match is degenerate")
    # work relative to where the principal point lands: UTM-sized coordinates (5e5, 4e6 m)
    # would otherwise cost ~6 digits of precision in the decomposition
    g0 = Hi @ np.array([intr.cx, intr.cy, 1.0])
    if not np.isfinite(g0).all() or abs(g0[2]) < 1e-15 * max(1.0, float(np.abs(g0[:2]).max())):
        raise CameraError("the principal point maps to infinity: the homography puts the horizon at the image centre")
    origin = g0[:2] / g0[2]
    shift = np.array([[1.0, 0.0, -origin[0]], [0.0, 1.0, -origin[1]], [0.0, 0.0, 1.0]])
    Hg = np.linalg.inv(shift @ Hi)  # local ground (origin at the centre point) -> image
    A = np.linalg.inv(intr.K) @ Hg  # = lambda [r1 r2 t]
    n1, n2 = np.linalg.norm(A[:, 0]), np.linalg.norm(A[:, 1])
    if n1 < 1e-15 or n2 < 1e-15:
        raise CameraError("image->ground homography is degenerate (zero rotation column)")
    lam = 2.0 / (n1 + n2)
    # the sign makes ground points seen by the image lie in front of the camera (w > 0)
    w = (Hg @ np.array([0.0, 0.0, 1.0]))[2]  # the local origin is seen at the principal point
    lam = lam if w > 0 else -lam
    r1, r2, t = lam * A[:, 0], lam * A[:, 1], lam * A[:, 2]
    r3 = np.cross(r1, r2)
    U, _, Vt = np.linalg.svd(np.column_stack([r1, r2, r3]))
    R_cw = U @ Vt
    if np.linalg.det(R_cw) < 0:  # cannot happen with r3 = r1 x r2, kept as a guard
        U[:, -1] *= -1
        R_cw = U @ Vt
    C = -R_cw.T @ t + np.array([origin[0], origin[1], 0.0])
    info: dict[str, float] = {
        "scale_ratio": float(n1 / n2),
        "orthogonality": float(abs(A[:, 0] @ A[:, 1]) / (n1 * n2)),
    }
    if C[2] <= 0:
        raise CameraError(
            f"the homography puts the camera {C[2]:.1f} m below the ground: the ground axes are mirrored "
            "(pass ground x east / y north metres, not pixel rows) or the match is wrong"
        )
    pose = CameraPose.from_rotation(R_cw.T, C)
    # diagnostics: how well the rigid pose re-creates the given homography over the image
    try:
        H2 = ground_to_image_homography(intr, pose)
        us = np.linspace(0, intr.width - 1, 5)
        vs = np.linspace(0, intr.height - 1, 5)
        uv = np.array([[u, v] for v in vs for u in us])
        gh = np.column_stack([uv, np.ones(len(uv))]) @ Hi.T
        gh = gh[:, :2] / gh[:, 2:3]
        back = np.column_stack([gh, np.ones(len(gh))]) @ H2.T
        back = back[:, :2] / back[:, 2:3]
        info["reproj_rms_px"] = float(np.sqrt(np.mean(np.sum((back - uv) ** 2, axis=1))))
    except CameraError:
        info["reproj_rms_px"] = float("inf")
    info["center_ground_x"], info["center_ground_y"] = float(origin[0]), float(origin[1])
    info["tilt_deg"] = pose.tilt_deg
    return pose, info


def pose_from_opk(
    x: float, y: float, z: float, omega_deg: float, phi_deg: float, kappa_deg: float, ground_z: float = 0.0
) -> CameraPose:
    """Convert a photogrammetric exterior orientation (omega, phi, kappa) into a :class:`CameraPose`.

    The OPK convention (PATB / Pix4D / ODM / orthority): ``R = Rx(omega) @ Ry(phi) @ Rz(kappa)``
    rotates camera vectors into the world (x east, y north, z up), with the camera frame
    x right, y *up*, z *backwards*. OpenCV's camera frame is that one rotated by
    ``diag(1, -1, -1)``. ``z`` is the camera height in the same vertical datum as ``ground_z``
    (the flat ground's height), so ``alt_m = z - ground_z``.
    """
    R_opk = _rx(math.radians(omega_deg)) @ _ry(math.radians(phi_deg)) @ _rz(math.radians(kappa_deg))
    pose = CameraPose.from_rotation(R_opk @ np.diag([1.0, -1.0, -1.0]), np.array([x, y, z - ground_z]))
    return pose.validate()
