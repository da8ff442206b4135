"""``trajectory.png``: the map as background, ground truth and estimates coloured by status."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..utils import atomic_path
from .metrics import FrameRecord

STATUS_COLOURS = {"verified": "#1a9850", "tracked": "#2b83ba", "retrieval": "#fdae61", "lost": "#d7191c"}


def plot_trajectory(records: Sequence[FrameRecord], out: str | Path, map_raster: Any = None,
                    title: str = "", max_side_px: int = 2000) -> Path:
    """Draw ``records`` over ``map_raster`` (a downsampled ``geo.MapRaster``, optional) into the PNG ``out``.

    Lost frames are drawn as red crosses at their ground-truth position (when known); estimates
    are joined to their ground truth by thin grey error lines.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 8), dpi=110)
    if map_raster is not None:
        if hasattr(map_raster, "overview"):  # a WindowedMap (an index's stored map): never decode a huge map whole
            map_raster = map_raster.overview(max_side_px)
        img = map_raster.image
        step = max(1, int(np.ceil(max(img.shape[:2]) / max_side_px)))
        xmin, ymin, xmax, ymax = map_raster.bounds_xy
        ax.imshow(img[::step, ::step, :3] if img.ndim == 3 else img[::step, ::step], extent=(xmin, xmax, ymin, ymax),
                  cmap=None if img.ndim == 3 else "gray", interpolation="bilinear")
    gt = np.array([(r.gt_x, r.gt_y) for r in records if r.has_gt], dtype=float).reshape(-1, 2)
    if len(gt):
        ax.plot(gt[:, 0], gt[:, 1], "-", color="white", lw=2.5, alpha=0.9, zorder=2)
        ax.plot(gt[:, 0], gt[:, 1], "-", color="black", lw=1.0, label="ground truth", zorder=3)
    for r in records:
        if r.localised and r.has_gt:
            ax.plot([r.x, r.gt_x], [r.y, r.gt_y], "-", color="0.5", lw=0.5, zorder=3)
    for status, colour in STATUS_COLOURS.items():
        if status == "lost":
            pts = np.array([(r.gt_x, r.gt_y) for r in records if r.status == "lost" and r.has_gt], float).reshape(-1, 2)
            marker, label = "x", "lost (at ground truth)"
        else:
            pts = np.array([(r.x, r.y) for r in records if r.status == status and r.localised], float).reshape(-1, 2)
            marker, label = "o", status
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=14, c=colour, marker=marker, label=f"{label} ({len(pts)})",
                       zorder=4, edgecolors="none" if marker == "o" else None)
    if map_raster is None and not len(gt):
        pts = np.array([(r.x, r.y) for r in records if r.localised], float).reshape(-1, 2)
        if not len(pts):
            ax.text(0.5, 0.5, "no localised frames", transform=ax.transAxes, ha="center")
    ax.set_aspect("equal")
    ax.set_xlabel("easting (m)")
    ax.set_ylabel("northing (m)")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out
