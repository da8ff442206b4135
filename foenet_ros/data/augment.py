"""Photometric and geometric augmentations for training pairs (numpy/OpenCV, seeded generators).

Every function takes an explicit ``np.random.Generator`` so a sample is a pure function of
(seed, epoch, index): the same run gives the same images whatever the number of workers.
Images are ``[H,W,3]`` uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PhotometricConfig:
    """Ranges of the appearance changes applied to a rendered "drone" view.

    Attributes:
        p_color: probability of a brightness/contrast/saturation/hue change.
        brightness, contrast, saturation: max relative change (0.3 = +-30 %).
        hue_deg: max hue rotation, degrees.
        gamma: max exposure change as |log2(gamma)|.
        p_haze, haze_max: probability and max strength (0..1) of a haze veil.
        p_blur, blur_sigma_px: probability and max Gaussian blur sigma, pixels.
        p_noise, noise_sigma: probability and max sensor noise sigma, 8-bit levels.
        p_jpeg, jpeg_quality: probability and (min, max) JPEG quality.
        p_gray: probability of turning the view single-channel (thermal/NIR-like camera).
    """

    p_color: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.4
    hue_deg: float = 8.0
    gamma: float = 0.5
    p_haze: float = 0.25
    haze_max: float = 0.35
    p_blur: float = 0.35
    blur_sigma_px: float = 1.5
    p_noise: float = 0.35
    noise_sigma: float = 8.0
    p_jpeg: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 90)
    p_gray: float = 0.1


#: Mild appearance changes used for evaluation queries (a different camera, same day).
EVAL_PHOTOMETRIC = PhotometricConfig(
    p_color=1.0, brightness=0.15, contrast=0.15, saturation=0.2, hue_deg=4.0, gamma=0.25,
    p_haze=0.0, p_blur=0.5, blur_sigma_px=1.0, p_noise=0.5, noise_sigma=4.0, p_jpeg=1.0,
    jpeg_quality=(60, 90), p_gray=0.0,
)

NO_PHOTOMETRIC = PhotometricConfig(p_color=0, p_haze=0, p_blur=0, p_noise=0, p_jpeg=0, p_gray=0)


def color_jitter(img: np.ndarray, rng: np.random.Generator, cfg: PhotometricConfig) -> np.ndarray:
    """Brightness, contrast, saturation, hue and gamma (exposure) change."""
    x = img.astype(np.float32) / 255.0
    x = x * (1.0 + rng.uniform(-cfg.brightness, cfg.brightness))
    mean = x.mean()
    x = (x - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    gray = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = gray[..., None] + (x - gray[..., None]) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation))
    x = np.clip(x, 0.0, 1.0)
    x = np.power(x, 2.0 ** rng.uniform(-cfg.gamma, cfg.gamma))
    out = (x * 255.0 + 0.5).astype(np.uint8)
    if cfg.hue_deg > 0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        shift = int(round(rng.uniform(-cfg.hue_deg, cfg.hue_deg) / 2.0))  # OpenCV hue is 0..179
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def haze(img: np.ndarray, strength: float, airlight: float = 0.85) -> np.ndarray:
    """Blend towards a bright veil: ``I*(1-a) + A*a`` (atmospheric scattering, flat depth)."""
    x = img.astype(np.float32) * (1.0 - strength) + 255.0 * airlight * strength
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG at ``quality`` (1-100)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        return img
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def photometric(img: np.ndarray, rng: np.random.Generator, cfg: PhotometricConfig = PhotometricConfig()) -> np.ndarray:
    """Apply the configured random appearance changes (each with its probability) in camera order:
    scene (haze, colour) -> optics (blur) -> sensor (noise) -> compression (JPEG)."""
    out = img
    if rng.random() < cfg.p_haze:
        out = haze(out, rng.uniform(0.05, cfg.haze_max))
    if rng.random() < cfg.p_color:
        out = color_jitter(out, rng, cfg)
    if rng.random() < cfg.p_blur:
        sigma = rng.uniform(0.3, cfg.blur_sigma_px)
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=sigma)
    if rng.random() < cfg.p_noise:
        noise = rng.normal(0.0, rng.uniform(1.0, cfg.noise_sigma), size=out.shape).astype(np.float32)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_gray:
        g = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        out = np.repeat(g[..., None], 3, axis=2)
    if rng.random() < cfg.p_jpeg:
        out = jpeg(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return np.ascontiguousarray(out)


def random_view_homography(
    size: int,
    rng: np.random.Generator,
    *,
    heading_range_deg: float = 360.0,
    scale_range: tuple[float, float] = (0.8, 1.25),
    max_offset_frac: float = 0.1,
    max_perspective: float = 0.15,
) -> np.ndarray:
    """A random "tilted drone camera" homography that maps an output view to a square source image.

    Used for non-georeferenced chips (UC Merced), where there is no camera model to render with.
    The view looks at the chip centre (+- ``max_offset_frac`` of its side), rotated by a heading in
    ``[-range/2, range/2]``, zoomed by ``scale_range`` and with a keystone of up to
    ``max_perspective`` (fraction of the side by which the far edge shrinks).

    Returns:
        ``H [3,3]`` with ``src_px ~ H @ dst_px`` (pass to ``cv2.warpPerspective`` with
        ``WARP_INVERSE_MAP``); both images are ``size x size``.
    """
    c = (size - 1) / 2.0
    half = size / 2.0
    # the view's corners, in a centred unit square, with a keystone (far edge narrower)
    k = rng.uniform(0.0, max_perspective)
    corners = np.array([[-1 + k, -1], [1 - k, -1], [1, 1], [-1, 1]], dtype=np.float64) * half
    scale = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1])))
    theta = np.deg2rad(rng.uniform(-heading_range_deg / 2.0, heading_range_deg / 2.0))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    offset = rng.uniform(-max_offset_frac, max_offset_frac, size=2) * size
    src = (corners / scale) @ rot.T + c + offset
    dst = np.array([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=np.float64)
    return cv2.getPerspectiveTransform(dst.astype(np.float32), src.astype(np.float32))


def warp_view(img: np.ndarray, H_src_from_dst: np.ndarray, out_size: int) -> np.ndarray:
    """Render a view with ``src ~ H @ dst`` (reflecting borders so no black wedges teach shortcuts)."""
    return cv2.warpPerspective(
        img, H_src_from_dst, (out_size, out_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101,
    )


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size x size`` (area interpolation when shrinking)."""
    interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)
