"""A one-figure explanation of a localisation: the frame, the map around the estimate with the
candidate tiles, and the inlier matches of the winning candidate."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..utils import atomic_path


def plot_estimate(localizer, est, out_png: str | Path, title: str = "", truth_xy: tuple[float, float] | None = None) -> Path:
    """Write a PNG (3 panels) for the last ``localizer.localize`` call, whose result is ``est``."""
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
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.2))

    # 1) the frame with its inliers
    ax = axes[0]
    if small is not None:
        ax.imshow(small)
    if fixes:
        p = (fixes[0].pts_frame + 0.5) * s_v - 0.5
        ax.scatter(p[:, 0], p[:, 1], s=6, c="lime")
    ax.set_title(f"frame  status={est.status}  inliers={est.inliers}")
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

    for i, c in enumerate(est.candidates):
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

    # 3) inlier matches: frame | map crop of the winning candidate
    ax = axes[2]
    if fixes and small is not None:
        f = fixes[0]
        crop_m = localizer.config.crop_factor * f.cand.size_m
        cpx = 600
        crop, _ = mp.crop(f.cand.center_xy, crop_m, cpx)
        Mc = crop_matrix(f.cand.center_xy, crop_m, cpx)
        q = np.column_stack([f.pts_ground, np.ones(len(f.pts_ground))]) @ Mc.T
        scale = cpx / max(small.shape[:2])
        fr = _resize(small, scale)
        canvas = np.zeros((max(fr.shape[0], cpx), fr.shape[1] + cpx, 3), np.uint8)
        canvas[: fr.shape[0], : fr.shape[1]] = fr
        canvas[:cpx, fr.shape[1] :] = crop
        ax.imshow(canvas)
        p1 = ((f.pts_frame + 0.5) * s_v - 0.5) * scale
        rng = np.random.default_rng(0)
        sel = rng.choice(len(p1), size=min(60, len(p1)), replace=False)
        for j in sel:
            ax.plot([p1[j, 0], q[j, 0] + fr.shape[1]], [p1[j, 1], q[j, 1]], "-", lw=0.6, color="lime")
        ax.set_title(f"{len(p1)} inliers vs. map crop of tile {f.cand.tile_id}")
    else:
        ax.text(0.5, 0.5, "no verified candidate", ha="center", va="center")
    ax.axis("off")
    fig.suptitle(title or f"lat {est.lat:.6f}  lon {est.lon:.6f}  heading {est.heading_deg:.1f}  ({est.status})")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a plot is for everyone to open
    plt.close(fig)
    return out_png


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _resize(img: np.ndarray, s: float) -> np.ndarray:
    import cv2

    return cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
