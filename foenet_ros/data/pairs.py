"""Self-supervised training pairs: map tile vs. a rendered "drone view" of the same ground.

Two kinds of sources:

* **georeferenced rasters** (:class:`RasterPairDataset`): a north-up tile is cut from one date
  of a place; the drone view is *rendered* from another date of the same ground (when the place
  has several, e.g. the NAIP 10-year stack: real appearance change) through a pinhole camera with
  a random heading, tilt, altitude (scale) and offset, using ``geo``'s camera model
  (:func:`~foenet_ros.geo.ground_to_image_homography`) and :meth:`MapRaster.warp`; then blur,
  noise, JPEG, colour/exposure and haze. Ground positions are known, so the loss can mask
  "negatives" that overlap the positive (see :func:`~foenet_ros.data.common.negative_mask`).
* **non-georeferenced chips** (:class:`ChipPairDataset`, e.g. UC Merced): the view is a random
  perspective warp of the chip (pairs by augmentation); every chip is its own place.

Everything is a pure function of ``(seed, epoch, index)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..errors import DatasetError
from ..geo import CameraIntrinsics, CameraPose, ground_to_image_homography
from .augment import PhotometricConfig, photometric, random_view_homography, resize_square, warp_view
from .common import PairSample, read_image_rgb, sample_rng

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewConfig:
    """How a drone view is rendered from a map (all ranges are sampled uniformly).

    Attributes:
        image_size: side of the square query and tile images, pixels.
        hfov_deg: the virtual camera's horizontal field of view.
        heading_range_deg: width of the heading interval centred on north (360 = any heading).
        max_pitch_deg: largest forward tilt of the optical axis from nadir.
        max_roll_deg: largest |roll|.
        scale_range: nadir footprint width / tile size (altitude change).
        max_offset_frac: largest shift of the view's aim point from the tile centre, / tile size.
        min_valid: smallest fraction of valid (real-data) pixels accepted in tile and view.
        p_cross_date: probability of taking view and tile from different dates when a place has several.
        p_aux_query: probability of rendering the view from the auxiliary band (NIR) when a place has one.
        neg_radius_frac: another tile of the same place is a negative only when its centre is
            farther than this fraction of the tile size (the sample's ``radius``). 0.5 matches
            the evaluation's "true match = within half a tile".
        photometric: appearance changes applied to the view.
    """

    image_size: int = 224
    hfov_deg: float = 60.0
    heading_range_deg: float = 360.0
    max_pitch_deg: float = 25.0
    max_roll_deg: float = 4.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    max_offset_frac: float = 0.15
    min_valid: float = 0.9
    p_cross_date: float = 0.8
    p_aux_query: float = 0.15
    neg_radius_frac: float = 1.0
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)


@dataclass
class GroundUnit:
    """Co-registered rasters of the same ground (several dates), plus optional single-band rasters
    of the same dates (e.g. NIR) used as cross-modal queries."""

    rasters: list  # list[MapRaster], same frame
    aux: list = field(default_factory=list)  # list[MapRaster] single-band, aligned with ``rasters``
    name: str = ""


@dataclass
class Place:
    """One place = one metric frame: all its units' positions are comparable.

    Attributes:
        name: label (``"zanzibar_tz"``, ``"naip_nd"``...).
        units: ground units (mosaic blocks, plots, the date stack).
        tile_size_m: (min, max) ground size of a training tile, metres.
        weight: sampling weight among places.
    """

    name: str
    units: list[GroundUnit]
    tile_size_m: tuple[float, float]
    weight: float = 1.0

    def unit_weights(self) -> np.ndarray:
        w = np.array([max(1.0, float(u.rasters[0].valid.sum()) * u.rasters[0].gsd_m**2) for u in self.units])
        return w / w.sum()


@dataclass(frozen=True)
class RenderedPair:
    """A rendered pair and the geometry that produced it (what tests check)."""

    sample: PairSample
    center_xy: np.ndarray  # tile centre (metres)
    size_m: float  # tile side (metres)
    tile_from_xy: np.ndarray  # 3x3: frame xy -> tile pixel centres
    view_from_xy: np.ndarray  # 3x3: frame xy -> view pixels (ground-to-image homography)
    pose: CameraPose
    intrinsics: CameraIntrinsics
    place: str
    query_date: int
    ref_date: int
    aux_query: bool


def _rotation(heading_deg: float) -> np.ndarray:
    h = math.radians(heading_deg)
    return np.array([math.sin(h), math.cos(h)])  # unit vector of the compass heading (E, N)


def render_pair(
    unit: GroundUnit, rng: np.random.Generator, size_m: float, cfg: ViewConfig, max_tries: int = 20,
    center_xy: np.ndarray | None = None,
) -> RenderedPair | None:
    """Cut a tile and render a drone view of the same ground; ``None`` if no valid spot was found.

    ``center_xy`` fixes the tile centre (metres); otherwise it is drawn uniformly over the raster.
    """
    from ..geo.raster import crop_matrix

    s = cfg.image_size
    intr = CameraIntrinsics.from_hfov(cfg.hfov_deg, s, s)
    n = len(unit.rasters)
    for _ in range(max_tries):
        ref_i = int(rng.integers(n))
        q_i = ref_i
        if n > 1 and rng.random() < cfg.p_cross_date:
            q_i = int((ref_i + rng.integers(1, n)) % n)
        use_aux = bool(unit.aux) and rng.random() < cfg.p_aux_query
        ref_map = unit.rasters[ref_i]
        q_map = unit.aux[q_i] if use_aux else unit.rasters[q_i]
        xmin, ymin, xmax, ymax = ref_map.bounds_xy
        half = size_m / 2.0
        if xmax - xmin < size_m or ymax - ymin < size_m:
            return None
        if center_xy is not None:
            center = np.asarray(center_xy, dtype=np.float64)
        else:
            center = np.array([rng.uniform(xmin + half, xmax - half), rng.uniform(ymin + half, ymax - half)])
        tile, tvalid = ref_map.crop(center, size_m, s)
        if tvalid.mean() < cfg.min_valid:
            continue
        # the camera: aim point near the tile centre, altitude from the wanted footprint, tilted forward
        heading = rng.uniform(-cfg.heading_range_deg / 2.0, cfg.heading_range_deg / 2.0) % 360.0
        pitch = rng.uniform(0.0, cfg.max_pitch_deg)
        roll = rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg)
        scale = math.exp(rng.uniform(math.log(cfg.scale_range[0]), math.log(cfg.scale_range[1])))
        alt = size_m * scale / (2.0 * math.tan(math.radians(cfg.hfov_deg) / 2.0))
        aim = center + rng.uniform(-cfg.max_offset_frac, cfg.max_offset_frac, size=2) * size_m
        cam_xy = aim - alt * math.tan(math.radians(pitch)) * _rotation(heading)
        pose = CameraPose(float(cam_xy[0]), float(cam_xy[1]), float(alt), float(heading), float(pitch), float(roll))
        H = ground_to_image_homography(intr, pose)
        view, vvalid = q_map.warp(H, (s, s), size_m * scale / s, perspective=True)
        if vvalid.mean() < cfg.min_valid:
            continue
        if view.ndim == 3 and view.shape[2] == 1:
            view = view[:, :, 0]
        if view.ndim == 2:  # single band (NIR): a grey camera image
            view = np.repeat(view[:, :, None], 3, axis=2)
        view = photometric(np.ascontiguousarray(view[:, :, :3]), rng, cfg.photometric)
        tile = np.ascontiguousarray(tile[:, :, :3] if tile.ndim == 3 else np.repeat(tile[:, :, None], 3, axis=2))
        sample = PairSample(query=view, ref=tile, group=-1, xy=center, radius=float(size_m * cfg.neg_radius_frac))
        return RenderedPair(
            sample=sample, center_xy=center, size_m=float(size_m),
            tile_from_xy=crop_matrix(center, size_m, s), view_from_xy=H, pose=pose, intrinsics=intr,
            place=unit.name, query_date=q_i, ref_date=ref_i, aux_query=use_aux,
        )
    return None


class RasterPairDataset(Dataset):
    """Pairs rendered from georeferenced places; ``len`` = samples per epoch.

    Args:
        places: the places to sample (weighted by ``Place.weight``).
        samples_per_epoch: dataset length.
        cfg: rendering config.
        seed: base seed; sample ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.
        group_offset: added to the place index to form ``group`` (unique across datasets).
        place_block: consecutive indices ``[k*place_block, (k+1)*place_block)`` share one place,
            so a batch aligned with the blocks holds *hard* negatives: other ground of the same
            map (overlapping ones are masked by distance), as in retrieval over one map.
        neighbours: inside a place block, groups of this many consecutive samples share one
            ground unit and tile size, and all but the first are centred 0.5-1.0 tile away from the
            first: the hardest negatives (half-overlapping neighbour tiles), which teach the
            descriptor *where* inside a place a view is. 1 = independent positions.
    """

    def __init__(
        self, places: Sequence[Place], samples_per_epoch: int, cfg: ViewConfig = ViewConfig(),
        seed: int = 0, group_offset: int = 0, place_block: int = 1, neighbours: int = 1,
    ) -> None:
        if not places:
            raise DatasetError("RasterPairDataset needs at least one place")
        self.places = list(places)
        self.samples_per_epoch = int(samples_per_epoch)
        self.cfg = cfg
        self.seed = int(seed)
        self.epoch = 0
        self.group_offset = int(group_offset)
        self.place_block = max(1, int(place_block))
        self.neighbours = max(1, int(neighbours))
        w = np.array([p.weight for p in self.places], dtype=np.float64)
        self._place_p = w / w.sum()
        self._unit_p = [p.unit_weights() for p in self.places]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def describe(self) -> dict[str, Any]:
        return {
            "type": "raster-pairs",
            "samples_per_epoch": self.samples_per_epoch,
            "place_block": self.place_block,
            "neighbours": self.neighbours,
            "places": [
                {"name": p.name, "units": len(p.units), "dates": max(len(u.rasters) for u in p.units),
                 "aux_bands": any(u.aux for u in p.units), "tile_size_m": list(p.tile_size_m), "weight": p.weight}
                for p in self.places
            ],
            "view": {k: v for k, v in self.cfg.__dict__.items() if k != "photometric"},
        }

    def generate(self, index: int) -> RenderedPair:
        """The pair of ``index`` with its geometry (deterministic)."""
        rng = sample_rng(self.seed, self.epoch, index)
        block_rng = sample_rng(self.seed + 7919, self.epoch, index // self.place_block) if self.place_block > 1 else rng
        pi_block = int(block_rng.choice(len(self.places), p=self._place_p))
        if self.neighbours > 1 and self.place_block > 1:
            pair = self._neighbour(index, pi_block, rng)
            if pair is not None:
                return pair
        for attempt in range(50):
            pi = pi_block if attempt < 25 else int(rng.choice(len(self.places), p=self._place_p))
            place = self.places[pi]
            unit = place.units[int(rng.choice(len(place.units), p=self._unit_p[pi]))]
            size_m = rng.uniform(*place.tile_size_m)
            pair = render_pair(unit, rng, size_m, self.cfg)
            if pair is not None:
                pair.sample["group"] = self.group_offset + pi
                return pair
        raise DatasetError(
            f"could not render a valid pair after 50 tries (places {[p.name for p in self.places]}): "
            f"tiles larger than the rasters or min_valid={self.cfg.min_valid} too strict"
        )

    def _neighbour(self, index: int, pi: int, rng: np.random.Generator) -> RenderedPair | None:
        """A sample of a neighbour group: the group's anchor tile, or one 0.5-1.0 tile away from it."""
        place = self.places[pi]
        crng = sample_rng(self.seed + 104729, self.epoch, index // self.neighbours)
        unit = place.units[int(crng.choice(len(place.units), p=self._unit_p[pi]))]
        size_m = crng.uniform(*place.tile_size_m)
        anchor = render_pair(unit, crng, size_m, replace(self.cfg, p_aux_query=0.0), max_tries=10)
        if anchor is None:
            return None
        center = anchor.center_xy
        if index % self.neighbours:
            ang = rng.uniform(0.0, 2.0 * math.pi)
            center = center + rng.uniform(0.5, 1.0) * size_m * np.array([math.cos(ang), math.sin(ang)])
        pair = render_pair(unit, rng, size_m, self.cfg, max_tries=5, center_xy=center)
        if pair is not None:
            pair.sample["group"] = self.group_offset + pi
        return pair

    def __getitem__(self, index: int) -> PairSample:
        return self.generate(index).sample


class ChipPairDataset(Dataset):
    """Pairs by augmentation from non-georeferenced chips (UC Merced): each chip is its own place.

    The reference is the chip; the query a random perspective view of it (heading, scale, keystone,
    offset) with appearance changes. Unreadable chips are skipped at load time and counted in the log.
    """

    def __init__(
        self, paths: Sequence[Path], samples_per_epoch: int | None = None, cfg: ViewConfig = ViewConfig(),
        seed: int = 0, group_offset: int = 0, preload: bool = True,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DatasetError("ChipPairDataset got no image paths")
        self.cfg = cfg
        self.seed = int(seed)
        self.epoch = 0
        self.group_offset = int(group_offset)
        self.samples_per_epoch = int(samples_per_epoch or len(self.paths))
        self._images: list[np.ndarray] | None = None
        if preload:
            imgs, keep, bad = [], [], []
            for p in self.paths:
                img = read_image_rgb(p)
                if img is None:
                    bad.append(p)
                    continue
                # the view is rendered at image_size; store at 1.5x to keep zoom-in detail
                side = int(cfg.image_size * 1.5)
                imgs.append(resize_square(img, side) if min(img.shape[:2]) > side else img)
                keep.append(p)
            if bad:
                log.warning("skipped %d unreadable chip(s) of %d, e.g. %s", len(bad), len(self.paths), bad[:3])
            if not imgs:
                raise DatasetError(f"none of the {len(self.paths)} chips could be read (e.g. {self.paths[0]})")
            self.paths, self._images = keep, imgs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def describe(self) -> dict[str, Any]:
        return {"type": "chip-pairs", "chips": len(self.paths), "samples_per_epoch": self.samples_per_epoch}

    def __getitem__(self, index: int) -> PairSample:
        rng = sample_rng(self.seed, self.epoch, index)
        i = int(rng.integers(len(self.paths)))
        img = self._images[i] if self._images is not None else read_image_rgb(self.paths[i])
        if img is None:
            raise DatasetError(f"chip {self.paths[i]} cannot be read")
        s = self.cfg.image_size
        src = resize_square(img, s)
        H = random_view_homography(
            s, rng, heading_range_deg=self.cfg.heading_range_deg,
            scale_range=(1.0 / self.cfg.scale_range[1], 1.0 / self.cfg.scale_range[0]),
            max_offset_frac=self.cfg.max_offset_frac * 0.5,
            max_perspective=math.tan(math.radians(self.cfg.max_pitch_deg)) * 0.3,
        )
        view = photometric(warp_view(src, H, s), rng, self.cfg.photometric)
        return PairSample(query=view, ref=src, group=self.group_offset + i, xy=np.zeros(2), radius=float("inf"))


class MixedPairDataset(Dataset):
    """Several pair datasets drawn with fixed proportions; ``len`` = sum of the parts' lengths.

    Index ``i`` maps to part ``k`` and local index by a seeded permutation of blocks of ``block``
    consecutive samples (``block=1``: batches mix sources; ``block=batch_size``: each batch comes
    from one part, keeping :class:`RasterPairDataset`'s place blocks intact).
    """

    def __init__(self, parts: Sequence[Dataset], seed: int = 0, block: int = 1) -> None:
        self.parts = list(parts)
        self.block = max(1, int(block))
        self.seed = int(seed)
        self.epoch = 0
        self._build()

    def _build(self) -> None:
        lens = [len(p) for p in self.parts]
        owner = np.concatenate([np.full(n, k) for k, n in enumerate(lens)])
        local = np.concatenate([np.arange(n) for n in lens])
        # blocks never straddle two parts
        block_id = np.concatenate([k * 10**9 + np.arange(n) // self.block for k, n in enumerate(lens)])
        _, inverse = np.unique(block_id, return_inverse=True)
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(inverse.max() + 1)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        perm = np.lexsort((np.arange(len(owner)), rank[inverse]))
        self._owner, self._local = owner[perm], local[perm]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for p in self.parts:
            if hasattr(p, "set_epoch"):
                p.set_epoch(epoch)
        self._build()

    def __len__(self) -> int:
        return len(self._owner)

    def describe(self) -> dict[str, Any]:
        from .common import describe

        return {"type": "mixed", "size": len(self), "parts": [describe(p) for p in self.parts]}

    def __getitem__(self, index: int) -> PairSample:
        return self.parts[int(self._owner[index])][int(self._local[index])]


def with_image_size(cfg: ViewConfig, size: int) -> ViewConfig:
    """``cfg`` with another ``image_size``."""
    return replace(cfg, image_size=int(size))
