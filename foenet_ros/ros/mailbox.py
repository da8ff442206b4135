"""A one-slot mailbox between the camera callback and the inference worker: the newest frame wins.

Why not a queue: when inference is slower than the camera, a queue either grows without bound or
hands the worker frames that are already stale. With one slot the worker always gets the newest
frame; every frame that is replaced before the worker took it is counted as dropped.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """Thread-safe single-slot mailbox. ``put`` never blocks; ``take`` returns ``None`` when empty.

    Attributes:
        received: items put so far.
        dropped: items replaced before anyone took them.
        taken: items taken.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: T | None = None
        self.received = 0
        self.dropped = 0
        self.taken = 0

    def put(self, item: T) -> bool:
        """Store ``item``; return True when it replaced an item nobody took (counted as dropped)."""
        with self._lock:
            replaced = self._item is not None
            self._item = item
            self.received += 1
            if replaced:
                self.dropped += 1
            return replaced

    def take(self) -> T | None:
        """Remove and return the newest item (``None`` when empty)."""
        with self._lock:
            item, self._item = self._item, None
            if item is not None:
                self.taken += 1
            return item

    def clear(self) -> int:
        """Drop a waiting item (counted as dropped); return how many were dropped (0 or 1)."""
        with self._lock:
            n = int(self._item is not None)
            self._item = None
            self.dropped += n
            return n

    def __bool__(self) -> bool:
        with self._lock:
            return self._item is not None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"received": self.received, "dropped": self.dropped, "taken": self.taken}
