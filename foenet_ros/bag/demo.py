"""The end-to-end demo behind ``foenet demo``: map -> index -> simulated flight -> replay (-> live node).

1. the bundled default model (``model.load_default_model``);
2. the demo map from the data registry (:mod:`foenet_ros.maps`: Banepa, a part of it by
   default so everything runs in a few minutes on a 2-core CPU), or the synthetic map;
3. the tile index, cached under ``<cache>/demo/index-<key>`` (key = model fingerprint + map +
   tiling), so a second run starts at step 4;
4. a simulated flight over the map (:mod:`.simulate`) into ``<out>/flight``;
5. the replay through the Localizer (:mod:`.replay`) into ``<out>/replay``;
6. (``foenet demo`` then, when rclpy imports: the same bag played live into the real
   ``foenet_node`` for a few frames -- :func:`foenet_ros.ros.demo_live.run_live`, which lives in
   the ros room because bag/ never imports ros/.)
"""

from __future__ import annotations

import hashlib
import json
import logging
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

    from ..utils import write_json_atomic

    write_json_atomic(res.files["metrics"], res.metrics)
    return DemoResult(res.metrics, res.table(), dict(res.files, bag=bag, index=index_dir), dm.synthetic,
                      dm.name, None, timings)
