"""Fine-grained overlap estimation: where, at which heading and scale, does the frame overlap the map?

The fine stage of the Localizer. For each pose hypothesis (heading, altitude, and roll/pitch when
the IMU gives them) the frame is projected onto the ground plane as a north-up *template* at the
map's cell size; dense features of the template (CFOG channels, and/or learned FOENet overlap
features) are correlated with the precomputed features of a map *window* by FFT. The score volume
is normalised into z-scores and decoded into a heatmap of the camera's ground position; its peak
and shape give the metric position and a 2x2 covariance, its distinctness the acceptance score.

Shapes (C feature channels, R hypotheses, a window of H x W cells, templates of at most h x w):

    template feats  [R, C, h, w] float32, masks [R, h, w]
    window feats    [C, H, W]    float32, valid [H, W]
    scores, overlap [R, H-h+1, W-w+1]     (valid correlation: every placement inside the window;
                    [R, H+h-1, W+w-1] in full mode, for a window smaller than a template)

Geometry. A template cell (i, j) lies at ground offset ``anchor + (j * c, -i * c)`` from the camera
nadir (the point straight below the camera; for a frame without intrinsics, the ground point at
the image centre). A window cell (a, b) lies at ``origin + (b * c, -a * c)``. The valid-correlation
index (u, v) puts template cell (0, 0) on window cell (u, v), so the nadir of that placement is
``origin + (v * c, -u * c) - anchor`` (full mode: on window cell (u - h + 1, v - w + 1)).

No rclpy, no model: the caller hands in feature extractors (``foenet_ros.features``) and the
map window (``foenet_ros.index.fine``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..errors import CameraError
from ..features import FeatureGrid
from ..geo import CameraIntrinsics, CameraPose
from ..geo.camera import ground_to_image_homography, image_to_ground
from ..utils import channel_max

#: frames without intrinsics are treated as a nadir pinhole camera with this field of view; the
#: "altitude" hypothesis then only sets the footprint size (ground width = 2 alt tan(hfov / 2))
PSEUDO_HFOV_DEG = 60.0


@dataclass(frozen=True)
class Hypothesis:
    """One pose hypothesis of the frame.

    Attributes:
        heading_grid_deg: heading of the image-up direction from the map grid's north, degrees.
        alt_m: camera height above the ground plane, metres.
        roll_deg, pitch_deg: camera attitude (see :class:`foenet_ros.geo.CameraPose`); 0 = nadir.
    """

    heading_grid_deg: float
    alt_m: float
    roll_deg: float = 0.0
    pitch_deg: float = 0.0

    def pose(self, x: float = 0.0, y: float = 0.0) -> CameraPose:
        return CameraPose(x, y, self.alt_m, self.heading_grid_deg % 360.0, self.pitch_deg, self.roll_deg)


@dataclass
class Template:
    """The frame projected onto the ground for one hypothesis, at the window's cell size."""

    feats: np.ndarray  # [C, h, w] float32
    valid: np.ndarray  # [h, w] bool
    anchor_xy: np.ndarray  # [2] ground offset (m) of cell (0, 0)'s centre from the camera nadir
    hyp: Hypothesis
    image: np.ndarray | None = None  # [h*s, w*s, 3] uint8 projected frame (debug/plots)


#: map features over a search window (see :class:`foenet_ros.features.FeatureGrid`)
MapWindow = FeatureGrid


@dataclass
class OverlapResult:
    """The decoded overlap heatmap of one window.

    Attributes:
        xy: [2] camera nadir position (frame metres): the peak, refined to sub-cell precision.
        cov: [2, 2] covariance of ``xy`` from the heatmap's shape (m^2; calibration applied by the caller).
        hyp: the winning hypothesis.
        z_peak: the peak's z-score (peak minus the median, in robust standard deviations of the scores).
        z_second: the best z-score of any placement farther than ``ambiguity_radius`` from the peak.
        overlap: fraction of the template's valid cells that overlap valid map cells at the peak.
        cell_m: the cell size (m) of the correlation.
        heat: [h, w] z-score map of the winning hypothesis over the search box (for plots), or None.
        heat_extent: (xmin, xmax, ymin, ymax) of ``heat`` in frame metres.
    """

    xy: np.ndarray
    cov: np.ndarray
    hyp: Hypothesis
    z_peak: float
    z_second: float
    overlap: float
    cell_m: float
    hyp_index: int = 0
    heat: np.ndarray | None = None
    heat_extent: tuple[float, float, float, float] | None = None
    info: dict = field(default_factory=dict)
    template: "Template | None" = None  # the winning hypothesis' template (reused by the patch stage)

    @property
    def margin(self) -> float:
        """How far the peak stands above the best rival place, in robust standard deviations."""
        return self.z_peak - self.z_second


# ---------------------------------------------------------------------------------------------
def pseudo_camera(width: int, height: int) -> CameraIntrinsics:
    """The nadir pinhole assumed for a frame without intrinsics (see :data:`PSEUDO_HFOV_DEG`)."""
    return CameraIntrinsics.from_hfov(PSEUDO_HFOV_DEG, width, height)


def template_grid(cam: CameraIntrinsics, hyp: Hypothesis, cell_m: float, max_cells: int,
                  max_range: float = 2.5) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """Where the template lies on the ground.

    The footprint of the frame (clipped to ``max_range * alt`` around the nadir: far parts of a
    tilted view are too coarse to help) is covered by a north-up grid of ``cell_m`` cells.

    Returns:
        ``(G [3,3] template pixel centre (col, row, 1) -> ground offset from the nadir (x, y, 1),
        (w, h) in cells, anchor [2])``.

    Raises:
        CameraError: the view does not see the ground, or the grid would exceed ``max_cells``.
    """
    corners = np.array([[-0.5, -0.5], [cam.width - 0.5, -0.5], [cam.width - 0.5, cam.height - 0.5],
                        [-0.5, cam.height - 0.5]], dtype=np.float64)
    fp = image_to_ground(cam, hyp.pose(), corners, undistort=False)
    r = max_range * hyp.alt_m
    fp = np.clip(fp, -r, r)
    (xmin, ymin), (xmax, ymax) = fp.min(axis=0), fp.max(axis=0)
    w = int(math.ceil((xmax - xmin) / cell_m))
    h = int(math.ceil((ymax - ymin) / cell_m))
    if w < 4 or h < 4:
        raise CameraError(f"the frame's footprint ({xmax - xmin:.1f} x {ymax - ymin:.1f} m) is under 4 cells of {cell_m} m")
    if max(w, h) > max_cells:
        raise CameraError(f"the frame's footprint needs {w} x {h} cells of {cell_m} m (more than {max_cells})")
    anchor = np.array([xmin + 0.5 * cell_m, ymax - 0.5 * cell_m])
    G = np.array([[cell_m, 0.0, anchor[0]], [0.0, -cell_m, anchor[1]], [0.0, 0.0, 1.0]])
    return G, (w, h), anchor


