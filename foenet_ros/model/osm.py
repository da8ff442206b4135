"""The Overlap Scanning Module (OSM) and the overlap-weighted GeM head.

The paper's abstract is all we have: the OSM "mines the long-range spatial and channel
dependencies of semantic features in various subspaces, thereby identifying fine-grained
overlapping regions". Our reading, block by block (shapes for input S=224, MobileNetV2):

    F  [B, C=1280, 7, 7]    backbone feature map
    X  [B, C'=384, 7, 7]    1x1 reduce + BN + GELU
    split X into G subspaces of C'/G channels, then per block (osm_depth times):
      X += DWConv3x3(X)                      conditional position encoding (size-agnostic)
      X += GroupedProj(MHSA_G(LN(X)))        spatial scan: one attention head per subspace,
                                             every location attends to every other one
                                             (long-range spatial dependencies)
      X  = X * SE_G(X)                       channel scan: squeeze-excitation inside each
                                             subspace (channel dependencies)
    W  [B, G, 7, 7] = sigmoid(GroupedConv1x1(X))   one overlap map per subspace

The head pools each subspace with GeM weighted by its own overlap map, so locations the
module judges "not in the overlap" (e.g. the part of an oblique drone view outside the
satellite tile) stop contributing to the descriptor. The attention projection and the
overlap logits start at zero: an untrained OSM is the identity with uniform weights, i.e.
exactly plain GeM on the ImageNet features, and training departs from that safe start.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GroupSE(nn.Module):
    """Squeeze-excitation applied independently inside each of ``groups`` channel subspaces."""

    def __init__(self, channels: int, groups: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(groups, (channels // reduction) // groups * groups)
        # grouped 1x1 convs on the squeezed vector = one small MLP per subspace
        self.fc1 = nn.Conv1d(channels, hidden, 1, groups=groups)
        self.fc2 = nn.Conv1d(hidden, channels, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,C,h,w] -> gates [B,C,1,1] in (0,1)."""
        s = x.mean(dim=(2, 3)).unsqueeze(-1)  # [B,C,1]
        g = torch.sigmoid(self.fc2(F.gelu(self.fc1(s))))
        return g.unsqueeze(-1)


class ScanBlock(nn.Module):
    """One spatial + channel scan over G subspaces (see module docstring)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.head_dim = channels // groups
        self.cpe = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.GroupNorm(1, channels)  # LayerNorm over (C,h,w) positions-wise stats
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, groups=groups)  # q,k,v from each subspace only
        self.proj = nn.Conv2d(channels, channels, 1, groups=groups)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.se = GroupSE(channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,C,h,w] -> [B,C,h,w]."""
        b, c, h, w = x.shape
        x = x + self.cpe(x)
        qkv = self.qkv(self.norm(x))  # [B,3C,h,w], grouped: subspace g owns a contiguous slice
        qkv = qkv.view(b, self.groups, 3, self.head_dim, h * w)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B,G,d,N]
        attn = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )  # [B,G,N,d]: every location attends to all others within its subspace
        y = attn.transpose(-1, -2).reshape(b, c, h, w)
        x = x + self.proj(y)
        return x * self.se(x)


class OverlapScanningModule(nn.Module):
    """Features -> (refined features, overlap maps). See the module docstring for the design."""

    def __init__(self, in_channels: int, channels: int, groups: int, depth: int = 1) -> None:
        super().__init__()
        self.groups = groups
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.GELU()
        )
        self.blocks = nn.Sequential(*[ScanBlock(channels, groups) for _ in range(depth)])
        self.overlap = nn.Conv2d(channels, groups, 1, groups=groups)
        nn.init.zeros_(self.overlap.weight)
        nn.init.zeros_(self.overlap.bias)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats [B,C,h,w] -> (x [B,C',h,w], overlap weights [B,G,h,w] in (0,1))."""
        x = self.blocks(self.reduce(feats))
        return x, torch.sigmoid(self.overlap(x))


class WeightedGeM(nn.Module):
    """Generalised-mean pooling per channel subspace, weighted by that subspace's overlap map.

    desc_g = ( sum_x w_g(x) * max(f_g(x), eps)^p / sum_x w_g(x) )^(1/p),  p learnable.
    With G=1 and w=1 this is plain GeM.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,C,h,w], weights [B,G,h,w] (C divisible by G) or None -> pooled [B,C]."""
        b, c, h, w = x.shape
        p = self.p.clamp(min=1.0)
        xp = x.clamp(min=self.eps).pow(p)
        if weights is None:
            pooled = xp.mean(dim=(2, 3))
        else:
            g = weights.shape[1]
            wn = weights / weights.sum(dim=(2, 3), keepdim=True).clamp(min=self.eps)  # sums to 1 per map
            pooled = (xp.view(b, g, c // g, h, w) * wn.unsqueeze(2)).sum(dim=(3, 4)).reshape(b, c)
        return pooled.clamp(min=self.eps).pow(1.0 / p)
