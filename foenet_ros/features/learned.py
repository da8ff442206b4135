"""The learned dense extractor: FOENet's overlap head behind the :class:`DenseExtractor` protocol.

``extract(image)`` runs the model's shared stride-4 backbone stage and its overlap head
(:meth:`foenet_ros.model.FOENet.dense_features`) on an image at ``cell / 4`` metres per pixel and
returns one unit descriptor per cell. Cells whose pixels are not all valid, and a border of cells
around them (the head sees ~14 cells around each one), are invalid: a black corner must not
leak into the descriptors the correlation trusts.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..errors import ModelError


class LearnedExtractor:
    """Dense overlap features of a FOENet with an overlap head (``config.overlap_dim > 0``)."""

    name = "foenet"
    storage = "i8"

    def __init__(self, model, border_cells: int = 2) -> None:
        if getattr(model, "overlap_head", None) is None:
            raise ModelError("the model has no overlap head: use a model trained with `foenet train-overlap`, "
                             "or the classical 'cfog' features only")
        self.model = model.eval()
        self.channels = int(model.config.overlap_dim)
        self.stride = int(model.OVERLAP_STRIDE)
        self.border = int(border_cells)
        self.device = next(model.parameters()).device
        self._mean = np.asarray(model.config.mean, np.float32) * 255.0
        self._std = np.asarray(model.config.std, np.float32) * 255.0

    @torch.inference_mode()
    def extract(self, image: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``[H, W, 3]`` uint8 RGB (H, W multiples of the stride) -> ``([D, H/s, W/s] float32, [H/s, W/s] bool)``."""
        s = self.stride
        img = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        h, w = img.shape[0] // s * s, img.shape[1] // s * s
        img = img[:h, :w, :3].astype(np.float32)
        v = np.ones((h, w), bool) if valid is None else valid[:h, :w]
        if not v.all():  # no-data as the mean colour of the data: no artificial edge
            fill = img[v].mean(axis=0) if v.any() else self._mean
            img = np.where(v[:, :, None], img, fill[None, None, :])
        x = torch.from_numpy(((img - self._mean) / self._std).transpose(2, 0, 1)[None].copy()).to(self.device)
        f = self.model.dense_features(x)[0].float().cpu().numpy()
        cells = v.reshape(h // s, s, w // s, s).all(axis=(1, 3))
        if self.border > 0:
            k = 2 * self.border + 1
            cells = cv2.erode(cells.astype(np.uint8), np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT,
                              borderValue=0).astype(bool)
        return f * cells[None], cells
