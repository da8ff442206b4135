"""The ROS-free codec: pixel budget before decoding (PNG/JPEG bombs), early downscale, stamp checks,
GNSS prior validation, the optional Localizer arguments, IMU sigmas, the status policy, propagation
of a fix to "now", and the TF algebra. No ROS needed."""

from __future__ import annotations

import math
import struct
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from foenet_ros.codec import autopilot as ap, outputs as out
from foenet_ros.codec.aiding import gnss_prior, localize_kwargs
from foenet_ros.codec.image import DecodeLimits, compressed_size, compressed_to_rgb, decode_image, image_to_rgb
from foenet_ros.codec.imu import attitude_to_quaternion, imu_reading, imu_sigmas
from foenet_ros.codec.timeline import JUMP, OK, OUT_OF_ORDER, FrameTimeline
from foenet_ros.errors import ImageError, ImageTooLargeError, PriorError
from foenet_ros.localize.estimate import GeoEstimate


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (a decompression bomb's header; valid CRC)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))  # fmt: skip


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG with its SOF0 size patched (what a 20000 x 20000 JPEG header says)."""
    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _compressed(data: bytes, fmt: str = "jpeg") -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=data, header=None)


@pytest.fixture
def no_decode(monkeypatch):
    """Fail loudly if anything reaches OpenCV's decoder."""
    def boom(*a, **k):
        raise AssertionError("cv2.imdecode called on a frame over the budget")

    monkeypatch.setattr(cv2, "imdecode", boom)


def test_bombs_are_refused_from_the_header(no_decode):
    lim = DecodeLimits(max_megapixels=40.0, max_side=1920)
    with pytest.raises(ImageTooLargeError, match=r"18000x18000 \(324.0 MP\) is over the pixel budget of 40 MP"):
        compressed_to_rgb(_compressed(_png_claiming(18000, 18000), "png"), lim)
    with pytest.raises(ImageError, match=r"20000x20000 .* over the pixel budget"):
        compressed_to_rgb(_compressed(_jpeg_claiming(20000, 20000)), lim)
    raw = SimpleNamespace(width=20000, height=20000, encoding="rgb8", step=60000, is_bigendian=0, data=b"\x00" * 10)
    with pytest.raises(ImageError, match="over the pixel budget"):
        image_to_rgb(raw, lim)


def test_real_png_bomb_costs_no_memory():
    """A genuine 12000 x 12000 PNG of zeros (~0.4 MB compressed, 432 MB decoded): refused cheaply."""
    import tracemalloc

    rows = zlib.compressobj(9)
    line = b"\x00" + b"\x00" * (12000 * 3)
    idat = b"".join(rows.compress(line) for _ in range(12000)) + rows.flush()
    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
           + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
           + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))  # fmt: skip
    assert len(png) < 1_000_000
    tracemalloc.start()
    with pytest.raises(ImageError, match="over the pixel budget"):
        decode_image(_compressed(png, "png"), DecodeLimits(max_megapixels=40.0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated to refuse a bomb"


def test_headers_and_malformed_streams():
    ok, png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))
    ok, jpg = cv2.imencode(".jpg", np.zeros((30, 40, 3), np.uint8))
    assert compressed_size(png.tobytes()) == ("png", 40, 30)
    assert compressed_size(jpg.tobytes()) == ("jpeg", 40, 30)
    for junk, match in ((b"GIF89a....", "neither PNG nor JPEG"), (b"\xff\xd8\xff\xda\x00\x02", "no frame header"),
                        (b"\x89PNG\r\n\x1a\n\x00\x00", "IHDR"), (b"\xff\xd8\x12\x34\x00\x00", "no marker")):  # fmt: skip
        with pytest.raises(ImageError, match=match):
            compressed_to_rgb(_compressed(junk))
    with pytest.raises(ImageError, match="zero size"):
        compressed_to_rgb(_compressed(_png_claiming(0, 10), "png"))


