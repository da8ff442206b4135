"""Frame stamps as a camera stream should have them: in order, at a steady rate.

:class:`FrameTimeline` looks at every received frame's header stamp (before any decoding) and says

* ``ok``: newer than the last accepted frame;
* ``out_of_order``: not newer (a second publisher on the topic, a reordering transport, a
  duplicated frame): dropped and counted. A tracker fed frames out of order would integrate
  backwards and produce stale outputs;
* ``jump``: time went back by at least ``jump_s`` *and stayed there* (``confirm`` frames in a
  row continue the new, earlier series with no frame of the old one in between: a bag loop, a
  restarted simulator, a clock reset): that frame is accepted and the caller resets the tracker;
  the frames before the confirmation are dropped. While ``jumps_allowed`` is False (the node sets
  it while it sees several publishers on the camera topic) nothing is ever a jump, so an
  interleaved second publisher with an old clock never resets the track.

It also estimates the publisher's frame period (median of recent stamp steps) and counts
frames that evidently never arrived (a stamp gap of ``k`` periods = ``k - 1`` lost frames), so
the node can warn when the transport loses frames (e.g. best-effort samples over Fast DDS's
shared-memory segment size).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Deque

OK = "ok"
OUT_OF_ORDER = "out_of_order"
JUMP = "jump"


@dataclass
class FrameTimeline:
    """Stream checks on frame stamps (seconds). Not thread-safe: call from one callback group.

    Attributes:
        jump_s: a backward step at least this long is a time jump candidate (else out of order).
        window: recent frames used for the period and the loss ratio.
    """

    jump_s: float = 1.0
    window: int = 50
    confirm: int = 3
    jumps_allowed: bool = True
    last: float | None = None
    out_of_order: int = 0
    jumps: int = 0
    accepted: int = 0
    _pending_jump: float | None = None
    _pending_n: int = 0
    _steps: Deque[float] = field(default_factory=lambda: collections.deque(maxlen=50))
    _events: Deque[tuple[int, int]] = field(default_factory=lambda: collections.deque(maxlen=50))  # (received, missed)
    missed_total: int = 0

    def observe(self, stamp: float | None) -> str:
        """Classify one received frame by its stamp (``None``/0 = unstamped: always ``ok``)."""
        if stamp is None or not math.isfinite(stamp) or stamp <= 0:
            self.accepted += 1
            return OK
        if self.last is None:
            return self._accept(stamp, None)
        dt = stamp - self.last
        if dt > 0:
            self._pending_jump, self._pending_n = None, 0
            return self._accept(stamp, dt)
        if -dt >= self.jump_s and self.jumps_allowed:
            if self._pending_jump is not None and self._pending_jump < stamp:
                self._pending_n += 1
                self._pending_jump = stamp
                if self._pending_n >= self.confirm:
                    self._pending_jump, self._pending_n = None, 0
                    self.jumps += 1
                    self._steps.clear()
                    self._events.clear()
                    self.last = None
                    return self._accept(stamp, None, JUMP)
            else:
                self._pending_jump, self._pending_n = stamp, 1
        self.out_of_order += 1
        return OUT_OF_ORDER

    def _accept(self, stamp: float, dt: float | None, verdict: str = OK) -> str:
        missed = 0
        period = self.period_s()
        if dt is not None:
            if period > 0 and dt > 1.5 * period:
                missed = int(round(dt / period)) - 1
            self._steps.append(dt)
        self._events.append((1, missed))
        self.missed_total += missed
        self.last = stamp
        self.accepted += 1
        return verdict

    def period_s(self) -> float:
        """Median stamp step of recent frames (0 until 5 steps are known)."""
        if len(self._steps) < 5:
            return 0.0
        s = sorted(self._steps)
        return s[len(s) // 2]

    def loss_ratio(self) -> float:
        """Share of frames the publisher sent (by the stamps) that never arrived, over the recent window."""
        got = sum(e[0] for e in self._events)
        missed = sum(e[1] for e in self._events)
        return missed / (got + missed) if got + missed else 0.0
