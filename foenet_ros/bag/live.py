"""Play a bag on live ROS 2 topics at its recorded rate, with ``/clock``: ``ros2 bag play`` without rosbag2.

The node under test then runs exactly as in flight (same subscriptions, QoS, executor, timing).
Messages of a rosbag2 are published as their recorded CDR bytes (``Publisher.publish`` accepts
serialised messages), so nothing is converted and any message type rclpy can import plays.
ROS 1 bags are deserialised with the rosbags typestore and copied field by field into the
rclpy message class (``seq`` and other ROS 1-only fields are dropped, ``K``/``D`` ... are matched
case-insensitively).

This is the only module of ``foenet_ros.bag`` that imports rclpy (lazily, inside functions).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BagError, ConfigError
from .io import BagReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlayConfig:
    """``rate``: speed factor; ``loop``: start again at the end; ``clock``: publish ``/clock`` at ``clock_hz``
    with the bag time; ``topics``: only these (None = all); ``remap``: ``{bag topic: live topic}``;
    ``start_delay_s``: wait for subscribers to be discovered before the first message;
    ``duration_s``: stop after this much bag time."""

    rate: float = 1.0
    loop: bool = False
    clock: bool = True
    clock_hz: float = 100.0
    topics: tuple[str, ...] | None = None
    remap: tuple[tuple[str, str], ...] = ()
    start_delay_s: float = 1.0
    qos_depth: int = 10
    duration_s: float | None = None  # play only the first seconds of the bag

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ConfigError(f"rate must be > 0, got {self.rate}")
        if not self.clock_hz > 0:
            raise ConfigError(f"clock_hz must be > 0, got {self.clock_hz}")


def rclpy_class(msgtype: str) -> Any:
    """``sensor_msgs/msg/Image`` -> the rclpy class ``sensor_msgs.msg.Image`` (BagError when not installed)."""
    pkg, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype} is not available to rclpy (install the {pkg} package)") from exc


def to_rclpy(src: Any, cls: Any) -> Any:
    """Copy a rosbags message ``src`` into a new instance of the rclpy class ``cls`` (recursively)."""
    dst = cls()
    for field, ftype in cls.get_fields_and_field_types().items():
        if hasattr(src, field):
            value = getattr(src, field)
        elif hasattr(src, field.upper()):
            value = getattr(src, field.upper())
        else:
            continue  # a ROS 2-only field keeps its default
        cur = getattr(dst, field)
        if hasattr(cur, "get_fields_and_field_types"):  # nested message
            setattr(dst, field, to_rclpy(value, type(cur)))
        elif isinstance(cur, list) and "<" in ftype and "/" in ftype:  # sequence of messages
            inner = ftype[ftype.index("<") + 1: ftype.rindex(">")].split(",")[0]
            sub = rclpy_class(inner.replace("/", "/msg/", 1) if "/msg/" not in inner else inner)
            setattr(dst, field, [to_rclpy(v, sub) for v in value])
        elif isinstance(value, np.ndarray):
            setattr(dst, field, value.tobytes() if value.dtype == np.uint8 and ftype.startswith("sequence<uint8") else value.tolist())
        else:
            setattr(dst, field, value)
    return dst


def play_bag(bag: str | Path | Sequence[str | Path], cfg: PlayConfig = PlayConfig(), *, node: Any = None,
             stop: threading.Event | None = None, progress: bool = True) -> int:
    """Publish every message of ``bag`` on its topic at the recorded rate; returns the number published.

    ``node``: an existing rclpy node to publish from (default: a new ``foenet_bag_player`` node,
    with ``rclpy.init()`` when needed). ``stop``: set it to end playback early (e.g. from a test).
    """
    import rclpy
    from rclpy.qos import QoSProfile
    from tqdm import tqdm

    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    own_node = node is None
    if own_node:
        node = rclpy.create_node("foenet_bag_player")
    remap = dict(cfg.remap)
    published = 0
    try:
        clock_pub = None
        if cfg.clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=1))
        pubs: dict[str, Any] = {}
        while True:
            with BagReader(bag) as reader:
                wanted = [t for t in reader.topics if cfg.topics is None or t.name in cfg.topics]
                ros1 = reader.is_ros1
                for t in wanted:
                    if t.name in pubs:
                        continue
                    try:
                        cls = rclpy_class(t.msgtype)
                    except BagError as exc:
                        log.warning("skipping %s: %s", t.name, exc)
                        continue
                    pubs[t.name] = (node.create_publisher(cls, remap.get(t.name, t.name), QoSProfile(depth=cfg.qos_depth)), cls)
                if not pubs:
                    raise BagError(f"nothing to play in {reader.name}: no topic with a message type rclpy can import")
                time.sleep(cfg.start_delay_s)  # let DDS discovery match the subscribers first
                total = sum(t.count for t in wanted if t.name in pubs)
                bar = tqdm(total=total, desc="play", unit="msg", disable=not progress)
                t_wall0 = time.monotonic()
                t_bag0: int | None = None
                next_clock = 0.0
                for bm in reader.messages([t for t in pubs], decode=ros1):
                    if (stop is not None and stop.is_set()) or not node.context.ok():
                        return published  # stopped, or rclpy shut down by SIGINT/SIGTERM
                    if t_bag0 is None:
                        t_bag0 = bm.ns
                    if cfg.duration_s is not None and bm.ns - t_bag0 > cfg.duration_s * 1e9:
                        break
                    due = t_wall0 + (bm.ns - t_bag0) / 1e9 / cfg.rate
                    # sleep until the message is due, ticking /clock at clock_hz meanwhile
                    while True:
                        now = time.monotonic()
                        if not node.context.ok():
                            return published
                        if clock_pub is not None and now >= next_clock:
                            _publish_clock(clock_pub, t_bag0 + int((now - t_wall0) * cfg.rate * 1e9))
                            next_clock = now + 1.0 / cfg.clock_hz
                        if now >= due:
                            break
                        time.sleep(min(due - now, 1.0 / cfg.clock_hz if clock_pub else due - now))
                    pub, cls = pubs[bm.topic]
                    try:
                        pub.publish(to_rclpy(bm.msg, cls) if ros1 else bm.raw)
                    except RuntimeError:  # rclpy's RCLError once a signal has shut the context down
                        if node.context.ok():
                            raise
                        log.info("ROS shut down: stopped after %d messages", published)
                        return published
                    published += 1
                    bar.update(1)
                bar.close()
            if not cfg.loop or (stop is not None and stop.is_set()):
                return published
    finally:
        if own_node:
            node.destroy_node()
        if own_context and rclpy.ok():
            rclpy.shutdown()


def _publish_clock(pub: Any, ns: int) -> None:
    from rosgraph_msgs.msg import Clock

    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = int(ns // 1_000_000_000), int(ns % 1_000_000_000)
    pub.publish(msg)
