"""The local metric frame (a UTM zone) and WGS84 conversions at the edges.

Everything inside foenet_ros works in one *local metric frame* per map: a UTM
zone (``x`` = easting, ``y`` = northing, metres, ``z`` up). Geographic
coordinates (WGS84 lon/lat, degrees) appear only where data enters or leaves
(map sidecars, GNSS priors, ``GeoEstimate.lat/lon``, NavSatFix).

``GeoFrame`` wraps a :class:`pyproj.CRS` and caches the two transformers it
needs, so converting thousands of points costs one vectorised pyproj call.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Union

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from ..errors import CRSMismatchError

log = logging.getLogger(__name__)

ArrayLike = Union[float, np.ndarray]

WGS84 = CRS.from_epsg(4326)


def utm_epsg_for_lonlat(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing ``(lon, lat)`` (326zz north, 327zz south).

    Uses the regular 6-degree zones (no Norway/Svalbard exceptions): a map only needs
    *a* conformal metric frame near it, and the regular zone is what every GIS expects.
    """
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 84.0:
        raise CRSMismatchError(
            f"no UTM zone for lon={lon}, lat={lat}: UTM covers latitudes -80..84 deg; "
            "pass an explicit frame (e.g. GeoFrame('EPSG:3413') for polar maps)"
        )
    zone = int(math.floor((((lon + 180.0) % 360.0)) / 6.0)) + 1
    zone = min(max(zone, 1), 60)
    return (32600 if lat >= 0 else 32700) + zone


