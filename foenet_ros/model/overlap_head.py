"""The overlap head: FOENet's learned dense features for fine-grained overlap estimation.

The retrieval descriptor says *which* tile a frame shows; the overlap head says *where* inside a
map window the frame lies. It turns the shared backbone's early feature maps (MobileNetV2 blocks
0-3, stride 4, ImageNet weights that retrieval training keeps frozen: literally the same
tensors as the retrieval encoder's first blocks) into a per-cell descriptor that is trained to
match across seasons, years, sensors and hours:

    image  [B, 3, H, W]        RGB at (cell size / 4) metres per pixel, ImageNet mean/std
      | backbone.features[:4]  (shared, frozen)
    F4     [B, 24, H/4, W/4]
      | conv3x3 24->48, BN, ReLU
      | conv3x3 48->48 dilation 2, BN, ReLU       receptive field ~56 input pixels (14 cells)
      | conv3x3 48->48 dilation 4, BN, ReLU
      | conv1x1 48->D, L2 normalise per cell
    O      [B, D=16, H/4, W/4]  one unit descriptor per map cell

The Localizer correlates a frame's O (projected on the ground) with the map's O (precomputed at
index build) exactly like the classical CFOG channels, and the two correlations add. Training
(:mod:`foenet_ros.train_overlap`) makes the correlation peak at the true placement: a softmax
over every placement in the window, cross-entropy against the true one (the "finding a point with
an image" objective), on self-supervised pairs of other years / bands / photometric changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OverlapHead(nn.Module):
    """Stride-4 backbone features -> L2-normalised dense overlap features (see the module docstring).

    Args:
        in_channels: channels of the backbone's stride-4 feature map (24 for MobileNetV2).
        dim: output descriptor size D per cell.
        hidden: width of the three dilated 3x3 convolutions.
    """

    def __init__(self, in_channels: int = 24, dim: int = 16, hidden: int = 48) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for dil in (1, 2, 4):
            layers += [nn.Conv2d(c, hidden, 3, padding=dil, dilation=dil, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
            c = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, dim, 1)
        # log temperature of the training softmax over placements (part of the head's calibration)
        self.log_tau = nn.Parameter(torch.tensor(-3.0))
        # how much the classical CFOG correlation counts next to this head's (learned with it):
        # at query time the CFOG channels are weighted by this when both are correlated
        self.cfog_weight = nn.Parameter(torch.tensor(1.0))

    def forward(self, f4: torch.Tensor) -> torch.Tensor:
        """f4 [B, C_in, h, w] -> overlap features [B, D, h, w], unit L2 norm per cell."""
        return F.normalize(self.out(self.body(f4)), dim=1)
