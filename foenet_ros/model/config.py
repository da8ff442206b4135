"""FOENet configuration: one frozen dataclass, defaults next to the code that uses them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FOENetConfig:
    """Everything needed to rebuild a FOENet (weights aside).

    Attributes:
        backbone: registry name (``mobilenetv2``, ``efficientnet_lite0``) or any timm CNN name.
        pretrained: load ImageNet weights when the model is *created* (not when a checkpoint is loaded).
        input_size: square side S of the network input, pixels.
        use_osm: Overlap Scanning Module on (FOENet) or off (plain GeM ablation).
        osm_channels: C' channels the backbone features are reduced to before the OSM / pooling.
            0 keeps the backbone's channels (only allowed without OSM: the "plain GeM" baseline).
        osm_groups: G channel subspaces scanned independently; one overlap map each.
        osm_depth: number of stacked scanning blocks.
        dim: descriptor size D after projection; 0 = no projection (descriptor = pooled features).
        gem_p: initial GeM exponent (learnable).
        shared_weights: one network for drone and satellite views (True) or two branches.
        mean, std: input normalisation (RGB, 0..1 scale).
        overlap_dim: D of the learned overlap head's dense features (0 = no overlap head); see
            :mod:`foenet_ros.model.overlap_head`.
        overlap_hidden: width of the overlap head's convolutions.
    """

    backbone: str = "mobilenetv2"
    pretrained: bool = True
    input_size: int = 224
    use_osm: bool = True
    osm_channels: int = 384
    osm_groups: int = 4
    osm_depth: int = 1
    dim: int = 256
    gem_p: float = 3.0
    shared_weights: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    overlap_dim: int = 0
    overlap_hidden: int = 48
    preset: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"input_size must be a multiple of 32 and >= 32, got {self.input_size}")
        if self.use_osm:
            if self.osm_channels <= 0:
                raise ConfigError("the OSM needs osm_channels > 0")
            if self.osm_groups <= 0 or self.osm_channels % self.osm_groups:
                raise ConfigError(
                    f"osm_channels ({self.osm_channels}) must be divisible by osm_groups ({self.osm_groups})"
                )
            if self.osm_depth < 1:
                raise ConfigError("osm_depth must be >= 1")
        if self.dim < 0 or self.osm_channels < 0:
            raise ConfigError("dim and osm_channels must be >= 0")
        if self.gem_p < 1.0:
            raise ConfigError(f"gem_p must be >= 1, got {self.gem_p}")
        if self.overlap_dim < 0 or self.overlap_dim > 256 or self.overlap_hidden < 1:
            raise ConfigError(f"overlap_dim must be in [0, 256] and overlap_hidden >= 1, got {self.overlap_dim}, {self.overlap_hidden}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean/std must be 3 values each, std > 0")

    def replace(self, **overrides: Any) -> "FOENetConfig":
        """A copy with ``overrides`` applied; unknown keys raise ConfigError naming the valid ones."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ConfigError(f"unknown model option(s) {unknown}; valid: {sorted(valid)}")
        for key in ("mean", "std"):
            if key in overrides:
                overrides[key] = tuple(float(v) for v in overrides[key])
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FOENetConfig":
        return cls().replace(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
