"""Pose from an image->ground homography: camera centre, heading, altitude, and a bootstrap covariance.

Used for keypoint fits (and for dense fits that estimated a homography): the homography maps the
undistorted working frame's pixels to map metres; with intrinsics the camera centre (not the
image centre) and the tilt come out of it (:func:`foenet_ros.geo.pose_from_homography`); an IMU
attitude, when given, fixes the tilt instead; without intrinsics the image centre is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import CameraError
from ..geo import CameraPose, pose_from_homography
from .overlap import apply_h


@dataclass
class PoseFix:
    """A position with its evidence (internal to the localize room).

    Attributes:
        xy: [2] camera centre (or image centre without intrinsics), frame metres.
        cov: [2, 2] covariance of the fit itself (m^2), before the error budget.
        heading_grid_deg: image-up heading from the grid north, degrees.
        alt_m: camera height above the ground plane (NaN unknown).
        source: "dense" (overlap estimation) or "keypoints" (SIFT vs. cached map keypoints).
        model: "similarity" | "homography".
        inliers: evidence count (patches or keypoints).
        pts_frame, pts_ground: [N, 2] the correspondences (working-frame pixels, map metres), for plots.
        info: diagnostics (tilt, reprojection error, position_of ...).
        tile_id: the retrieved tile whose region produced it (-1 for the track window).
        attitude_from_imu: the position relies on the given roll/pitch (their error goes in the budget).
    """

    xy: np.ndarray
    cov: np.ndarray
    heading_grid_deg: float
    alt_m: float
    source: str
    model: str
    inliers: int
    score: float
    pts_frame: np.ndarray
    pts_ground: np.ndarray
    info: dict = field(default_factory=dict)
    tile_id: int = -1
    attitude_from_imu: bool = False
    tilt_deg: float = math.nan


def position_from_h(H: np.ndarray, cam, attitude, altitude_m, wh) -> tuple[np.ndarray, float, float, dict]:
    """Drone position [2], grid heading, altitude and diagnostics from a frame->ground homography.

    Args:
        H: [3, 3] working-frame pixels -> map metres.
        cam: working-frame intrinsics, or None (the image centre is reported).
        attitude: (roll, pitch) from the IMU, or None (the tilt comes from H).
        altitude_m: sensor altitude or None.
        wh: (w, h) of the working frame.
    """
    w, h = wh
    if cam is None:
        c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        g = apply_h(H, np.array([c, c - [0, h / 4.0], c - [w / 2.0, 0], c + [w / 2.0, 0]]))
        up = g[1] - g[0]
        heading = math.degrees(math.atan2(up[0], up[1])) % 360.0
        width = float(np.hypot(*(g[3] - g[2])))
        alt = float(altitude_m) if altitude_m is not None else math.nan
        return g[0], heading, alt, {"footprint_width_m": width, "position_of": "image_centre"}
    pose, info = pose_from_homography(cam, H)
    info = dict(info, position_of="camera_centre")
    xy = np.array([pose.x, pose.y])
    alt = pose.alt_m
    if attitude is not None:
        # IMU attitude fixes the tilt: walk back from where the principal ray hits the ground
        roll, pitch = attitude
        alt = float(altitude_m) if altitude_m is not None else pose.alt_m
        d = CameraPose(0.0, 0.0, 1.0, pose.heading_deg, pitch, roll).R_world_from_cam[:, 2]
        if d[2] >= -1e-3:
            raise CameraError(f"attitude roll={roll}, pitch={pitch} puts the optical axis at or above the horizon")
        g0 = np.array([info["center_ground_x"], info["center_ground_y"]])
        xy = g0 - (alt / -d[2]) * d[:2]
        info["attitude_from"] = "imu"
    return xy, pose.heading_deg, alt, info


def homography_fix(H: np.ndarray, pts_frame: np.ndarray, pts_ground: np.ndarray, cam, attitude, altitude_m, wh,
                   *, bootstrap: int, no_intrinsics_sigma_frac: float) -> PoseFix:
    """A :class:`PoseFix` from a homography and its inliers; covariance = spread of bootstrap refits."""
    xy, heading_grid, alt, info = position_from_h(H, cam, attitude, altitude_m, wh)
    origin = pts_ground.mean(axis=0)
    rng = np.random.default_rng(len(pts_frame))
    T = np.array([[1, 0, origin[0]], [0, 1, origin[1]], [0, 0, 1.0]])
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(pts_frame), len(pts_frame))
        Hb, _ = cv2.findHomography(pts_frame[idx], pts_ground[idx] - origin, 0)
        if Hb is None:
            continue
        try:
            samples.append(position_from_h(T @ Hb, cam, attitude, altitude_m, wh)[0])
        except CameraError:
            continue
    if len(samples) >= 3:
        cov = np.cov(np.asarray(samples).T)
    else:  # too few refits: a wide default from the footprint
        width = float(np.ptp(pts_ground[:, 0])) if len(pts_ground) else 100.0
        cov = np.eye(2) * (0.1 * max(width, 1.0)) ** 2
    if cam is None:  # the image centre, not the camera: the unknown tilt in the error
        cov = cov + np.eye(2) * (no_intrinsics_sigma_frac * info["footprint_width_m"]) ** 2
    resid = apply_h(H, pts_frame) - pts_ground
    info["ground_rms_m"] = float(np.sqrt(np.mean(np.sum(resid**2, axis=1)))) if len(resid) else math.nan
    tilt = float(info.get("tilt_deg", math.nan))
    return PoseFix(xy, cov, float(heading_grid), float(alt), "keypoints", "homography", len(pts_frame), 0.0,
                   pts_frame, pts_ground, info, attitude_from_imu=attitude is not None and cam is not None,
                   tilt_deg=tilt)


def pnp_fix(pts_frame: np.ndarray, xy: np.ndarray, z: np.ndarray, cam, wh, *, bootstrap: int, dsm=None,
            reproj_px: float = 4.0) -> PoseFix | None:
    """The camera pose from 3D map points (a surface model's heights) by perspective-n-point.

    No flat-ground assumption: over hills the homography's camera is tens of metres off, PnP's is
    not (``cv2.solvePnPRansac`` then an iterative refinement on its inliers). The altitude is the
    camera's height above the surface model below it (else above the inliers' mean height).

    Args:
        pts_frame: [N, 2] undistorted working-frame pixels; xy, z: [N, 2], [N] their map points.
        cam: working-frame intrinsics.
        wh: (w, h) of the working frame.
        bootstrap: PnP refits on resampled inliers for the covariance.
        dsm: the index's :class:`foenet_ros.geo.dsm.DsmGrid` (height under the camera), or None.

    Returns:
        a :class:`PoseFix` (source "keypoints", model "pnp"), or None when PnP fails.
    """
    ok = np.isfinite(z)
    if ok.sum() < 6:
        return None
    o = np.array([xy[ok, 0].mean(), xy[ok, 1].mean(), float(np.mean(z[ok]))])
    obj = np.column_stack([xy[ok] - o[:2], z[ok] - o[2]]).astype(np.float64)
    img = pts_frame[ok].astype(np.float64)
    K = cam.K.astype(np.float64)
    try:
        cv2.setRNGSeed(len(obj))  # reproducible in any thread (see refine.fit_keypoints)
        res, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, reprojectionError=reproj_px, iterationsCount=500,
                                                  confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE)
    except cv2.error:
        return None
    if not res or inl is None or len(inl) < 6:
        return None
    inl = inl.ravel()
    obj, img = obj[inl], img[inl]
    _, rvec, tvec = cv2.solvePnP(obj, img, K, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)

    def centre(rv, tv) -> tuple[np.ndarray, np.ndarray]:
        R, _ = cv2.Rodrigues(rv)
        return (-R.T @ np.asarray(tv).reshape(3)) + o, R

    C, R = centre(rvec, tvec)
    # the camera must look down at the points, from above them
    if C[2] <= float(np.max(obj[:, 2] + o[2])):
        return None
    rng = np.random.default_rng(len(obj))
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(obj), len(obj))
        okb, rv, tv = cv2.solvePnP(obj[idx], img[idx], K, None, rvec.copy(), tvec.copy(), useExtrinsicGuess=True,
                                   flags=cv2.SOLVEPNP_ITERATIVE)
        if okb:
            samples.append(centre(rv, tv)[0][:2])
    cov = np.cov(np.asarray(samples).T) if len(samples) >= 3 else np.eye(2) * 25.0
    pose = CameraPose.from_rotation(R.T, C)
    ground = float(dsm.sample(C[None, :2])[0]) if dsm is not None else math.nan
    if not math.isfinite(ground):
        ground = float(np.mean(obj[:, 2]) + o[2])
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img) ** 2, axis=1))))
    info = {"position_of": "camera_centre", "tilt_deg": pose.tilt_deg, "reproj_rms_px": rms, "z_m": float(C[2]),
            "ground_z_m": ground, "pnp_inliers": int(len(obj))}
    pts_map = obj[:, :2] + o[:2]
    return PoseFix(C[:2].copy(), cov, pose.heading_deg, float(C[2] - ground), "keypoints", "pnp", int(len(obj)), 0.0,
                   img, pts_map, info, tilt_deg=pose.tilt_deg)
