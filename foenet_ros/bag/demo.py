"""The end-to-end demo behind ``foenet demo``: map -> index -> simulated flight -> replay (-> live node).

1. the bundled default model (``model.load_default_model``);
2. the demo map from the data registry (:mod:`foenet_ros.maps`: Banepa, a part of it by
   default so everything runs in a few minutes on a 2-core CPU), or the synthetic map;
3. the tile index, cached under ``<cache>/demo/index-<key>`` (key = model fingerprint + map +
   tiling), so a second run starts at step 4;
4. a simulated flight over the map (:mod:`.simulate`) into ``<out>/flight``;
5. the replay through the Localizer (:mod:`.replay`) into ``<out>/replay``;
6. when rclpy imports: the same bag played live (:mod:`.live`) into the real ``foenet_node`` for
   a few frames, counting the NavSatFix estimates that come back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FoenetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run_demo` (the CLI flags of ``foenet demo``)."""

    out_dir: Path = Path("foenet_demo")
    map_name: str = "banepa"
    crop_frac: tuple[float, float] | None = (0.35, 0.35)
    map_max_side_px: int | None = 3000
    frames: int = 40
    rate_hz: float = 1.0
    speed_mps: float = 20.0
    altitude_m: float = 120.0
    hfov_deg: float = 70.0
    image_size: tuple[int, int] = (640, 480)
    seed: int = 0
    device: str = "auto"
    live_frames: int = 5
    live: bool = True
    rebuild_index: bool = False
    download: bool = True
    progress: bool = True


@dataclass
class DemoResult:
    metrics: dict[str, Any]
    table: str
    files: dict[str, Path]
    map_synthetic: bool
    map_label: str
    live: dict[str, Any] | None = None
    timings_s: dict[str, float] = field(default_factory=dict)


