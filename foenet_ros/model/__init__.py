"""FOENet, the model: backbones, Overlap Scanning Module, head, losses, presets, checkpoints, export.

    from foenet_ros.model import create_model, load_default_model, Encoder
    model = create_model("foenet-mnv2")                    # ImageNet init, OSM, 256-D
    desc = Encoder(model).encode([rgb_uint8_image])        # float32 [1,256], unit norm
"""

from .backbones import available_backbones, build_backbone
from .checkpoint import (
    default_model_dir,
    load_checkpoint,
    load_default_model,
    read_checkpoint_config,
    save_checkpoint,
)
from .config import IMAGENET_MEAN, IMAGENET_STD, FOENetConfig
from .encode import Encoder, preprocess, to_rgb_uint8
from .foenet import FOENet, fingerprint_state
from .loss import info_nce_loss, triplet_loss
from .osm import OverlapScanningModule, WeightedGeM
from .registry import DEFAULT_PRESET, OFFLINE_PRESETS, PRESETS, create_model, list_presets, preset_config

__all__ = [
    "DEFAULT_PRESET", "Encoder", "FOENet", "FOENetConfig", "IMAGENET_MEAN", "IMAGENET_STD",
    "OFFLINE_PRESETS", "OverlapScanningModule", "PRESETS", "WeightedGeM", "available_backbones",
    "build_backbone", "create_model", "default_model_dir", "fingerprint_state", "info_nce_loss",
    "list_presets", "load_checkpoint", "load_default_model", "preprocess", "preset_config",
    "read_checkpoint_config", "save_checkpoint", "to_rgb_uint8", "triplet_loss",
]
