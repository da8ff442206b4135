"""Issue 11, holes 2, 3 (validation) and 6 (CLI pixel budget): bad inputs at the boundary.

* hole 2: a faulty GNSS prior (lat 95, lon 1e308, NaN, sigma -5...) is ignored with a WARNING and
  localization goes on; the CLI refuses it with one line (exit 2); a prior far off the map no
  longer turns a good frame into ``lost`` (the heading conversion uses the map then).
* hole 3: intrinsics/distortion no camera has (--hfov 0.0001, fx=1e12, fx=1e-9, k1=1e6) are refused.
* hole 6: a PNG bomb, an 18000^2 PNG and a 20000^2 JPEG given to `foenet localize` end in one line,
  checked on the header before a pixel is decoded (bounded memory, measured).
"""

from __future__ import annotations

import logging
import math
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from foenet_ros.errors import (
    AltitudeError,
    AttitudeError,
    CameraError,
    DistortionError,
    FoenetError,
    HeadingError,
    ImageError,
    ImageTooLargeError,
    IntrinsicsError,
    PriorError,
)
from foenet_ros.geo import CameraIntrinsics, CameraPose
from foenet_ros.geo.render import render_view
from foenet_ros.geo.validate import (
    check_altitude,
    check_attitude,
    check_distortion,
    check_heading,
    check_intrinsics,
    check_prior,
    validate_heading,
)
from foenet_ros.localize import Localizer, LocalizerConfig, Prior
from foenet_ros.localize.estimate import validate_prior, validate_prior_strict
from foenet_ros.utils import check_image_budget, image_size_from_header, read_image_checked

from .faultlib import HFOV, IMAGE_SIZE

INTR = CameraIntrinsics.from_hfov(HFOV, *IMAGE_SIZE)


@pytest.fixture(scope="module")
def loc(index, encoder) -> Localizer:
    return Localizer(index, encoder, LocalizerConfig())


@pytest.fixture(scope="module")
def good_view(fault_map):
    """A rendered nadir view over the middle of the map, with its pose and true heading."""
    xmin, ymin, xmax, ymax = fault_map.bounds_xy
    pose = CameraPose((xmin + xmax) / 2 + 20, (ymin + ymax) / 2 - 10, 100.0, 30.0, 0.0, 0.0)
    img, _ = render_view(fault_map, INTR, pose)
    heading = fault_map.frame.grid_to_true_heading(pose.heading_deg, pose.x, pose.y)
    return img, pose, float(heading)


def _err(est, pose) -> float:
    return math.hypot(est.x - pose.x, est.y - pose.y) if est.has_fix else math.inf


# ---------------------------------------------------------------------- hole 2: priors
BAD_PRIORS = [
    (95.0, 38.25), (47.0, 1e308), (math.nan, math.nan), (math.inf, 8.5), (47.0, 8.5, -5.0), (47.0, 8.5, 0.0),
    (47.0, 8.5, math.nan), (47.0, 8.5, 1e9), ("47", "8"), (47.0,), (1, 2, 3, 4), {"lat": 47.0},
    {"lon": 1.0, "lat": -91},
    object(), 5, Prior(95.0, 0.0, 50.0), Prior(47.0, 8.5, -1.0),
]


@pytest.mark.parametrize("bad", BAD_PRIORS, ids=[repr(b)[:30] for b in BAD_PRIORS])
def test_invalid_prior_is_refused_strictly_and_ignored_leniently(bad, caplog):
    with pytest.raises(PriorError) as info:
        validate_prior_strict(bad)
    assert "\n" not in str(info.value)
    with caplog.at_level(logging.WARNING):
        assert validate_prior(bad) is None
        assert Prior.coerce(bad) is None  # the Localizer's call: lenient


