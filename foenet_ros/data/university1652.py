"""The University-1652 folder format (also SUES-200 and DenseUAV): training pairs and both test protocols.

Layout::

    <root>/train/drone/<building_id>/*.jpeg        many drone views per building
    <root>/train/satellite/<building_id>/*.jpg     one (or a few) satellite views per building
    <root>/test/query_drone/<id>/*      <root>/test/gallery_satellite/<id>/*    (drone -> satellite)
    <root>/test/query_satellite/<id>/*  <root>/test/gallery_drone/<id>/*        (satellite -> drone)

``root`` may also point at the ``train`` or ``test`` folder itself. Galleries may hold
distractor ids that no query has (University-1652's satellite gallery does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import DatasetError
from .augment import NO_PHOTOMETRIC, PhotometricConfig, photometric, random_view_homography, resize_square, warp_view
from .common import IMAGE_EXTENSIONS, PairSample, read_image_rgb, sample_rng

log = logging.getLogger(__name__)

#: protocol name -> (query view folder, gallery view folder) under ``test/``
PROTOCOLS: dict[str, tuple[str, str]] = {
    "drone2sat": ("query_drone", "gallery_satellite"),
    "sat2drone": ("query_satellite", "gallery_drone"),
}
TRAIN_VIEWS = ("drone", "satellite")


@dataclass(frozen=True)
class ViewFolder:
    """All images of one view folder: ``paths[i]`` shows building ``labels[i]``."""

    root: Path
    paths: tuple[Path, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def ids(self) -> list[str]:
        return sorted(set(self.labels))


def _split_dir(root: Path, split: str, views: tuple[str, ...]) -> Path:
    """``root/split`` or ``root`` itself when it already is that split folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    for cand in (root / split, root):
        if all((cand / v).is_dir() for v in views):
            return cand
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    expected = ", ".join(f"{split}/{v}/<id>/*" for v in views)
    raise DatasetError(
        f"{root} does not have the University-1652 layout: expected {expected} "
        f"(found folders: {present or 'none'})"
    )