def test_large_jpeg_is_decoded_reduced_once(monkeypatch):
    img = np.zeros((3000, 4000, 3), np.uint8)
    img[:, 2000:] = 200
    ok, buf = cv2.imencode(".jpg", img)
    flags = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda d, f: flags.append(f) or real(d, f))
    rgb = compressed_to_rgb(_compressed(buf.tobytes()), DecodeLimits(max_megapixels=40.0, max_side=1000))
    assert rgb.shape == (750, 1000, 3) and flags == [cv2.IMREAD_REDUCED_COLOR_4]
    assert abs(int(rgb[10, 900, 0]) - 200) < 10 and int(rgb[10, 100, 0]) < 10
    raw = SimpleNamespace(width=4000, height=3000, encoding="rgb8", step=12000, is_bigendian=0, data=img.tobytes())
    assert image_to_rgb(raw, DecodeLimits(max_side=1000)).shape == (750, 1000, 3)
    assert image_to_rgb(raw, DecodeLimits(max_side=0)).shape == (3000, 4000, 3)


def test_rosbags_and_rclpy_shaped_messages_decode_alike():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    as_bytes = SimpleNamespace(width=30, height=20, encoding="bgr8", step=90, is_bigendian=0, data=img[..., ::-1].tobytes())
    as_numpy = SimpleNamespace(width=30, height=20, encoding="bgr8", step=90, is_bigendian=0,
                               data=np.ascontiguousarray(img[..., ::-1]).reshape(-1))  # fmt: skip
    np.testing.assert_array_equal(decode_image(as_bytes), img)
    np.testing.assert_array_equal(decode_image(as_numpy), img)


def test_timeline_orders_jumps_and_losses():
    tl = FrameTimeline(jump_s=1.0)
    assert [tl.observe(t) for t in (10.0, 10.1, 10.2)] == [OK, OK, OK]
    assert tl.observe(10.15) == OUT_OF_ORDER and tl.observe(10.2) == OUT_OF_ORDER  # older, duplicate
    # a second publisher with an old clock interleaved: never a reset, always dropped
    verdicts = []
    for i in range(5):
        verdicts += [tl.observe(10.3 + 0.1 * i), tl.observe(5.0 + 0.1 * i)]
    assert verdicts == [OK, OUT_OF_ORDER] * 5 and tl.jumps == 0
    # the second publisher sends two in a row: still no reset
    assert tl.observe(10.75) == OK
    assert tl.observe(5.6) == OUT_OF_ORDER and tl.observe(5.7) == OUT_OF_ORDER and tl.observe(10.8) == OK
    # while several publishers are seen nothing is a jump, however long the run
    tl.jumps_allowed = False
    assert [tl.observe(1.0 + 0.1 * i) for i in range(5)] == [OUT_OF_ORDER] * 5 and tl.jumps == 0
    tl.jumps_allowed = True
    # a bag loop: time goes back and stays back -> the third frame in a row confirms the jump
    assert [tl.observe(2.0 + 0.1 * i) for i in range(4)] == [OUT_OF_ORDER, OUT_OF_ORDER, JUMP, OK]
    assert tl.jumps == 1
    # losses: a steady 10 Hz stream with every other frame missing
    tl2 = FrameTimeline()
    for i in range(10):
        tl2.observe(100.0 + 0.1 * i)
    for i in range(10):
        tl2.observe(101.0 + 0.2 * i)
    assert tl2.missed_total >= 8 and 0.2 < tl2.loss_ratio() < 0.5
    assert tl2.observe(None) == OK  # unstamped frames are never judged


@pytest.mark.parametrize("lat, lon, sigma, match", [
    (95.0, 10.0, 5.0, r"outside \[-90, 90\]"), (10.0, 1e308, 5.0, r"outside \[-180, 180\]"), (math.nan, 10.0, 5.0, "finite"),
    (10.0, math.inf, 5.0, "finite"), (10.0, 10.0, 0.0, "sigma"), (10.0, 10.0, -5.0, "sigma"), ("x", 1, 1, "must be a number")])
