"""Reading and writing bags with the ``rosbags`` library (no ROS installation needed).

* :class:`BagWriter` writes a rosbag2 (MCAP by default, or sqlite3) into a hidden temporary
  directory and renames it onto the target when closed, so a reader never sees a half-written
  bag. When a job fails half-way, :meth:`BagWriter.close` still finalises what was written: the
  result is a valid, shorter bag.
* :class:`BagReader` opens a rosbag2 directory, a bare ``.mcap``/``.db3`` file or ROS 1 ``.bag``
  files (``rosbags.highlevel.AnyReader``) and yields deserialised messages in time order. Every
  problem (missing path, truncated file, corrupt chunk, undecodable message) surfaces as a
  :class:`foenet_ros.errors.BagError` that names the bag and what to do.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import BagError
from . import messages as m

log = logging.getLogger(__name__)

FORMATS = ("mcap", "sqlite3")


class BagWriter:
    """A rosbag2 writer with one connection per topic, finalised atomically.

    Example::

        with BagWriter("flight", fmt="mcap") as bag:
            bag.write("/camera/image_raw", ns, messages.image_msg(img, ns))

    On leaving the ``with`` block (also through an exception) the bag is closed and renamed onto
    ``path``; with ``keep_partial=False`` a failed run leaves nothing behind instead.
    """

    def __init__(self, path: str | Path, fmt: str = "mcap", *, overwrite: bool = False,
                 custom_data: dict[str, str] | None = None, keep_partial: bool = True) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if fmt not in FORMATS:
            raise BagError(f"unknown bag format {fmt!r}; use one of {FORMATS}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise BagError(f"{self.path} exists already; remove it or choose another --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        # rosbags names the storage file after the bag directory: <name>/<name>.mcap
        self._bagdir = self._tmpdir / self.path.name
        plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._bagdir, version=9, storage_plugin=plugin)
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.keep_partial = keep_partial
        self.overwrite = overwrite
        self.count = 0
        self._closed = False

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare ``topic`` (done implicitly by :meth:`write`; explicit calls fix the topic order)."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=m.typestore())

    def write(self, topic: str, ns: int, msg: Any) -> None:
        """Serialise ``msg`` (a typestore message) onto ``topic`` at receive time ``ns`` (nanoseconds)."""
        self.add_topic(topic, msg.__msgtype__)
        self._writer.write(self._connections[topic], int(ns), m.serialize(msg))
        self.count += 1

    def write_raw(self, topic: str, msgtype: str, ns: int, raw: bytes, msgdef: tuple[str, str] | None = None) -> None:
        """Copy an already serialised CDR message (e.g. from an input bag) without decoding it."""
        if topic not in self._connections:
            if msgdef is not None:
                self._connections[topic] = self._writer.add_connection(topic, msgtype, msgdef=msgdef[0], rihs01=msgdef[1])
            else:
                self.add_topic(topic, msgtype)
        self._writer.write(self._connections[topic], int(ns), raw)
        self.count += 1

    def close(self, success: bool = True) -> Path | None:
        """Finalise the bag and move it onto ``path``; returns the path (None when discarded)."""
        if self._closed:
            return self.path if self.path.exists() else None
        self._closed = True
        try:
            if success or self.keep_partial:
                self._writer.close()
                if self.path.exists() and self.overwrite:
                    shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
                self._bagdir.rename(self.path)
                return self.path
            self._writer.abort()
            return None
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(success=exc_type is None)


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: name, ROS 2 message type (``pkg/msg/Name``) and message count."""

    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    """One deserialised message: topic, type, receive time (ns), the message and its raw bytes."""

    topic: str
    msgtype: str
    ns: int
    msg: Any
    raw: bytes


def _normalise_type(msgtype: str) -> str:
    """ROS 1 ``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image`` (ROS 2 spelling)."""
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


