"""The ``~/debug_image`` picture: the camera frame next to the map around the best tile, with the
matched points drawn between them, the fine stage's overlap heatmap (where the frame overlaps the
map: why a fix was or was not accepted) as a third panel, and the estimate written on top.
Rendered only while someone subscribes (the node checks), since it costs map crops and drawing."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

_STATUS_BGR = {"verified": (60, 200, 60), "tracked": (0, 200, 255), "retrieval": (0, 140, 255), "lost": (40, 40, 230)}


def render_debug_image(frame_rgb: np.ndarray, est: Any, localizer: Any = None, max_side: int = 960, max_lines: int = 60) -> np.ndarray:
    """Side-by-side debug picture, ``uint8`` RGB ``(h, w, 3)`` with ``max(h, w) <= max_side``.

    Args:
        frame_rgb: the camera frame (RGB).
        est: the GeoEstimate for this frame.
        localizer: the Localizer that produced ``est`` (its ``last_debug`` holds the inliers and
            its ``map`` the raster to crop); without it only the annotated frame is drawn.
        max_side: longer side of the output in pixels.
        max_lines: at most this many inlier matches are drawn (evenly subsampled).
    """
    panel_h = max(64, int(max_side) // 2)
    dbg = getattr(localizer, "last_debug", None) or {}
    small = dbg.get("frame_small")
    left_src = small if isinstance(small, np.ndarray) else frame_rgb
    s_left = panel_h / left_src.shape[0]
    left = cv2.resize(left_src, (max(1, round(left_src.shape[1] * s_left)), panel_h), interpolation=cv2.INTER_AREA)
    left = cv2.cvtColor(left, cv2.COLOR_RGB2BGR)
    right = np.zeros((panel_h, panel_h, 3), np.uint8)
    lines: list[tuple[tuple[int, int], tuple[int, int]]] = []
    est_px: tuple[int, int] | None = None
    fixes = dbg.get("fixes") or []
    cands = list(getattr(est, "candidates", []) or [])
    focus = fixes[0].cand if fixes else (cands[0] if cands else None)
    raster = getattr(localizer, "map", None)
    if focus is not None and raster is not None:
        from foenet_ros.geo.raster import crop_matrix

        crop_m = float(getattr(getattr(localizer, "config", None), "crop_factor", 1.6)) * float(focus.size_m)
        img, _valid = raster.crop(focus.center_xy, crop_m, panel_h)
        right = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2BGR)
        M = crop_matrix(focus.center_xy, crop_m, panel_h)
        if fixes:
            fx = fixes[0]
            s_v = float(dbg.get("s_v", 1.0))
            pf = np.asarray(fx.pts_frame, float)
            pg = np.asarray(fx.pts_ground, float)
            if len(pf):
                sel = np.linspace(0, len(pf) - 1, min(max_lines, len(pf))).astype(int)
                # undistorted frame px -> (verification-size px) -> left panel px; pixel centres at integers
                s_total = s_left * (s_v if small is not None else 1.0)
                a = (pf[sel] + 0.5) * s_total - 0.5
                b = (np.column_stack([pg[sel], np.ones(len(sel))]) @ M.T)[:, :2]
                lines = [((int(p[0]), int(p[1])), (int(q[0]), int(q[1]))) for p, q in zip(a, b)]
        x, y = float(getattr(est, "x", math.nan)), float(getattr(est, "y", math.nan))
        if math.isfinite(x) and math.isfinite(y):
            u, v, _ = M @ np.array([x, y, 1.0])
            est_px = (int(round(u)), int(round(v)))
    # the fine stage's overlap heatmap (where the frame overlaps the map), when the frame had one
    heat = None
    if localizer is not None:
        from foenet_ros.localize.plot import overlap_heatmap_image

        heat = overlap_heatmap_image(localizer, est, size=panel_h)
    panels = [left, right] + ([cv2.cvtColor(heat, cv2.COLOR_RGB2BGR)] if heat is not None else [])
    canvas = np.hstack(panels)
    off = left.shape[1]
    for (p, q) in lines:
        cv2.line(canvas, p, (q[0] + off, q[1]), (255, 255, 0), 1, cv2.LINE_AA)
        cv2.circle(canvas, p, 2, (0, 255, 255), -1)
    if est_px is not None and 0 <= est_px[0] < right.shape[1] and 0 <= est_px[1] < right.shape[0]:
        cv2.drawMarker(canvas, (est_px[0] + off, est_px[1]), (0, 0, 255), cv2.MARKER_CROSS, 18, 2)
    status = str(getattr(est, "status", "?"))
    text = (
        f"{status}  score {float(getattr(est, 'score', 0.0)):.2f}  inliers {int(getattr(est, 'inliers', 0))}  "
        f"sigma {float(getattr(est, 'sigma_m', math.inf)):.1f} m"
    )
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(canvas, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _STATUS_BGR.get(status, (255, 255, 255)), 1, cv2.LINE_AA)
    scale = min(1.0, max_side / max(canvas.shape[:2]))
    if scale < 1.0:
        canvas = cv2.resize(canvas, (round(canvas.shape[1] * scale), round(canvas.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