def test_invalid_gnss_priors_are_one_line_errors(lat, lon, sigma, match):
    with pytest.raises(PriorError, match=match) as e:
        gnss_prior(lat, lon, sigma)
    assert "\n" not in str(e.value)


def test_localize_kwargs_wire_optional_sigmas_only_when_accepted():
    q = attitude_to_quaternion(30.0, 2.0, -1.0)
    cov = [math.radians(0.5) ** 2, 0, 0, 0, math.radians(0.7) ** 2, 0, 0, 0, math.radians(3.0) ** 2]
    imu = imu_reading(SimpleNamespace(orientation=SimpleNamespace(x=q[0], y=q[1], z=q[2], w=q[3]), orientation_covariance=cov))
    assert imu.heading_deg == pytest.approx(30.0) and imu.attitude == pytest.approx((-1.0, 2.0))
    assert imu.attitude_sigma_deg == pytest.approx(0.7) and imu.heading_sigma_deg == pytest.approx(3.0)

    def old(frame, camera=None, prior=None, heading_deg=None, altitude_m=None, attitude=None, stamp=None): ...

    def new(frame, camera=None, prior=None, heading_deg=None, altitude_m=None, attitude=None, stamp=None, *,
            attitude_sigma_deg=None, heading_sigma_deg=None): ...

    kw = localize_kwargs(old, stamp=1.0, imu=imu, use_attitude=True, altitude_m=90.0, prior=gnss_prior(10, 20, 5))
    assert kw == {"stamp": 1.0, "prior": (10.0, 20.0, 5.0), "heading_deg": imu.heading_deg, "altitude_m": 90.0,
                  "attitude": imu.attitude}  # fmt: skip
    kw = localize_kwargs(new, stamp=1.0, imu=imu, use_attitude=True)
    assert kw["attitude_sigma_deg"] == pytest.approx(0.7) and kw["heading_sigma_deg"] == pytest.approx(3.0)
    kw = localize_kwargs(new, stamp=1.0, imu=imu, use_attitude=False)  # no attitude passed: no attitude sigma
    assert "attitude_sigma_deg" not in kw and kw["attitude"] is None
    assert localize_kwargs(new, stamp=None, compass_deg=370.0)["heading_deg"] == pytest.approx(10.0)
    assert localize_kwargs(new, stamp=None, altitude_m=-3.0)["altitude_m"] is None
    # unknown covariances
    assert all(math.isnan(v) for v in imu_sigmas([0.0] * 9)) and all(math.isnan(v) for v in imu_sigmas([-1.0] + [0] * 8))
    no_orient = SimpleNamespace(orientation=SimpleNamespace(x=0, y=0, z=0, w=1), orientation_covariance=[-1.0] + [0.0] * 8)
    assert imu_reading(no_orient) is None
    zero_q = SimpleNamespace(orientation=SimpleNamespace(x=0, y=0, z=0, w=0), orientation_covariance=[0.0] * 9)
    assert imu_reading(zero_q) is None


def _est(status="verified", alt=100.0, vel=(3.0, 4.0)):
    return GeoEstimate(status=status, lat=27.6, lon=85.5, x=1000.0, y=2000.0, alt_m=alt, heading_deg=45.0,
                       cov_xy=np.diag([4.0, 1.0]), sigma_m=2.0, velocity_xy=vel)  # fmt: skip


