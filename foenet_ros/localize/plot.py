"""Pictures that explain a localisation: why a fix was or was not accepted.

* :func:`plot_estimate` -- a PNG with four panels: the frame and its matched points; the map around
  the estimate with the candidate tiles and the 2-sigma circle; the fine stage's **overlap
  heatmap** (where the frame overlaps the map, z-scores over the search window, with the peak and
  the best rival place); the frame projected on the ground at the winning hypothesis.
* :func:`overlap_heatmap_image` -- the heatmap over the map as an RGB array (OpenCV only, no
  matplotlib), for the node's debug image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from ..utils import atomic_path


def _coarse(localizer):
    """The winning region's coarse overlap result of the last ``localize`` call, or None."""
    dbg = getattr(localizer, "last_debug", None) or {}
    dense = dbg.get("dense")
    if dense is not None and dense.coarse.heat is not None:
        return dense.coarse
    for c in dbg.get("coarse") or []:
        if c is not None and c.heat is not None:
            return c
    return None


def overlap_heatmap_image(localizer, est=None, size: int = 320) -> np.ndarray | None:
    """The overlap heatmap of the last ``localize`` call blended over the map, ``[size, size, 3]`` uint8 RGB.

    Colour = the z-score of each candidate camera position (how well the frame, projected there,
    matches the map); the cross marks the peak, the circle the estimate's 2-sigma. None when the
    last call ran no dense stage (e.g. keypoints alone, or lost before).
    """
    from ..geo.raster import crop_matrix

    res = _coarse(localizer)
    if res is None:
        return None
    x0, x1, y0, y1 = res.heat_extent
    side = max(x1 - x0, y1 - y0)
    center = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    base, _ = localizer.map.crop(center, side, size)
    base = base[:, :, :3] if base.ndim == 3 else np.repeat(base[:, :, None], 3, axis=2)
    M = crop_matrix(center, side, size)
    z = np.nan_to_num(res.heat, nan=0.0, neginf=0.0)
    lo, hi = 0.0, max(float(res.z_peak), 1e-6)
    zn = np.clip((z - lo) / (hi - lo), 0.0, 1.0)
    # heat cells -> crop pixels: the heat grid spans heat_extent north-up
    A = M @ np.array([[(x1 - x0) / z.shape[1], 0.0, x0], [0.0, -(y1 - y0) / z.shape[0], y1], [0.0, 0.0, 1.0]])
    warped = cv2.warpAffine((zn * 255).astype(np.uint8), A[:2], (size, size), flags=cv2.INTER_LINEAR)
    color = cv2.cvtColor(cv2.applyColorMap(warped, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    alpha = 0.15 + (warped.astype(np.float32) / 255.0)[:, :, None] * 0.7
    out = (base.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha).astype(np.uint8)
    p = M @ np.array([res.xy[0], res.xy[1], 1.0])
    cv2.drawMarker(out, (int(round(p[0])), int(round(p[1]))), (0, 255, 0), cv2.MARKER_CROSS, 14, 2)
    if est is not None and getattr(est, "has_fix", False) and math.isfinite(est.sigma_m):
        q = M @ np.array([est.x, est.y, 1.0])
        r = max(2, int(round(2 * est.sigma_m * size / side)))
        cv2.circle(out, (int(round(q[0])), int(round(q[1]))), r, (0, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(out, f"overlap z {res.z_peak:.1f} (rival {res.z_second:.1f})", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA)
    return out


def plot_estimate(localizer, est, out_png: str | Path, title: str = "", truth_xy: tuple[float, float] | None = None) -> Path:
    """Write a PNG (4 panels, see the module docstring) for the last ``localizer.localize`` call, whose result is ``est``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    from ..geo.raster import crop_matrix

    dbg = localizer.last_debug
    small = dbg.get("frame_small")
    s_v = dbg.get("s_v", 1.0)
    fixes = dbg.get("fixes") or []
    mp = localizer.map
    fig, axes = plt.subplots(2, 2, figsize=(13, 12))
    axes = axes.ravel()

    # 1) the frame with the points that matched
    ax = axes[0]
    if small is not None:
        ax.imshow(small)
    if fixes and len(fixes[0].pts_frame):
        p = (np.asarray(fixes[0].pts_frame) + 0.5) * s_v - 0.5
        ax.scatter(p[:, 0], p[:, 1], s=8, c="lime")
    src = est.pose.get("source", "-")
    ax.set_title(f"frame  status={est.status}  {src} evidence={est.inliers}")
    ax.axis("off")

    # 2) the map around the estimate (or the best candidate), candidates and estimate
    ax = axes[1]
    if est.has_fix:
        center = (est.x, est.y)
    elif est.candidates:
        center = est.candidates[0].center_xy
    else:
        xmin, ymin, xmax, ymax = mp.bounds_xy
        center = ((xmin + xmax) / 2, (ymin + ymax) / 2)
    extent_m = max([c.size_m for c in est.candidates[:1]] + [50.0]) * 4
    if est.has_fix and math.isfinite(est.sigma_m):
        extent_m = max(extent_m, 6 * est.sigma_m)
    extent_m = min(extent_m, 4000.0)
    out_px = 800
    img, _ = mp.crop(center, extent_m, out_px)
    ax.imshow(img)
    M = crop_matrix(center, extent_m, out_px)

    def to_px(xy):
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        p = np.column_stack([xy, np.ones(len(xy))]) @ M.T
        return p[:, :2]

    for i, c in enumerate(est.candidates[:10]):
        h = c.size_m / 2
        sq = to_px([(c.center_xy[0] - h, c.center_xy[1] - h), (c.center_xy[0] + h, c.center_xy[1] - h),
                    (c.center_xy[0] + h, c.center_xy[1] + h), (c.center_xy[0] - h, c.center_xy[1] + h)])
        col = "lime" if c.inliers and c.position_xy is not None else "orange"
        ax.add_patch(Polygon(sq, fill=False, ec=col, lw=1.5 if i == 0 else 0.8))
        ax.text(*sq[3], f"#{i} {c.score:.2f}/{c.inliers}", color=col, fontsize=7)
    if est.has_fix:
        p = to_px((est.x, est.y))[0]
        r = est.sigma_m * out_px / extent_m
        ax.add_patch(plt.Circle(p, 2 * r, fill=False, ec="red", lw=1.2, ls="--"))
        ax.plot(*p, "r+", ms=14, mew=2, label="estimate (2 sigma)")
        if math.isfinite(est.heading_deg):
            # the map crop is north-up in the grid: draw the grid heading (est.heading_deg is true)
            h = math.radians(float(est.pose.get("heading_grid_deg", est.heading_deg)))
            ax.arrow(p[0], p[1], 40 * math.sin(h), -40 * math.cos(h), color="red", width=2)
    if truth_xy is not None:
        p = to_px(truth_xy)[0]
        ax.plot(*p, "cx", ms=12, mew=2, label="truth")
    ax.set_xlim(0, out_px)
    ax.set_ylim(out_px, 0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"map {extent_m:.0f} m around the estimate (north up); sigma={est.sigma_m:.1f} m")
    ax.axis("off")

    # 3) the fine stage's overlap heatmap over the map
    ax = axes[2]
    heat = overlap_heatmap_image(localizer, est, size=600)
    res = _coarse(localizer)
    if heat is not None:
        ax.imshow(heat)
        margin = est.pose.get("dense_margin", est.pose.get("margin"))
        refused = (dbg.get("dense").info.get("refused") if dbg.get("dense") is not None else None) or ""
        ax.set_title(f"overlap heatmap (z): peak {res.z_peak:.1f}, rival {res.z_second:.1f}"
                     + (f", margin {margin:.1f}" if isinstance(margin, float) else "") + (f"\n{refused}" if refused else ""),
                     fontsize=9)
    else:
        ax.text(0.5, 0.5, "no dense overlap estimate for this frame\n(keypoints only, or nothing to search)",
                ha="center", va="center")
    ax.axis("off")

    # 4) the frame projected on the ground at the winning hypothesis
    ax = axes[3]
    tmpl = res.info.get("template") if res is not None else None
    if tmpl is not None:
        ax.imshow(tmpl)
        ax.set_title(f"frame projected on the ground (north up), heading {res.hyp.heading_grid_deg:.1f} deg grid, "
                     f"alt {res.hyp.alt_m:.0f} m", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no ground projection", ha="center", va="center")
    ax.axis("off")
    fig.suptitle(title or f"lat {est.lat:.6f}  lon {est.lon:.6f}  heading {est.heading_deg:.1f}  ({est.status})")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80, format="png")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a plot is for everyone to open
    plt.close(fig)
    return out_png


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
