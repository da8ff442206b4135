"""A photo's own tags (EXIF + DJI XMP) as the camera and pose `foenet localize` uses: parsing, every
kind of broken tag, and the real DJI Phantom 4 Pro frames of the orthority set end to end."""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
from PIL import Image

from foenet_ros.geo.photo_metadata import PhotoMetadata, photo_metadata
from conftest import require_shared

DJI = "http://www.dji.com/drone-dji/1.0/"


def _xmp(fields: dict[str, str], as_elements: bool = False) -> bytes:
    """An XMP packet with ``drone-dji:`` fields as attributes (DJI's way) or as elements."""
    if as_elements:
        body = "".join(f"<drone-dji:{k}>{v}</drone-dji:{k}>" for k, v in fields.items())
        desc = f'<rdf:Description rdf:about="" xmlns:drone-dji="{DJI}">{body}</rdf:Description>'
    else:
        attrs = " ".join(f'drone-dji:{k}="{v}"' for k, v in fields.items())
        desc = f'<rdf:Description rdf:about="" xmlns:drone-dji="{DJI}" {attrs}/>'
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">{desc}</rdf:RDF></x:xmpmeta>'
            '<?xpacket end="w"?>').encode()


def _photo(path, size=(400, 300), xmp: bytes | None = None, f35: int | None = None, full=None, gps=None):
    """A JPEG with the given tags (``gps``: (lat_dms, lat_ref, lon_dms, lon_ref))."""
    exif = Image.Exif()
    exif[0x010F] = "DJI"
    sub = exif.get_ifd(0x8769)
    if f35 is not None:
        sub[0xA405] = f35
    if full is not None:
        sub[0xA002], sub[0xA003] = full
    if gps is not None:
        g = exif.get_ifd(0x8825)
        g[2], g[1], g[4], g[3] = gps
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    img.save(path, exif=exif, **({"xmp": xmp} if xmp is not None else {}))
    return path


def test_dji_gimbal_height_gnss_and_the_35mm_focal_length(tmp_path):
    path = _photo(tmp_path / "a.jpg", xmp=_xmp({"GimbalYawDegree": "-45.50", "GimbalPitchDegree": "-75.0",
                                                 "GimbalRollDegree": "+1.5", "RelativeAltitude": "+120.30"}),
                  f35=24, gps=((24.0, 40.0, 49.0009), "N", (120.0, 57.0, 6.1257), "W"))
    m = photo_metadata(path, 400, 300)
    assert m.heading_deg == pytest.approx(314.5)  # -45.5 wrapped to [0, 360)
    assert m.attitude == pytest.approx((1.5, 15.0))  # roll; pitch = tilt from nadir (-75 -> 15 forward)
    assert m.height_m == pytest.approx(120.3)
    assert m.gnss == pytest.approx((24 + 40 / 60 + 49.0009 / 3600, -(120 + 57 / 60 + 6.1257 / 3600)))
    # 24 mm equivalent on a 4:3 sensor: the width's share of the 43.27 mm diagonal, 34.6 mm -> 71.6 deg
    assert m.camera.hfov_deg == pytest.approx(2 * math.degrees(math.atan(0.8 * math.hypot(36, 24) / 48)), abs=0.01)
    assert (m.camera.width, m.camera.height, m.camera.dist) == (400, 300, ())
    assert set(m.sources) == {"camera", "heading", "attitude", "height", "gnss"}
    assert "heading 314.5 deg" in m.describe() and "120.3 m above take-off" in m.describe()
    # the same fields written as XMP elements instead of attributes
    el = photo_metadata(_photo(tmp_path / "b.jpg", xmp=_xmp({"GimbalYawDegree": "10", "RelativeAltitude": "50"},
                                                             as_elements=True)), 400, 300)
    assert el.heading_deg == pytest.approx(10.0) and el.height_m == pytest.approx(50.0)


