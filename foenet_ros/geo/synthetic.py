"""A deterministic procedural "town" orthophoto: the map every test and demo uses when real data is absent.

What it must be good for:

* **local features** (SIFT/ORB): building corners, gable roofs with ridges, shadows, cars,
  lane markings, tree crowns, field stripes -- plenty of corners at 0.3 m/px;
* **retrieval**: no two places look alike. Road districts have their own orientation and
  spacing, the town density falls off from two centres, fields are Voronoi cells with their
  own crop colour and furrow direction, a river meanders across, every building draws its
  own size, roof colour and height;
* **speed**: 600 x 450 m at 0.3 m (2000 x 1500 px) in well under 2 s on one core.

Everything is drawn with OpenCV in pixel space and a single ``numpy`` random generator, so
the same ``seed`` always gives the same bytes.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import cv2
import numpy as np
from affine import Affine

from .crs import GeoFrame
from .raster import MapRaster

log = logging.getLogger(__name__)

#: default place: Zurich (UTM zone 32N, EPSG:32632); any lon/lat works
DEFAULT_LONLAT = (8.5417, 47.3769)

# RGB palettes (0..255)
_FIELD_COLOURS = np.array(
    [
        [96, 128, 60], [120, 150, 70], [150, 160, 85], [176, 164, 104], [190, 175, 120],
        [140, 110, 75], [110, 95, 70], [70, 100, 50], [160, 180, 100], [200, 190, 140],
        [85, 115, 55], [130, 140, 70],
    ],
    dtype=np.float32,
)
_ROOF_COLOURS = np.array(
    [
        [170, 70, 50], [150, 60, 45], [190, 100, 70], [120, 120, 125], [80, 80, 88],
        [200, 200, 195], [110, 80, 60], [90, 110, 130], [150, 140, 120], [60, 70, 65],
        [215, 210, 200], [130, 45, 40],
    ],
    dtype=np.float32,
)
_CAR_COLOURS = np.array(
    [[230, 230, 230], [20, 20, 25], [150, 150, 155], [160, 20, 25], [30, 60, 140], [200, 200, 60], [90, 90, 95]],
    dtype=np.float32,
)


def synthetic_map(
    size_m: Sequence[float] = (600.0, 450.0),
    gsd_m: float = 0.3,
    seed: int = 0,
    lonlat: Sequence[float] = DEFAULT_LONLAT,
    name: str | None = None,
) -> MapRaster:
    """Generate a georeferenced procedural town orthophoto.

    Args:
        size_m: ``(width_m, height_m)`` ground extent.
        gsd_m: metres per pixel.
        seed: random seed; the same seed gives the same map (bit-exact).
        lonlat: WGS84 ``(lon, lat)`` of the map centre; the frame is its UTM zone.
        name: raster name (default ``"synthetic-s{seed}"``).

    Returns:
        A :class:`MapRaster` (RGB uint8, all valid, north-up, in the UTM zone of ``lonlat``).
    """
    width = max(16, int(round(size_m[0] / gsd_m)))
    height = max(16, int(round(size_m[1] / gsd_m)))
    rng = np.random.default_rng(seed)
    painter = _Painter(width, height, gsd_m, rng)
    img = painter.paint()

    frame = GeoFrame.for_lonlat(lonlat[0], lonlat[1])
    cx, cy = frame.from_lonlat(lonlat[0], lonlat[1])
    # snap the corner to whole centimetres so transforms print nicely and compare exactly
    xmin = round(cx - width * gsd_m / 2.0, 2)
    ymax = round(cy + height * gsd_m / 2.0, 2)
    transform = Affine(gsd_m, 0.0, xmin, 0.0, -gsd_m, ymax)
    return MapRaster(
        image=img,
        valid=np.ones((height, width), dtype=bool),
        transform=transform,
        frame=frame,
        gsd_m=float(gsd_m),
        name=name or f"synthetic-s{seed}",
    )


# ---------------------------------------------------------------------------------------------
def _fbm(rng: np.random.Generator, shape: tuple[int, int], cells: Sequence[float], weights: Sequence[float]) -> np.ndarray:
    """Multi-octave value noise in roughly ``[-1, 1]``: random grids upsampled with cubic interpolation."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32)
    total = 0.0
    for cell, wt in zip(cells, weights):
        gh, gw = max(2, int(math.ceil(h / cell)) + 2), max(2, int(math.ceil(w / cell)) + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        up = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
        out += wt * up[:h, :w]
        total += wt
    return out / (total * 1.5)


class _Painter:
    """Draws the town layer by layer into a float32 RGB canvas (pixel units)."""

    def __init__(self, width: int, height: int, gsd_m: float, rng: np.random.Generator) -> None:
        self.w, self.h, self.gsd, self.rng = width, height, gsd_m, rng
        self.ppm = 1.0 / gsd_m  # pixels per metre
        self.occupied = np.zeros((height, width), dtype=np.uint8)  # roads, water, buildings
        self.shadow = np.zeros((height, width), dtype=np.uint8)
        self.street_segments: list[tuple[np.ndarray, np.ndarray, float]] = []  # (p0, p1, width px)

    def px(self, metres: float) -> float:
        return metres * self.ppm

    # ------------------------------------------------------------------ layers
    def paint(self) -> np.ndarray:
        rng = self.rng
        # town density: two centres (a town and a village) falling off smoothly
        W_m, H_m = self.w * self.gsd, self.h * self.gsd
        self.centres = [
            (rng.uniform(0.3, 0.7) * W_m, rng.uniform(0.3, 0.7) * H_m, rng.uniform(0.2, 0.28) * max(W_m, H_m)),
            (rng.uniform(0.0, 1.0) * W_m, rng.uniform(0.0, 1.0) * H_m, rng.uniform(0.1, 0.18) * max(W_m, H_m)),
        ]
        canvas = self._fields()
        self._river(canvas)
        self._roads(canvas)
        self._buildings(canvas)
        self._clutter(canvas)
        self._trees(canvas)
        self._cars(canvas)
        # sensor-like finish: fine grain + slight blur (real orthophotos are never pixel-sharp)
        grain = self.rng.standard_normal((self.h, self.w)).astype(np.float32) * 3.0
        canvas += grain[:, :, None]
        canvas = cv2.GaussianBlur(canvas, (0, 0), 0.6)
        return np.clip(canvas, 0, 255).astype(np.uint8)

    def density(self, x_m: np.ndarray | float, y_m: np.ndarray | float) -> np.ndarray | float:
        """Town density in [0, 1] at ground metres (x right, y down the image)."""
        d = 0.0
        for cx, cy, sig in self.centres:
            d = np.maximum(d, np.exp(-((x_m - cx) ** 2 + (y_m - cy) ** 2) / (2 * sig**2)))
        return d

    def _fields(self) -> np.ndarray:
        rng, h, w = self.rng, self.h, self.w
        # Voronoi fields: crisp straight boundaries like real parcels (cv2.Subdiv2D facets)
        n_fields = max(12, int(self.w * self.h * self.gsd**2 / 3500.0))
        subdiv = cv2.Subdiv2D((-w, -h, 3 * w, 3 * h))
        seeds = rng.uniform([0, 0], [w, h], size=(n_fields, 2)).astype(np.float32)
        for p in seeds:
            subdiv.insert((float(p[0]), float(p[1])))
        facets, centres = subdiv.getVoronoiFacetList([])
        labels = np.zeros((h, w), np.int32)
        for i, facet in enumerate(facets):
            cv2.fillConvexPoly(labels, np.round(facet).astype(np.int32), int(i))
        n_fields = len(facets)
        colours = _FIELD_COLOURS[rng.integers(0, len(_FIELD_COLOURS), n_fields)]
        colours = colours * rng.uniform(0.85, 1.15, (n_fields, 1)).astype(np.float32)
        kind = rng.choice(3, n_fields, p=[0.45, 0.35, 0.2])  # 0 furrowed crop, 1 meadow, 2 woodland
        theta = rng.uniform(0, np.pi, n_fields).astype(np.float32)
        period = (rng.uniform(1.5, 5.0, n_fields) * self.ppm).astype(np.float32)
        amp = np.where(kind == 0, rng.uniform(8, 22, n_fields), 0.0).astype(np.float32)

        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = (np.cos(theta)[labels] * xx + np.sin(theta)[labels] * yy) * (2 * np.pi / period[labels])
        stripes = amp[labels] * np.sin(phase)
        del phase, xx, yy
        broad = _fbm(rng, (h, w), [self.px(60), self.px(20), self.px(6)], [1.0, 0.6, 0.35])
        fine = _fbm(rng, (h, w), [self.px(2.5), self.px(1.0), max(2.0, self.px(0.6))], [1.0, 0.7, 0.5])
        canvas = colours[labels] * (1.0 + 0.18 * broad + 0.16 * fine)[..., None]
        canvas += stripes[..., None]
        # woodland: dark blobby canopy texture
        wood = (kind == 2)[labels]
        if wood.any():
            canopy = _fbm(rng, (h, w), [self.px(4), self.px(1.5)], [1.0, 0.8])
            tone = np.stack([55 + 30 * canopy, 85 + 35 * canopy, 45 + 20 * canopy], axis=-1)
            canvas[wood] = tone[wood]
        # darker field boundaries (hedges / tracks) where labels change
        edge = (np.diff(labels, axis=1, prepend=labels[:, :1]) != 0) | (np.diff(labels, axis=0, prepend=labels[:1]) != 0)
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        canvas[edge] *= 0.7
        return canvas.astype(np.float32)

    def _river(self, canvas: np.ndarray) -> None:
        rng = self.rng
        horizontal = rng.random() < 0.5
        L = self.w if horizontal else self.h
        other = self.h if horizontal else self.w
        t = np.linspace(-0.05 * L, 1.05 * L, 200)
        base = rng.uniform(0.2, 0.8) * other
        off = base + sum(
            rng.uniform(0.03, 0.09) * other * np.sin(2 * np.pi * t / (rng.uniform(0.3, 0.9) * L) + rng.uniform(0, 6.3))
            for _ in range(3)
        )
        pts = np.column_stack([t, off] if horizontal else [off, t]).astype(np.int32)
        width = int(self.px(rng.uniform(14, 22)))
        bank = np.zeros((self.h, self.w), np.uint8)
        cv2.polylines(bank, [pts], False, 255, width + int(self.px(10)))
        water = np.zeros((self.h, self.w), np.uint8)
        cv2.polylines(water, [pts], False, 255, width)
        bank_m = (bank > 0) & (water == 0)
        ripple = _fbm(rng, (self.h, self.w), [self.px(8), self.px(2)], [1.0, 0.5])
        canvas[bank_m] = np.stack([60 + 25 * ripple, 90 + 30 * ripple, 50 + 20 * ripple], -1)[bank_m]
        wm = water > 0
        canvas[wm] = np.stack([50 + 10 * ripple, 85 + 12 * ripple, 95 + 15 * ripple], -1)[wm]
        self.occupied |= water
        self.water = water

    def _road_polyline(self, p0: np.ndarray, p1: np.ndarray, bend: float) -> np.ndarray:
        """A gently curved polyline from p0 to p1 (pixels); ``bend`` = max lateral offset in pixels."""
        n = 24
        t = np.linspace(0, 1, n)[:, None]
        d = p1 - p0
        normal = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
        lateral = bend * np.sin(np.pi * t) * np.sin(2 * np.pi * t * self.rng.uniform(0.5, 1.5) + self.rng.uniform(0, 6.3))
        return p0 + t * d + lateral * normal

    def _draw_road(self, canvas: np.ndarray, pts: np.ndarray, width_px: float, major: bool, tone: float) -> None:
        ipts = np.round(pts).astype(np.int32)
        mask = np.zeros((self.h, self.w), np.uint8)
        wpx = max(2, int(round(width_px)))
        cv2.polylines(mask, [ipts], False, 255, wpx + 2)
        canvas[mask > 0] = (canvas[mask > 0] * 0.3 + np.float32(tone * 0.7 * 0.85))  # kerb / verge blend
        mask[:] = 0
        cv2.polylines(mask, [ipts], False, 255, wpx)
        m = mask > 0
        canvas[m] = np.float32(tone) + self.rng.normal(0, 2.0, (int(m.sum()), 1)).astype(np.float32)
        self.occupied |= mask
        if major:  # dashed centre line: a strong local feature
            for a, b in zip(ipts[:-1], ipts[1:]):
                seg = b - a
                L = float(np.hypot(*seg))
                dash, gap = self.px(3.0), self.px(6.0)
                s = 0.0
                while s + dash < L:
                    q0 = a + seg * (s / L)
                    q1 = a + seg * ((s + dash) / L)
                    cv2.line(canvas, tuple(int(v) for v in q0), tuple(int(v) for v in q1), (235, 235, 225), max(1, int(self.px(0.2))))
                    s += dash + gap
        for a, b in zip(pts[:-1], pts[1:]):
            self.street_segments.append((a, b, width_px))

    def _roads(self, canvas: np.ndarray) -> None:
        rng = self.rng
        diag = math.hypot(self.w, self.h)
        # 3-4 long main roads through random points at random angles
        for _ in range(int(rng.integers(2, 4))):
            c = rng.uniform([0.1 * self.w, 0.1 * self.h], [0.9 * self.w, 0.9 * self.h])
            ang = rng.uniform(0, np.pi)
            d = np.array([math.cos(ang), math.sin(ang)]) * diag
            pts = self._road_polyline(c - d, c + d, self.px(rng.uniform(10, 40)))
            self._draw_road(canvas, pts, self.px(rng.uniform(8, 12)), True, rng.uniform(70, 95))
        # street districts: each with its own orientation and irregular spacing, kept where the town is dense
        for cx_m, cy_m, sig in self.centres:
            for _ in range(1):
                ang = rng.uniform(0, np.pi / 2)
                u = np.array([math.cos(ang), math.sin(ang)])
                v = np.array([-u[1], u[0]])
                centre = np.array([cx_m + rng.normal(0, sig * 0.4), cy_m + rng.normal(0, sig * 0.4)]) * self.ppm
                span = 1.6 * sig * self.ppm
                for axis, other in ((u, v), (v, u)):
                    s = -span
                    while s < span:
                        s += self.px(rng.uniform(45, 95))
                        # walk along the line, keep the parts inside the dense town
                        ts = np.linspace(-span, span, 60)
                        line = centre + s * other + ts[:, None] * axis
                        xm, ym = line[:, 0] / self.ppm, line[:, 1] / self.ppm
                        keep = self.density(xm, ym) * rng.uniform(0.85, 1.15, len(ts)) > 0.4
                        self._draw_runs(canvas, line, keep, self.px(rng.uniform(4.5, 7.0)), rng.uniform(85, 125))
        # dirt tracks across the fields
        for _ in range(int(rng.integers(4, 8))):
            p0 = rng.uniform([0, 0], [self.w, self.h])
            ang = rng.uniform(0, 2 * np.pi)
            p1 = p0 + np.array([math.cos(ang), math.sin(ang)]) * self.px(rng.uniform(80, 250))
            pts = np.round(self._road_polyline(p0, p1, self.px(rng.uniform(3, 15)))).astype(np.int32)
            cv2.polylines(canvas, [pts], False, (150, 130, 100), max(2, int(self.px(2.5))))

    def _draw_runs(self, canvas, line, keep, width_px, tone) -> None:
        start = None
        for i, k in enumerate(list(keep) + [False]):
            if k and start is None:
                start = i
            elif not k and start is not None:
                if i - start >= 3:
                    self._draw_road(canvas, line[start:i], width_px, False, tone)
                start = None

    def _buildings(self, canvas: np.ndarray) -> None:
        rng = self.rng
        sun = np.array([0.55, -0.45])  # shadow direction in pixels per metre of height (towards NE)
        roofs: list[tuple[np.ndarray, np.ndarray, int]] = []
        order = rng.permutation(len(self.street_segments))
        for idx in order:
            a, b, road_w = self.street_segments[idx]
            d = b - a
            L = float(np.hypot(*d))
            if L < 1:
                continue
            u = d / L
            n = np.array([-u[1], u[0]])
            for side, row in ((-1.0, 0), (1.0, 0), (-1.0, 1), (1.0, 1)):
                s = rng.uniform(0, self.px(6))
                while s < L:
                    bw = self.px(rng.uniform(7, 18))  # along the street
                    bd = self.px(rng.uniform(7, 14))  # depth
                    # second row: backyard houses / sheds behind the street front
                    setback = road_w / 2 + self.px(rng.uniform(2, 7) + row * rng.uniform(17, 24))
                    c = a + u * (s + bw / 2) + n * side * (setback + bd / 2)
                    s += bw + self.px(rng.uniform(2, 9))
                    dens = float(self.density(c[0] / self.ppm, c[1] / self.ppm))
                    if rng.random() > (0.15 + 0.9 * dens) * (0.6 if row else 1.0):
                        continue
                    if rng.random() < 0.06:  # occasional big hall: varied footprint sizes
                        bw, bd = bw * rng.uniform(2, 3.5), bd * rng.uniform(1.5, 2.5)
                        c = a + u * (s - bw / 2) + n * side * (setback + bd / 2)
                    jitter = rng.normal(0, 0.06)
                    uu = np.array([u[0] * math.cos(jitter) - u[1] * math.sin(jitter), u[0] * math.sin(jitter) + u[1] * math.cos(jitter)])
                    nn = np.array([-uu[1], uu[0]])
                    corners = np.array([c + sx * uu * bw / 2 + sy * nn * bd / 2 for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
                    if not self._free(corners):
                        continue
                    ic = np.round(corners).astype(np.int32)
                    cv2.fillConvexPoly(self.occupied, ic, 255)
                    height_m = rng.uniform(3, 14) * (1 + dens)
                    off = sun * height_m * self.ppm * 0.6
                    cv2.fillConvexPoly(self.shadow, np.round(corners + off).astype(np.int32), 255)
                    roofs.append((corners, uu, int(rng.integers(0, 1 << 30))))
        # shadows darken the ground; roofs (drawn after) stay lit
        sm = self.shadow > 0
        canvas[sm] *= 0.45
        for corners, uu, rs in roofs:
            self._roof(canvas, corners, np.random.default_rng(rs))

    def _free(self, corners: np.ndarray) -> bool:
        c = corners.mean(axis=0)
        pts = np.vstack([corners, c, (corners + c) / 2])
        xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        if (xi < 0).any() or (yi < 0).any() or (xi >= self.w).any() or (yi >= self.h).any():
            return False
        return not self.occupied[yi, xi].any()

    def _roof(self, canvas: np.ndarray, corners: np.ndarray, rng: np.random.Generator) -> None:
        colour = _ROOF_COLOURS[rng.integers(0, len(_ROOF_COLOURS))] * rng.uniform(0.8, 1.15)
        ic = np.round(corners).astype(np.int32)
        style = rng.random()
        if style < 0.6:  # gable roof: two halves along the long axis, lit and shaded, with a ridge
            e01 = np.linalg.norm(corners[1] - corners[0])
            e12 = np.linalg.norm(corners[2] - corners[1])
            if e01 >= e12:
                m0, m1 = (corners[0] + corners[3]) / 2, (corners[1] + corners[2]) / 2
                half_a = np.array([corners[0], corners[1], m1, m0])
                half_b = np.array([m0, m1, corners[2], corners[3]])
            else:
                m0, m1 = (corners[0] + corners[1]) / 2, (corners[3] + corners[2]) / 2
                half_a = np.array([corners[0], m0, m1, corners[3]])
                half_b = np.array([m0, corners[1], corners[2], m1])
            cv2.fillConvexPoly(canvas, np.round(half_a).astype(np.int32), tuple(float(v) for v in np.clip(colour * 1.12, 0, 255)))
            cv2.fillConvexPoly(canvas, np.round(half_b).astype(np.int32), tuple(float(v) for v in colour * 0.78))
            cv2.line(canvas, tuple(np.round(m0).astype(int)), tuple(np.round(m1).astype(int)), tuple(float(v) for v in colour * 0.5), max(1, int(self.px(0.3))))
        elif style < 0.85:  # hip roof: four triangles meeting at a short ridge
            cv2.fillConvexPoly(canvas, ic, tuple(float(v) for v in colour))
            c = corners.mean(axis=0)
            for k, shade in zip(range(4), (1.15, 0.95, 0.7, 0.9)):
                tri = np.array([corners[k], corners[(k + 1) % 4], c])
                cv2.fillConvexPoly(canvas, np.round(tri).astype(np.int32), tuple(float(v) for v in np.clip(colour * shade, 0, 255)))
        else:  # flat roof with a parapet and rooftop units
            cv2.fillConvexPoly(canvas, ic, tuple(float(v) for v in colour * 0.75))
            inner = corners.mean(axis=0) + (corners - corners.mean(axis=0)) * 0.85
            cv2.fillConvexPoly(canvas, np.round(inner).astype(np.int32), tuple(float(v) for v in colour))
            for _ in range(int(rng.integers(1, 4))):
                t = rng.uniform(0.2, 0.8, 2)
                p = inner[0] + t[0] * (inner[1] - inner[0]) + t[1] * (inner[3] - inner[0])
                r = self.px(rng.uniform(0.8, 1.8))
                cv2.rectangle(canvas, tuple(np.round(p - r).astype(int)), tuple(np.round(p + r).astype(int)), (235, 235, 235) if rng.random() < 0.5 else (60, 60, 60), -1)
        cv2.polylines(canvas, [ic], True, tuple(float(v) for v in colour * 0.45), 1)

    def _clutter(self, canvas: np.ndarray) -> None:
        """Shrubs, stones, bales and bare patches: small blobs that give open land some corners."""
        rng = self.rng
        n = int(self.w * self.h * self.gsd**2 / 25.0)
        pts = rng.uniform([0, 0], [self.w, self.h], size=(n, 2))
        xi, yi = pts[:, 0].astype(int), pts[:, 1].astype(int)
        pts = pts[self.occupied[yi, xi] == 0]
        radii = np.maximum(1, np.round(self.px(rng.uniform(0.3, 0.9, len(pts))))).astype(int)
        tones = rng.choice([0.55, 0.7, 1.3, 1.5], len(pts))
        for (x, y), r, t in zip(pts, radii, tones):
            ix, iy = int(x), int(y)
            col = canvas[iy, ix] * t
            cv2.circle(canvas, (ix, iy), int(r), tuple(float(v) for v in np.clip(col, 0, 255)), -1)

    def _trees(self, canvas: np.ndarray) -> None:
        rng = self.rng
        n = int(self.w * self.h * self.gsd**2 / 150.0)
        pts = rng.uniform([0, 0], [self.w, self.h], size=(n * 2, 2))
        dens = self.density(pts[:, 0] / self.ppm, pts[:, 1] / self.ppm)
        # gardens in the town and hedgerows in the country, not in the dense core
        keep = rng.random(len(pts)) < 0.35 + 0.5 * np.sin(np.pi * dens)
        pts = pts[keep][:n]
        xi, yi = pts[:, 0].astype(int), pts[:, 1].astype(int)
        pts = pts[self.occupied[yi, xi] == 0]
        radii = self.px(rng.uniform(1.5, 4.5, len(pts)))
        shade = rng.uniform(0.7, 1.2, len(pts))
        shadow_layer = np.zeros((self.h, self.w), np.uint8)
        for (x, y), r in zip(pts, radii):
            cv2.circle(shadow_layer, (int(x + 0.9 * r), int(y - 0.7 * r)), int(r), 255, -1)
        canvas[shadow_layer > 0] *= 0.55
        for (x, y), r, s in zip(pts, radii, shade):
            base = np.array([50, 85, 40]) * s
            cv2.circle(canvas, (int(x), int(y)), int(r), tuple(float(v) for v in base), -1)
            cv2.circle(canvas, (int(x - 0.25 * r), int(y - 0.25 * r)), max(1, int(r * 0.5)), tuple(float(v) for v in base * 1.35), -1)

    def _cars(self, canvas: np.ndarray) -> None:
        rng = self.rng
        for a, b, road_w in self.street_segments:
            d = b - a
            L = float(np.hypot(*d))
            if L < 1 or rng.random() < 0.8:
                continue
            u = d / L
            n = np.array([-u[1], u[0]])
            for _ in range(int(rng.integers(0, 2))):
                c = a + u * rng.uniform(0, L) + n * rng.choice([-1, 1]) * road_w * 0.3
                corners = np.array([c + sx * u * self.px(2.3) + sy * n * self.px(1.0) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
                colour = _CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS))]
                cv2.fillConvexPoly(canvas, np.round(corners).astype(np.int32), tuple(float(v) for v in colour))
