"""Flight trajectories for the simulator: lawn-mower survey, waypoint files, random smooth paths.

All positions are in the map's local metric frame (``geo.GeoFrame``: x = easting, y = northing,
metres). A trajectory is sampled at the camera rate into :class:`FlightState` rows with
altitude profile and a smooth attitude wobble (pitch/roll) and yaw noise on top of the heading
of travel, as a multicopter flying a survey shows them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

Bounds = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax (metres)


@dataclass(frozen=True)
class FlightState:
    """The true state at one camera frame: time (s), position (m, map frame), altitude above ground (m), attitude (deg)."""

    t_s: float
    x: float
    y: float
    alt_m: float
    heading_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass(frozen=True)
class MotionConfig:
    """How the drone moves between waypoints.

    ``speed_mps=None`` spreads the frames evenly over the whole path. The altitude follows
    ``alt_m * (1 + alt_variation * wave)``; pitch/roll wobble and yaw noise are smooth random
    signals with the given amplitudes (degrees, ~1 sigma) and a period of a few seconds.
    """

    alt_m: float = 120.0
    alt_variation: float = 0.05
    speed_mps: float | None = None
    pitch_wobble_deg: float = 2.0
    roll_wobble_deg: float = 2.0
    yaw_noise_deg: float = 3.0
    heading_smoothing_m: float = 15.0


def shrink(bounds: Bounds, margin_m: float) -> Bounds:
    """``bounds`` with ``margin_m`` taken off every side (raises ConfigError when nothing is left)."""
    xmin, ymin, xmax, ymax = bounds
    out = (xmin + margin_m, ymin + margin_m, xmax - margin_m, ymax - margin_m)
    if out[2] <= out[0] or out[3] <= out[1]:
        raise ConfigError(
            f"the map ({xmax - xmin:.0f} x {ymax - ymin:.0f} m) is too small for a camera footprint of "
            f"~{2 * margin_m:.0f} m; fly lower (--altitude-m) or use a bigger map"
        )
    return out


def lawnmower(bounds: Bounds, spacing_m: float) -> np.ndarray:
    """Back-and-forth survey lines along the longer side of ``bounds``; returns waypoints ``(N, 2)``."""
    xmin, ymin, xmax, ymax = bounds
    along_x = (xmax - xmin) >= (ymax - ymin)
    lo, hi = (ymin, ymax) if along_x else (xmin, xmax)
    n_lines = max(2, int(math.floor((hi - lo) / max(spacing_m, 1e-6))) + 1)
    offsets = np.linspace(lo, hi, n_lines)
    pts: list[tuple[float, float]] = []
    for i, o in enumerate(offsets):
        a, b = (xmin, xmax) if i % 2 == 0 else (xmax, xmin)
        pts += [(a, o), (b, o)] if along_x else [(o, a), (o, b)]
    return np.asarray(pts, dtype=np.float64)


def random_smooth(bounds: Bounds, rng: np.random.Generator, n_control: int = 6) -> np.ndarray:
    """A smooth random path through ``n_control`` random points (Catmull-Rom spline), ``(N, 2)`` waypoints."""
    xmin, ymin, xmax, ymax = bounds
    ctrl = np.column_stack([rng.uniform(xmin, xmax, n_control), rng.uniform(ymin, ymax, n_control)])
    p = np.vstack([ctrl[:1], ctrl, ctrl[-1:]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        for t in np.linspace(0, 1, 24, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                              + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    out.append(ctrl[-1])
    pts = np.asarray(out)
    return np.column_stack([np.clip(pts[:, 0], xmin, xmax), np.clip(pts[:, 1], ymin, ymax)])


def load_waypoints(path: str | Path, frame: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Waypoints from a CSV (columns ``lat,lon[,alt]`` in WGS84 or ``x,y[,alt]`` in the map frame) or GeoJSON.

    GeoJSON: LineString / MultiLineString / Point features in WGS84 (RFC 7946), an optional third
    coordinate is the altitude above ground. Returns ``(xy[N,2] map frame, alt[N] or None)``.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".geojson", ".json"):
            doc = json.loads(path.read_text())
            coords: list[Sequence[float]] = []
            feats = doc.get("features", [doc]) if doc.get("type") == "FeatureCollection" else [doc]
            for f in feats:
                g = f.get("geometry", f)
                if g["type"] == "LineString":
                    coords += g["coordinates"]
                elif g["type"] == "MultiLineString":
                    coords += [c for line in g["coordinates"] for c in line]
                elif g["type"] == "Point":
                    coords.append(g["coordinates"])
            arr = np.asarray(coords, dtype=np.float64)
            x, y = frame.from_lonlat(arr[:, 0], arr[:, 1])
            alt = arr[:, 2] if arr.shape[1] > 2 else None
        else:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            keys = {k.strip().lower(): k for k in rows[0]}
            col = lambda name: np.array([float(r[keys[name]]) for r in rows])  # noqa: E731
            if "lat" in keys and "lon" in keys:
                x, y = frame.from_lonlat(col("lon"), col("lat"))
            elif "x" in keys and "y" in keys:
                x, y = col("x"), col("y")
            else:
                raise KeyError("columns lat,lon or x,y")
            alt = col("alt") if "alt" in keys else None
    except (OSError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot read waypoints from {path}: {exc}; use a CSV with header lat,lon[,alt] (WGS84) or "
            "x,y[,alt] (map frame metres), or a GeoJSON LineString/Point features file"
        ) from exc
    xy = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    if len(xy) < 2:
        raise ConfigError(f"{path} holds {len(xy)} waypoint(s); a trajectory needs at least 2")
    return xy, alt


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, amplitude: float, period_s: float = 4.0) -> np.ndarray:
    """A smooth zero-mean random signal with std ~``amplitude``: a few sinusoids with random phases."""
    if amplitude == 0:
        return np.zeros_like(t)
    out = np.zeros_like(t)
    for k in range(3):
        f = (1.0 + rng.uniform(-0.3, 0.3)) * (k + 1) / period_s
        out += math.sqrt(2.0 / 3.0) * np.sin(2 * math.pi * f * t + rng.uniform(0, 2 * math.pi))
    return amplitude * out


def _resample(xy: np.ndarray, s_query: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    return np.column_stack([np.interp(s_query, s, xy[:, 0]), np.interp(s_query, s, xy[:, 1])])


def sample_flight(waypoints: np.ndarray, n_frames: int, rate_hz: float, motion: MotionConfig,
                  rng: np.random.Generator, waypoint_alt: np.ndarray | None = None) -> list[FlightState]:
    """Sample ``n_frames`` states at ``rate_hz`` along the polyline ``waypoints`` ``(N, 2)``.

    The heading follows the direction of travel (looked up ``heading_smoothing_m`` ahead/behind,
    so corners turn smoothly) plus yaw noise; with ``speed_mps`` set the drone flies back and
    forth along the path until the frames are used up.
    """
    if n_frames < 1 or rate_hz <= 0:
        raise ConfigError(f"need frames >= 1 and rate > 0 Hz, got {n_frames} frames at {rate_hz} Hz")
    wp = np.asarray(waypoints, dtype=np.float64)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(wp, axis=0), axis=1) > 1e-6])
    wp = wp[keep]
    alt_wp = None if waypoint_alt is None else np.asarray(waypoint_alt, dtype=np.float64)[keep]
    if len(wp) < 2:
        raise ConfigError("the trajectory has fewer than 2 distinct waypoints")
    seg = np.linalg.norm(np.diff(wp, axis=0), axis=1)
    s_wp = np.concatenate([[0.0], np.cumsum(seg)])
    length = float(s_wp[-1])
    t = np.arange(n_frames) / rate_hz
    if motion.speed_mps is None:
        s = np.linspace(0.0, length, n_frames) if n_frames > 1 else np.zeros(1)
    else:
        travelled = motion.speed_mps * t
        period = 2 * length
        s = np.mod(travelled, period)
        s = np.where(s > length, period - s, s)  # ping-pong along the path
    xy = _resample(wp, s)
    d = max(motion.heading_smoothing_m, 1e-3)
    ahead = _resample(wp, np.clip(s + d, 0, length))
    behind = _resample(wp, np.clip(s - d, 0, length))
    v = ahead - behind
    if motion.speed_mps is not None:  # flying the path backwards on the return leg
        back = np.gradient(s) < 0 if n_frames > 1 else np.zeros(1, bool)
        v[back] *= -1
    heading = np.degrees(np.arctan2(v[:, 0], v[:, 1]))  # clockwise from north
    heading = np.mod(heading + _smooth_noise(rng, t, motion.yaw_noise_deg, 6.0), 360.0)
    if alt_wp is not None:
        alt = np.interp(s, s_wp, alt_wp)
    else:
        wave = np.sin(2 * math.pi * t / max(20.0, n_frames / rate_hz / 2) + rng.uniform(0, 2 * math.pi))
        alt = motion.alt_m * (1.0 + motion.alt_variation * wave)
    pitch = _smooth_noise(rng, t, motion.pitch_wobble_deg, 3.0)
    roll = _smooth_noise(rng, t, motion.roll_wobble_deg, 3.5)
    return [FlightState(float(t[i]), float(xy[i, 0]), float(xy[i, 1]), float(alt[i]), float(heading[i]),
                        float(pitch[i]), float(roll[i])) for i in range(n_frames)]
