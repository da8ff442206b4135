"""Rolling statistics for /diagnostics: output rate and mean/max latency per pipeline stage."""

from __future__ import annotations

import collections
import time
from typing import Deque, Mapping


class RateMeter:
    """Events per second over the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._t: Deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._t.append(now)
        self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._t) < 2:
            return 0.0
        return (len(self._t) - 1) / max(self._t[-1] - self._t[0], 1e-6)

    def _trim(self, now: float) -> None:
        while self._t and now - self._t[0] > self.window_s:
            self._t.popleft()


class StageLatency:
    """Mean and max of each stage's latency (ms) over the last ``n`` frames."""

    def __init__(self, n: int = 50) -> None:
        self._hist: dict[str, Deque[float]] = {}
        self._n = n

    def add(self, timings_ms: Mapping[str, float]) -> None:
        for k, v in timings_ms.items():
            self._hist.setdefault(k, collections.deque(maxlen=self._n)).append(float(v))

    def summary(self) -> dict[str, float]:
        """``{"latency_<stage>_ms": mean, "latency_<stage>_max_ms": max}``."""
        out: dict[str, float] = {}
        for k, d in self._hist.items():
            if d:
                out[f"latency_{k}_ms"] = sum(d) / len(d)
                out[f"latency_{k}_max_ms"] = max(d)
        return out
