"""Named model presets and ``create_model``. CLI flags and overrides modify a preset, never restate it."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .config import FOENetConfig
from .foenet import FOENet

DEFAULT_PRESET = "foenet-mnv2"

PRESETS: dict[str, FOENetConfig] = {
    # The default: MobileNetV2 (ImageNet, offline weights), OSM with 4 subspaces, 256-D descriptors.
    "foenet-mnv2": FOENetConfig(backbone="mobilenetv2"),
    # Ablation (b): same network, no OSM (reduce + plain GeM + projection).
    "foenet-mnv2-noosm": FOENetConfig(backbone="mobilenetv2", use_osm=False),
    # Baseline (a): ImageNet MobileNetV2 + plain GeM over the 1280 backbone channels, no projection.
    "gem-mnv2": FOENetConfig(backbone="mobilenetv2", use_osm=False, osm_channels=0, dim=0),
    # EfficientNet-Lite0 (offline weights), a bit stronger, a bit slower.
    "foenet-effl0": FOENetConfig(backbone="efficientnet_lite0"),
    # Bigger backbones for users with network access (timm downloads ImageNet weights).
    "foenet-convnext-tiny": FOENetConfig(backbone="convnext_tiny", osm_channels=512, dim=512),
    "foenet-resnet50": FOENetConfig(backbone="resnet50", osm_channels=512, dim=512),
}

OFFLINE_PRESETS = ("foenet-mnv2", "foenet-mnv2-noosm", "gem-mnv2", "foenet-effl0")


def list_presets() -> list[str]:
    """All preset names."""
    return list(PRESETS)


def preset_config(name: str, **overrides: Any) -> FOENetConfig:
    """The preset's config with ``overrides`` applied (ConfigError on unknown names/keys)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; valid: {list_presets()}")
    return PRESETS[name].replace(preset=name, **overrides)


def create_model(preset: str = DEFAULT_PRESET, **overrides: Any) -> FOENet:
    """Build a FOENet from a preset plus overrides, e.g. ``create_model("foenet-mnv2", dim=128)``."""
    return FOENet(preset_config(preset, **overrides))
