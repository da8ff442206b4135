"""Flight-stack adapters: MAVLink GPS_INPUT checked by a pymavlink listener on loopback (fields match
the estimate), rate limiting, the field mapping for lost/coarse estimates, and the PX4 adapter's
behaviour without px4_msgs."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest

from foenet_ros.localize.estimate import GeoEstimate
from foenet_ros.ros.adapters import mavlink_gps as mg

mavutil = pytest.importorskip("pymavlink.mavutil", reason="pymavlink not installed")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _estimate(status="verified", alt=120.0, vel=(1.5, -0.5)):
    return GeoEstimate(status=status, lat=27.6312345, lon=85.5212345, x=0.0, y=0.0, alt_m=alt, heading_deg=30.0,
                       cov_xy=np.array([[9.0, 2.0], [2.0, 4.0]]), sigma_m=3.1, velocity_xy=vel, score=0.8, inliers=50)  # fmt: skip


def test_gps_input_over_udp_matches_the_estimate():
    port = _free_udp_port()
    listener = mavutil.mavlink_connection(f"udpin:127.0.0.1:{port}")
    cfg = mg.GpsInputConfig(url=f"udpout:127.0.0.1:{port}", rate_hz=100.0, satellites_visible=12, uere_m=2.0,
                            alt_sigma_m=4.0, geoid_separation_m=-40.0)  # fmt: skip
    est = _estimate()
    stamp = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
    try:
        with mg.GpsInputSender(cfg) as sender:
            msg = None
            for _ in range(50):  # udpin learns the peer from the first datagram; resend until one is parsed
                assert sender.send(est, stamp, ground_altitude_m=1400.0, now=float(_))
                msg = listener.recv_match(type="GPS_INPUT", blocking=True, timeout=0.2)
                if msg is not None:
                    break
            assert msg is not None, "no GPS_INPUT received on loopback"
    finally:
        listener.close()
    hacc = math.sqrt(np.linalg.eigvalsh(est.cov_xy).max())
    assert msg.lat == round(est.lat * 1e7) and msg.lon == round(est.lon * 1e7)
    assert msg.alt == pytest.approx(1400.0 + 120.0 + 40.0)  # ellipsoid 1520 m, geoid -40 m -> 1560 m AMSL
    assert msg.fix_type == 3 and msg.satellites_visible == 12
    assert msg.horiz_accuracy == pytest.approx(hacc, rel=1e-5)
    assert msg.hdop == pytest.approx(hacc / 2.0, rel=1e-5) and msg.vdop == pytest.approx(2.0, rel=1e-5)
    assert msg.vert_accuracy == pytest.approx(4.0)
    assert (msg.ve, msg.vn) == pytest.approx((1.5, -0.5)) and msg.speed_accuracy > 0
    assert msg.time_usec == round(stamp * 1e6)
    week, ms = mg.gps_time(stamp)
    assert (msg.time_week, msg.time_week_ms) == (week, ms) and week == 2399  # GPS week of 2026-01-01
    assert msg.ignore_flags == mg.IGNORE_VEL_VERT
    assert msg.yaw == 0  # heading not sent unless asked


def test_rate_limit_and_degraded_estimates():
    class FakeMav:
        def __init__(self):
            self.sent = []

        def gps_input_send(self, **kw):
            self.sent.append(kw)

    class FakeConn:
        mav = FakeMav()

        def close(self):
            pass

    conn = FakeConn()
    sender = mg.GpsInputSender(mg.GpsInputConfig(rate_hz=5.0), connection=conn)
    est = _estimate()
    sent = [sender.send(est, 100.0 + t, now=t) for t in np.arange(20) * 0.06]  # 20 calls 60 ms apart, 5 Hz stream
    assert sum(sent) == 10 and sender.skipped == 10  # burst guard: at most one per half period
    no_alt = mg.gps_input_fields(_estimate(alt=math.nan, vel=None), 100.0, mg.GpsInputConfig())
    assert no_alt["fix_type"] == mg.FIX_2D
    assert no_alt["ignore_flags"] & mg.IGNORE_ALT and no_alt["ignore_flags"] & mg.IGNORE_VEL_HORIZ
    coarse = mg.gps_input_fields(_estimate(status="retrieval"), 100.0, mg.GpsInputConfig())
    assert coarse["fix_type"] == mg.FIX_NONE and coarse["lat"] == 0  # retrieval-only is not a fix by default
    coarse = mg.gps_input_fields(_estimate(status="retrieval"), 100.0, mg.GpsInputConfig(send_retrieval=True))
    assert coarse["fix_type"] == mg.FIX_2D  # opted in: never a 3D fix from retrieval alone
    lost = mg.gps_input_fields(GeoEstimate(status="lost"), 100.0, mg.GpsInputConfig())
    assert lost["fix_type"] == mg.FIX_NONE and lost["satellites_visible"] == 0 and lost["lat"] == 0
    yaw = mg.gps_input_fields(_estimate(), 100.0, mg.GpsInputConfig(send_yaw=True, yaw_offset_deg=-30.0))
    assert yaw["yaw"] == 36000  # heading 30 - 30 = north: 36000, since 0 means "unknown"


def test_gps_time():
    assert mg.gps_time(315_964_800 - 18) == (0, 0)  # GPS epoch (before leap seconds)
    week, ms = mg.gps_time(315_964_800 - 18 + 604_800 + 1.5)
    assert (week, ms) == (1, 1500)


def test_px4_adapter_without_px4_msgs_logs_why():
    from foenet_ros.ros.adapters import px4

    try:
        import px4_msgs  # noqa: F401

        pytest.skip("px4_msgs is installed here; the fallback path is not reachable")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="px4_msgs is not importable"):
        px4.load_px4_message()

    class Logger:
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)

        info = warning

    class FakeNode:
        logger = Logger()

        def get_logger(self):
            return self.logger

    node = FakeNode()
    assert px4.make_px4_publisher(node) is None
    assert "PX4 adapter disabled" in node.logger.lines[0] and "px4_msgs" in node.logger.lines[0]


def test_px4_message_filling_uses_only_existing_fields():
    from foenet_ros.ros.adapters import px4

    class AuxLike:  # the fields of px4_msgs/AuxGlobalPosition
        _fields = {"timestamp": "uint64", "timestamp_sample": "uint64", "id": "uint8", "source": "uint8", "lat": "double",
                   "lon": "double", "alt": "float", "eph": "float", "epv": "float", "lat_lon_reset_counter": "uint8"}  # fmt: skip

        def get_fields_and_field_types(self):
            return self._fields

    msg = px4.fill_aux_global_position(AuxLike(), _estimate(), 123, ground_altitude_amsl_m=1300.0, alt_sigma_m=5.0)
    assert (msg.lat, msg.lon, msg.alt, msg.eph, msg.epv) == (27.6312345, 85.5212345, 1420.0, 3.1, 5.0)
    assert msg.source == px4.SOURCE_VISION and msg.timestamp == 123 and not hasattr(msg, "lat_lon_valid")