def _index_key(fingerprint: str, map_label: str, map_files: list[Path] | None, icfg: Any) -> str:
    h = hashlib.sha256()
    h.update(fingerprint.encode())
    h.update(map_label.encode())
    for p in map_files or []:
        st = p.stat()
        h.update(f"{p.name}|{st.st_size}".encode())
    h.update(json.dumps(icfg.to_json(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def run_demo(cfg: DemoConfig = DemoConfig()) -> DemoResult:
    """Run the whole demo; returns the replay metrics, the table, and where every output is."""
    from .. import maps
    from ..geo import read_map
    from ..index import IndexConfig, TileIndex, build_index
    from ..localize import Localizer
    from ..model import Encoder, load_default_model
    from .replay import ReplayConfig, replay_bag
    from .simulate import SimConfig, simulate_flight
    from .trajectory import MotionConfig

    timings: dict[str, float] = {}
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    encoder = Encoder(load_default_model(), device=cfg.device)
    timings["model"] = time.perf_counter() - t

    t = time.perf_counter()
    dm = maps.demo_map(cfg.map_name, crop_frac=cfg.crop_frac, max_side_px=cfg.map_max_side_px,
                       download=cfg.download, progress=cfg.progress)
    raster = dm.raster if dm.synthetic else read_map([str(p) for p in dm.paths])
    timings["map"] = time.perf_counter() - t
    log.info("demo map: %s (%s), %.0f x %.0f m at %.2f m/px", dm.name, dm.attribution, *raster.size_m, raster.gsd_m)

    alt = cfg.altitude_m
    icfg = IndexConfig(hfov_deg=cfg.hfov_deg, image_size=cfg.image_size, alt_range_m=(alt * 0.9, alt * 1.1))
    key = _index_key(encoder.fingerprint, dm.name, dm.paths, icfg)
    index_dir = maps.cache_dir() / "demo" / f"index-{key}"
    t = time.perf_counter()
    index = None
    if index_dir.is_dir() and not cfg.rebuild_index:
        try:
            index = TileIndex.load(index_dir, expect_fingerprint=encoder.fingerprint)
            log.info("reusing the cached index %s", index_dir)
        except FoenetError as exc:
            log.warning("cached index %s unusable (%s); rebuilding", index_dir, exc)
    if index is None:
        build_index(raster, encoder, index_dir, icfg, overwrite=True, progress=cfg.progress)
        index = TileIndex.load(index_dir, expect_fingerprint=encoder.fingerprint)
    timings["index"] = time.perf_counter() - t
    # the node's default index (index_dir:="") is the latest demo index: `foenet demo` then
    # `foenet_node` localises against the bundled default map with no parameters at all
    maps.set_default_index(index_dir)

    t = time.perf_counter()
    sim = SimConfig(n_frames=cfg.frames, rate_hz=cfg.rate_hz, width=cfg.image_size[0], height=cfg.image_size[1],
                    hfov_deg=cfg.hfov_deg, seed=cfg.seed,
                    motion=MotionConfig(alt_m=alt, speed_mps=cfg.speed_mps if cfg.speed_mps > 0 else None))
    bag = out / "flight"
    simulate_flight(raster, bag, sim, progress=cfg.progress, overwrite=True)
    timings["simulate"] = time.perf_counter() - t

    t = time.perf_counter()
    localizer = Localizer(index, encoder)
    # the simulated camera is strapdown nadir: replay and the live node both take the IMU attitude
    res = replay_bag(bag, localizer, out / "replay", ReplayConfig(progress=cfg.progress, use_attitude=True))
    timings["replay"] = time.perf_counter() - t
    res.metrics["demo"] = {"map": dm.name, "synthetic_map": dm.synthetic, "attribution": dm.attribution,
                           "index_dir": str(index_dir), "timings_s": timings}

    live = None
    if cfg.live and cfg.live_frames > 0:
        t = time.perf_counter()
        live = run_live(bag, index_dir, cfg.live_frames / cfg.rate_hz, device=cfg.device)
        timings["live"] = time.perf_counter() - t
        res.metrics["demo"]["live"] = live
    from ..utils import write_json_atomic

    write_json_atomic(res.files["metrics"], res.metrics)
    return DemoResult(res.metrics, res.table(), dict(res.files, bag=bag, index=index_dir), dm.synthetic,
                      dm.name, live, timings)


def run_live(bag: Path, index_dir: Path, duration_s: float, *, device: str = "auto", timeout_s: float = 120.0,
             domain_id: int | None = None) -> dict[str, Any]:
    """Play the first ``duration_s`` of ``bag`` into a real ``FoenetNode``; count the fixes it publishes.

    Returns ``{"available": False, "reason": ...}`` when rclpy or the node cannot be imported.
    """
    try:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import NavSatFix, PointCloud2

        from ..ros.node import FoenetNode
    except ImportError as exc:
        return {"available": False, "reason": f"rclpy / the node cannot be imported: {exc}"}
    from .live import PlayConfig, play_bag

    import os

    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    rclpy.init()
    fixes: list[int] = []
    ready = threading.Event()
    node = listener = player = None
    executor = MultiThreadedExecutor(num_threads=4)
    spin = None
    try:
        params = [
            Parameter("index_dir", value=str(index_dir)), Parameter("device", value=device),
            Parameter("image_topic", value="/camera/image_raw"), Parameter("camera_info_topic", value="/camera/camera_info"),
            Parameter("heading_topic", value="/mavros/imu/data"), Parameter("use_imu_attitude", value=True),
            Parameter("altitude_topic", value="/mavros/global_position/rel_alt"),
        ]
        node = FoenetNode(parameter_overrides=params)
        listener = rclpy.create_node("foenet_demo_listener")
        player = rclpy.create_node("foenet_bag_player")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        listener.create_subscription(PointCloud2, "/foenet_node/map_tiles", lambda _m: ready.set(), latched)
        listener.create_subscription(NavSatFix, "/foenet_node/fix", lambda m: fixes.append(int(m.status.status)), 10)
        for n in (node, listener, player):
            executor.add_node(n)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        if not ready.wait(timeout_s):
            return {"available": True, "ok": False, "reason": f"the node did not load {index_dir} within {timeout_s:.0f} s"}
        t0 = time.perf_counter()
        sent = play_bag(bag, PlayConfig(duration_s=duration_s, start_delay_s=1.0,
                                        topics=("/camera/image_raw", "/camera/camera_info", "/mavros/imu/data",
                                                "/mavros/global_position/rel_alt")),
                        node=player, progress=False)
        # the node may still be working on the last frames: wait until fixes stop coming (3 s quiet)
        deadline = time.monotonic() + 30.0
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(fixes) != seen:
                seen, quiet_since = len(fixes), time.monotonic()
            elif fixes and time.monotonic() - quiet_since > 3.0:
                break
            time.sleep(0.1)
        good = sum(s >= 0 for s in fixes)
        return {"available": True, "ok": len(fixes) > 0, "messages_played": sent, "fixes_received": len(fixes),
                "fixes_with_position": good, "wall_s": round(time.perf_counter() - t0, 2)}
    finally:
        executor.shutdown(timeout_sec=5.0)
        if spin is not None:  # the executor thread must be gone before its nodes are destroyed
            spin.join(timeout=5.0)
        for n in (player, listener, node):
            if n is not None:
                n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