def render_template(frame: np.ndarray, cam: CameraIntrinsics, hyp: Hypothesis, cell_m: float, stride: int,
                    max_cells: int, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project an (undistorted) frame onto the ground for ``hyp``: a north-up image at ``cell_m / stride``.

    Args:
        frame: [H, W, 3] uint8, the frame that ``cam`` describes (undistorted).
        cam: intrinsics of ``frame``.
        hyp: pose hypothesis (the position is irrelevant: the template is relative to the nadir).
        cell_m: feature cell size (m); the image is rendered ``stride`` times finer.
        stride: the extractor's input pixels per feature cell.
        max_cells: refuse templates larger than this many cells on a side.
        cache: a dict shared by the calls for one frame (the downscaled copies are made once).

    Returns:
        ``(image [h*stride, w*stride, 3] uint8, valid [h*stride, w*stride] bool, anchor [2])`` where
        ``anchor`` is the ground offset of feature cell (0, 0)'s centre from the camera nadir.
    """
    G, (w, h), anchor = template_grid(cam, hyp, cell_m, max_cells)
    px = cell_m / stride
    # template pixel (stride-fine) -> ground: pixel centres of the fine grid inside cell (0, 0)
    o = anchor - np.array([0.5 * cell_m - 0.5 * px, -(0.5 * cell_m - 0.5 * px)])
    Gf = np.array([[px, 0.0, o[0]], [0.0, -px, o[1]], [0.0, 0.0, 1.0]])
    H = ground_to_image_homography(cam, hyp.pose()) @ Gf  # fine template pixel -> frame pixel
    # anti-aliasing: sample from a copy of the frame about 1.5x finer than the template
    gsd = hyp.alt_m / max(cam.fx, 1e-9)  # frame metres per pixel at the nadir (smaller elsewhere)
    s = min(1.0, 1.5 * gsd / px)
    src = frame
    if s < 0.9:
        # octave-quantised copies, shared by the hypotheses of one frame
        s = 2.0 ** (math.floor(2.0 * math.log2(max(s, 1e-3))) / 2.0)
        key = ("down", round(s, 4))
        if cache is not None and key in cache:
            src = cache[key]
        else:
            src = cv2.resize(frame, (max(1, round(frame.shape[1] * s)), max(1, round(frame.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
            if cache is not None:
                cache[key] = src
        sx, sy = src.shape[1] / frame.shape[1], src.shape[0] / frame.shape[0]
        S = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
        H = S @ H
    size = (w * stride, h * stride)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    img = cv2.warpPerspective(src, H, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ones = np.full(src.shape[:2], 255, np.uint8)
    valid = cv2.warpPerspective(ones, H, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    # black borders of an undistorted / rotated input carry no data either
    valid &= channel_max(img) > 0
    return img, valid, anchor


def make_templates(frame: np.ndarray, cam: CameraIntrinsics, hyps: list[Hypothesis], cell_m: float, extractors,
                   max_cells: int, keep_image: bool = False, cache: dict | None = None,
                   warp_near: bool = True) -> list[Template]:
    """Templates (concatenated features of every extractor) for each hypothesis that fits.

    Args:
        cache: a dict shared by every call for the same frame (downscaled copies of the frame).
        warp_near: hypotheses that differ from the middle one only by heading and scale (the bins
            of one frame) get the middle template's *features* resampled to their ground grid,
            instead of a new projection and feature extraction each: the same ground content,
            turned by a few degrees, at a fraction of the cost (learned features especially).
    """
    cache = {} if cache is None else cache
    if warp_near and len(hyps) > 2:
        mid = hyps[len(hyps) // 2]
        if all((h.roll_deg, h.pitch_deg) == (mid.roll_deg, mid.pitch_deg) for h in hyps):
            base = make_templates(frame, cam, [mid], cell_m, extractors, max_cells, keep_image, cache, warp_near=False)
            if not base:
                return []
            return [base[0] if h == mid else warp_template(base[0], cam, h, cell_m, max_cells) for h in hyps
                    if h == mid or _fits(cam, h, cell_m, max_cells)]
    out = []
    for hyp in hyps:
        try:
            parts, valid_all, anchor, img0 = [], None, None, None
            for ex in extractors:
                img, valid, anchor = render_template(frame, cam, hyp, cell_m, ex.stride, max_cells, cache)
                f, v = ex.extract(img, valid)
                parts.append(f)
                valid_all = v if valid_all is None else (valid_all & v)
                img0 = img if img0 is None else img0
        except CameraError:
            continue
        out.append(Template(np.concatenate(parts, axis=0), valid_all, anchor, hyp, img0 if keep_image else None))
    return out


def _fits(cam: CameraIntrinsics, hyp: Hypothesis, cell_m: float, max_cells: int) -> bool:
    try:
        template_grid(cam, hyp, cell_m, max_cells)
        return True
    except CameraError:
        return False


def warp_template(base: Template, cam: CameraIntrinsics, hyp: Hypothesis, cell_m: float, max_cells: int) -> Template:
    """``base``'s features resampled onto the ground grid of another heading/scale hypothesis.

    Raises:
        CameraError: that hypothesis' footprint does not fit (see :func:`template_grid`)."""
    G0, (w0, h0), _ = template_grid(cam, base.hyp, cell_m, max_cells)
    Gk, (wk, hk), anchor = template_grid(cam, hyp, cell_m, max_cells)
    # cell of template k -> ground (hyp k) -> frame pixel -> ground (base hyp) -> cell of the base template
    M = np.linalg.inv(G0) @ np.linalg.inv(ground_to_image_homography(cam, base.hyp.pose())) \
        @ ground_to_image_homography(cam, hyp.pose()) @ Gk
    return _resample(base, M, (wk, hk), anchor, hyp)


def turn_template(base: Template, dh_deg: float, scale: float, cell_m: float) -> Template:
    """``base`` turned by ``dh_deg`` (compass sense) and zoomed by ``scale`` about the nadir: the
    template of the hypothesis with that much more heading and ``scale`` times the altitude.

    Changing the heading turns the whole camera about the vertical through it, and changing the
    height scales every ray's ground point from the nadir, so the ground footprint moves by exactly
    that similarity, whatever the attitude (``p_k = scale * R(-dh) p_0``). No camera geometry is
    evaluated: cheaper than :func:`warp_template` for a line search's small steps. The grid is the
    turned base grid's bounding box (its extra corners are invalid cells)."""
    _, h0, w0 = base.feats.shape
    ax, ay = base.anchor_xy
    G0 = np.array([[cell_m, 0.0, ax], [0.0, -cell_m, ay], [0.0, 0.0, 1.0]])
    th = math.radians(-dh_deg)
    A = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    xs = np.array([ax - 0.5 * cell_m, ax + (w0 - 0.5) * cell_m])
    ys = np.array([ay - (h0 - 0.5) * cell_m, ay + 0.5 * cell_m])
    corners = np.array([[x, y] for x in xs for y in ys]) @ A.T
    (xmin, ymin), (xmax, ymax) = corners.min(axis=0), corners.max(axis=0)
    wk, hk = int(math.ceil((xmax - xmin) / cell_m - 1e-6)), int(math.ceil((ymax - ymin) / cell_m - 1e-6))
    anchor = np.array([xmin + 0.5 * cell_m, ymax - 0.5 * cell_m])
    Gk = np.array([[cell_m, 0.0, anchor[0]], [0.0, -cell_m, anchor[1]], [0.0, 0.0, 1.0]])
    Ainv = np.eye(3)
    Ainv[:2, :2] = np.linalg.inv(A)
    h = base.hyp
    hyp = Hypothesis((h.heading_grid_deg + dh_deg) % 360.0, h.alt_m * scale, h.roll_deg, h.pitch_deg)
    return _resample(base, np.linalg.inv(G0) @ Ainv @ Gk, (wk, hk), anchor, hyp)


def _resample(base: Template, M: np.ndarray, size: tuple[int, int], anchor: np.ndarray, hyp: Hypothesis) -> Template:
    """A template of ``size`` (w, h) cells whose cell (col, row) takes ``base``'s features at
    ``M @ (col, row, 1)`` (bilinear; valid where every contributing base cell is)."""
    import torch.nn.functional as Fn

    wk, hk = size
    C, hb, wb = base.feats.shape
    if np.allclose(M[2], (0.0, 0.0, 1.0)):  # affine: torch builds the sampling grid
        # cell centres <-> grid_sample's normalised coordinates (align_corners=False): x_n = (2 x + 1) / w - 1
        N_in = np.array([[2.0 / wb, 0.0, 1.0 / wb - 1.0], [0.0, 2.0 / hb, 1.0 / hb - 1.0], [0.0, 0.0, 1.0]])
        N_out = np.array([[2.0 / wk, 0.0, 1.0 / wk - 1.0], [0.0, 2.0 / hk, 1.0 / hk - 1.0], [0.0, 0.0, 1.0]])
        theta = (N_in @ M @ np.linalg.inv(N_out))[:2]
        grid = Fn.affine_grid(torch.from_numpy(theta[None].astype(np.float32)), [1, C + 1, hk, wk], align_corners=False)
    else:
        cols, rows = np.meshgrid(np.arange(wk, dtype=np.float64), np.arange(hk, dtype=np.float64))
        q = M @ np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
        u, v = q[0] / q[2], q[1] / q[2]
        grid = np.stack([2.0 * (u + 0.5) / wb - 1.0, 2.0 * (v + 0.5) / hb - 1.0], axis=-1).reshape(1, hk, wk, 2)
        grid = torch.from_numpy(grid.astype(np.float32))
    with torch.inference_mode():
        src = torch.from_numpy(np.concatenate([base.feats, base.valid[None].astype(np.float32)])[None])
        out = Fn.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].numpy()
    valid = out[C] > 0.999  # every contributing base cell valid
    return Template(out[:C] * valid[None], valid, anchor, hyp, None)


