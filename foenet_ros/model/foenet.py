"""FOENet: backbone -> Overlap Scanning Module -> overlap-weighted GeM -> projection -> L2 norm.

Public API (four lines)::

    model = create_model("foenet-mnv2")          # or load_checkpoint(dir) / load_default_model()
    desc = model(x)                              # x [B,3,S,S] normalised -> desc [B,D], unit norm
    desc, overlap = model.forward_with_maps(x)   # + overlap maps [B,G,h,w] in (0,1)
    model.fingerprint()                          # identity of config + weights (16 hex chars)
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone
from .config import FOENetConfig
from .osm import OverlapScanningModule, WeightedGeM

BRANCHES = ("drone", "satellite")


class FOENet(nn.Module):
    """The FOENet encoder. One network encodes drone and satellite views (``shared_weights``)
    or two branches with the same architecture do (``shared_weights=False``)."""

    def __init__(self, config: FOENetConfig, *, pretrained: bool | None = None) -> None:
        super().__init__()
        self.config = config
        pretrained = config.pretrained if pretrained is None else pretrained
        self.backbone, info = build_backbone(config.backbone, pretrained)
        self.backbone_satellite = None if config.shared_weights else build_backbone(config.backbone, pretrained)[0]
        self.backbone_channels = info.channels
        if config.use_osm:
            self.osm = OverlapScanningModule(info.channels, config.osm_channels, config.osm_groups, config.osm_depth)
            pooled = config.osm_channels
            self.reduce = None
        else:
            self.osm = None
            if config.osm_channels:
                self.reduce = nn.Sequential(
                    nn.Conv2d(info.channels, config.osm_channels, 1, bias=False),
                    nn.BatchNorm2d(config.osm_channels),
                    nn.GELU(),
                )
                pooled = config.osm_channels
            else:
                self.reduce = None
                pooled = info.channels
        self.overlap_head = None
        if config.overlap_dim:
            from .overlap_head import OverlapHead

            stem = self._stem_channels()
            self.overlap_head = OverlapHead(stem, config.overlap_dim, config.overlap_hidden)
        self.pool = WeightedGeM(config.gem_p)
        self.proj = nn.Linear(pooled, config.dim) if config.dim else None
        self.out_dim = config.dim or pooled

    def _features(self, x: torch.Tensor, branch: str) -> torch.Tensor:
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
        if branch == "satellite" and self.backbone_satellite is not None:
            return self.backbone_satellite(x)
        return self.backbone(x)

    def _raw_with_maps(self, x: torch.Tensor, branch: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = self._features(x, branch)
        weights = None
        if self.osm is not None:
            feats, weights = self.osm(feats)
        elif self.reduce is not None:
            feats = self.reduce(feats)
        desc = self.pool(feats, weights)
        if self.proj is not None:
            desc = self.proj(desc)
        return desc, weights

    def raw_descriptor(self, x: torch.Tensor, branch: str = "drone") -> torch.Tensor:
        """x [B,3,S,S] (normalised RGB) -> the descriptor before its L2 normalisation [B,D] (the
        statistics :mod:`foenet_ros.whiten` estimates)."""
        return self._raw_with_maps(x, branch)[0]

    def forward_with_maps(
        self, x: torch.Tensor, branch: str = "drone"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B,3,S,S] (normalised RGB) -> (descriptors [B,D] unit L2 norm, overlap [B,G,h,w] or None)."""
        desc, weights = self._raw_with_maps(x, branch)
        return F.normalize(desc, dim=-1), weights

    # ------------------------------------------------------------------ overlap head (dense)
    #: backbone input pixels per overlap-head cell
    OVERLAP_STRIDE = 4

    def _stem(self) -> nn.Module:
        """The backbone's stride-4 stage (shared with retrieval: MobileNetV2 blocks 0-3)."""
        feats = getattr(self.backbone, "features", None)
        if not isinstance(feats, nn.Sequential) or len(feats) < 4:
            from ..errors import ModelError

            raise ModelError(f"the overlap head needs a MobileNetV2-style backbone (stride-4 blocks), not {self.config.backbone!r}")
        return feats[:4]

    def _stem_channels(self) -> int:
        with torch.no_grad():
            return int(self._stem()(torch.zeros(1, 3, 32, 32)).shape[1])

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,3,H,W] (normalised RGB, H and W multiples of 4) -> overlap features [B, D, H/4, W/4], unit norm per cell."""
        if self.overlap_head is None:
            from ..errors import ModelError

            raise ModelError("this model has no overlap head (config.overlap_dim = 0): train one with `foenet train-overlap`")
        return self.overlap_head(self._stem()(x))

    def forward(self, x: torch.Tensor, branch: str = "drone") -> torch.Tensor:
        """x [B,3,S,S] (normalised RGB) -> descriptors [B,D], unit L2 norm."""
        return self.forward_with_maps(x, branch)[0]

    def fingerprint(self) -> str:
        """sha256 over the config and every tensor of the state dict, first 16 hex characters.

        Identifies "these weights with this architecture": an index built with one fingerprint is
        only valid for a model with the same fingerprint.
        """
        return fingerprint_state(self.config, self.state_dict())


def fingerprint_state(config: FOENetConfig, state: dict[str, torch.Tensor]) -> str:
    """Fingerprint of a (config, state dict) pair; see :meth:`FOENet.fingerprint`."""
    h = hashlib.sha256()
    cfg = config.to_dict()
    cfg.pop("preset", None)
    cfg.pop("pretrained", None)  # init choice, not identity: the weights say it all
    if not cfg.get("overlap_dim"):  # models without an overlap head keep the fingerprint they had before it existed
        cfg.pop("overlap_dim", None)
        cfg.pop("overlap_hidden", None)
    h.update(repr(sorted(cfg.items())).encode())
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
