"""Tile index: FAISS over FOENet descriptors of multi-scale map tiles, with geo metadata and a manifest.

``build_index(maps, encoder, out_dir, IndexConfig(...))`` writes one directory;
``TileIndex.load(out_dir)`` reads it back and searches it (whole map or within a radius).
"""

from .build import build_index, resolve_scales
from .config import INDEX_TYPES, IndexConfig
from .manifest import FORMAT_VERSION
from .tile_index import TileIndex

__all__ = ["FORMAT_VERSION", "INDEX_TYPES", "IndexConfig", "TileIndex", "build_index", "resolve_scales"]