def test_valid_priors_are_normalised():
    assert validate_prior((27.6, 85.5)) == Prior(27.6, 85.5, 50.0)
    assert validate_prior({"lat": 1, "lon": 2, "sigma_m": 5}) == Prior(1.0, 2.0, 5.0)
    assert validate_prior_strict(np.array([10.0, -170.0, 3.0])) == Prior(10.0, -170.0, 3.0)
    assert validate_prior(None) is None and validate_prior_strict(None) is None
    assert check_prior(90, -180, 1e5) == (90.0, -180.0, 1e5)


def test_invalid_prior_does_not_stop_localization(loc, good_view, caplog):
    """The issue: lat 95 / lon 1e308 made every frame raise while the prior was fresh."""
    img, pose, heading = good_view
    loc.reset()
    ref = loc.localize(img, camera=INTR, heading_deg=heading, altitude_m=pose.alt_m)
    assert ref.status == "verified" and _err(ref, pose) < 3.0
    for bad in [(95.0, 38.25), (47.0, 1e308, 10.0), (math.nan, math.nan), (47.0, 8.5, -5.0)]:
        loc.reset()
        with caplog.at_level(logging.WARNING, logger="foenet_ros.localize.estimate"):
            est = loc.localize(img, camera=INTR, heading_deg=heading, altitude_m=pose.alt_m, prior=bad)
        assert est.status == "verified" and _err(est, pose) < 3.0, bad
        assert not str(est.pose.get("search", "")).startswith("prior")


@pytest.mark.parametrize("far", [(0.0, 0.0), (70.0, 80.0), (-60.0, -150.0)])
def test_prior_far_off_the_map_keeps_a_good_frame(loc, good_view, far):
    """`--prior 0 0` turned a good photo into `lost`: the heading conversion was evaluated at the prior."""
    img, pose, heading = good_view
    loc.reset()
    est = loc.localize(img, camera=INTR, heading_deg=heading, altitude_m=pose.alt_m, prior=(far[0], far[1], 50.0))
    assert est.status == "verified" and _err(est, pose) < 3.0
    assert abs((est.heading_deg - heading + 180) % 360 - 180) < 3.0


# ---------------------------------------------------------------------- hole 3: intrinsics
@pytest.mark.parametrize("kw,error,match", [
    (dict(fx=1e12, fy=1e12), IntrinsicsError, r"fx=1e\+12 px is .* x the image width"),
    (dict(fx=1e-9, fy=1e-9), IntrinsicsError, "fx=1e-09 px"),
    (dict(fx=500.0, fy=1e5), IntrinsicsError, "fy=100000"),
    (dict(fx=0.0, fy=0.0), IntrinsicsError, "uncalibrated: pass --hfov"),
    (dict(fx=math.nan), IntrinsicsError, "NaN"),
    (dict(cx=5000.0), IntrinsicsError, "principal point"),
    (dict(dist=(1e6, 0.0, 0.0, 0.0)), DistortionError, r"k1=1e\+06 is beyond"),
    (dict(dist=(0.0, 0.0, 0.5, 0.0, 0.0)), DistortionError, "p1=0.5"),
    (dict(dist=(-3.0, 0.0, 0.0, 0.0, 0.0)), DistortionError, "fold"),
    (dict(dist=(-5.0, 0.0, 0.0, 0.0, 0.0, -5.0, 0.0, 0.0)), DistortionError, "denominator"),
    (dict(dist=(0.1, 0.2, 0.0)), DistortionError, "4, 5, 8, 12 or 14"),
    (dict(dist=(math.inf, 0.0, 0.0, 0.0)), DistortionError, "finite"),
])
def test_impossible_cameras_are_refused_by_the_localizer(loc, good_view, kw, error, match):
    img = good_view[0]
    base = dict(width=640, height=480, fx=INTR.fx, fy=INTR.fy, cx=INTR.cx, cy=INTR.cy, dist=())
    cam = CameraIntrinsics(**{**base, **kw})
    with pytest.raises(error, match=match) as info:
        loc.localize(img, camera=cam)
    assert isinstance(info.value, CameraError) and "\n" not in str(info.value)


