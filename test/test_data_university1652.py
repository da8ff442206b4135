"""The University-1652 folder loader on a tiny generated tree: both protocols, training pairs, bad layouts."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from foenet_ros.data import University1652Train, load_test_split, scan_view
from foenet_ros.errors import DatasetError


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((40, 40, 3), value, np.uint8)
    img[5:15, 5:15] = (value * 7) % 255  # some structure
    cv2.imwrite(str(path), img)


def make_tree(root: Path, ids=("0001", "0002", "0003"), drones_per_id: int = 3, distractor: str = "0999") -> Path:
    for k, b in enumerate(ids):
        for i in range(drones_per_id):
            _img(root / "train" / "drone" / b / f"image-{i:02d}.jpeg", 30 * k + i)
            _img(root / "test" / "query_drone" / b / f"image-{i:02d}.jpeg", 30 * k + i)
            _img(root / "test" / "gallery_drone" / b / f"image-{i:02d}.jpeg", 30 * k + i)
        _img(root / "train" / "satellite" / b / f"{b}.jpg", 30 * k + 100)
        _img(root / "test" / "query_satellite" / b / f"{b}.jpg", 30 * k + 100)
        _img(root / "test" / "gallery_satellite" / b / f"{b}.jpg", 30 * k + 100)
    _img(root / "test" / "gallery_satellite" / distractor / f"{distractor}.jpg", 250)  # gallery-only id
    return root


def test_drone_to_satellite_protocol(tmp_path):
    root = make_tree(tmp_path / "U1652")
    split = load_test_split(root, "drone2sat")
    assert len(split.query) == 9 and len(split.gallery) == 4
    assert split.query.ids == ["0001", "0002", "0003"]
    assert split.gallery.ids == ["0001", "0002", "0003", "0999"]
    assert split.query.labels[0] == "0001" and split.query.paths[0].name == "image-00.jpeg"
    assert split.describe()["protocol"] == "drone2sat"


def test_satellite_to_drone_protocol_and_test_folder_as_root(tmp_path):
    root = make_tree(tmp_path / "U1652")
    split = load_test_split(root / "test", "sat2drone")  # pointing at test/ directly works too
    assert len(split.query) == 3 and len(split.gallery) == 9
    assert set(split.gallery.labels) == {"0001", "0002", "0003"}


def test_training_pairs(tmp_path):
    root = make_tree(tmp_path / "U1652")
    ds = University1652Train(root, image_size=32, seed=3)
    assert len(ds) == 9 and ds.ids == ["0001", "0002", "0003"]
    s = ds[4]
    assert s["query"].shape == (32, 32, 3) and s["ref"].shape == (32, 32, 3)
    assert s["group"] == 1 and s["radius"] == float("inf")
    again = University1652Train(root, image_size=32, seed=3)[4]
    np.testing.assert_array_equal(s["query"], again["query"])  # deterministic with a seed


def test_unknown_layout_names_path_and_expectation(tmp_path):
    (tmp_path / "junk" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"junk.*expected test/query_drone/<id>/\*"):
        load_test_split(tmp_path / "junk", "drone2sat")
    with pytest.raises(DatasetError, match="does not exist"):
        load_test_split(tmp_path / "nope")
    with pytest.raises(DatasetError, match="unknown University-1652 protocol"):
        load_test_split(make_tree(tmp_path / "ok"), "street2sat")


def test_missing_view_and_missing_gallery_ids(tmp_path):
    root = make_tree(tmp_path / "U1652")
    import shutil

    shutil.rmtree(root / "test" / "gallery_drone")
    with pytest.raises(DatasetError, match="gallery_drone"):
        load_test_split(root, "sat2drone")
    shutil.rmtree(root / "test" / "gallery_satellite" / "0002")
    with pytest.raises(DatasetError, match=r"gallery_satellite.*1 query ids.*0002"):
        load_test_split(root, "drone2sat")
    shutil.rmtree(root / "train" / "satellite" / "0003")
    with pytest.raises(DatasetError, match=r"satellite.*no satellite view.*0003"):
        University1652Train(root)
    empty = tmp_path / "empty_view"
    (empty / "0001").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        scan_view(empty)


def test_unreadable_images_are_counted(tmp_path, caplog):
    root = make_tree(tmp_path / "U1652")
    bad = root / "train" / "drone" / "0001" / "image-00.jpeg"
    bad.write_bytes(b"not a jpeg")
    ds = University1652Train(root, image_size=32)
    with caplog.at_level(logging.WARNING):
        s = ds[0]  # replaced by the next readable pair, and logged with a count
    assert ds.skipped == 1
    assert "unreadable image" in caplog.text and "image-00.jpeg" in caplog.text
    assert s["query"].shape == (32, 32, 3)
