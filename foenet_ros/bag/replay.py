"""Replay a bag through the Localizer: score it, plot it, and record the run as a bag for RViz/Foxglove.

:func:`replay_bag` reads any bag (rosbag2 MCAP/sqlite3 or ROS 1) whose topics are given or
auto-detected (:mod:`.topics`), feeds every camera frame to a
:class:`~foenet_ros.localize.Localizer` together with what a drone provides (CameraInfo, IMU
heading and attitude, altitude above ground), and writes into ``out_dir``:

* ``metrics.json`` (:mod:`.metrics`; ``"ground_truth": false`` when the bag has none),
* ``trajectory.png`` (:mod:`.plot`), ``estimates.jsonl`` (one GeoEstimate per line),
* ``estimates/`` a rosbag2 (``estimates/estimates.mcap``, open it directly in Foxglove or
  Lichtblick, or ``ros2 bag play estimates``): the input camera stream and CameraInfo, plus
  ``/foenet/fix`` NavSatFix, ``/foenet/pose`` PoseWithCovarianceStamped, ``/foenet/path`` and
  ``/ground_truth/path`` Path, ``/foenet/candidates`` MarkerArray (frame ``map``: ENU, origin
  ``origin_xy`` of the UTM frame as the live node chooses it, recorded in the bag metadata and metrics.json).

One path from message to fix: frames, CameraInfo and the IMU are decoded by
:mod:`foenet_ros.codec` and the NavSatFix / pose fields come from :mod:`foenet_ros.codec.outputs`,
exactly as in ``foenet_node``; the defaults are the node's (no IMU attitude, retrieval-only
estimates are not fixes, the same pixel budget, out-of-order frames dropped, the track reset on
a time jump). So the replay's numbers are what the node would publish for the same frames.

Files: the previous run's outputs are removed first; everything is written into a hidden
staging folder ``<out>/.foenet-replay-<pid>.partial`` and moved into place at the end (each
file by an atomic rename). A killed replay leaves only that staging folder, which the next
run removes. A bag that breaks half-way (corrupt chunk, undecodable message) raises
:class:`BagError` *after* every output has been finalised over the frames processed so far
(``"partial": true`` in metrics.json).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..codec import outputs as out_fields
from ..codec.aiding import localize_kwargs
from ..codec.image import DecodeLimits, decode_image
from ..codec.imu import imu_reading
from ..codec.timeline import JUMP, OUT_OF_ORDER, FrameTimeline
from ..codec.topics import REPLAY_OUT
from ..errors import BagError, FoenetError
from ..utils import write_json_atomic
from . import messages as m
from .io import BagReader, BagWriter
from .metrics import FrameRecord, compute_metrics, format_table
from .plot import plot_trajectory
from .topics import AUTO, TopicConfig, detect_topics

log = logging.getLogger(__name__)

OUT_TOPICS = REPLAY_OUT
OUTPUT_NAMES = ("metrics.json", "trajectory.png", "estimates.jsonl", "estimates")
_STAGING_PREFIX = ".foenet-replay-"


@dataclass(frozen=True)
class ReplayConfig:
    """How to replay a bag.

    ``topics``: fields left ``None`` are auto-detected. ``realtime``: pace frames at the recorded
    rate times ``rate`` (default: as fast as possible). ``use_*``: feed the Localizer the bag's
    camera intrinsics / IMU heading / IMU roll+pitch / altitude (a frame is then localised with
    the information a flight controller gives the node; ``use_attitude`` is off by default as in
    the node: only a camera rigidly fixed nadir on the body may take the IMU's roll/pitch).
    ``every_n`` keeps every n-th frame; ``max_frames`` stops early. ``origin_xy``: map-frame
    origin in the UTM frame for the output bag (None = as the node: middle of the tile centres).
    ``path_max``: poses kept in the Path. ``output``: how estimates become fields (the node's
    defaults; origin and frame are filled in). ``limits``: the node's pixel budget.
    """

    topics: TopicConfig = AUTO
    realtime: bool = False
    rate: float = 1.0
    use_camera_info: bool = True
    use_heading: bool = True
    use_attitude: bool = False
    use_altitude: bool = True
    every_n: int = 1
    max_frames: int | None = None
    origin_xy: tuple[float, float] | None = None
    write_bag: bool = True
    copy_camera: bool = True
    plot: bool = True
    progress: bool = True
    path_max: int = 1000
    gt_max_gap_s: float = 1.0
    output: out_fields.OutputConfig = out_fields.OutputConfig()
    limits: DecodeLimits = DecodeLimits()


@dataclass
class ReplayResult:
    """What :func:`replay_bag` produced."""

    metrics: dict[str, Any]
    records: list[FrameRecord]
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    topics: TopicConfig | None = None

    def table(self) -> str:
        return format_table(self.metrics)


class _GroundTruth:
    """Time series of ground-truth positions (map frame) and headings, interpolated at frame stamps."""

    def __init__(self, max_gap_s: float) -> None:
        self.t: list[int] = []
        self.xy: list[tuple[float, float]] = []
        self.ht: list[int] = []
        self.heading: list[float] = []
        self.max_gap_ns = int(max_gap_s * 1e9)

    def add_xy(self, ns: int, x: float, y: float) -> None:
        if math.isfinite(x) and math.isfinite(y):
            self.t.append(ns)
            self.xy.append((x, y))

    def add_heading(self, ns: int, heading: float) -> None:
        self.ht.append(ns)
        self.heading.append(heading)

    def at(self, ns: int) -> tuple[float | None, float | None, float | None]:
        x = y = h = None
        if self.t:
            t = np.asarray(self.t)
            order = np.argsort(t, kind="stable")
            t, xy = t[order], np.asarray(self.xy)[order]
            i = int(np.searchsorted(t, ns))
            lo, hi = max(i - 1, 0), min(i, len(t) - 1)
            if t[hi] == ns:
                x, y = xy[hi]
            elif t[lo] <= ns <= t[hi] and t[hi] - t[lo] <= self.max_gap_ns:
                w = (ns - t[lo]) / (t[hi] - t[lo])
                x, y = (1 - w) * xy[lo] + w * xy[hi]
            else:  # outside the GT span: nearest within half the allowed gap
                j = lo if abs(int(t[lo]) - ns) <= abs(int(t[hi]) - ns) else hi
                if abs(int(t[j]) - ns) <= self.max_gap_ns // 2:
                    x, y = xy[j]
        if self.ht:
            t = np.asarray(self.ht)
            j = int(np.argmin(np.abs(t - ns)))
            if abs(int(t[j]) - ns) <= self.max_gap_ns // 2:
                h = self.heading[j]
        return (None if x is None else float(x)), (None if y is None else float(y)), h


def _identity(localizer: Any) -> dict[str, Any]:
    """Model and index identity for metrics.json (fingerprints, paths, sizes)."""
    out: dict[str, Any] = {}
    index = getattr(localizer, "index", None)
    encoder = getattr(localizer, "encoder", None)
    if index is not None:
        manifest = getattr(index, "manifest", {}) or {}
        out["index"] = {
            "path": str(getattr(index, "path", "")),
            "tiles": len(index) if hasattr(index, "__len__") else None,
            "model_fingerprint": (manifest.get("model") or {}).get("fingerprint"),
            "map": (manifest.get("map_copy") or {}).get("name") or manifest.get("maps"),
            "frame_epsg": getattr(getattr(index, "frame", None), "epsg", None),
        }
    if encoder is not None:
        model = getattr(encoder, "model", None)
        cfg = getattr(model, "config", None)
        out["model"] = {
            "fingerprint": getattr(encoder, "fingerprint", None),
            "preset": getattr(cfg, "name", None) or getattr(cfg, "preset", None),
            "backbone": getattr(cfg, "backbone", None),
            "input_size": getattr(encoder, "input_size", None),
            "device": str(getattr(encoder, "device", "")),
        }
    return out


def default_origin(index: Any) -> tuple[float, float]:
    """The map-frame origin the live node uses by default: the middle of the tile centres' bounding box."""
    c = np.asarray(index.tiles.centers_xy, dtype=np.float64)
    ox, oy = (c.min(axis=0) + c.max(axis=0)) / 2.0
    return float(ox), float(oy)


def _quat_yaw(q: Any) -> tuple[float, float, float]:
    try:
        return m.quaternion_to_attitude(float(q.x), float(q.y), float(q.z), float(q.w))
    except ValueError:  # a zero quaternion: no orientation
        return math.nan, math.nan, math.nan


class _OutputBag:
    """Writes the replay's ``estimates`` bag (typestore messages built from the node's output fields)."""

    def __init__(self, path: Path, out: out_fields.OutputConfig, custom: dict[str, str], path_max: int) -> None:
        self.bag = BagWriter(path, "mcap", overwrite=True, custom_data=custom)
        self._out = out
        self.poses: list[Any] = []
        self.gt_poses: list[Any] = []
        self.path_max = path_max
        for key, mtype in (("fix", m.NAVSATFIX), ("pose", m.POSE_COV_STAMPED), ("path", m.PATH),
                           ("candidates", m.MARKER_ARRAY), ("gt_path", m.PATH)):
            self.bag.add_topic(OUT_TOPICS[key], mtype)

    def copy(self, topic: str, msgtype: str, ns: int, raw: bytes, msgdef: tuple[str, str] | None) -> None:
        self.bag.write_raw(topic, msgtype, ns, raw, msgdef)

    def estimate(self, ns: int, stamp_ns: int, est: Any) -> None:
        """The node's outputs for one frame: ``~/fix`` always (NO_FIX when not a fix), pose and path for fixes."""
        cfg = self._out
        self.bag.write(OUT_TOPICS["fix"], ns, m.navsatfix_from_fields(stamp_ns, out_fields.navsatfix_fields(est, cfg),
                                                                      frame_id=cfg.base_frame))
        if out_fields.is_fix(est, cfg):
            pf = out_fields.pose_fields(est, cfg)
            self.bag.write(OUT_TOPICS["pose"], ns, m.pose_cov_from_fields(stamp_ns, pf, frame_id=cfg.map_frame))
            self.poses = (self.poses + [m.pose_stamped_msg(stamp_ns, *pf.position, pf.orientation, frame_id=cfg.map_frame)])[-self.path_max:]
            self.bag.write(OUT_TOPICS["path"], ns, m.path_msg(stamp_ns, self.poses, frame_id=cfg.map_frame))
        M = m.typestore().types["visualization_msgs/msg/Marker"]
        markers = []
        for i, c in enumerate(est.candidates[:10]):
            cx, cy = float(c.center_xy[0]), float(c.center_xy[1])
            h = 0.5 * float(c.size_m)
            gx = np.array([cx - h, cx + h, cx + h, cx - h, cx - h])
            gy = np.array([cy + h, cy + h, cy - h, cy - h, cy + h])
            ex, ey = out_fields.map_xy(cfg, gx, gy)
            ring = np.stack([ex, ey, np.zeros(5)], axis=1)
            good = c.inliers > 0
            markers.append(m.marker_msg(stamp_ns, "candidates", i, M.LINE_STRIP, ring,
                                        (0.1, 0.8, 0.2, 1.0) if good else (0.9, 0.3, 0.1, 0.8),
                                        scale=3.0 if i == 0 else 1.0, lifetime_s=1.0, frame_id=cfg.map_frame))
        if markers:
            self.bag.write(OUT_TOPICS["candidates"], ns, m.marker_array_msg(markers))

    def ground_truth(self, ns: int, x: float, y: float, alt: float) -> None:
        ex, ey = (float(v) for v in out_fields.map_xy(self._out, x, y))
        self.gt_poses = (self.gt_poses + [m.pose_stamped_msg(ns, ex, ey, alt, (0, 0, 0, 1))])[-self.path_max:]
        self.bag.write(OUT_TOPICS["gt_path"], ns, m.path_msg(ns, self.gt_poses))

    def close(self, success: bool) -> Path | None:
        return self.bag.close(success=True)  # a partial run still leaves a valid, shorter bag


def clean_outputs(out_dir: Path) -> None:
    """Remove the previous run's outputs and any staging folder a killed replay left behind."""
    import shutil

    for name in OUTPUT_NAMES:
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for p in out_dir.glob(_STAGING_PREFIX + "*.partial"):
        shutil.rmtree(p, ignore_errors=True)


def _publish_outputs(staging: Path, out_dir: Path) -> dict[str, Path]:
    """Move every file of the staging folder into ``out_dir`` (atomic renames); return them by name."""
    import shutil

    moved: dict[str, Path] = {}
    for p in sorted(staging.iterdir()):
        final = out_dir / p.name
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(p, final)
        moved[p.name] = final
    staging.rmdir()
    return moved


class _Replayer:
    """The state of one replay: the latest aiding inputs, the output bag, records; one frame at a time."""

    def __init__(self, localizer: Any, cfg: ReplayConfig, out: out_fields.OutputConfig, out_bag: _OutputBag | None,
                 on_frame: Callable[[int, Any], None] | None, bar: Any) -> None:
        self.localizer, self.cfg, self.out, self.out_bag = localizer, cfg, out, out_bag
        self.on_frame, self.bar = on_frame, bar
        self.records: list[FrameRecord] = []
        self.estimates_json: list[dict[str, Any]] = []
        self.camera: Any = None
        self.imu: Any = None
        self.alt: float | None = None
        self.timeline = FrameTimeline()
        self.t_start = time.perf_counter()
        self.t_bag0: int | None = None

    def frame_stamp(self, bm: Any) -> int:
        hdr = getattr(bm.msg, "header", None)
        return m.stamp_to_ns(hdr.stamp) if hdr is not None and hdr.stamp.sec > 0 else bm.ns

    def camera_info(self, msg: Any) -> None:
        try:
            self.camera = m.intrinsics_from_camera_info(msg)
        except FoenetError as exc:
            log.warning("ignoring CameraInfo: %s", exc)
            self.camera = None

    def imu_msg(self, msg: Any) -> None:
        self.imu = imu_reading(msg)

    def altitude(self, msg: Any) -> None:
        a = float(msg.data)
        self.alt = a if math.isfinite(a) and a > 0 else None

    def process(self, ns: int, msg: Any, stamp_ns: int) -> None:
        """Localise one frame as the node does, record it and write its outputs."""
        cfg = self.cfg
        verdict = self.timeline.observe(stamp_ns / 1e9)
        if verdict == OUT_OF_ORDER:
            log.warning("frame at t=%.3f s is not newer than the last one: dropped (as the node does)", stamp_ns / 1e9)
            return
        if verdict == JUMP:
            log.warning("time went back to t=%.3f s: track reset (as the node does)", stamp_ns / 1e9)
            self.localizer.reset()
        if cfg.realtime and self.t_bag0 is not None:
            wait = (ns - self.t_bag0) / 1e9 / cfg.rate - (time.perf_counter() - self.t_start)
            if wait > 0:
                time.sleep(wait)
        try:
            img = decode_image(msg, cfg.limits)
            kwargs = localize_kwargs(self.localizer.localize, stamp=stamp_ns / 1e9, imu=self.imu,
                                     use_heading=cfg.use_heading, use_attitude=cfg.use_attitude,
                                     altitude_m=self.alt if cfg.use_altitude else None)
            est = self.localizer.localize(img, camera=self.camera if cfg.use_camera_info else None, **kwargs)
        except FoenetError as exc:  # a bad frame is a lost frame, as in the node
            log.warning("frame at t=%.3f s: %s", stamp_ns / 1e9, exc)
            from ..localize import GeoEstimate

            est = GeoEstimate(status="lost", stamp=stamp_ns / 1e9, pose={"error": str(exc)})
        ok = est.has_fix
        self.records.append(FrameRecord(
            stamp_ns=stamp_ns, status=est.status, x=est.x if ok else None, y=est.y if ok else None,
            heading_deg=est.heading_deg if math.isfinite(est.heading_deg) else None,
            sigma_m=est.sigma_m if math.isfinite(est.sigma_m) else None,
            cov_xy=np.asarray(est.cov_xy) if np.all(np.isfinite(est.cov_xy)) else None,
            score=est.score, inliers=est.inliers, timings_ms=dict(est.timings_ms),
        ))  # fmt: skip
        self.estimates_json.append(est.to_json() | {"stamp_ns": stamp_ns})
        if self.out_bag is not None:
            self.out_bag.estimate(ns, stamp_ns, est)
        if self.on_frame is not None:
            self.on_frame(len(self.records) - 1, est)
        self.bar.update(1)


def replay_bag(bag_path: str | Path, localizer: Any, out_dir: str | Path, cfg: ReplayConfig = ReplayConfig(),
               on_frame: Callable[[int, Any], None] | None = None) -> ReplayResult:
    """Run ``localizer`` over the camera frames of ``bag_path``; write metrics, plot and estimates bag into ``out_dir``.

    ``localizer`` is a :class:`~foenet_ros.localize.Localizer` (anything with its ``localize``
    signature, ``reset()`` and an ``index`` with ``frame`` works). ``on_frame(i, estimate)`` is
    called after every frame. Raises BagError for unreadable bags and missing topics; see the module doc.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_outputs(out_dir)
    staging = out_dir / f"{_STAGING_PREFIX}{os.getpid()}.partial"
    staging.mkdir()
    index = localizer.index
    frame = index.frame
    with BagReader(bag_path) as reader:
        topics = detect_topics(reader.topics, cfg.topics)
        log.info("replay topics: %s", topics.as_dict())
        sim = reader.sim_info() or {}
        sim_frame = None
        if sim.get("frame"):
            from ..geo import GeoFrame

            sim_frame = GeoFrame.from_json(sim["frame"])
        counts = {t.name: t.count for t in reader.topics}
        n_expected = (counts.get(topics.image or "", 0) + cfg.every_n - 1) // cfg.every_n
        if cfg.max_frames:
            n_expected = min(n_expected, cfg.max_frames)
        map_raster = None
        try:
            map_raster = index.map_raster()
        except (FoenetError, OSError) as exc:  # the plot just loses its background
            log.warning("index map copy unavailable for the plot: %s", exc)
        origin = cfg.origin_xy if cfg.origin_xy is not None else default_origin(index)
        out = dataclasses.replace(cfg.output, origin_xy=tuple(origin), frame=frame)
        custom = {"foenet_replay": json.dumps({"bag": str(bag_path), "origin_xy": origin, "frame": frame.to_json(),
                                               "topics": OUT_TOPICS})}
        out_bag = _OutputBag(staging / "estimates", out, custom, cfg.path_max) if cfg.write_bag else None
        gt = _GroundTruth(cfg.gt_max_gap_s)
        wanted = [t for t in topics.as_dict().values() if t]
        msgdefs = {t: reader.connection_msgdef(t) for t in (topics.image, topics.camera_info) if t}
        pending: tuple[int, Any, int] | None = None  # (receive ns, image msg, header ns)
        n_seen = 0
        error: BagError | None = None
        bar = tqdm(total=n_expected, desc="replay", unit="frame", disable=not cfg.progress)
        run = _Replayer(localizer, cfg, out, out_bag, on_frame, bar)
        copy = out_bag is not None and cfg.copy_camera
        try:
            for bm in reader.messages(wanted):
                if pending is not None and bm.ns > pending[0]:
                    run.process(*pending)
                    pending = None
                    if cfg.max_frames and len(run.records) >= cfg.max_frames:
                        break
                t, msg = bm.topic, bm.msg
                if t == topics.image:
                    n_seen += 1
                    if run.t_bag0 is None:
                        run.t_bag0 = bm.ns
                    if (n_seen - 1) % cfg.every_n == 0:
                        pending = (bm.ns, msg, run.frame_stamp(bm))
                elif t == topics.camera_info:
                    run.camera_info(msg)
                elif t == topics.imu:
                    run.imu_msg(msg)
                elif t == topics.altitude:
                    run.altitude(msg)
                elif t == topics.gt_fix:
                    _gt_fix(bm, frame, gt, out_bag)
                elif t == topics.gt_pose:
                    _gt_pose(bm, frame, sim_frame, topics.gt_fix is None, gt)
                if copy and t in msgdefs:
                    out_bag.copy(t, bm.msgtype, bm.ns, bm.raw, msgdefs.get(t))
            else:
                if pending is not None:
                    run.process(*pending)
        except BagError as exc:
            error = exc
            if pending is not None:  # the last good frame and its same-stamp messages were read
                run.process(*pending)
        except BaseException:
            bar.close()
            if out_bag is not None:
                out_bag.close(success=False)
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise
        bar.close()
        wall = time.perf_counter() - run.t_start
    records = run.records
    for r in records:
        r.gt_x, r.gt_y, r.gt_heading_deg = gt.at(r.stamp_ns)
    metrics = compute_metrics(records, wall_s=wall, bag=str(bag_path), topics=topics.as_dict(),
                              inputs={"camera_info": bool(cfg.use_camera_info and topics.camera_info),
                                      "heading": bool(cfg.use_heading and topics.imu),
                                      "attitude": bool(cfg.use_attitude and topics.imu),
                                      "altitude": bool(cfg.use_altitude and topics.altitude)},
                              origin_xy=list(origin), **_identity(localizer))  # fmt: skip
    metrics["frames_out_of_order"] = run.timeline.out_of_order
    metrics["time_jumps"] = run.timeline.jumps
    if error is not None:
        metrics["partial"] = True
        metrics["error"] = str(error)
    if out_bag is not None:
        out_bag.close(success=error is None)
    (staging / "estimates.jsonl").write_text("".join(json.dumps(e) + "\n" for e in run.estimates_json))
    if cfg.plot:
        title = f"{Path(bag_path).name}: {len(records)} frames"
        if metrics.get("ground_truth"):
            e = metrics["horizontal_error_m"]
            title += f", median error {e['median']:.1f} m" if e["median"] is not None else ""
        else:
            title += " (no ground truth)"
        plot_trajectory(records, staging / "trajectory.png", map_raster, title)
    write_json_atomic(staging / "metrics.json", metrics)
    moved = _publish_outputs(staging, out_dir)
    files = {key: moved[name] for key, name in (("estimates_bag", "estimates"), ("estimates_jsonl", "estimates.jsonl"),
                                                 ("plot", "trajectory.png"), ("metrics", "metrics.json")) if name in moved}
    result = ReplayResult(metrics, records, out_dir, files, topics)
    if error is not None:
        raise BagError(f"{error} (outputs over the {len(records)} frames before the error are in {out_dir})") from error
    return result


def _gt_fix(bm: Any, frame: Any, gt: _GroundTruth, out_bag: _OutputBag | None) -> None:
    msg = bm.msg
    if int(msg.status.status) >= 0 and math.isfinite(msg.latitude) and math.isfinite(msg.longitude):
        x, y = frame.from_lonlat(float(msg.longitude), float(msg.latitude))
        gt.add_xy(m.stamp_to_ns(msg.header.stamp) or bm.ns, float(x), float(y))
        if out_bag is not None:
            out_bag.ground_truth(bm.ns, float(x), float(y), float(msg.altitude) if math.isfinite(msg.altitude) else 0.0)


def _gt_pose(bm: Any, frame: Any, sim_frame: Any, use_position: bool, gt: _GroundTruth) -> None:
    msg = bm.msg
    pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
    gns = m.stamp_to_ns(msg.header.stamp) or bm.ns
    h = _quat_yaw(pose.orientation)[0]
    if math.isfinite(h):
        gt.add_heading(gns, h)
    if use_position and sim_frame is not None:
        # only our simulator's poses have a known frame (UTM easting/northing)
        lon, lat = sim_frame.to_lonlat(float(pose.position.x), float(pose.position.y))
        x, y = frame.from_lonlat(lon, lat)
        gt.add_xy(gns, float(x), float(y))
