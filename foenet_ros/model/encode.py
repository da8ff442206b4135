"""Image preprocessing and batched encoding: numpy RGB images in, float32 descriptors out."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from ..errors import ImageError
from ..utils import resolve_device
from .foenet import FOENet


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check an image and return it as [H,W,3] uint8 RGB (mono is replicated; 4th band dropped).

    Raises ImageError for anything else (wrong dtype, ndim, empty, non-finite float images).
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy image, got {type(image).__name__}")
    if image.size == 0 or image.ndim not in (2, 3) or min(image.shape[:2]) < 8:
        raise ImageError(f"expected an [H,W] or [H,W,3] image of at least 8x8 pixels, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"expected uint8 (or uint16) pixels, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.shape[2] != 3:
        raise ImageError(f"expected 1, 3 or 4 channels, got {image.shape[2]}")
    return image


def preprocess(
    images: Sequence[np.ndarray],
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Images ([H,W,3] or [H,W] uint8 RGB, any size) -> normalised batch [N,3,S,S] float32.

    Resizes the whole image to S x S (area interpolation when shrinking): callers crop first if
    they want a particular ground extent.
    """
    batch = np.empty((len(images), input_size, input_size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        img = to_rgb_uint8(img)
        interp = cv2.INTER_AREA if min(img.shape[:2]) > input_size else cv2.INTER_LINEAR
        batch[i] = cv2.resize(img, (input_size, input_size), interpolation=interp)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


class Encoder:
    """Batched, device-aware inference wrapper around a FOENet.

    ``Encoder(model).encode(images)`` -> float32 [N,D], unit-norm rows.
    """

    def __init__(self, model: FOENet, device: str = "auto", batch_size: int = 32) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.input_size = model.config.input_size
        self.dim = model.out_dim
        self.fingerprint = model.fingerprint()
        self.config = model.config

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray], branch: str = "drone") -> np.ndarray:
        """images: list of [H,W,3]/[H,W] uint8 RGB -> descriptors float32 [N,D] (L2-normalised).

        ``branch`` is "drone" for camera frames and "satellite" for map tiles (the same weights
        unless the model was built with ``shared_weights=False``).
        """
        out = np.empty((len(images), self.dim), dtype=np.float32)
        cfg = self.model.config
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            x = preprocess(chunk, cfg.input_size, cfg.mean, cfg.std).to(self.device)
            out[start : start + len(chunk)] = self.model(x, branch=branch).float().cpu().numpy()
        return out
