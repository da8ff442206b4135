"""Localize drone images against a tile index: one JSON object per image on stdout.

Each object has at least: image, lat, lon (the drone's position: the camera centre when the
camera is known, else where the image centre lands), heading_deg (compass heading of the
image's up direction, clockwise from true north), sigma_m (1-sigma horizontal error radius),
status (verified | retrieval | tracked | lost) and score (0..1). Images are treated as one
sequence (the tracker bridges failures) unless --independent is given.

A photo's own tags (DJI XMP gimbal angles and height, the calibrated or 35 mm focal length; see
:mod:`foenet_ros.geo.photo_metadata`) supply, per photo, what the flags do not state
(``--metadata ignore`` turns that off). Its GNSS tag is a prior only with --prior-from-gnss; a
photo with one gets ``gnss_offset_m``, the fix's distance from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from ..errors import ConfigError
from ..utils import DEFAULT_MAX_MEGAPIXELS

HELP = "localize drone images against a tile index (JSON out)"

EXAMPLES = """
  # the real aero-vloc drone photo (north-up) against its two satellite tiles (see build-index --help)
  foenet localize --index maps/aerovloc --heading-deg 0 $FOENET_DATA/aerovloc_pair/queries/0.jpg --plot loc0.png
  # a calibrated camera (ROS CameraInfo YAML), known altitude and heading, a sequence of frames
  foenet localize --index maps/banepa --camera-info camera.yaml --altitude-m 120 --heading-deg 45 frames/*.jpg
  # field of view only; full JSON (candidates, covariance, timings)
  foenet localize --index maps/banepa --hfov 70 --json frame.png
  # DJI survey photos: camera, gimbal heading/tilt and height come from each photo's tags
  foenet localize --index maps/site --independent DCIM/100MEDIA/*.JPG
"""

#: 1-sigma of a photo's take-off-relative height used as the height above the ground below it:
#: the ground may lie higher or lower than the take-off point (fraction of the height, plus metres)
TAG_HEIGHT_SIGMA = (0.1, 2.0)

log = logging.getLogger(__name__)

PRIOR_SIGMA_DEFAULT = 50.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format OpenCV reads)")
    p.add_argument("--index", required=True, help="index directory from `foenet build-index`")
    p.add_argument("--model", default=None, help="checkpoint directory (default: the bundled default model)")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--hfov", type=float, default=None, help="camera horizontal field of view, degrees")
    cam.add_argument("--camera-info", default=None, help="camera calibration YAML (ROS CameraInfo / camera_calibration)")
    p.add_argument("--altitude-m", type=float, default=None, help="height above ground, metres")
    p.add_argument("--heading-deg", type=float, default=None,
                   help="compass heading of the image-up direction (clockwise from TRUE north), degrees")
    p.add_argument("--attitude", type=float, nargs=2, default=None, metavar=("ROLL", "PITCH"),
                   help="camera roll and pitch (tilt from nadir), degrees, e.g. from the IMU")
    pri = p.add_mutually_exclusive_group()
    pri.add_argument("--prior", type=float, nargs=2, default=None, metavar=("LAT", "LON"),
                     help="position prior (e.g. the last GNSS fix): search near it first")
    pri.add_argument("--prior-from-gnss", action="store_true",
                     help="each photo's GNSS tag (EXIF GPS) is its prior, with --prior-sigma-m")
    p.add_argument("--prior-sigma-m", type=float, default=PRIOR_SIGMA_DEFAULT,
                   help=f"1-sigma radius of --prior, metres (default {PRIOR_SIGMA_DEFAULT:g})")
    p.add_argument("--metadata", choices=("auto", "ignore"), default="auto",
                   help="auto (default): each photo's tags (DJI XMP gimbal yaw/pitch/roll and height above "
                        "take-off, calibrated or 35 mm focal length) fill in what the flags do not state; "
                        "ignore: use the flags only")
    p.add_argument("--top-k", type=int, default=None, help="candidates to verify (default from LocalizerConfig)")
    p.add_argument("--refine", choices=("auto", "always", "never"), default=None,
                   help="keypoint refinement after the dense fix (default auto: where it pays)")
    p.add_argument("--fine-methods", nargs="+", choices=("cfog", "foenet"), default=None,
                   help="dense features correlated by the fine stage (those the index stores; default: cfog)")
    p.add_argument("--independent", action="store_true", help="reset the tracker before every image")
    p.add_argument("--json", action="store_true", help="full JSON (candidates, covariance, timings), one line per image")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="draw frame, map, candidates and inlier matches (several images: OUT_0.png, OUT_1.png, ...)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS,
                   help="refuse images whose header announces more pixels than this, millions, checked before "
                        f"decoding (default {DEFAULT_MAX_MEGAPIXELS:g})")


def read_camera_info(path: str | Path):
    """CameraIntrinsics from a ROS camera_calibration YAML (camera_matrix/distortion_coefficients)
    or a CameraInfo message dump (width/height/k/d)."""
    import yaml

    from ..errors import CameraError
    from ..geo import CameraIntrinsics

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CameraError(f"cannot read camera info {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise CameraError(f"{path}: expected a YAML mapping (ROS CameraInfo / camera_calibration format)")

    def data(v):
        return list(v["data"]) if isinstance(v, dict) else list(v or [])

    try:
        if "camera_matrix" in doc:
            w, h = int(doc["image_width"]), int(doc["image_height"])
            k = data(doc["camera_matrix"])
            d = data(doc.get("distortion_coefficients"))
        else:
            w, h = int(doc["width"]), int(doc["height"])
            k = data(doc.get("k") or doc.get("K"))
            d = data(doc.get("d") or doc.get("D"))
        model = doc.get("distortion_model", "plumb_bob")
        if model not in ("plumb_bob", "rational_polynomial", "", None):
            raise CameraError(f"{path}: distortion model {model!r} is not supported (use plumb_bob or rational_polynomial)")
        intr = CameraIntrinsics(w, h, float(k[0]), float(k[4]), float(k[2]), float(k[5]),
                                tuple(float(x) for x in d) if any(float(x) != 0 for x in d) else ())
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise CameraError(f"{path}: not a CameraInfo YAML ({exc!r}); need image_width/height + camera_matrix "
                          "(camera_calibration) or width/height/k/d (CameraInfo message)") from exc
    try:
        return intr.validate()
    except CameraError as exc:  # keep the subclass (IntrinsicsError, DistortionError), name the file
        raise type(exc)(f"{path}: {exc}") from None


def check_inputs(args: argparse.Namespace) -> dict:
    """Validate the flags that describe the flight (before any model or index is loaded).

    Returns ``{"prior": (lat, lon, sigma_m) | None, "altitude_m", "heading_deg", "attitude"}``
    normalised. Raises a FoenetError subclass (PriorError, IntrinsicsError, AltitudeError,
    AttitudeError, HeadingError) whose one line the CLI prints with exit code 2.
    """
    from ..geo import CameraIntrinsics
    from ..geo.validate import check_altitude, check_attitude, check_heading, check_prior

    out: dict = {"prior": None, "altitude_m": None, "heading_deg": None, "attitude": None}
    if args.prior is not None:
        out["prior"] = check_prior(args.prior[0], args.prior[1], args.prior_sigma_m)  # (lat, lon, sigma_m)
    elif args.prior_sigma_m != PRIOR_SIGMA_DEFAULT:
        check_prior(0.0, 0.0, args.prior_sigma_m)  # a bad sigma is an error even without --prior
    if args.hfov is not None:
        CameraIntrinsics.from_hfov(args.hfov, 640, 480)  # the fx range check: --hfov 0.0001 is not a camera
    if args.altitude_m is not None:
        out["altitude_m"] = check_altitude(args.altitude_m)
    if args.heading_deg is not None:
        out["heading_deg"] = check_heading(args.heading_deg)
    if args.attitude is not None:
        out["attitude"] = check_attitude(*args.attitude)
    return out


def sensors_for_photo(inputs: dict, meta, camera) -> dict:
    """The Localizer's sensor arguments for one photo: the flags' values (``inputs``, ``camera``),
    else the photo's tags (``meta``, a PhotoMetadata). A take-off-relative height gets
    :data:`TAG_HEIGHT_SIGMA`; the other tagged values the Localizer's default sigmas."""
    out = {"camera": camera if camera is not None else meta.camera,
           "heading_deg": inputs["heading_deg"] if inputs["heading_deg"] is not None else meta.heading_deg,
           "attitude": inputs["attitude"] if inputs["attitude"] is not None else meta.attitude,
           "altitude_m": inputs["altitude_m"]}
    if out["altitude_m"] is None and meta.height_m is not None:
        out["altitude_m"] = meta.height_m
        out["altitude_sigma_m"] = TAG_HEIGHT_SIGMA[0] * meta.height_m + TAG_HEIGHT_SIGMA[1]
    return out


#: a field of view (deg) above which a lens without a distortion model is worth a warning
WIDE_LENS_HFOV_DEG = 60.0


def warn_undistorted_wide_lens(camera, path, warned: set) -> None:
    """Warn once per camera when a wide lens comes without distortion coefficients: on the orthority
    Phantom 4 Pro frames (73.5 deg, k1 = -0.27) that put tilted fixes 1.5-22 m off, 2 of 4 beyond
    2 sigma, where its calibration gave 0.4-0.8 m (docs/localize.md)."""
    if camera is None or camera.has_distortion or camera.hfov_deg <= WIDE_LENS_HFOV_DEG:
        return
    key = (camera.width, camera.height, round(camera.fx, 1))
    if key not in warned:
        warned.add(key)
        log.warning("%s: a %.0f deg lens without a distortion model: tilted frames may come out metres off, "
                    "beyond their sigma; give its calibration (--camera-info, or photos with DJI DewarpData)",
                    Path(path).name, camera.hfov_deg)


def gnss_offset_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance between two (lat, lon) points on WGS84, metres."""
    from pyproj import Geod

    return float(Geod(ellps="WGS84").inv(a[1], a[0], b[1], b[0])[2])


def run(args: argparse.Namespace) -> int:
    from ..utils import check_image_budget, read_image_checked

    # everything a user can get wrong is checked before torch, the model or the index load
    if not (args.max_megapixels > 0):
        raise ConfigError(f"--max-megapixels must be > 0, got {args.max_megapixels}")
    for path in args.images:  # the pixel budget, from the headers: a PNG bomb costs nothing
        check_image_budget(path, args.max_megapixels)
    inputs = check_inputs(args)
    base_camera = read_camera_info(args.camera_info) if args.camera_info else None

    from ..geo import CameraIntrinsics
    from ..geo.photo_metadata import PhotoMetadata, photo_metadata
    from ..localize import Localizer, LocalizerConfig, Prior
    from ..localize.plot import plot_estimate

    overrides = {k: v for k, v in (("top_k", args.top_k), ("refine", args.refine),
                                   ("fine_methods", tuple(args.fine_methods) if args.fine_methods else None)) if v is not None}
    if "top_k" in overrides:
        overrides["search_k"] = max(LocalizerConfig().search_k, 4 * overrides["top_k"])
    config = LocalizerConfig().replace(**overrides)
    loc = Localizer.from_paths(args.index, args.model, device=args.device, config=config)
    warned: set = set()
    for i, path in enumerate(args.images):
        frame = read_image_checked(path, args.max_megapixels)
        h, w = frame.shape[:2]
        meta = photo_metadata(path, w, h) if args.metadata == "auto" or args.prior_from_gnss else PhotoMetadata()
        if args.metadata == "auto" and meta.sources:
            log.info("%s: from its tags: %s", Path(path).name, meta.describe())
        camera = base_camera
        if args.hfov is not None:
            camera = CameraIntrinsics.from_hfov(args.hfov, w, h)
        sensors = sensors_for_photo(inputs, meta if args.metadata == "auto" else PhotoMetadata(), camera)
        prior = Prior(*inputs["prior"]) if inputs["prior"] else None
        if args.prior_from_gnss:
            if meta.gnss is None:
                log.warning("%s: no GNSS tag: localised without a prior", Path(path).name)
            prior = Prior(*meta.gnss, args.prior_sigma_m) if meta.gnss else None
        warn_undistorted_wide_lens(sensors["camera"], path, warned)
        if args.independent:
            loc.reset()
        est = loc.localize(frame, prior=prior, stamp=float(i), **sensors)
        full = est.to_json()
        if args.json:
            out = {"image": path, **full}
        else:
            out = {"image": path, **{k: full[k] for k in ("lat", "lon", "heading_deg", "sigma_m", "status", "score",
                                                            "alt_m", "inliers")},
                   "total_ms": full["timings_ms"].get("total")}
        if meta.gnss is not None and est.has_fix and sensors["camera"] is not None:  # else lat/lon is not the camera
            out["gnss_offset_m"] = round(gnss_offset_m(meta.gnss, (full["lat"], full["lon"])), 2)
        if args.json and args.metadata == "auto":
            out["metadata"] = meta.sources
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        if args.plot:
            target = Path(args.plot)
            if len(args.images) > 1:
                target = target.with_name(f"{target.stem}_{i}{target.suffix or '.png'}")
            plot_estimate(loc, est, target, title=f"{Path(path).name}: {est.status}, "
                          f"sigma {est.sigma_m:.1f} m" if math.isfinite(est.sigma_m) else f"{Path(path).name}: {est.status}")
            log.info("wrote %s", target)
    return 0