def test_dewarp_data_scaled_to_a_downsampled_photo_with_its_distortion(tmp_path):
    fields = {"CalibratedFocalLength": "3666.666504", "CalibratedOpticalCenterX": "2736.0",
              "CalibratedOpticalCenterY": "1824.0",
              "DewarpData": "2018-09-07;3657.02,3650.62,-4.03,23.10,-0.267098,0.111977,0.000924881,0.0000882056,-0.0331614",
              "DewarpFlag": "0"}
    m = photo_metadata(_photo(tmp_path / "a.jpg", size=(1368, 912), xmp=_xmp(fields), full=(5472, 3648)), 1368, 912)
    cam = m.camera
    assert m.sources["camera"] == "drone-dji:DewarpData"
    assert cam.fx == pytest.approx(3657.02 / 4) and cam.fy == pytest.approx(3650.62 / 4)
    assert (cam.cx, cam.cy) == pytest.approx(((2736 - 4.03) / 4, (1824 + 23.1) / 4))  # offsets from the centre
    assert cam.dist == pytest.approx((-0.267098, 0.111977, 0.000924881, 0.0000882056, -0.0331614))
    # DewarpFlag 1: the pixels are already undistorted: the calibrated focal length, no distortion
    m = photo_metadata(_photo(tmp_path / "b.jpg", size=(1368, 912), xmp=_xmp({**fields, "DewarpFlag": "1"}),
                              full=(5472, 3648)), 1368, 912)
    assert m.sources["camera"] == "drone-dji:CalibratedFocalLength"
    assert m.camera.fx == pytest.approx(3666.666504 / 4) and m.camera.dist == ()


@pytest.mark.parametrize("fields, gps, lost", [
    ({"GimbalYawDegree": "north"}, None, "heading"),  # not a number
    ({"GimbalYawDegree": "1e9"}, None, "heading"),  # beyond any turn count
    ({"GimbalPitchDegree": "-5.0"}, None, "attitude"),  # 85 deg from nadir: not looking at the ground
    ({"GimbalPitchDegree": "nan"}, None, "attitude"),
    ({"RelativeAltitude": "-3.2"}, None, "height"),  # below the take-off point: no height above ground
    ({"RelativeAltitude": "+0.00"}, None, "height"),  # on the ground before take-off
    ({"DewarpData": "2018;1,2,3"}, None, "camera"),  # too few numbers
    ({"DewarpData": "2018;0,0,0,0,0,0,0,0,0"}, None, "camera"),  # zero focal length
    ({"DewarpData": "2018;900,900,0,0,1e6,0,0,0,0"}, None, "camera"),  # k1 = 1e6: a unit error
    ({}, ((0.0, 0.0, 0.0), "N", (0.0, 0.0, 0.0), "E"), "gnss"),  # 0, 0: a camera without a fix
    ({}, ((95.0, 0.0, 0.0), "N", (10.0, 0.0, 0.0), "E"), "gnss"),  # latitude 95
])
def test_a_broken_tag_is_left_out_and_the_rest_is_kept(tmp_path, caplog, fields, gps, lost):
    good = {"GimbalYawDegree": "30", "GimbalPitchDegree": "-90", "RelativeAltitude": "80",
            "CalibratedFocalLength": "3666.67"}
    path = _photo(tmp_path / "a.jpg", size=(1368, 912), xmp=_xmp({**good, **fields}), full=(5472, 3648),
                  gps=gps or ((24.0, 40.0, 49.0), "N", (120.0, 57.0, 6.0), "E"))
    with caplog.at_level(logging.DEBUG, logger="foenet_ros.geo.photo_metadata"):
        m = photo_metadata(path, 1368, 912)
    if lost == "camera":  # a broken lens calibration: the calibrated focal length alone
        assert m.sources["camera"] == "drone-dji:CalibratedFocalLength" and m.camera.dist == ()
        lost = None
    assert lost not in m.sources
    assert set(m.sources) == {"camera", "heading", "attitude", "height", "gnss"} - {lost}
    if gps is None or gps[0][0] != 0.0:
        assert "ignored" in caplog.text


def test_photos_without_usable_tags(tmp_path):
    # no tags at all; an XMP packet that is not XML; a calibration for another aspect (a cropped photo)
    assert photo_metadata(_photo(tmp_path / "a.jpg"), 400, 300) == PhotoMetadata()
    broken = photo_metadata(_photo(tmp_path / "b.jpg", xmp=b"<x:xmpmeta><rdf:RDF><unclosed></x:xmpmeta>"), 400, 300)
    assert broken == PhotoMetadata()
    # a hostile packet (entities expanding to 10^10 characters) is refused, not expanded
    ents = '<!ENTITY a0 "xxxxxxxxxx">' + "".join(f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE x:xmpmeta [{ents}]><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            f'<drone-dji:GimbalYawDegree xmlns:drone-dji="{DJI}">&a9;</drone-dji:GimbalYawDegree></x:xmpmeta>')
    assert photo_metadata(_photo(tmp_path / "e.jpg", xmp=bomb.encode()), 400, 300) == PhotoMetadata()
    crop = photo_metadata(_photo(tmp_path / "c.jpg", size=(1000, 1000), xmp=_xmp({"CalibratedFocalLength": "3666"}),
                                 full=(5472, 3648)), 1000, 1000)
    assert crop.camera is None
    # not an image at all, and a missing file: nothing, no exception (the pixels' reader reports those)
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8 not really")
    assert photo_metadata(tmp_path / "d.jpg", 400, 300) == PhotoMetadata()
    assert photo_metadata(tmp_path / "missing.jpg", 400, 300) == PhotoMetadata()


