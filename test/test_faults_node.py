"""Fault injection on the live node (real rclpy / Fast DDS, in-process): each fault ends in a clear one-line
reason in /diagnostics or a downgraded status -- never a traceback, never a fix from garbage.

Injected: the camera stopping; a frame over the pixel budget (and a header claiming 400 MP); invalid
GNSS priors (lat 95, lon 1e308, NaN) from the gnss topic; an index_dir change to a corrupt index; unsafe
parameter values (at start and live); two camera publishers with different clocks; a bag loop (time
going back); use_sim_time without /clock; camera_info configured but never received.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-jazzy-rclpy wheels) not installed")

from sensor_msgs.msg import Image, NavSatFix, NavSatStatus  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402

from foenet_ros.errors import ConfigError  # noqa: E402
from test_ros_node import (NS, YAML, Harness, _build_index, _by_stamp, _camera_info, _frame, _image_msg,  # noqa: E402
                           _intrinsics, _set_param, _truth_points)

pytestmark = pytest.mark.ros
_STAMPS = itertools.count(100)  # frame stamps keep increasing across the module's tests (older ones are dropped)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return _build_index(tmp_path_factory.mktemp("foenet_faults") / "syn", None)


@pytest.fixture(scope="module")
def fh(synth):
    h = Harness(str(synth[1]), node_name="foenet_faults", extra=[
        "-p", "gnss_topic:=gps/fix", "-p", "gnss_timeout_s:=30.0", "-p", "frame_timeout_s:=1.0",
        "-p", "max_image_megapixels:=10.0", "-p", "heading_timeout_s:=30.0"])  # fmt: skip
    try:
        h.wait_diag(lambda lvl, m, v: "index_tiles" in v, timeout=120, what="the index to load")
        h.wait(lambda: h.node._camera_matched and h.pub_img.get_subscription_count() > 0, 20, "the camera subscription")
        h.gps_pub = h.helper.create_publisher(NavSatFix, f"{NS}/gps/fix", 10)
        yield h
    finally:
        h.close()


def _good_frame(h, synth, i: int = 0) -> int:
    """Publish a localisable frame; return its stamp (sec)."""
    raster = synth[0]
    x, y, heading = _truth_points(raster)[i]
    sec = next(_STAMPS)
    h.pub_hdg.publish(Float64(data=float(heading)))
    h.pub_info.publish(_camera_info(_intrinsics()))
    time.sleep(0.1)
    h.pub_img.publish(_image_msg(_frame(raster, x, y, heading), sec))
    return sec


def _one_line(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text


def test_camera_stopping_turns_diagnostics_warn_within_the_timeout(fh, synth):
    sec = _good_frame(fh, synth)
    fix = fh.wait(lambda: _by_stamp(fh.msgs("fix"), sec), 60, "a fix")
    assert fix.status.status == NavSatStatus.STATUS_FIX
    t_last = time.monotonic()
    lvl, message, _ = fh.wait_diag(lambda lvl, m, v: lvl == 1 and "no camera frame" in m, timeout=10, what="WARN: no frame")
    # frame_timeout_s 1.0 + one diagnostics period (0.25 s): never the stale "verified, sigma 1.0 m" OK
    assert time.monotonic() - t_last < 3.0
    assert _one_line(message)


def test_frames_over_the_pixel_budget_are_counted_not_decoded(fh, synth):
    before = int(fh.diag("inputs")[2]["frames_malformed"])
    bomb = Image()
    bomb.header.stamp.sec = next(_STAMPS)
    bomb.width, bomb.height, bomb.encoding, bomb.step = 20000, 20000, "rgb8", 60000
    bomb.data = b"\x00" * 64  # claims 400 MP, carries nothing
    fh.pub_img.publish(bomb)
    time.sleep(0.4)
    big = _image_msg(np.zeros((3000, 4000, 3), np.uint8), next(_STAMPS))  # 12 MP > max_image_megapixels 10
    fh.pub_img.publish(big)
    _, msg, v = fh.wait_diag(lambda lvl, m, v: int(v["frames_malformed"]) >= before + 2, "inputs", what="2 malformed frames")
    assert "over the pixel budget" in v["last_input_error"] and _one_line(v["last_input_error"])
    assert _by_stamp(fh.msgs("fix"), big.header.stamp.sec) is None  # no output for garbage
    sec = _good_frame(fh, synth)  # and the node goes on
    assert fh.wait(lambda: _by_stamp(fh.msgs("fix"), sec), 60, "a fix after the bombs").status.status == NavSatStatus.STATUS_FIX


@pytest.mark.parametrize("lat, lon", [(95.0, 85.0), (27.0, 1e308), (math.nan, math.nan)], ids=["lat95", "lon1e308", "nan"])
def test_invalid_gnss_prior_is_ignored_and_localisation_goes_on(fh, synth, lat, lon):
    rejected = int(fh.diag("inputs")[2]["gnss_rejected"])
    gps = NavSatFix(latitude=lat, longitude=lon, altitude=100.0)
    gps.status.status = NavSatStatus.STATUS_FIX
    gps.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
    fh.wait(lambda: (fh.gps_pub.publish(gps), int(fh.diag("inputs")[2]["gnss_rejected"]) > rejected)[1], 20, "the prior rejected")
    _, msg, v = fh.diag("inputs")
    assert v["gnss_prior"].startswith("invalid, ignored") and _one_line(v["gnss_prior"])
    sec = _good_frame(fh, synth, 1)
    fix = fh.wait(lambda: _by_stamp(fh.msgs("fix"), sec), 60, "a fix despite the bad prior")
    assert fix.status.status == NavSatStatus.STATUS_FIX
    # without a track (reset), a frame with nothing to match: NO_FIX is still published (the autopilot
    # hears "no fix", not silence); with a track it would be "tracked" (a coasted fix), as it should
    from std_srvs.srv import Trigger

    fut = fh.reset_cli.call_async(Trigger.Request())
    fh.wait(fut.done, 10, "reset")
    blank = next(_STAMPS)
    fh.pub_img.publish(_image_msg(np.full((360, 480, 3), 127, np.uint8), blank))
    nofix = fh.wait(lambda: _by_stamp(fh.msgs("fix"), blank), 60, "NO_FIX for a blank frame")
    assert nofix.status.status == NavSatStatus.STATUS_NO_FIX and math.isnan(nofix.latitude)


def test_index_change_takes_effect_only_when_the_new_index_loads(fh, synth, tmp_path):
    in_use = fh.diag()[2]["index_in_use"]
    bad = tmp_path / "corrupt"
    shutil.copytree(synth[1], bad)
    (bad / "manifest.json").write_text(json.dumps({"format": "nonsense"}))
    assert _set_param(fh, "index_dir", str(bad)).successful
    lvl, message, v = fh.wait_diag(lambda lvl, m, v: lvl == 2 and "refused" in m, timeout=60, what="ERROR: index refused")
    assert v["index_in_use"] == in_use and _one_line(message) and "Traceback" not in message
    sec = _good_frame(fh, synth)  # still localising against the last good index
    assert fh.wait(lambda: _by_stamp(fh.msgs("fix"), sec), 60, "a fix with the last good index").status.status == 0
    assert _set_param(fh, "index_dir", str(synth[1])).successful
    fh.wait_diag(lambda lvl, m, v: "refused" not in m and v["index_in_use"] == str(synth[1]), timeout=60, what="the good index back")


@pytest.mark.parametrize("name, value", [("localizer.min_inliers", 4), ("localizer.min_spread", 0.0),
                                         ("localizer.ratio", 0.95), ("localizer.ransac_px", 20.0),
                                         ("localizer.sigma_floor_m", 0.0), ("localizer.sigma_scale", 1e-9),
                                         ("alt_sigma_m", 0.001), ("localizer.gate_chi2", 1.0)])  # fmt: skip
def test_parameters_that_would_disable_integrity_are_refused(fh, name, value):
    res = _set_param(fh, name, value)
    assert not res.successful and _one_line(res.reason) and name.split(".")[-1] in res.reason


def test_unsafe_parameters_at_start_are_a_config_error(synth):
    from foenet_ros.ros.node import FoenetNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        for arg in ("localizer.min_inliers:=4", "localizer.sigma_floor_m:=0.0", "publish_tf:=map_to_odom"):
            with pytest.raises(ConfigError) as e:
                FoenetNode("foenet_unsafe", namespace=NS, context=ctx, cli_args=["--ros-args", "--params-file", str(YAML), "-p", arg])
            assert _one_line(str(e.value))
    finally:
        rclpy.shutdown(context=ctx)


def test_two_publishers_and_a_bag_loop(fh, synth):
    raster = synth[0]
    x, y, heading = _truth_points(raster)[0]
    img = _frame(raster, x, y, heading)
    other = fh.helper.create_publisher(Image, f"{NS}/camera/image_raw", 10)  # a second driver, its clock far behind
    fh.wait(lambda: fh.node._camera_publishers >= 2, 10, "the second publisher seen")
    ooo = int(fh.diag("inputs")[2]["frames_out_of_order"])
    fh.pub_hdg.publish(Float64(data=float(heading)))
    base = next(_STAMPS) + 50
    for i in range(4):  # the reader keeps one sample (depth 1): give each frame time to be taken
        fh.pub_img.publish(_image_msg(img, base + i))
        time.sleep(0.3)
        other.publish(_image_msg(img, 10 + i))
        time.sleep(0.3)
    lvl, msg, _ = fh.wait_diag(lambda lvl, m, v: "publishers on the camera topic" in m, what="WARN: two publishers")
    assert lvl >= 1 and _one_line(msg)
    fh.wait_diag(lambda lvl, m, v: int(v["frames_out_of_order"]) >= ooo + 3, "inputs", what="out-of-order frames counted")
    fh.helper.destroy_publisher(other)
    time.sleep(2.0)
    stamps = [f.header.stamp.sec for f in fh.msgs("fix")]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "an output went back in time"
    assert not any(10 <= s < 20 for s in stamps), "a frame of the second publisher was processed"
    # a bag loop: time goes back and stays back -> the track is reset once, outputs resume
    resets = int(fh.diag()[2]["time_jump_resets"])
    fh.wait(lambda: fh.node._camera_publishers == 1, 10, "the second publisher gone")
    for sec in (base - 40, base - 39, base - 38, base - 37):
        fh.pub_img.publish(_image_msg(img, sec))
        time.sleep(1.0)
    fh.wait_diag(lambda lvl, m, v: int(v["time_jump_resets"]) == resets + 1, what="a reset on the time jump")
    assert fh.wait(lambda: _by_stamp(fh.msgs("fix"), base - 37), 60, "an output after the loop") is not None
    for _ in range(30):  # leave the module's stamps ahead of the loop
        next(_STAMPS)


def test_sim_time_without_clock_loads_and_reports(synth):
    """use_sim_time and no /clock at all: the index loads, diagnostics flow (steady timers), and a
    configured camera_info that never comes is a WARN, not OK."""
    h = Harness(str(synth[1]), node_name="foenet_simtime", extra=["-p", "use_sim_time:=true", "-p", "camera_info_timeout_s:=1.0",
                                                                 "-p", "frame_timeout_s:=600.0"])  # fmt: skip
    try:
        h.wait_diag(lambda lvl, m, v: "index_tiles" in v, timeout=120, what="the index to load without /clock")
        assert h.node.get_clock().now().nanoseconds == 0  # really no /clock
        lvl, msg, _ = h.wait_diag(lambda lvl, m, v: lvl == 1 and "camera_info" in m, timeout=10, what="WARN: no CameraInfo")
        assert "none received" in msg
    finally:
        h.close()


def test_double_sigint_exits_cleanly(tmp_path):
    """Ctrl-C as ros2 launch delivers it (SIGINT twice, 0.3 s apart) to a node process: exit code 0,
    no KeyboardInterrupt traceback."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "foenet_ros.ros.node", "--ros-args", "-p", "index_dir:=/nonexistent/index"],
                                env=dict(os.environ, PYTHONPATH=str(repo)), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "foenet_node up" not in log.read_text():
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    text = log.read_text()
    assert "foenet_node up" in text
    assert rc == 0 and "Traceback" not in text and "KeyboardInterrupt" not in text, text[-2000:]
