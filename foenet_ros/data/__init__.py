"""Training and evaluation datasets.

* :mod:`.university1652`: the University-1652 folder format (SUES-200, DenseUAV share it).
* :mod:`.pairs`: self-supervised pairs -- map tile vs. rendered drone view (georeferenced
  rasters, cross-date where available) and augmented chips (UC Merced).
* :mod:`.shared`: the shared real imagery as training places / held-out maps (split by place).
* :mod:`.common`: the sample format, collation, and the ground-distance negative mask.
"""

from .augment import EVAL_PHOTOMETRIC, NO_PHOTOMETRIC, PhotometricConfig, photometric
from .common import PairCollator, PairSample, negative_mask, read_image_rgb, sample_rng
from .pairs import ChipPairDataset, GroundUnit, MixedPairDataset, Place, RasterPairDataset, RenderedPair, ViewConfig, render_pair
from .university1652 import PROTOCOLS, University1652Split, University1652Train, ViewFolder, load_test_split, scan_view

__all__ = [
    "EVAL_PHOTOMETRIC", "NO_PHOTOMETRIC", "PhotometricConfig", "photometric",
    "PairCollator", "PairSample", "negative_mask", "read_image_rgb", "sample_rng",
    "ChipPairDataset", "GroundUnit", "MixedPairDataset", "Place", "RasterPairDataset", "RenderedPair",
    "ViewConfig", "render_pair",
    "PROTOCOLS", "University1652Split", "University1652Train", "ViewFolder", "load_test_split", "scan_view",
]