def test_status_policy_only_verified_and_tracked_are_fixes():
    cfg = out.OutputConfig()
    for status, fix in (("verified", True), ("tracked", True), ("retrieval", False), ("lost", False)):
        f = out.navsatfix_fields(_est(status), cfg)
        assert (f.status == out.STATUS_FIX) == fix, status
        assert out.is_fix(_est(status), cfg) == fix
        if not fix:
            assert math.isnan(f.latitude) and f.position_covariance_type == out.COVARIANCE_TYPE_UNKNOWN
        assert ap.fix_type(_est(status)) == (ap.FIX_3D if fix else ap.FIX_NONE)
    opt_in = out.OutputConfig(publish_retrieval=True)
    assert out.navsatfix_fields(_est("retrieval"), opt_in).status == out.STATUS_FIX
    assert ap.fix_type(_est("retrieval"), send_retrieval=True) == ap.FIX_2D  # never 3D from retrieval
    assert ap.fix_type(_est("verified", alt=math.nan)) == ap.FIX_2D
    nan_pos = _est()
    nan_pos.lat = math.nan
    assert not out.is_fix(nan_pos, opt_in)


def test_propagation_to_now_grows_the_covariance_and_goes_stale():
    cfg = ap.PropagationConfig(accel_sigma=5.0, stale_s=2.0)
    p0 = ap.propagate(_est(), 0.0, cfg)
    p1 = ap.propagate(_est(), 0.5, cfg)
    assert (p1.x - p0.x, p1.y - p0.y) == pytest.approx((1.5, 2.0))  # moved by the velocity
    assert p1.lat > p0.lat and p1.lon > p0.lon
    assert p1.sigma_m > p0.sigma_m and not p1.stale
    no_vel = ap.propagate(_est(vel=None), 0.5, cfg)
    assert no_vel.sigma_m > p1.sigma_m  # unknown speed: wider
    stale = ap.propagate(_est(), 2.5, cfg)
    assert stale.stale and ap.fix_type(stale) == ap.FIX_NONE
    fields = ap.gps_input_fields(stale, 1e9, ap.GpsInputConfig())
    assert fields["fix_type"] == ap.FIX_NONE and fields["lat"] == 0
    f1 = ap.gps_input_fields(p1, 1e9, ap.GpsInputConfig())
    assert f1["fix_type"] == ap.FIX_3D and f1["horiz_accuracy"] == pytest.approx(p1.sigma_m)
    lost = ap.propagate(GeoEstimate(status="lost"), 0.1, cfg)
    assert ap.fix_type(lost) == ap.FIX_NONE


def test_px4_fields_carry_the_capture_time():
    f = ap.px4_aux_fields(_est(), timestamp_us=5_000_000, timestamp_sample_us=4_200_000, ground_altitude_amsl_m=1300.0,
                          alt_sigma_m=4.0, source_id=3)  # fmt: skip
    assert f["timestamp_sample"] == 4_200_000 and f["timestamp"] == 5_000_000 and f["id"] == 3
    assert f["alt"] == pytest.approx(1400.0) and f["eph"] == pytest.approx(2.0)


def test_map_to_odom_composes_back_to_map_to_base():
    cfg = out.OutputConfig()
    pose = out.pose_fields(_est(), cfg)
    q_ob = attitude_to_quaternion(100.0, 3.0, -2.0)
    odom = out.TransformFields("odom", "base_link", (5.0, -3.0, 1.0), q_ob)
    mo = out.map_to_odom_transform(pose, odom, cfg)
    assert (mo.parent, mo.child) == ("map", "odom")
    # compose map->odom with odom->base: must give map->base (the pose)
    from foenet_ros.codec.imu import quaternion_multiply

    q = quaternion_multiply(mo.rotation, odom.rotation)
    t = np.array(out._rotate(mo.rotation, odom.translation)) + np.array(mo.translation)
    assert t == pytest.approx(np.array(pose.position), abs=1e-9)
    sign = 1.0 if q[3] * pose.orientation[3] >= 0 else -1.0
    assert np.array(q) * sign == pytest.approx(np.array(pose.orientation), abs=1e-9)
    base = out.map_to_base_transform(pose, cfg)
    assert (base.parent, base.child, base.translation) == ("map", "base_link", pose.position)