def scan_view(folder: Path) -> ViewFolder:
    """List ``folder/<id>/<image>`` files (sorted, so the order is deterministic).

    Raises DatasetError when the folder is missing, has no id sub-folders, or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"view folder {folder} is missing (expected {folder}/<building_id>/<images>)")
    paths: list[Path] = []
    labels: list[str] = []
    id_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not id_dirs:
        raise DatasetError(f"{folder} has no <building_id> sub-folders (expected {folder}/<id>/<images>)")
    empty = 0
    for d in id_dirs:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            empty += 1
        paths.extend(files)
        labels.extend([d.name] * len(files))
    if not paths:
        raise DatasetError(f"{folder}: no images with extensions {IMAGE_EXTENSIONS} in its {len(id_dirs)} id folders")
    if empty:
        log.warning("%s: %d of %d id folders hold no image", folder, empty, len(id_dirs))
    return ViewFolder(folder, tuple(paths), tuple(labels))


@dataclass(frozen=True)
class University1652Split:
    """An evaluation protocol: the query and gallery view folders."""

    root: Path
    protocol: str
    query: ViewFolder
    gallery: ViewFolder

    def describe(self) -> dict:
        return {
            "type": "university1652",
            "root": str(self.root),
            "protocol": self.protocol,
            "queries": len(self.query),
            "gallery": len(self.gallery),
            "query_ids": len(self.query.ids),
            "gallery_ids": len(self.gallery.ids),
        }


def load_test_split(root: str | Path, protocol: str = "drone2sat") -> University1652Split:
    """The test protocol ``drone2sat`` (query_drone vs gallery_satellite) or ``sat2drone``.

    Raises DatasetError naming the path when a view folder is missing or a query id has no
    gallery image at all (the protocol would be meaningless).
    """
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown University-1652 protocol {protocol!r}; valid: {sorted(PROTOCOLS)}")
    qv, gv = PROTOCOLS[protocol]
    split = _split_dir(Path(root), "test", (qv, gv))
    query, gallery = scan_view(split / qv), scan_view(split / gv)
    missing = sorted(set(query.ids) - set(gallery.ids))
    if missing:
        raise DatasetError(
            f"{split / gv}: {len(missing)} query ids of {split / qv} have no gallery folder "
            f"(e.g. {missing[:5]}); expected {split / gv}/<id>/ for every query id"
        )
    return University1652Split(split, protocol, query, gallery)


class University1652Train(Dataset):
    """Training pairs: each drone image with a satellite image of the same building.

    ``__getitem__`` returns a :class:`PairSample` (``query`` = drone view, ``ref`` = satellite
    view, ``group`` = building index, ``radius = inf``: views of the same building are never
    negatives of each other). The satellite view gets a random rotation (0-360 deg) and a little
    scale/offset as in the usual University-1652 recipes; the drone view gets appearance changes.
    Unreadable images are replaced by the next pair and counted (``self.skipped``, logged).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        seed: int = 0,
        photometric_cfg: PhotometricConfig = PhotometricConfig(p_gray=0.0),
        rotate_satellite: bool = True,
    ) -> None:
        split = _split_dir(Path(root), "train", TRAIN_VIEWS)
        self.root = split
        self.drone = scan_view(split / "drone")
        sat = scan_view(split / "satellite")
        self.sat_by_id: dict[str, list[Path]] = {}
        for p, lab in zip(sat.paths, sat.labels):
            self.sat_by_id.setdefault(lab, []).append(p)
        no_sat = sorted(set(self.drone.ids) - set(self.sat_by_id))
        if no_sat:
            raise DatasetError(
                f"{split / 'satellite'}: {len(no_sat)} building ids of {split / 'drone'} have no satellite view "
                f"(e.g. {no_sat[:5]}); expected {split}/satellite/<id>/<image> for each"
            )
        self.ids = sorted(set(self.drone.ids))
        self._id_index = {b: i for i, b in enumerate(self.ids)}
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.epoch = 0
        self.photometric_cfg = photometric_cfg
        self.rotate_satellite = rotate_satellite
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.drone)

    def describe(self) -> dict:
        return {
            "type": "university1652-train",
            "root": str(self.root),
            "pairs": len(self),
            "buildings": len(self.ids),
            "image_size": self.image_size,
        }

    def __getitem__(self, index: int) -> PairSample:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            label = self.drone.labels[i]
            rng = sample_rng(self.seed, self.epoch, i)
            sat_paths = self.sat_by_id[label]
            drone = read_image_rgb(self.drone.paths[i])
            sat_path = sat_paths[int(rng.integers(len(sat_paths)))]
            sat = read_image_rgb(sat_path)
            if drone is None or sat is None:
                self.skipped += 1
                bad = self.drone.paths[i] if drone is None else sat_path
                log.warning("unreadable image %s skipped (%d skipped so far in this worker)", bad, self.skipped)
                continue
            s = self.image_size
            drone = photometric(resize_square(drone, s), rng, self.photometric_cfg)
            sat = resize_square(sat, s)
            if self.rotate_satellite:
                H = random_view_homography(s, rng, scale_range=(0.9, 1.1), max_offset_frac=0.05, max_perspective=0.0)
                sat = warp_view(sat, H, s)
            sat = photometric(sat, rng, NO_PHOTOMETRIC)
            return PairSample(
                query=drone, ref=sat, group=self._id_index[label], xy=np.zeros(2), radius=float("inf")
            )
        raise DatasetError(f"{self.root}: no readable image pair at all")


def load_view_images(view: ViewFolder) -> tuple[list[np.ndarray], list[str], list[Path]]:
    """Read every image of a view folder; unreadable files are skipped and counted in the log.

    Returns ``(images, labels, paths)`` of the readable ones.
    """
    images, labels, paths = [], [], []
    skipped: list[Path] = []
    for p, lab in zip(view.paths, view.labels):
        img = read_image_rgb(p)
        if img is None:
            skipped.append(p)
            continue
        images.append(img)
        labels.append(lab)
        paths.append(p)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s) of %d, e.g. %s", view.root, len(skipped), len(view), skipped[:3])
    if not images:
        raise DatasetError(f"{view.root}: none of its {len(view)} images could be read")
    return images, labels, paths