def test_distortion_in_the_wrong_units_is_refused():
    """k1 = 50 on a 150 deg lens moves the corners 10x: a unit error, not a lens."""
    with pytest.raises(DistortionError, match="scales the image corners by"):
        CameraIntrinsics.from_hfov(150.0, 640, 480, dist=(50.0, 0.0, 0.0, 0.0, 0.0))
    CameraIntrinsics.from_hfov(150.0, 640, 480, dist=(0.01, 0.0, 0.0, 0.0, 0.0))


@pytest.mark.parametrize("dist", [
    (-0.28, 0.07, 0.0002, -0.0001, 0.0),                    # typical barrel (plumb_bob)
    (0.12, -0.3, 0.001, 0.0005, 0.2),                        # pincushion + k3
    (2.5, 0.3, 0.0001, 0.0002, 0.01, 2.9, 0.8, 0.07),        # rational model of a wide lens (coefficients cancel)
    (-0.05, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.001, 0.0, 0.001, 0.0),  # thin prism
])
def test_real_lens_calibrations_are_accepted(dist):
    CameraIntrinsics(1280, 800, 620.0, 620.0, 639.5, 399.5, dist).validate()


def test_field_of_view_limits_match_the_documented_range():
    for hfov in (3.0, 70.0, 168.0):
        CameraIntrinsics.from_hfov(hfov, 640, 480)
    for hfov in (0.0001, 2.5, 169.5):
        with pytest.raises(IntrinsicsError):
            CameraIntrinsics.from_hfov(hfov, 640, 480)
    check_intrinsics(2, 2, 1.0, 1.0, 0.5, 0.5)
    with pytest.raises(IntrinsicsError, match="integers >= 2"):
        check_intrinsics(640.5, 480, 500, 500, 320, 240)
    assert check_distortion((), 640, 480, 500, 500, 320, 240) == ()


def test_attitude_altitude_heading_validators():
    assert check_attitude(-3, 10.5) == (-3.0, 10.5)
    for bad, match in [((math.nan, 0), "finite"), ((0, 95), "beyond"), (("a", 0), "number"), ((True, 0), "number")]:
        with pytest.raises(AttitudeError, match=match):
            check_attitude(*bad)
    assert check_altitude(120) == 120.0
    for bad in (0, -3, math.inf, 1e6, None, "100"):
        with pytest.raises(AltitudeError):
            check_altitude(bad)
    assert check_heading(-90) == 270.0 and check_heading(725) == 5.0
    for bad in (math.nan, math.inf, 1e308, None):
        with pytest.raises(HeadingError):
            check_heading(bad)
    assert validate_heading(1e308) is None and validate_heading(None) is None and validate_heading(360.0) == 0.0


@pytest.mark.parametrize("frame,error", [
    (np.zeros((10, 10, 3), np.uint8), ImageError),
    (np.zeros((40, 4000, 3), np.uint8), ImageError),                    # 100:1 strip
    (np.zeros((64, 64, 3), np.float32), ImageError),
    (np.zeros((64, 64, 2), np.uint8), ImageError),
    (np.zeros((64, 64, 3, 1), np.uint8), ImageError),
    ([[1, 2], [3, 4]], ImageError),
])
def test_bad_frames_raise_image_errors(loc, frame, error):
    with pytest.raises(error):
        loc.localize(frame)


def test_frame_over_the_pixel_budget(monkeypatch, loc):
    import foenet_ros.localize.preprocess as pre

    monkeypatch.setattr(pre, "MAX_FRAME_MEGAPIXELS", 0.01)
    with pytest.raises(ImageTooLargeError, match="exceeds 0.01 MP"):
        loc.localize(np.zeros((200, 200, 3), np.uint8))


def test_camera_that_is_not_intrinsics(loc, good_view):
    with pytest.raises(CameraError, match="must be a CameraIntrinsics"):
        loc.localize(good_view[0], camera={"fx": 500})


