"""What ``/diagnostics`` says, as a pure function of the node's state (testable without ROS).

Rules of the ``<node>: localizer`` status (every rule that fires adds its sentence; the worst
level wins; the message starts with the worst sentences):

=====  ======================================================================================
ERROR  no index loaded (the reason, and the retry period)
ERROR  an index change was refused (the one-line reason); the last good index is still in use
ERROR  starved: frames keep arriving but none was localised for ``starved_s`` (inference stuck)
WARN   no camera frame for ``frame_timeout_s`` (or none at all since start)
WARN   camera_info_topic is set but no valid CameraInfo for ``camera_info_timeout_s``
WARN   the last fix is older than ``fix_timeout_s`` while frames arrive, or the last frame was lost
WARN   a localisation error in the last ``error_window_s``
WARN   frames evidently lost in transport (stamp gaps > ``lost_frames_warn`` of the stream)
WARN   frames out of order / several publishers on the camera topic / a time jump (recent)
OK     otherwise: the last status, sigma and score
=====  ======================================================================================

All ages are measured on the steady (monotonic) clock, so the rules work the same with
``use_sim_time`` before ``/clock`` starts and after a bag ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class HealthLimits:
    """Thresholds (node parameters of the same names)."""

    frame_timeout_s: float = 2.0
    camera_info_timeout_s: float = 5.0
    fix_timeout_s: float = 5.0
    starved_s: float = 10.0
    error_window_s: float = 10.0
    lost_frames_warn: float = 0.1


@dataclass(frozen=True)
class HealthState:
    """A snapshot of the node (ages in seconds on the steady clock; ``inf`` = never).

    Attributes:
        index_loaded: a Localizer is in use.
        index_error: why no index is loaded / why the last change was refused ("" = none).
        index_retry_s: retry period (for the message).
        uptime_s: time since the node started.
        frame_age_s: since the last camera frame arrived.
        processed_age_s: since the last frame was localised.
        camera_info_expected: a CameraInfo topic is configured.
        camera_info_age_s: since the last *valid* CameraInfo.
        fix_age_s: since the last published fix (verified/tracked).
        error_age_s, last_error: the last localisation error.
        loss_ratio: share of frames lost in transport (stamp gaps).
        disorder_age_s: since the last out-of-order frame / time jump; disorder: what it was.
        publishers: publishers on the camera topic (0 = unknown).
        last_status, last_sigma_m, last_score: the last estimate ("" = none yet).
    """

    index_loaded: bool
    index_error: str = ""
    index_retry_s: float = 5.0
    uptime_s: float = 0.0
    frame_age_s: float = math.inf
    processed_age_s: float = math.inf
    camera_info_expected: bool = False
    camera_info_age_s: float = math.inf
    fix_age_s: float = math.inf
    error_age_s: float = math.inf
    last_error: str = ""
    loss_ratio: float = 0.0
    disorder_age_s: float = math.inf
    disorder: str = ""
    publishers: int = 0
    last_status: str = ""
    last_sigma_m: float = math.nan
    last_score: float = math.nan


def assess(s: HealthState, lim: HealthLimits = HealthLimits()) -> tuple[int, str]:
    """``(level, message)`` of the localizer status (see the module docstring)."""
    found: list[tuple[int, str]] = []
    if not s.index_loaded:
        found.append((ERROR, f"index not loaded: {s.index_error} (retrying every {s.index_retry_s:.0f} s)"))
    elif s.index_error:
        found.append((ERROR, f"index change refused, still using the last good index: {s.index_error}"))
    receiving = s.frame_age_s <= lim.frame_timeout_s
    if s.index_loaded and receiving and s.processed_age_s > lim.starved_s and s.uptime_s > lim.starved_s:
        found.append((ERROR, f"starved: frames arrive but none was localised for {min(s.processed_age_s, s.uptime_s):.0f} s"))
    if not receiving and s.uptime_s > lim.frame_timeout_s:
        what = "since start" if math.isinf(s.frame_age_s) else f"for {s.frame_age_s:.1f} s"
        found.append((WARN, f"no camera frame {what}"))
    if s.camera_info_expected and s.camera_info_age_s > lim.camera_info_timeout_s and s.uptime_s > lim.camera_info_timeout_s:
        what = "none received" if math.isinf(s.camera_info_age_s) else f"none valid for {s.camera_info_age_s:.0f} s"
        found.append((WARN, f"camera_info: {what}"))
    if receiving and s.index_loaded and s.fix_age_s > lim.fix_timeout_s and s.uptime_s > lim.fix_timeout_s:
        what = "no fix yet" if math.isinf(s.fix_age_s) else f"last fix {s.fix_age_s:.1f} s ago"
        found.append((WARN, f"{what} (last status: {s.last_status or 'none'})"))
    elif receiving and s.last_status == "lost":
        found.append((WARN, "lost: no position for the last frame"))
    if s.error_age_s <= lim.error_window_s:
        found.append((WARN, f"localisation error: {s.last_error}"))
    if receiving and s.loss_ratio > lim.lost_frames_warn:
        found.append((WARN, f"{100 * s.loss_ratio:.0f} % of camera frames lost in transport (stamp gaps): use a "
                            "RELIABLE camera publisher or the Fast DDS profile config/fastdds_large_frames.xml on both sides"))
    if s.disorder_age_s <= lim.error_window_s:
        found.append((WARN, s.disorder))
    if s.publishers > 1:
        found.append((WARN, f"{s.publishers} publishers on the camera topic: frames are merged, out-of-order ones dropped"))
    if not found:
        if not s.last_status:
            return OK, "index loaded; waiting for frames"
        return OK, f"{s.last_status}: sigma {s.last_sigma_m:.1f} m, score {s.last_score:.2f}"
    found.sort(key=lambda f: -f[0])
    return found[0][0], "; ".join(m for _, m in found)
