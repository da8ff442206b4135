"""Simulate -> replay round trips over a small synthetic map with the real default model and Localizer.

Also: ground truth in the simulated bag matches the renderer's geometry exactly; sqlite3 and
compressed bags without CameraInfo or ground truth replay and are marked; a bag that breaks
half-way fails with BagError and leaves valid files behind.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from foenet_ros.bag import (BagReader, CameraEffects, MotionConfig, ReplayConfig, SimConfig, TopicConfig, replay_bag,
                            simulate_flight)
from foenet_ros.bag import messages as m
from foenet_ros.bag.replay import OUT_TOPICS
from foenet_ros.errors import BagError

ALT = 60.0
NO_EFFECTS = CameraEffects(exposure_s=0.0, blur_jitter_px=0.0, gain_sigma=0.0, gamma_sigma=0.0, noise_sigma=0.0,
                           vignetting=0.0)


def _sim_cfg(**kw) -> SimConfig:
    base = SimConfig(n_frames=8, rate_hz=1.0, width=320, height=240, hfov_deg=70.0,
                     motion=MotionConfig(alt_m=ALT, speed_mps=12.0), seed=1)
    return replace(base, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 300 x 240 m synthetic map, its tile index (default model) and a Localizer factory."""
    from foenet_ros.geo import synthetic_map
    from foenet_ros.index import IndexConfig, TileIndex, build_index
    from foenet_ros.localize import Localizer
    from foenet_ros.model import Encoder, load_default_model

    root = tmp_path_factory.mktemp("bagworld")
    mp = synthetic_map(size_m=(300.0, 240.0), seed=3)
    enc = Encoder(load_default_model(), device="cpu")
    build_index(mp, enc, root / "index", IndexConfig(hfov_deg=70.0, image_size=(320, 240), alt_range_m=(ALT * 0.9, ALT * 1.1)),
                progress=False)
    index = TileIndex.load(root / "index")
    return {"map": mp, "root": root, "index": index, "make": lambda: Localizer(index, enc)}


def test_simulation_is_deterministic_and_ground_truth_matches_renderer(world, tmp_path):
    from foenet_ros.geo import CameraPose, render_view

    cfg = _sim_cfg(n_frames=4, effects=NO_EFFECTS, imu_heading_bias_deg=0.0, imu_heading_noise_deg=0.0,
                   imu_tilt_noise_deg=0.0)
    res = simulate_flight(world["map"], tmp_path / "a", cfg, progress=False)
    simulate_flight(world["map"], tmp_path / "b", cfg, progress=False)
    simulate_flight(world["map"], tmp_path / "c", replace(cfg, seed=2), progress=False)

    def images(p):
        with BagReader(p) as bag:
            return [m.image_from_msg(bm.msg) for bm in bag.messages(["/camera/image_raw"])]

    a, b, c = images(tmp_path / "a"), images(tmp_path / "b"), images(tmp_path / "c")
    assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b)), "same seed must give the same frames"
    assert not all(np.array_equal(x, y) for x, y in zip(a, c)), "another seed must give another flight"

    frame = world["map"].frame
    with BagReader(tmp_path / "a") as bag:
        msgs = {t: [bm.msg for bm in bag.messages([t])] for t in TopicConfig().as_dict().values()}
    assert all(len(v) == 4 for v in msgs.values())
    for i, st in enumerate(res.states):
        fix, pose, imu = msgs["/mavros/global_position/global"][i], msgs["/ground_truth/pose"][i], msgs["/mavros/imu/data"][i]
        x, y = frame.from_lonlat(fix.longitude, fix.latitude)
        assert math.hypot(x - st.x, y - st.y) < 1e-3
        assert (pose.pose.position.x, pose.pose.position.y) == pytest.approx((st.x, st.y), abs=1e-6)
        assert msgs["/mavros/global_position/rel_alt"][i].data == pytest.approx(st.alt_m)
        h, p, r = m.quaternion_to_attitude(imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w)
        # the bag carries TRUE headings (compass); the renderer's state is grid-referenced
        assert (h, p, r) == pytest.approx(
            (frame.grid_to_true_heading(st.heading_deg, st.x, st.y), st.pitch_deg, st.roll_deg), abs=1e-6)
        h = frame.true_to_grid_heading(h, x, y)
        cam = m.intrinsics_from_camera_info(msgs["/camera/camera_info"][i])
        assert cam.has_distortion
        # re-render from the bag's own ground truth: the frame must be exactly what the bag holds
        img, valid = render_view(world["map"], cam, CameraPose(x, y, msgs["/mavros/global_position/rel_alt"][i].data, h, p, r),
                                 distort=True)
        img[~valid] = 0
        assert np.abs(img.astype(int) - a[i].astype(int)).mean() < 0.5


