"""Shared pytest fixtures: real shared data (or a skip with the reason), temp dirs, tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

from foenet_ros.utils import SHARED_DATA_ENV, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real aerial data (``$FOENET_DATA``); skips the test when it is absent."""
    root = shared_data_dir()
    if root is None:
        pytest.skip(f"real aerial data not available: set ${SHARED_DATA_ENV} to the shared data folder")
    return root


def require_shared(root: Path, rel: str) -> Path:
    """Return ``root/rel`` or skip the calling test, naming the missing file."""
    path = root / rel
    if not path.exists():
        pytest.skip(f"shared data file missing: {path}")
    return path


# ROS 2 from the pip wheels: keep DDS discovery on loopback (no multicast off the machine) and
# give each pytest process its own domain so parallel runs on one machine never cross-talk.
import os as _os

_os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
_os.environ.setdefault("ROS_DOMAIN_ID", str(10 + _os.getpid() % 90))


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_restored():
    """A node started in-process sets torch's thread count (its ``cpu_threads`` parameter, default 1):
    give the next test module back the count it had, so its timings do not depend on test order."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