# ------------------------------------------------------------------ the real DJI frames
def _orthority_truth(root):
    from foenet_ros.geo import pose_from_opk

    rows = list(csv.reader((root / "io" / "odm_xyz_opk.csv").read_text().splitlines(), delimiter=" ", quotechar="'"))
    return {r[0]: pose_from_opk(*(float(v) for v in r[1:7])) for r in rows[1:] if r}


def test_the_real_phantom_4_pro_tags_agree_with_the_reconstruction(shared_data):
    root = require_shared(shared_data, "orthority_odm")
    cam = next(iter(json.loads((root / "reconstruction.json").read_text())[0]["cameras"].values()))
    truth = _orthority_truth(root)
    for name, pose in truth.items():
        m = photo_metadata(require_shared(root, f"images/{name}.tif"), 1368, 912)
        assert m.sources["camera"] == "drone-dji:DewarpData"
        # the factory calibration against the bundle adjustment of these very frames
        assert m.camera.fx == pytest.approx(cam["focal_x"] * 1368, rel=0.01)
        assert m.camera.dist[0] == pytest.approx(cam["k1"], abs=0.01)
        assert abs((m.heading_deg - pose.heading_deg + 180) % 360 - 180) < 2.0
        assert m.attitude[1] == pytest.approx(pose.pitch_deg, abs=1.5)
        assert m.height_m == pytest.approx(100.0, abs=1.0)


def test_localize_cli_takes_camera_and_pose_from_a_real_photos_tags(shared_data, tmp_path, capsys, caplog):
    """A real DJI frame against the orthos of the other three frames with no camera or pose flag: the
    tags give the distorted camera, the gimbal's heading and tilt and the height; the fix is within 2 m
    of the reconstructed camera and the GNSS tag within 10 m of the fix."""
    from pyproj import Transformer

    from foenet_ros.cli import main

    root = require_shared(shared_data, "orthority_odm")
    name = "100_0005_0142"
    others = sorted(str(p) for p in (root / "ortho").glob("*_ORTHO.tif") if not p.name.startswith(name))
    assert len(others) == 3
    idx = tmp_path / "idx"
    assert main(["build-index", *others, "--out", str(idx), "--hfov", "73.5", "--image-size", "1368", "912",
                 "--alt-range", "80", "120", "--max-tilt", "30", "--min-valid", "0.3", "--map-accuracy-m", "0.5",
                 "--dsm", str(root / "dsm.tif"), "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    photo = str(root / "images" / f"{name}.tif")
    caplog.set_level(logging.WARNING, logger="foenet_ros.commands.localize")
    assert main(["localize", "--index", str(idx), "--json", "--device", "cpu", photo]) == 0
    assert "distortion" not in caplog.text  # the tags' calibration has it
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "verified"
    assert set(out["metadata"]) == {"camera", "heading", "attitude", "height", "gnss"}
    pose = _orthority_truth(root)[name]
    lon, lat = Transformer.from_crs(32651, 4326, always_xy=True).transform(pose.x, pose.y)
    from foenet_ros.commands.localize import gnss_offset_m

    err = gnss_offset_m((lat, lon), (out["lat"], out["lon"]))
    assert err < 2.0, err
    assert err < 2 * out["sigma_m"] + 0.5
    assert out["gnss_offset_m"] < 10.0
    # the GNSS tag as the prior (a 30 m search), and the tags ignored: flags only, no camera
    assert main(["localize", "--index", str(idx), "--device", "cpu", "--prior-from-gnss", "--prior-sigma-m", "30",
                 photo]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "verified"
    assert main(["localize", "--index", str(idx), "--device", "cpu", "--metadata", "ignore", "--json", photo]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "metadata" not in plain and "gnss_offset_m" not in plain
    # the field of view alone for this wide lens: a warning that its distortion is missing
    assert main(["localize", "--index", str(idx), "--device", "cpu", "--metadata", "ignore", "--hfov", "73.5",
                 photo, photo]) == 0
    assert caplog.text.count("without a distortion model") == 1  # once per camera, not per photo
