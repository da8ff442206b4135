"""``IndexConfig``: how a map is cut into tiles and stored in a FAISS index (frozen, with defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError
from .fine import FineConfig

#: what ``index_type`` may name; ``auto`` picks ``flat`` up to ``auto_exact_max_tiles`` tiles, else ``ivfpq``
INDEX_TYPES = ("flat", "hnsw", "ivf", "ivfpq")
INDEX_CHOICES = ("auto",) + INDEX_TYPES
MAP_COMPRESSIONS = ("jpeg", "deflate")


@dataclass(frozen=True)
class IndexConfig:
    """Tiling + map storage + FAISS settings of :func:`foenet_ros.index.build_index`.

    Tile ground sizes come either from ``scales_m`` (square tile side lengths in metres) or from
    a camera model (``hfov_deg`` + ``image_size`` + ``alt_range_m``), which asks
    :func:`foenet_ros.geo.tile_scales_for_camera` for the footprints the drone will see.

    The map is read by window and stored in the index as a tiled COG at ``map_gsd_m`` (default:
    the finest native GSD of the inputs; the verification map is never downsampled silently:
    the manifest records ``map_copy.gsd_m`` and whether it was ``resampled``).
    """

    # --- tiling -------------------------------------------------------------------------
    scales_m: tuple[float, ...] | None = None  # tile side lengths on the ground, metres
    hfov_deg: float | None = None  # camera horizontal field of view (camera-derived scales)
    image_size: tuple[int, int] = (640, 480)  # camera (width, height) in pixels (aspect for the footprint)
    alt_range_m: tuple[float, float] | None = None  # expected flight heights above ground, metres
    max_tilt_deg: float = 0.0  # expected camera tilt from nadir (widens the footprint range)
    overlap: float = 0.5  # fraction of a tile shared with its neighbour (0.5 = stride of half a tile)
    min_valid: float = 0.6  # drop tiles with less than this fraction of real (non-nodata) pixels
    tile_px: int | None = None  # crop size in pixels; None = the encoder's input size

    # --- the map stored in the index (verification + plots without the original rasters) ---
    map_gsd_m: float | None = None  # read + store the map at this GSD; None = the inputs' native GSD
    map_compression: str = "jpeg"  # COG compression: "jpeg" (quality 90, lossy) | "deflate" (lossless)
    part_px: int = 4096  # side of the map windows a build reads/writes at once (memory ~ 4 * part_px^2 bytes)

    # --- fine stage (map features precomputed for the Localizer's overlap estimation + refinement)
    fine: FineConfig = FineConfig()
    # absolute horizontal accuracy of the map's georeference (1 sigma, metres): goes into every
    # fix's covariance. Typical: 0.1-0.3 survey/drone orthomosaic with GCPs, 1-3 drone mosaic
    # without GCPs, 2-5 satellite / web tiles, 1-6 NAIP (USDA: within 6 m at 95 %)
    map_accuracy_m: float = 1.0
    # a surface model (height GeoTIFF, any CRS) of the area: 3D map keypoints (pose by PnP over hills)
    # and the terrain relief in the error budget; None = flat ground
    dsm: str | None = None

    # --- FAISS ----------------------------------------------------------------------------
    index_type: str = "auto"  # "auto" | "flat" (exact) | "hnsw" | "ivf" (IVF-Flat) | "ivfpq" (IVF-PQ + exact re-rank)
    auto_exact_max_tiles: int = 50_000  # "auto": flat up to this many tiles, ivfpq above
    hnsw_m: int = 32  # HNSW graph degree
    hnsw_ef_search: int = 128  # HNSW search breadth (recall vs. speed)
    ivf_nlist: int | None = None  # IVF cells; None = ~4*sqrt(N) (a power of two for ivfpq) bounded by N/39
    ivf_nprobe: int | None = None  # IVF cells visited per query; None = max(8, nlist // 4) (ivf), 32 (ivfpq)
    pq_m: int | None = None  # ivfpq: bytes per code (sub-quantizers); None = dim // 8
    rerank: int = 100  # ivfpq: candidates re-scored exactly (descriptors.npy) before the top k
    train_max: int = 100_000  # vectors sampled (fixed seed) to train IVF / PQ

    # --- encoding -------------------------------------------------------------------------
    batch_size: int = 32  # crops per forward pass
    chunk_tiles: int = 1024  # tiles per checkpointed chunk (resume + sharding granularity)
    cache_mb: int = 512  # decoded-map-block cache of each build process, MiB

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_CHOICES:
            raise ConfigError(f"index_type must be one of {INDEX_CHOICES}, got {self.index_type!r}")
        if self.map_compression not in MAP_COMPRESSIONS:
            raise ConfigError(f"map_compression must be one of {MAP_COMPRESSIONS}, got {self.map_compression!r}")
        if self.scales_m is not None:
            if len(self.scales_m) == 0 or any(not (s > 0) for s in self.scales_m):
                raise ConfigError(f"scales_m must be positive tile sizes in metres, got {self.scales_m}")
        if self.scales_m is None and (self.hfov_deg is None or self.alt_range_m is None):
            raise ConfigError(
                "give the tile ground sizes: either scales_m (e.g. (60, 90, 130)) or a camera model "
                "(hfov_deg and alt_range_m, e.g. hfov_deg=70, alt_range_m=(80, 150))"
            )
        if self.hfov_deg is not None and not (0 < self.hfov_deg < 180):
            raise ConfigError(f"hfov_deg must be in (0, 180), got {self.hfov_deg}")
        if self.alt_range_m is not None:
            lo, hi = self.alt_range_m
            if not (0 < lo <= hi):
                raise ConfigError(f"alt_range_m must be (low, high) with 0 < low <= high, got {self.alt_range_m}")
        if not (0.0 <= self.overlap < 0.95):
            raise ConfigError(f"overlap must be in [0, 0.95), got {self.overlap}")
        if not (0.0 < self.min_valid <= 1.0):
            raise ConfigError(f"min_valid must be in (0, 1], got {self.min_valid}")
        if self.map_gsd_m is not None and not (self.map_gsd_m > 0):
            raise ConfigError(f"map_gsd_m must be a positive GSD in metres per pixel, got {self.map_gsd_m}")
        for name in ("batch_size", "chunk_tiles", "hnsw_m", "hnsw_ef_search", "rerank", "auto_exact_max_tiles",
                     "cache_mb"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.map_accuracy_m >= 0 and self.map_accuracy_m < 1e4):
            raise ConfigError(f"map_accuracy_m must be in [0, 1e4) metres, got {self.map_accuracy_m}")
        if self.part_px < 512 or self.part_px % 512:
            raise ConfigError(f"part_px must be a multiple of 512, got {self.part_px}")
        if self.train_max < 1000:
            raise ConfigError(f"train_max must be >= 1000, got {self.train_max}")
        if self.tile_px is not None and self.tile_px < 16:
            raise ConfigError(f"tile_px must be >= 16, got {self.tile_px}")

    def resolved_index_type(self, n_tiles: int) -> str:
        """The FAISS index type for ``n_tiles`` tiles (``auto``: exact up to ``auto_exact_max_tiles``)."""
        if self.index_type != "auto":
            return self.index_type
        return "flat" if n_tiles <= self.auto_exact_max_tiles else "ivfpq"

    def replace(self, **changes) -> "IndexConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