# ---------------------------------------------------------------------- CLI: one line, exit 2
def _cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foenet_ros.cli", "localize", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("foenet localize: error:"), res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def frame_png(good_view, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(good_view[0], cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.parametrize("flags,needles", [
    (["--prior", "95", "38.25"], ["latitude 95.0 is outside [-90, 90]"]),
    (["--prior", "nan", "nan"], ["latitude must be finite"]),
    (["--prior", "47.37", "8.54", "--prior-sigma-m", "-5"], ["sigma_m must be in (0, 100000]"]),
    (["--prior-sigma-m", "-5"], ["sigma_m"]),
    (["--hfov", "0.0001"], ["fx=", "x the image width"]),
    (["--altitude-m", "-3"], ["altitude_m"]),
    (["--heading-deg", "inf"], ["heading_deg must be finite"]),
    (["--attitude", "0", "95"], ["pitch 95"]),
    (["--max-megapixels", "0"], ["--max-megapixels must be > 0"]),
])
def test_cli_refuses_bad_flags_in_one_line(index_dir, frame_png, flags, needles):
    res = _cli(["--index", str(index_dir), "--device", "cpu", *flags, str(frame_png)], timeout=120)
    _one_line_error(res, *needles)


def test_cli_camera_info_with_impossible_values(index_dir, frame_png, tmp_path):
    yaml_path = tmp_path / "cam.yaml"
    cases = (([1e12, 0, 320, 0, 1e12, 240, 0, 0, 1], "fx=1e+12"), ([500, 0, 320, 0, 500, 240, 0, 0, 1], "k1=1e+06"))
    for k, match in cases:
        dist = [0.0] * 5 if "fx" in match else [1e6, 0, 0, 0, 0]
        yaml_path.write_text(f"image_width: 640\nimage_height: 480\ncamera_matrix: {{rows: 3, cols: 3, data: {k}}}\n"
                             "distortion_model: plumb_bob\n"
                             f"distortion_coefficients: {{rows: 1, cols: 5, data: {dist}}}\n")
        res = _cli(["--index", str(index_dir), "--device", "cpu", "--camera-info", str(yaml_path), str(frame_png)],
                   timeout=120)
        _one_line_error(res, match, str(yaml_path))


# ---------------------------------------------------------------------- hole 6: pixel budget
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def _jpeg_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    sof = data.index(b"\xff\xc0")
    h, w = struct.unpack(">HH", data[sof + 5: sof + 9])
    return w, h


def write_png_bomb(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A valid 8-bit grayscale PNG of zeros, compressed row by row (never held in memory):
    18000^2 is ~320 KB on disk and 324 MB decoded (x3 as RGB). With ``rows`` only that many rows
    are stored (a bomb that claims more than it carries: decoders allocate the claimed size)."""
    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + zero pixels
    parts = []
    for _ in range(height if rows is None else rows):
        out = comp.compress(row)
        if out:
            parts.append(out)
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
                     + _png_chunk(b"IEND", b""))
    return path


def write_huge_jpeg(path: Path, width: int, height: int) -> Path:
    """A JPEG whose frame header announces ``width x height``: a small image with its SOF0 patched.
    A decoder allocates the full size (3.45 GB for the CLI in the issue) before finding the data short."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    return {
        "png_18000": write_png_bomb(d / "big.png", 18000, 18000),
        "png_bomb_40000": write_png_bomb(d / "bomb.png", 40000, 40000, rows=100),  # beyond OpenCV's 2^30 px limit
        "jpeg_20000": write_huge_jpeg(d / "big.jpg", 20000, 20000),
    }


