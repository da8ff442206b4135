"""What every training dataset yields, how a batch is collated, and which pairs may be negatives.

A training sample is one *pair*: a ``query`` ("drone" view) and a ``ref`` (map tile / satellite
view) of the same ground, plus where that ground is:

* ``group``: an integer naming a coordinate frame or a place (one raster mosaic, one building of
  University-1652, one UC Merced chip). Positions are only comparable inside a group.
* ``xy``: the ground position (metres, the group's frame) of the ref tile's centre.
* ``radius``: metres; another sample of the same group closer than this is *not* a negative
  (``inf`` = no sample of the same group is ever a negative, e.g. the same building).

The loss masks negatives with :func:`negative_mask`, so overlapping neighbours are never pushed
apart as if they were different places.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence, TypedDict

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class PairSample(TypedDict):
    """One training pair (see module docstring). Images are ``[S,S,3]`` uint8 RGB."""

    query: np.ndarray
    ref: np.ndarray
    group: int
    xy: np.ndarray
    radius: float


def read_image_rgb(path: str | Path) -> np.ndarray | None:
    """Read an image file as ``[H,W,3]`` uint8 RGB; ``None`` when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of (seed, epoch, index), worker-independent."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]))


def negative_mask(group: torch.Tensor, xy: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``[B,B]`` bool: may ref j serve as a negative for query i?

    True when the two samples are in different groups, or in the same group and farther apart
    on the ground than ``max(radius_i, radius_j)`` metres. The diagonal is False.
    """
    same = group[:, None] == group[None, :]
    d = torch.cdist(xy.double(), xy.double())
    r = torch.maximum(radius[:, None], radius[None, :]).double()
    valid = ~same | (d > r)
    valid.fill_diagonal_(False)
    return valid


class PairCollator:
    """Turns a list of :class:`PairSample` into normalised tensors (picklable, runs in the workers).

    Returns a dict: ``query``/``ref`` ``[B,3,S,S]`` float32, ``group`` ``[B]`` int64,
    ``xy`` ``[B,2]`` float64, ``radius`` ``[B]`` float64.
    """

    def __init__(self, input_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.input_size = int(input_size)
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, samples: list[PairSample]) -> dict[str, torch.Tensor]:
        from ..model import preprocess

        return {
            "query": preprocess([s["query"] for s in samples], self.input_size, self.mean, self.std),
            "ref": preprocess([s["ref"] for s in samples], self.input_size, self.mean, self.std),
            "group": torch.tensor([int(s["group"]) for s in samples], dtype=torch.int64),
            "xy": torch.from_numpy(np.stack([np.asarray(s["xy"], dtype=np.float64) for s in samples])),
            "radius": torch.tensor([float(s["radius"]) for s in samples], dtype=torch.float64),
        }


def describe(obj: Any) -> dict[str, Any]:
    """A dataset's JSON-able description (``obj.describe()`` when it has one)."""
    fn = getattr(obj, "describe", None)
    return fn() if callable(fn) else {"type": type(obj).__name__, "size": len(obj)}