def test_replay_round_trip_scores_and_records(world, tmp_path):
    simulate_flight(world["map"], tmp_path / "flight", _sim_cfg(), progress=False)
    # the simulated camera is strapdown nadir: the IMU attitude is the camera's (opt-in, as in the node)
    res = replay_bag(tmp_path / "flight", world["make"](), tmp_path / "out", ReplayConfig(progress=False, use_attitude=True))
    mt = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert mt["frames"] == 8 and mt["ground_truth"] is True
    assert mt["share_localised"] >= 0.75 and mt["within_m"]["10"] >= 0.75, mt
    assert mt["horizontal_error_m"]["median"] < 3.0
    assert mt["model"]["fingerprint"] == world["index"].fingerprint == mt["index"]["model_fingerprint"]
    assert mt["inputs"] == {"camera_info": True, "heading": True, "attitude": True, "altitude": True}
    assert set(mt["latency_ms"]) >= {"encode", "search", "verify", "total"} and mt["effective_fps"] > 0
    # estimates per frame, errors computed against the bag's ground truth
    gt_err = [r.error_m for r in res.records if r.error_m is not None]
    assert np.median(gt_err) == pytest.approx(mt["horizontal_error_m"]["median"])
    lines = (tmp_path / "out" / "estimates.jsonl").read_text().splitlines()
    assert len(lines) == 8 and json.loads(lines[0])["status"] in ("verified", "retrieval", "tracked", "lost")
    png = (tmp_path / "out" / "trajectory.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with BagReader(tmp_path / "out" / "estimates") as bag:
        counts = {t.name: t.count for t in bag.topics}
        fixes = [bm.msg for bm in bag.messages([OUT_TOPICS["fix"]])]
        info = json.loads(bag.custom_data["foenet_replay"])
    assert counts["/camera/image_raw"] == 8 and counts["/camera/camera_info"] == 8
    assert counts[OUT_TOPICS["fix"]] == 8 and counts[OUT_TOPICS["pose"]] >= 6 and counts[OUT_TOPICS["path"]] >= 6
    assert counts[OUT_TOPICS["gt_path"]] == 8 and counts[OUT_TOPICS["candidates"]] >= 1
    good = [(f.latitude, f.longitude) for f in fixes if f.status.status >= 0]
    lon, lat = world["index"].frame.to_lonlat(res.records[0].gt_x, res.records[0].gt_y)
    assert good and abs(good[0][0] - lat) < 1e-4 and abs(good[0][1] - lon) < 1e-4
    assert info["origin_xy"] == list(mt["origin_xy"])


def test_sqlite3_compressed_bag_without_camera_info_or_ground_truth(world, tmp_path):
    topics = replace(TopicConfig(), camera_info=None, gt_fix=None, gt_pose=None)
    simulate_flight(world["map"], tmp_path / "f", _sim_cfg(n_frames=4, fmt="sqlite3", compressed=True, topics=topics),
                    progress=False)
    assert (tmp_path / "f" / "f.db3").is_file()
    res = replay_bag(tmp_path / "f", world["make"](), tmp_path / "out", ReplayConfig(progress=False))
    mt = res.metrics
    assert mt["frames"] == 4 and mt["ground_truth"] is False and "no ground truth" in mt["ground_truth_note"]
    assert mt["topics"]["image"] == "/camera/image_raw/compressed" and mt["topics"]["camera_info"] is None
    assert mt["inputs"]["camera_info"] is False and mt["horizontal_error_m"] is None
    assert mt["share_localised"] is not None and "NONE" in res.table()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["ground_truth"] is False
    assert (tmp_path / "out" / "trajectory.png").stat().st_size > 0


def test_bag_corrupt_half_way_fails_cleanly_with_valid_outputs(world, tmp_path):
    simulate_flight(world["map"], tmp_path / "f", _sim_cfg(n_frames=6, fmt="sqlite3"), progress=False)
    db = tmp_path / "f" / "f.db3"
    with sqlite3.connect(db) as con:  # garble the 4th camera frame
        (tid,) = con.execute("SELECT id FROM topics WHERE name = '/camera/image_raw'").fetchone()
        ids = [r[0] for r in con.execute("SELECT id FROM messages WHERE topic_id = ? ORDER BY timestamp", (tid,))]
        con.execute("UPDATE messages SET data = ? WHERE id = ?", (b"\x00\x01\x00\x00garbage", ids[3]))
    with pytest.raises(BagError, match="corrupt") as err:
        replay_bag(tmp_path / "f", world["make"](), tmp_path / "out", ReplayConfig(progress=False))
    assert "/camera/image_raw" in str(err.value)
    mt = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert mt["partial"] is True and mt["frames"] == 3 and "corrupt" in mt["error"]
    with BagReader(tmp_path / "out" / "estimates") as bag:  # finalised, readable, holds the 3 good frames
        assert {t.name: t.count for t in bag.topics}[OUT_TOPICS["fix"]] == 3
    assert (tmp_path / "out" / "trajectory.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "out" / "estimates.jsonl").read_text().splitlines()) == 3
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_truncated_bag_fails_before_writing(world, tmp_path):
    simulate_flight(world["map"], tmp_path / "f", _sim_cfg(n_frames=2), progress=False)
    f = tmp_path / "f" / "f.mcap"
    f.write_bytes(f.read_bytes()[:-2000])
    with pytest.raises(BagError, match="truncated or corrupt"):
        replay_bag(tmp_path / "f", world["make"](), tmp_path / "out", ReplayConfig(progress=False))
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_cli_simulate_and_replay(world, tmp_path, capsys):
    from foenet_ros.cli import main

    out = tmp_path / "cli"
    wp = tmp_path / "wp.csv"
    x0, y0, x1, y1 = world["map"].bounds_xy
    wp.write_text(f"x,y\n{x0 + 80},{y0 + 80}\n{x1 - 80},{y0 + 80}\n{x1 - 80},{y1 - 80}\n")
    assert main(["simulate", "--map", "synthetic", "--out", str(out / "f"), "--frames", "2", "--width", "160",
                 "--height", "120", "--altitude-m", "60", "--trajectory", str(wp), "--format", "sqlite3"]) == 0
    assert (out / "f" / "f.db3").is_file()
    assert main(["replay", str(out / "f"), "--index", str(world["root"] / "index"), "--out", str(out / "r"),
                 "--device", "cpu", "--no-bag"]) == 0
    text = capsys.readouterr().out
    assert "frames" in text and "metrics:" in text and not (out / "r" / "estimates").exists()
    assert main(["replay", str(out / "missing"), "--index", str(world["root"] / "index"), "--out", str(out / "r2")]) == 2


class _OffsetLocalizer:
    """Answers every frame with the true position + (6, 8) m (a 10 m error), sigma 4 m."""

    def __init__(self, index, states, frame):
        from foenet_ros.bag.simulate import T0_NS

        self.index = index
        self.by_stamp = {round((T0_NS / 1e9 + s.t_s) * 1000): s for s in states}
        self.frame = frame
        self.calls = []

    def localize(self, frame, camera=None, prior=None, heading_deg=None, altitude_m=None, attitude=None, stamp=None):
        from foenet_ros.localize import GeoEstimate

        self.calls.append(dict(camera=camera, heading_deg=heading_deg, altitude_m=altitude_m, attitude=attitude))
        s = self.by_stamp[round(stamp * 1000)]
        x, y = s.x + 6.0, s.y + 8.0
        lon, lat = self.frame.to_lonlat(x, y)
        return GeoEstimate(status="verified", lat=lat, lon=lon, x=x, y=y, alt_m=s.alt_m, heading_deg=self.frame.grid_to_true_heading(s.heading_deg, s.x, s.y) + 3.0,
                           cov_xy=np.diag([16.0, 16.0]), sigma_m=4.0, timings_ms={"total": 1.0})


def test_replay_metrics_of_a_known_estimate_stream_in_realtime(world, tmp_path):
    import time

    res = simulate_flight(world["map"], tmp_path / "f", _sim_cfg(n_frames=4, rate_hz=2.0), progress=False)
    loc = _OffsetLocalizer(world["index"], res.states, world["map"].frame)
    t0 = time.perf_counter()
    out = replay_bag(tmp_path / "f", loc, tmp_path / "out", ReplayConfig(progress=False, realtime=True, rate=2.0,
                                                                        use_attitude=False))
    wall = time.perf_counter() - t0
    assert wall >= 0.7  # 1.5 s of bag played at twice the recorded rate
    mt = out.metrics
    assert mt["horizontal_error_m"]["median"] == pytest.approx(10.0, abs=1e-3)
    assert mt["within_m"]["5"] == 0.0 and mt["within_m"]["25"] == 1.0  # (10 m itself sits on the 10 m edge)
    assert mt["heading_error_deg"]["median"] == pytest.approx(3.0, abs=1e-6)
    assert mt["calibration"]["within_2sigma"] == 0.0  # 10 m > 2 x 4 m: over-confident, and measured as such
    # the Localizer got what the bag provides, minus what was switched off
    assert all(c["camera"] is not None and c["heading_deg"] is not None and c["altitude_m"] > 0 and c["attitude"] is None
               for c in loc.calls)


def test_killed_replay_leaves_no_outputs_and_is_cleaned_up(world, tmp_path):
    """SIGKILL in the middle of a replay: the previous run's outputs are gone (never stale metrics beside new
    estimates), nothing half-written is in --out, and the next run removes the hidden staging folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    simulate_flight(world["map"], tmp_path / "f", _sim_cfg(n_frames=40), progress=False)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("metrics.json", "estimates.jsonl", "trajectory.png"):
        (out / name).write_text("stale output of an earlier run")
    (out / "estimates").mkdir()
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "foenet_ros.cli", "replay", str(tmp_path / "f"), "--index",
                             str(world["root"] / "index"), "--out", str(out), "--device", "cpu", "--realtime", "--rate", "4"],
                            env=dict(os.environ, PYTHONPATH=str(repo)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    staging = []
    while time.monotonic() < deadline and proc.poll() is None:
        staging = list(out.glob(".foenet-replay-*.partial"))
        if staging and any(staging[0].rglob("*.mcap")):
            break
        time.sleep(0.2)
    assert staging, "the replay never started writing"
    time.sleep(2.0)  # a few frames into the estimates bag
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == [], f"a killed replay left {visible} in --out"
    replay_bag(tmp_path / "f", world["make"](), out, ReplayConfig(progress=False, max_frames=3))
    assert not list(out.glob(".*")), "the next run must remove the killed run's staging folder"
    assert json.loads((out / "metrics.json").read_text())["frames"] == 3