class BagReader:
    """Read a rosbag2 directory, an ``.mcap``/``.db3`` file, or ROS 1 ``.bag`` files.

    Use as a context manager; :attr:`topics` lists what is inside, :meth:`messages` yields
    :class:`BagMessage` in receive-time order. ``custom_data`` is the rosbag2 metadata dict
    (our simulator stores the map frame and camera there).
    """

    def __init__(self, paths: str | Path | Sequence[str | Path]) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            raise BagError(f"bag not found: {', '.join(missing)}")
        self.name = ", ".join(str(p) for p in self.paths)
        self._reader: Any = None

    def __enter__(self) -> "BagReader":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        from rosbags.highlevel import AnyReader

        try:
            self._reader = AnyReader(self.paths, default_typestore=m.typestore())
            self._reader.open()
        except Exception as exc:  # rosbags raises several unrelated types (ReaderError, KeyError, struct.error, ...)
            self._reader = None
            raise BagError(
                f"cannot open bag {self.name}: {exc}. The file is truncated or corrupt (an interrupted recording "
                "misses its index/summary: recover it with `mcap recover` for MCAP or `ros2 bag reindex` for sqlite3), "
                "or it is not a rosbag2 directory, .mcap, .db3 or ROS 1 .bag"
            ) from exc

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - closing a broken reader must not mask the real error
                log.debug("closing %s failed", self.name, exc_info=True)
            self._reader = None

    @property
    def is_ros1(self) -> bool:
        return not self._reader.is2

    @property
    def topics(self) -> list[TopicInfo]:
        counts: dict[tuple[str, str], int] = {}
        for c in self._reader.connections:
            key = (c.topic, _normalise_type(c.msgtype))
            counts[key] = counts.get(key, 0) + int(c.msgcount)
        return [TopicInfo(t, ty, n) for (t, ty), n in counts.items()]

    @property
    def custom_data(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in getattr(self._reader, "readers", []):
            meta = getattr(getattr(r, "storage", None), "metadata", None)
            custom = getattr(meta, "custom", None)
            if custom:
                out.update({str(k): str(v) for k, v in custom.items()})
        return out

    def sim_info(self) -> dict[str, Any] | None:
        """The simulator's metadata (map frame, camera, map names) when the bag was made by ``foenet simulate``."""
        raw = self.custom_data.get("foenet_sim")
        return json.loads(raw) if raw else None

    @property
    def duration_s(self) -> float:
        return max(0, self._reader.end_time - self._reader.start_time) / 1e9

    def connection_msgdef(self, topic: str) -> tuple[str, str] | None:
        """(message definition, rihs01 hash) of ``topic`` as stored, to copy it into another bag."""
        for c in self._reader.connections:
            if c.topic == topic and not self.is_ros1 and c.msgdef.data and c.digest:
                return c.msgdef.data, c.digest
        return None

    def messages(self, topics: Sequence[str] | None = None, decode: bool = True) -> Iterator[BagMessage]:
        """Yield messages of ``topics`` (all when None) in receive-time order.

        Raises BagError when the stream breaks (corrupt chunk, undecodable payload) with the time and
        topic of the last good message, so a caller can keep what it produced so far.
        """
        if self._reader is None:
            raise BagError("bag is not open; use `with BagReader(path) as bag:`")
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        last = "the first message"
        it = iter(self._reader.messages(connections=conns))
        while True:
            try:
                conn, ns, raw = next(it)
            except StopIteration:
                return
            except Exception as exc:
                raise BagError(f"bag {self.name} is corrupt or truncated after {last}: {exc}") from exc
            mtype = _normalise_type(conn.msgtype)
            msg = None
            if decode:
                try:
                    msg = self._reader.deserialize(raw, conn.msgtype)
                except Exception as exc:
                    raise BagError(
                        f"bag {self.name}: cannot decode a {mtype} message on {conn.topic} at t={ns / 1e9:.3f} s "
                        f"(after {last}): {exc}; the bag is corrupt"
                    ) from exc
            last = f"{conn.topic} at t={ns / 1e9:.3f} s"
            yield BagMessage(conn.topic, mtype, int(ns), msg, bytes(raw))