class GeoFrame:
    """A local metric frame: a projected CRS in metres (normally a UTM zone).

    Args:
        crs: anything :meth:`pyproj.CRS.from_user_input` accepts (``"EPSG:32645"``,
            an EPSG int, WKT, a ``pyproj.CRS``, a ``rasterio.crs.CRS``).

    Raises:
        CRSMismatchError: the CRS is unknown, or it is geographic (degrees are not a metric frame).
    """

    def __init__(self, crs: Any) -> None:
        try:
            if hasattr(crs, "to_wkt") and not isinstance(crs, CRS):  # rasterio.crs.CRS
                crs = crs.to_wkt()
            self._crs = CRS.from_user_input(crs)
        except CRSError as exc:
            raise CRSMismatchError(f"unknown CRS {crs!r}: {exc}") from exc
        if not self._crs.is_projected:
            raise CRSMismatchError(
                f"CRS {self._crs.name!r} is not a projected metric CRS; the local frame must be in "
                "metres (use GeoFrame.for_lonlat(lon, lat) for the UTM zone of a place)"
            )
        self._to_ll: Transformer | None = None
        self._from_ll: Transformer | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_lonlat(cls, lon: float, lat: float) -> "GeoFrame":
        """The UTM frame (WGS84 datum) whose zone contains ``(lon, lat)`` (degrees)."""
        return cls(f"EPSG:{utm_epsg_for_lonlat(float(lon), float(lat))}")

    @classmethod
    def from_json(cls, d: dict) -> "GeoFrame":
        """Inverse of :meth:`to_json`."""
        if "epsg" in d and d["epsg"] is not None:
            return cls(f"EPSG:{int(d['epsg'])}")
        if "wkt" in d:
            return cls(d["wkt"])
        raise CRSMismatchError(f"GeoFrame JSON needs 'epsg' or 'wkt', got keys {sorted(d)}")

    # ------------------------------------------------------------------ properties
    @property
    def crs(self) -> CRS:
        """The underlying :class:`pyproj.CRS`."""
        return self._crs

    @property
    def epsg(self) -> int | None:
        """EPSG code, or ``None`` for a custom CRS."""
        return self._crs.to_epsg()

    @property
    def name(self) -> str:
        return self._crs.name

    def to_json(self) -> dict:
        """``{"epsg": 32645, "name": ...}`` (or ``{"wkt": ...}`` for a CRS without an EPSG code)."""
        epsg = self.epsg
        if epsg is not None:
            return {"epsg": epsg, "name": self.name}
        return {"wkt": self._crs.to_wkt(), "name": self.name}

    def to_rasterio(self):
        """The frame as a ``rasterio.crs.CRS`` (for writing GeoTIFFs / warping)."""
        from rasterio.crs import CRS as RioCRS

        epsg = self.epsg
        return RioCRS.from_epsg(epsg) if epsg is not None else RioCRS.from_wkt(self._crs.to_wkt())

    # ------------------------------------------------------------------ conversions
    def to_lonlat(self, x: ArrayLike, y: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        """Frame metres ``(x, y)`` -> WGS84 ``(lon, lat)`` degrees; floats or arrays."""
        if self._to_ll is None:
            self._to_ll = Transformer.from_crs(self._crs, WGS84, always_xy=True)
        return _apply(self._to_ll, x, y)

    def from_lonlat(self, lon: ArrayLike, lat: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        """WGS84 ``(lon, lat)`` degrees -> frame metres ``(x, y)``; floats or arrays."""
        if self._from_ll is None:
            self._from_ll = Transformer.from_crs(WGS84, self._crs, always_xy=True)
        return _apply(self._from_ll, lon, lat)

    def true_north_azimuth_deg(self, x: ArrayLike, y: ArrayLike) -> ArrayLike:
        """Grid azimuth of true north at frame points (degrees, clockwise from grid north).

        UTM grid north and true north differ by the meridian convergence (0 on the zone's central
        meridian, up to ~3 deg at its edges in mid latitudes). Our ``heading_deg`` values are
        *true* compass headings; :class:`CameraPose` headings are in the frame's grid. Convert with
        :meth:`grid_to_true_heading` / :meth:`true_to_grid_heading`.
        """
        lon, lat = self.to_lonlat(x, y)
        dlat = 1e-5  # ~1 m
        x2, y2 = self.from_lonlat(lon, np.asarray(lat) + dlat)
        az = np.degrees(np.arctan2(np.asarray(x2) - np.asarray(x), np.asarray(y2) - np.asarray(y)))
        return float(az) if np.ndim(az) == 0 else az

    def grid_to_true_heading(self, heading_grid_deg: ArrayLike, x: ArrayLike, y: ArrayLike) -> ArrayLike:
        """Heading clockwise from the frame's grid north -> heading clockwise from true north, [0, 360)."""
        h = (np.asarray(heading_grid_deg) - self.true_north_azimuth_deg(x, y)) % 360.0
        return float(h) if np.ndim(h) == 0 else h

    def true_to_grid_heading(self, heading_true_deg: ArrayLike, x: ArrayLike, y: ArrayLike) -> ArrayLike:
        """Heading clockwise from true north -> heading clockwise from the frame's grid north, [0, 360)."""
        h = (np.asarray(heading_true_deg) + self.true_north_azimuth_deg(x, y)) % 360.0
        return float(h) if np.ndim(h) == 0 else h

    def transformer_from(self, crs: Any) -> Transformer:
        """A ``Transformer`` from another CRS into this frame (``always_xy``)."""
        try:
            src = CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") and not isinstance(crs, CRS) else crs)
        except CRSError as exc:
            raise CRSMismatchError(f"unknown CRS {crs!r}: {exc}") from exc
        return Transformer.from_crs(src, self._crs, always_xy=True)

    def require_same(self, other: "GeoFrame", what: str = "input") -> None:
        """Raise :class:`CRSMismatchError` unless ``other`` is the same frame."""
        if other != self:
            raise CRSMismatchError(
                f"{what} is in {other.name} ({other.epsg}) but this map/index uses {self.name} ({self.epsg}); "
                "rebuild it in the same frame or reproject it (read_map(..., frame=...))"
            )

    # ------------------------------------------------------------------ dunder
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeoFrame):
            return NotImplemented
        e1, e2 = self.epsg, other.epsg
        if e1 is not None and e2 is not None:
            return e1 == e2
        return self._crs == other._crs

    def __hash__(self) -> int:
        return hash(self.epsg if self.epsg is not None else self._crs.to_wkt())

    def __repr__(self) -> str:
        epsg = self.epsg
        return f"GeoFrame('EPSG:{epsg}')" if epsg is not None else f"GeoFrame({self.name!r})"

    def __getstate__(self) -> dict:  # transformers are not picklable: rebuild lazily
        return {"wkt": self._crs.to_wkt()}

    def __setstate__(self, state: dict) -> None:
        self._crs = CRS.from_wkt(state["wkt"])
        self._to_ll = None
        self._from_ll = None


def _apply(tr: Transformer, a: ArrayLike, b: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    scalar = np.ndim(a) == 0 and np.ndim(b) == 0
    u, v = tr.transform(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    if scalar:
        return float(u), float(v)
    return np.asarray(u), np.asarray(v)