def test_bombs_are_what_they_claim(bombs, tmp_path):
    assert bombs["png_18000"].stat().st_size < 600_000 and _png_size(bombs["png_18000"]) == (18000, 18000)
    assert _jpeg_size(bombs["jpeg_20000"]) == (20000, 20000) and _png_size(bombs["png_bomb_40000"]) == (40000, 40000)
    with pytest.raises(ImageTooLargeError, match="decompression-bomb limit"):  # beyond Pillow's own limit
        image_size_from_header(bombs["png_bomb_40000"].read_bytes())
    # below Pillow's limit the header gives the exact size, and the budget message names it
    mid = write_png_bomb(tmp_path / "mid.png", 12000, 11000, rows=10)
    assert image_size_from_header(mid) == (12000, 11000)
    with pytest.raises(ImageTooLargeError, match=r"is 12000x11000 \(132 MP\), over the 120 MP budget"):
        check_image_budget(mid, 120)
    assert check_image_budget(mid, 140) == (12000, 11000)


@pytest.mark.parametrize("name", ["png_18000", "png_bomb_40000", "jpeg_20000"])
def test_read_image_checked_refuses_on_the_header(bombs, name):
    t = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="MP budget") as info:
        read_image_checked(bombs[name], max_megapixels=120)
    assert time.perf_counter() - t < 1.0 and "\n" not in str(info.value)


def test_read_image_checked_decodes_and_downscales(frame_png, tmp_path):
    img = read_image_checked(frame_png)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    ref = cv2.cvtColor(cv2.imread(str(frame_png)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(img, ref)
    small = read_image_checked(frame_png, max_side=200)
    assert max(small.shape[:2]) == 200
    jpg = tmp_path / "f.jpg"
    cv2.imwrite(str(jpg), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
    assert max(read_image_checked(jpg, max_side=160).shape[:2]) == 160  # decoded at 1/4 by libjpeg
    with pytest.raises(ImageTooLargeError):
        read_image_checked(frame_png, max_megapixels=0.1)
    for bad, match in ((tmp_path / "missing.png", "no such file"), (Path(__file__), "not a decodable image")):
        with pytest.raises(ImageError, match=match):
            read_image_checked(bad)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(frame_png.read_bytes()[:200])
    with pytest.raises(ImageError, match="cannot decode"):
        read_image_checked(trunc)


# peak RSS of this process image: VmHWM (ru_maxrss would carry the forking pytest's peak over exec)
_RSS_WRAPPER = """
import sys
from foenet_ros.cli import main
rc = main(sys.argv[1:])
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")][0]
print("MAXRSS_KB", hwm, file=sys.stderr)
sys.exit(rc)
"""


@pytest.mark.parametrize("name", ["png_18000", "png_bomb_40000", "jpeg_20000"])
def test_cli_pixel_budget_clear_error_and_bounded_memory(index_dir, bombs, name):
    res = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, "localize", "--index", str(index_dir), "--device", "cpu",
                          str(bombs[name])], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    rss_mb = int(lines.pop().split()[1]) / 1024
    res = subprocess.CompletedProcess(res.args, res.returncode, res.stdout, "\n".join(lines))
    _one_line_error(res, "MP budget", str(bombs[name]))
    # refused before torch, the model, the index or a pixel is loaded: ~25 MB measured,
    # not the 1.8-3.45 GB the issue measured
    assert rss_mb < 150, rss_mb


def test_cli_localizes_a_good_frame_with_a_far_prior(index_dir, frame_png, good_view):
    """End to end through the CLI: `--prior 0 0` is far off the map; the frame is still verified."""
    import json

    _, pose, heading = good_view
    res = _cli(["--index", str(index_dir), "--device", "cpu", "--hfov", str(HFOV), "--heading-deg", f"{heading:.3f}",
                "--altitude-m", "100", "--prior", "0", "0", str(frame_png)])
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["status"] == "verified", out


def test_no_foenet_error_escapes_as_another_type():
    """The input errors are FoenetErrors (entry points catch that) and ValueErrors (callers that catch those)."""
    for cls in (PriorError, HeadingError, IntrinsicsError, DistortionError, AttitudeError, AltitudeError,
                ImageTooLargeError):
        assert issubclass(cls, FoenetError) and issubclass(cls, ValueError)
