"""Query side: camera frame -> GeoEstimate (retrieval, geometric verification, pose, tracking). No rclpy.

``Localizer(TileIndex.load(dir), Encoder(model)).localize(frame, camera=...)`` -> :class:`GeoEstimate`.
"""

from .config import LocalizerConfig
from .estimate import STATUSES, Candidate, GeoEstimate, Prior
from .localizer import Localizer
from .tracker import Tracker

__all__ = ["STATUSES", "Candidate", "GeoEstimate", "Localizer", "LocalizerConfig", "Prior", "Tracker"]