# ---------------------------------------------------------------------------------------------
def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (FFT sizes that pocketfft/cuFFT handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def _stack_templates(templates: list[Template], weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-mean, masked, top-left-aligned stack of templates: ``(T [R,C,h,w], M [R,h,w], n_valid [R])``."""
    R = len(templates)
    C = templates[0].feats.shape[0]
    h = max(t.feats.shape[1] for t in templates)
    w = max(t.feats.shape[2] for t in templates)
    T = np.zeros((R, C, h, w), np.float32)
    M = np.zeros((R, h, w), np.float32)
    n_valid = np.zeros(R, np.float32)
    for r, t in enumerate(templates):
        m = t.valid.astype(np.float32)
        n = float(m.sum())
        f = t.feats
        mean = (f * m).sum(axis=(1, 2), keepdims=True) / max(n, 1.0)
        T[r, :, : f.shape[1], : f.shape[2]] = (f - mean) * m
        M[r, : f.shape[1], : f.shape[2]] = m
        n_valid[r] = max(n, 1.0)
    if weights is not None:
        T *= np.asarray(weights, np.float32)[None, :, None, None]
    return T, M, n_valid


def xcorr(T: np.ndarray, M: np.ndarray, n_valid: np.ndarray, F: np.ndarray, FV: np.ndarray,
          device: torch.device | str = "cpu", mode: str = "full", spectra: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masked cross-correlation by FFT.

    Args:
        T: [R, C, h, w] zero-mean masked templates; M: [R, h, w] their masks; n_valid: [R].
        F: [B, C, H, W] windows (B = 1: one window for every template, or B = R: one each);
        FV: [B, H, W] window validity (float or bool).
        mode: "full" -- every placement that overlaps the window, transforms of size (H+h-1, W+w-1);
            "valid" -- only the placements fully inside it (H >= h, W >= w), by circular correlation
            at the window's own size: no placement of those wraps around, and the transforms are
            2-4x smaller (the window is usually built to hold every placement of interest).
        spectra: a dict kept by the caller for one window ``F``: its transforms are computed once
            and reused by the next call with the same window and transform size (e.g. a line search).

    Returns:
        ``(scores, overlap)``, ``num / sqrt(cnt * n_valid)`` and ``cnt / n_valid``, each
        [R, H+h-1, W+w-1] (full; index (u, v) puts template cell (0, 0) on window cell (u-h+1, v-w+1))
        or [R, H-h+1, W-w+1] (valid; on window cell (u, v)).
    """
    R, C, h, w = T.shape
    H, W = F.shape[-2:]
    if mode == "full":
        U, V = H + h - 1, W + w - 1
        fh, fw = _fast_len(U), _fast_len(V)
    elif mode == "valid":
        if H < h or W < w:
            raise ValueError(f"valid correlation needs a window at least the template's size, got {(H, W)} < {(h, w)}")
        U, V = H - h + 1, W - w + 1
        fh, fw = _fast_len(H), _fast_len(W)
    else:
        raise ValueError(f"mode must be 'full' or 'valid', got {mode!r}")
    dev = torch.device(device)
    with torch.inference_mode():
        if mode == "full":  # convolution with the flipped template = correlation, every overlap
            Tt = torch.from_numpy(np.ascontiguousarray(T[:, :, ::-1, ::-1])).to(dev)
            Mt = torch.from_numpy(np.ascontiguousarray(M[:, ::-1, ::-1])).to(dev)
            spec = lambda x: torch.fft.rfft2(x, s=(fh, fw))  # noqa: E731
        else:  # circular correlation: conj(FFT(template)) * FFT(window)
            Tt = torch.from_numpy(np.ascontiguousarray(T)).to(dev)
            Mt = torch.from_numpy(np.ascontiguousarray(M)).to(dev)
            spec = lambda x: torch.fft.rfft2(x, s=(fh, fw)).conj()  # noqa: E731
        key = (mode, fh, fw)
        if spectra is not None and key in spectra:
            Fw, Mw = spectra[key]
        else:
            Fw = torch.fft.rfft2(torch.from_numpy(np.ascontiguousarray(F, np.float32)).to(dev), s=(fh, fw))
            Mw = torch.fft.rfft2(torch.from_numpy(np.ascontiguousarray(FV, np.float32)).to(dev), s=(fh, fw))
            if spectra is not None:
                spectra[key] = (Fw, Mw)
        num = torch.fft.irfft2((spec(Tt) * Fw).sum(dim=1), s=(fh, fw))[:, :U, :V]
        cnt = torch.fft.irfft2(spec(Mt) * Mw, s=(fh, fw))[:, :U, :V].clamp(min=0.0)
        nv = torch.from_numpy(n_valid).to(dev)[:, None, None]
        scores = num / torch.sqrt(cnt.clamp(min=1.0) * nv)
        overlap = cnt / nv
    return scores.cpu().numpy(), overlap.cpu().numpy()


#: xcorr_valid computes at most this many placements one by one instead of by conv2d
_FEW_PLACEMENTS = 64


def xcorr_valid(T: np.ndarray, M: np.ndarray, n_valid: np.ndarray, F: np.ndarray, FV: np.ndarray,
                device: torch.device | str = "cpu", groups: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Masked correlation of the fully-inside placements by direct convolution.

    Cheaper than the FFT when the placements are few (a tracking window, patch neighbourhoods).

    Args:
        T, M, n_valid: as for :func:`xcorr`.
        F: [C, H, W] one window for every template, or [R, C, H, W] with ``groups=True`` (one each).
        FV: [H, W] or [R, H, W] its validity.

    Returns:
        ``(scores, overlap)`` each [R, H-h+1, W-w+1]; index (a, b) puts template cell (0, 0) on window cell (a, b).
    """
    import torch.nn.functional as Fn

    R, C, h, w = T.shape
    dev = torch.device(device)
    with torch.inference_mode():
        Tt = torch.from_numpy(np.ascontiguousarray(T)).to(dev)
        Mt = torch.from_numpy(np.ascontiguousarray(M))[:, None].to(dev)
        U, V = F.shape[-2] - h + 1, F.shape[-1] - w + 1
        if not groups and U * V <= _FEW_PLACEMENTS:
            # a handful of placements: one matrix-vector product per placement; conv2d's im2col path
            # is ~8x slower at this shape (for a frame-sized template the FFT beats both: polish_peak)
            Fw = torch.from_numpy(np.ascontiguousarray(F, np.float32)).to(dev)
            Vw = torch.from_numpy(np.ascontiguousarray(FV, np.float32)).to(dev)
            Tf, Mf = Tt.reshape(R, -1), Mt.reshape(R, -1)
            num = torch.empty((R, U, V), dtype=torch.float32, device=dev)
            cnt = torch.empty((R, U, V), dtype=torch.float32, device=dev)
            for a in range(U):
                for b in range(V):
                    num[:, a, b] = Tf @ Fw[:, a : a + h, b : b + w].reshape(-1)
                    cnt[:, a, b] = Mf @ Vw[a : a + h, b : b + w].reshape(-1)
        elif groups:
            Fw = torch.from_numpy(np.ascontiguousarray(F, np.float32)).to(dev).reshape(1, R * C, *F.shape[-2:])
            Vw = torch.from_numpy(np.ascontiguousarray(FV, np.float32)).to(dev).reshape(1, R, *FV.shape[-2:])
            num = Fn.conv2d(Fw, Tt, groups=R)[0]
            cnt = Fn.conv2d(Vw, Mt, groups=R)[0]
        else:
            Fw = torch.from_numpy(np.ascontiguousarray(F, np.float32)).to(dev)[None]
            Vw = torch.from_numpy(np.ascontiguousarray(FV, np.float32)).to(dev)[None, None]
            num = Fn.conv2d(Fw, Tt)[0]
            cnt = Fn.conv2d(Vw, Mt)[0]
        cnt = cnt.clamp(min=0.0)
        nv = torch.from_numpy(n_valid).to(dev)[:, None, None]
        scores = num / torch.sqrt(cnt.clamp(min=1.0) * nv)
        overlap = cnt / nv
    return scores.cpu().numpy(), overlap.cpu().numpy()


def correlate(templates: list[Template], window: MapWindow, weights: np.ndarray | None = None,
              device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, tuple[int, int], int]:
    """Correlation of each template with the window, by FFT or by direct convolution (the cheaper).

    Each template is made zero-mean over its valid cells (so a uniformly brighter or busier map
    area scores no higher), then ``num = sum_q T(q) . F(p + q)`` over the valid cells that overlap
    valid map cells, and ``cnt`` counts them. The score is ``num / sqrt(cnt * n_valid)``: the mean
    dot product, damped where only part of the template overlaps the map.

    A window at least the template's size gets the placements fully inside it (valid mode: the
    window then must hold every placement of interest, as the fine stage's windows do), by direct
    convolution or by FFT at the window's size, whichever is cheaper; a smaller window gets every
    placement that overlaps it, by FFT (full mode). The returned ``full`` says which: index (u, v)
    puts template cell (0, 0) on window cell (u - h + 1, v - w + 1) (full) or (u, v) (valid).

    Returns:
        ``(scores [R, U, V], overlap [R, U, V] = cnt / n_valid, (h, w) padded template size, full)``
        where ``full`` is 1 for full mode and 0 for valid mode.
    """
    T, M, n_valid = _stack_templates(templates, weights)
    R, C, h, w = T.shape
    H, W = window.shape
    if H >= h and W >= w:
        direct = float(R * C * h * w) * (H - h + 1) * (W - w + 1)
        fh, fw = _fast_len(H), _fast_len(W)
        fft = float((R + 1) * C + 2 * R + 1) * fh * fw * math.log2(fh * fw) * 2.5
        if direct < fft:
            scores, overlap = xcorr_valid(T, M, n_valid, window.feats, window.valid, device)
        else:
            scores, overlap = xcorr(T, M, n_valid, window.feats[None], window.valid[None], device, mode="valid")
        return scores, overlap, (h, w), 0
    scores, overlap = xcorr(T, M, n_valid, window.feats[None], window.valid[None], device)
    return scores, overlap, (h, w), 1


def placement_nadirs(window: MapWindow, templates: list[Template], hw: tuple[int, int],
                     full: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Nadir ground coordinates of every placement: ``(x [R, V], y [R, U])`` (separable grids)."""
    h, w = hw
    H, W = window.shape
    c = window.cell_m
    if full:
        u = np.arange(H + h - 1, dtype=np.float64) - (h - 1)
        v = np.arange(W + w - 1, dtype=np.float64) - (w - 1)
    else:
        u = np.arange(H - h + 1, dtype=np.float64)
        v = np.arange(W - w + 1, dtype=np.float64)
    ax = np.array([t.anchor_xy[0] for t in templates])[:, None]
    ay = np.array([t.anchor_xy[1] for t in templates])[:, None]
    x = window.origin_xy[0] + v[None] * c - ax
    y = window.origin_xy[1] - u[None] * c - ay
    return x, y


def decode(scores: np.ndarray, overlap: np.ndarray, window: MapWindow, templates: list[Template],
           hw: tuple[int, int], full: int, search_box: tuple[float, float, float, float], *, min_overlap: float = 0.5,
           beta: float = 1.0, mode_radius_cells: float = 2.5, ambiguity_radius_m: float | None = None,
           keep_heat: bool = False, peak_box: tuple[float, float, float, float] | None = None) -> OverlapResult | None:
    """Decode the score volume into the best placement, a covariance and the acceptance statistics.

    Args:
        search_box: (xmin, ymin, xmax, ymax) the camera nadir may lie in (frame metres); the z-scores
            are relative to the scores of all its placements.
        peak_box: a smaller box inside it where the peak must lie (e.g. the tracker's gate); the rest
            of ``search_box`` still sets the statistics and may hold the rival peak.
        min_overlap: placements covering less of the template's valid cells are not considered.
        beta: heatmap sharpness: ``p ~ exp(beta * z)`` around the peak (calibrated, see LocalizerConfig).
        mode_radius_cells: the peak's mode, for the covariance (cells).
        ambiguity_radius_m: a rival place must be farther than this from the peak (default: 4 cells
            or a quarter of the template, whichever is larger).

    Returns:
        an :class:`OverlapResult`, or None when no placement is allowed.
    """
    c = window.cell_m
    x, y = placement_nadirs(window, templates, hw, full)
    xmin, ymin, xmax, ymax = search_box
    inx = (x >= xmin) & (x <= xmax)  # [R, V]
    iny = (y >= ymin) & (y <= ymax)  # [R, U]
    allowed = (overlap >= min_overlap) & iny[:, :, None] & inx[:, None, :]
    if not allowed.any():
        return None
    vals = scores[allowed]
    med = float(np.median(vals))
    mad = float(np.median(np.abs(vals - med))) * 1.4826
    scale = max(mad, 1e-6)
    z = np.where(allowed, (scores - med) / scale, -np.inf)
    zpk = z
    if peak_box is not None:
        inpx = (x >= peak_box[0]) & (x <= peak_box[2])
        inpy = (y >= peak_box[1]) & (y <= peak_box[3])
        zpk = np.where(inpy[:, :, None] & inpx[:, None, :], z, -np.inf)
        if not np.isfinite(zpk).any():
            return None
    r, u, v = np.unravel_index(int(np.argmax(zpk)), z.shape)
    zp = float(z[r, u, v])
    # sub-cell peak: a separable quadratic through the 3x3 neighbourhood
    du = parabola_vertex(z[r, u - 1, v] if u > 0 else -np.inf, zp, z[r, u + 1, v] if u + 1 < z.shape[1] else -np.inf)
    dv = parabola_vertex(z[r, u, v - 1] if v > 0 else -np.inf, zp, z[r, u, v + 1] if v + 1 < z.shape[2] else -np.inf)
    px = x[r, v] + dv * c
    py = y[r, u] - du * c
    # covariance from the heatmap's mode: p ~ exp(beta (z - z_peak)) within the mode radius
    k = int(math.ceil(mode_radius_cells))
    u0, u1, v0, v1 = max(0, u - k), min(z.shape[1], u + k + 1), max(0, v - k), min(z.shape[2], v + k + 1)
    patch = z[r, u0:u1, v0:v1]
    uu, vv = np.meshgrid(np.arange(u0, u1) - (u + du), np.arange(v0, v1) - (v + dv), indexing="ij")
    near = (uu**2 + vv**2 <= mode_radius_cells**2) & np.isfinite(patch)
    wgt = np.where(near, np.exp(np.clip(beta * (patch - zp), -50.0, 0.0)), 0.0)
    wsum = float(wgt.sum())
    dx, dy = vv * c, -uu * c  # cells -> metres (rows grow southwards)
    cxx = float((wgt * dx * dx).sum() / wsum)
    cyy = float((wgt * dy * dy).sum() / wsum)
    cxy = float((wgt * dx * dy).sum() / wsum)
    cov = np.array([[cxx, cxy], [cxy, cyy]]) + np.eye(2) * (c * c / 12.0)  # + the grid's own quantisation
    # the best rival: any hypothesis, farther than the ambiguity radius from the peak
    t = templates[r]
    rad = ambiguity_radius_m or max(4.0 * c, 0.25 * c * max(t.feats.shape[1:]))
    far = ((x[:, None, :] - px) ** 2 + (y[:, :, None] - py) ** 2) > rad * rad
    zs = z[far & allowed]
    z2 = float(zs.max()) if zs.size else 0.0
    heat, extent = None, None
    if keep_heat:
        rows = np.flatnonzero(iny[r])
        cols = np.flatnonzero(inx[r])
        if rows.size and cols.size:
            heat = z[r, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
            extent = (float(x[r, cols[0]]) - c / 2, float(x[r, cols[-1]]) + c / 2,
                      float(y[r, rows[-1]]) - c / 2, float(y[r, rows[0]]) + c / 2)
    return OverlapResult(np.array([px, py]), cov, t.hyp, zp, z2, float(overlap[r, u, v]), c, int(r), heat, extent,
                         {"score_median": med, "score_scale": scale, "raw_peak": float(scores[r, u, v])}, t)


def parabola_vertex(a: float, b: float, c: float) -> float:
    """Offset (-0.5..0.5) of the vertex of the parabola through (-1, a), (0, b), (1, c); 0 where a
    side is missing or the middle is not a maximum."""
    if not (np.isfinite(a) and np.isfinite(c)):
        return 0.0
    den = a - 2.0 * b + c
    if den >= -1e-9:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def near_peak(template: Template, window: MapWindow, xy0: np.ndarray, *, search_cells: int = 2,
              weights: np.ndarray | None = None, min_overlap: float = 0.5,
              device: torch.device | str = "cpu", spectra: dict | None = None) -> tuple[float, np.ndarray | None]:
    """How well ``template`` correlates near ``xy0``, comparable between templates of one frame.

    The best of the ``(2 S + 1)^2`` placements within ``search_cells`` of ``xy0`` (as
    :func:`polish_peak`), its score divided by the template's own RMS: a correlation coefficient
    up to the map's local contrast, which is the same for every template placed there. Used to
    compare hypotheses that differ by a fraction of a bin (a line search), where z-scores over a
    whole window would cost an FFT each.

    ``spectra``: correlate with the whole window, its transforms kept in this dict for the next
    template placed in the same window (see :func:`xcorr`); otherwise with just the slice the
    search square needs.

    Returns:
        ``(score, xy)``: the score (-inf when no placement is allowed) and the sub-cell nadir of the
        best placement (None on the border of the search square or where it cannot say).
    """
    c = window.cell_m
    S = int(search_cells)
    T, M, n_valid = _stack_templates([template], weights)
    _, _, h, w = T.shape
    H, W = window.shape
    x0, y0 = window.origin_xy
    a = int(round((y0 - (xy0[1] + template.anchor_xy[1])) / c)) - S
    b = int(round((xy0[0] + template.anchor_xy[0] - x0) / c)) - S
    if S < 1 or a < 0 or b < 0 or a + h + 2 * S > H or b + w + 2 * S > W:
        return -math.inf, None
    # by FFT at the small window's size: 2x faster than the placements one by one for a frame-sized
    # template (NAIP, 9 x 292 x 402 cells, 25 placements: 13 vs 26 ms), and at every size measured
    if spectra is not None:
        scores, overlap = xcorr(T, M, n_valid, window.feats[None], window.valid[None], device, mode="valid",
                                spectra=spectra)
        scores, overlap = scores[:, a : a + 2 * S + 1, b : b + 2 * S + 1], overlap[:, a : a + 2 * S + 1, b : b + 2 * S + 1]
    else:
        F = window.feats[:, a : a + h + 2 * S, b : b + w + 2 * S]
        V = window.valid[a : a + h + 2 * S, b : b + w + 2 * S]
        scores, overlap = xcorr(T, M, n_valid, F[None], V[None], device, mode="valid")
    sc = np.where(overlap[0] >= min_overlap, scores[0], -np.inf)
    u, v = np.unravel_index(int(np.argmax(sc)), sc.shape)
    rms = math.sqrt(float((T[0] ** 2).sum()) / max(float(n_valid[0]), 1.0))
    best = float(sc[u, v]) / max(rms, 1e-12)
    if not np.isfinite(sc[u, v]) or u in (0, 2 * S) or v in (0, 2 * S):
        return best, None
    du = parabola_vertex(sc[u - 1, v], sc[u, v], sc[u + 1, v])
    dv = parabola_vertex(sc[u, v - 1], sc[u, v], sc[u, v + 1])
    # placement (u, v): template cell (0, 0) on window cell (a + u, b + v)
    return best, np.array([x0 + (b + v + dv) * c - template.anchor_xy[0], y0 - (a + u + du) * c - template.anchor_xy[1]])


def polish_peak(template: Template, window: MapWindow, xy0: np.ndarray, *, search_cells: int = 2,
                weights: np.ndarray | None = None, min_overlap: float = 0.5,
                device: torch.device | str = "cpu") -> np.ndarray | None:
    """The nadir of ``template`` placed near ``xy0`` at the (finer) cells of ``window``, sub-cell.

    A correlation peak found at one cell size is known to about a third of a cell; the same
    hypothesis at half the cell size, correlated only with the ``(2 S + 1)^2`` placements within
    ``search_cells`` of the prediction (an FFT at the size of that small window), pins it
    to a third of the finer cell. No statistics are drawn (the coarser pass decided *whether*; this
    only says *where*), and a peak on the border of the search square means the finer grid
    disagrees by more than ``S`` cells: None, keep the coarser answer.

    Args:
        template: the hypothesis' template at ``window.cell_m``.
        window: map features that hold every placement within ``search_cells`` of ``xy0``.
        xy0: [2] predicted nadir (map metres).
    Returns:
        [2] the refined nadir (map metres), or None.
    """
    return near_peak(template, window, xy0, search_cells=search_cells, weights=weights, min_overlap=min_overlap,
                     device=device)[1]


# --------------------------------------------------------------------------------------------- patches
@dataclass
class PatchFit:
    """Patch-wise refinement of a placement: the template is cut into patches, each found in the map
    near where the coarse placement predicts it, and a transform is fitted to the consistent ones.

    Attributes:
        M: [3, 3] template ground (offsets from the hypothesis' nadir, metres) -> map xy.
        model: "similarity" (4 DOF) or "homography" (8 DOF).
        src, dst: [N, 2] inlier correspondences (template ground -> map), metres.
        z: [N] the inlier patches' peak z-scores.
        tested: patches that had enough data and texture to be searched.
        rms_m: RMS residual of the inliers under ``M``, metres.
    """

    M: np.ndarray
    model: str
    src: np.ndarray
    dst: np.ndarray
    z: np.ndarray
    tested: int
    rms_m: float
    cell_m: float

    @property
    def inliers(self) -> int:
        return int(len(self.src))


def patch_correspondences(template: Template, window: MapWindow, xy0: np.ndarray, *, patch_cells: int = 16,
                          search_cells: int = 6, min_valid: float = 0.8, min_z: float = 3.0, stride: int | None = None,
                          device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Find each patch of ``template`` in ``window`` near its predicted place.

    The prediction puts the template's nadir at ``xy0`` (map metres). A patch's displacement from
    its prediction is searched within ``search_cells`` cells (each patch is correlated only with
    its own small neighbourhood of the window); its peak must stand ``min_z`` robust standard
    deviations above the other scores of that neighbourhood.

    Returns:
        ``(src [N,2] patch centres in template ground metres, dst [N,2] where they were found in
        the map, z [N] peak z-scores, tested)``.
    """
    c = window.cell_m
    P, S = int(patch_cells), int(search_cells)
    Q = P + 2 * S
    f, m = template.feats, template.valid
    _, h, w = f.shape
    H, W = window.shape
    x0, y0 = window.origin_xy
    patches, centres, locals_f, locals_v = [], [], [], []
    st = int(stride or P)
    for i0 in range(0, h - P + 1, st):
        for j0 in range(0, w - P + 1, st):
            mv = m[i0 : i0 + P, j0 : j0 + P]
            if mv.mean() < min_valid:
                continue
            fp = f[:, i0 : i0 + P, j0 : j0 + P]
            # texture: a flat patch (a uniform field) cannot be located
            if float(np.mean(np.var(fp[:, mv], axis=1))) < 1e-3:
                continue
            # predicted window cell of the patch's cell (0, 0), then its neighbourhood
            gx = xy0[0] + template.anchor_xy[0] + j0 * c
            gy = xy0[1] + template.anchor_xy[1] - i0 * c
            a = int(round((y0 - gy) / c)) - S
            b = int(round((gx - x0) / c)) - S
            if a < 0 or b < 0 or a + Q > H or b + Q > W:
                continue
            lv = window.valid[a : a + Q, b : b + Q]
            if lv.mean() < 0.8:
                continue
            patches.append(Template(fp, mv, template.anchor_xy + np.array([j0 * c, -i0 * c]), template.hyp))
            centres.append((template.anchor_xy + np.array([(j0 + (P - 1) / 2) * c, -(i0 + (P - 1) / 2) * c]),
                            np.array([x0 + b * c, y0 - a * c])))
            locals_f.append(window.feats[:, a : a + Q, b : b + Q])
            locals_v.append(lv)
    if not patches:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), 0
    T, M, n_valid = _stack_templates(patches)
    # each patch against its own neighbourhood (batched FFTs at the neighbourhood's size: faster
    # than a grouped convolution here), the fully-inside placements: (2S+1) x (2S+1)
    scores, overlap = xcorr(T, M, n_valid, np.stack(locals_f), np.stack(locals_v), device, mode="valid")
    src, dst, zs = [], [], []
    for k in range(len(patches)):
        reg, ok = scores[k], overlap[k] >= 0.9
        if ok.sum() < 9:
            continue
        vals = reg[ok]
        med = float(np.median(vals))
        sd = max(float(np.median(np.abs(vals - med))) * 1.4826, 1e-6)
        zr = np.where(ok, (reg - med) / sd, -np.inf)
        a, b = np.unravel_index(int(np.argmax(zr)), zr.shape)
        zp = float(zr[a, b])
        if zp < min_z or a in (0, zr.shape[0] - 1) or b in (0, zr.shape[1] - 1):
            continue  # weak, or the true place is outside the search area
        du = a + parabola_vertex(zr[a - 1, b], zp, zr[a + 1, b])
        dv = b + parabola_vertex(zr[a, b - 1], zp, zr[a, b + 1])
        centre_src, nb_origin = centres[k]
        # patch cell (0, 0) sits on neighbourhood cell (du, dv): shift the patch centre accordingly
        cell00 = nb_origin + np.array([dv * c, -du * c])
        src.append(centre_src)
        dst.append(cell00 + (centre_src - patches[k].anchor_xy))
        zs.append(zp)
    return np.asarray(src).reshape(-1, 2), np.asarray(dst).reshape(-1, 2), np.asarray(zs), len(patches)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity ``dst ~ s R src + t`` as a 3x3 matrix (None when degenerate)."""
    if len(src) < 2:
        return None
    z1 = src[:, 0] + 1j * src[:, 1]
    z2 = dst[:, 0] + 1j * dst[:, 1]
    z1c, z2c = z1 - z1.mean(), z2 - z2.mean()
    den = float(np.sum(np.abs(z1c) ** 2))
    if den < 1e-9:
        return None
    a = np.sum(np.conj(z1c) * z2c) / den
    b = z2.mean() - a * z1.mean()
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0.0, 0.0, 1.0]])


def apply_h(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 projective matrix to points [N, 2]."""
    p = np.column_stack([pts, np.ones(len(pts))]) @ M.T
    return p[:, :2] / p[:, 2:3]


def fit_patches(src: np.ndarray, dst: np.ndarray, z: np.ndarray, tested: int, cell_m: float, *,
                tol_cells: float = 1.5, max_scale_change: float = 0.25, max_rotation_deg: float = 20.0,
                homography_min: int = 12, seed: int = 0) -> PatchFit | None:
    """Robust transform from patch correspondences: RANSAC similarity (2 points per hypothesis), a
    least-squares refit on the consensus, and a homography when enough inliers make it clearly better.

    The similarity must stay near the identity (the coarse stage already found rotation and scale
    to within its bins): ``|log s| <= max_scale_change``, ``|rotation| <= max_rotation_deg``.
    Fitted in coordinates centred on the correspondences (map coordinates are UTM-sized).
    """
    n = len(src)
    if n < 3:
        return None
    o = dst.mean(axis=0)
    d0 = dst - o  # local map coordinates
    tol = tol_cells * cell_m
    rng = np.random.default_rng(seed)
    # every pair (or 400 random ones) proposes a similarity; all are scored at once
    ii, jj = np.triu_indices(n, 1)
    if len(ii) > 400:
        pick = rng.choice(len(ii), 400, replace=False)
        ii, jj = ii[pick], jj[pick]
    z1 = src[:, 0] + 1j * src[:, 1]
    z2 = d0[:, 0] + 1j * d0[:, 1]
    dz1 = z1[jj] - z1[ii]
    ok = np.abs(dz1) > 1e-9
    a = np.where(ok, (z2[jj] - z2[ii]) / np.where(ok, dz1, 1.0), 0.0)  # scale * e^{i angle}
    b = z2[ii] - a * z1[ii]
    ok &= (np.abs(np.log(np.maximum(np.abs(a), 1e-12))) <= max_scale_change)
    ok &= np.abs(np.degrees(np.angle(a))) <= max_rotation_deg
    if not ok.any():
        return None
    a, b = a[ok], b[ok]
    resid = np.abs(a[:, None] * z1[None] + b[:, None] - z2[None])  # [hyp, n]
    counts = (resid < tol).sum(axis=1)
    k = int(np.argmax(counts))
    best_cnt = int(counts[k])
    if best_cnt < 3:
        return None
    best = np.array([[a[k].real, -a[k].imag, b[k].real], [a[k].imag, a[k].real, b[k].imag], [0.0, 0.0, 1.0]])
    inl = np.linalg.norm(apply_h(best, src) - d0, axis=1) < tol
    for _ in range(2):  # refit on the consensus, re-select
        M = fit_similarity(src[inl], d0[inl])
        if M is None:
            return None
        inl = np.linalg.norm(apply_h(M, src) - d0, axis=1) < tol
    if inl.sum() < 3 or not _near_identity(M, max_scale_change, max_rotation_deg):
        return None
    model = "similarity"
    if inl.sum() >= homography_min:
        Hh, _ = cv2.findHomography(src[inl], d0[inl], 0)
        if Hh is not None and np.all(np.isfinite(Hh)):
            rs = np.linalg.norm(apply_h(Hh, src[inl]) - d0[inl], axis=1)
            rs_sim = np.linalg.norm(apply_h(M, src[inl]) - d0[inl], axis=1)
            # a homography only when it explains the patches clearly better (perspective, tilt)
            if float(np.sqrt(np.mean(rs**2))) < 0.7 * float(np.sqrt(np.mean(rs_sim**2))):
                M, model = Hh, "homography"
    res = np.linalg.norm(apply_h(M, src[inl]) - d0[inl], axis=1)
    M = np.array([[1.0, 0.0, o[0]], [0.0, 1.0, o[1]], [0.0, 0.0, 1.0]]) @ M  # back to map coordinates
    return PatchFit(M, model, src[inl], dst[inl], z[inl], tested, float(np.sqrt(np.mean(res**2))), cell_m)


def _near_identity(M: np.ndarray, max_scale_change: float, max_rotation_deg: float) -> bool:
    s = math.hypot(M[0, 0], M[1, 0])
    if not (s > 0) or abs(math.log(s)) > max_scale_change:
        return False
    return abs(math.degrees(math.atan2(M[1, 0], M[0, 0]))) <= max_rotation_deg
