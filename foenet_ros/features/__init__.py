"""Image features of the fine stage, one file per method behind one small protocol.

Dense extractors turn an image resampled to a known ground resolution into a grid of per-cell
descriptors; the map side (at index build) and the frame side (at query time) use the *same*
extractor, so correlating the two grids finds where the frame overlaps the map:

    extractor = dense_extractor("cfog")            # or "foenet" (learned, needs a model)
    feats, valid = extractor.extract(image, valid)  # [H*s, W*s, 3] uint8 -> [C, H, W] float32, [H, W] bool
    extractor.stride                                # input pixels per output cell (s)

Local features (keypoints + descriptors for refinement) live in :mod:`.local`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import ConfigError
from .cfog import N_ORIENT, cfog


@dataclass
class FeatureGrid:
    """Dense features over a north-up grid of cells (a map window, or a whole level).

    Attributes:
        feats: [C, H, W] float32, 0 where invalid.
        valid: [H, W] bool.
        origin_xy: ground coordinates (frame metres) of cell (0, 0)'s centre; cell (i, j) is at
            ``(x0 + j * cell_m, y0 - i * cell_m)`` (rows run southwards).
        cell_m: cell size, metres.
    """

    feats: np.ndarray
    valid: np.ndarray
    origin_xy: tuple[float, float]
    cell_m: float

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.valid.shape[0]), int(self.valid.shape[1])


class DenseExtractor(Protocol):
    """A dense feature method: ``extract`` maps an image at ``stride`` times the cell resolution to
    a ``[channels, H, W]`` float32 grid (0 where invalid) and its ``[H, W]`` bool validity."""

    name: str
    channels: int
    stride: int
    #: storage: "u8" (values in [0, 1]) or "i8" (values in [-1, 1])
    storage: str

    def extract(self, image: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


class CfogExtractor:
    """:func:`.cfog.cfog` behind the :class:`DenseExtractor` protocol (stride 1, 9 channels, uint8 storage)."""

    name = "cfog"
    channels = N_ORIENT
    stride = 1
    storage = "u8"

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = float(sigma)

    def extract(self, image: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return cfog(image, valid, sigma=self.sigma)


def dense_extractor(name: str, model=None) -> DenseExtractor:
    """The dense extractor called ``name`` ("cfog", or "foenet" with a FOENet ``model`` that has an overlap head)."""
    if name == "cfog":
        return CfogExtractor()
    if name == "foenet":
        from .learned import LearnedExtractor

        if model is None:
            raise ConfigError("the learned dense extractor 'foenet' needs the FOENet model (with its overlap head)")
        return LearnedExtractor(model)
    raise ConfigError(f"unknown dense feature method {name!r}; valid: cfog, foenet")


def quantize(feats: np.ndarray, storage: str) -> np.ndarray:
    """``[C,H,W]`` float32 -> ``[H,W,C]`` uint8 ("u8", values in [0,1]) or int8 ("i8", values in [-1,1])."""
    x = np.moveaxis(feats, 0, -1)
    if storage == "u8":
        return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    if storage == "i8":
        return np.clip(np.rint(x * 127.0), -127, 127).astype(np.int8)
    raise ConfigError(f"unknown feature storage {storage!r}")


def dequantize(q: np.ndarray) -> np.ndarray:
    """``[H,W,C]`` uint8/int8 -> ``[C,H,W]`` float32 (inverse of :func:`quantize`)."""
    scale = 1.0 / 255.0 if q.dtype == np.uint8 else 1.0 / 127.0
    return np.moveaxis(q, -1, 0).astype(np.float32) * scale


__all__ = ["CfogExtractor", "DenseExtractor", "FeatureGrid", "cfog", "dense_extractor", "dequantize", "quantize"]
