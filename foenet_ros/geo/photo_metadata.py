"""What a drone photo's own tags say about its camera and pose (EXIF and DJI XMP), for ``foenet localize``.

A survey photo usually carries, besides its pixels, the gimbal's angles, the height above the
take-off point, the calibrated focal length and a GNSS position. ``foenet localize`` uses the
first three per photo where the command line does not state them, so a folder of photos needs no
per-photo flags; the GNSS tag is only a prior when asked for (``--prior-from-gnss``) and otherwise
only the reference that ``gnss_offset_m`` compares the fix with.

GDAL (through rasterio) reads the tags of JPEG and TIFF alike: the EXIF fields as ``EXIF_*``
metadata items and the XMP packet in the ``xml:XMP`` domain. What is read, and how:

=============================  ============================================  =================================
value                          tag                                           conversion
=============================  ============================================  =================================
heading (image-up, true north)  drone-dji:GimbalYawDegree                     wrapped to [0, 360)
pitch (tilt from nadir)        drone-dji:GimbalPitchDegree                   90 + angle (-90 = nadir -> 0)
roll                           drone-dji:GimbalRollDegree                    as is (right side down > 0)
height                         drone-dji:RelativeAltitude                    above the TAKE-OFF point: the
                                                                             ground below may differ
camera (focal lengths,        drone-dji:DewarpData (unless DewarpFlag = 1)  pixels of the sensor's full
principal point, distortion)   + CalibratedOpticalCenterX/Y                  size (EXIF PixelX/YDimension),
                                                                             scaled to the file's size;
                                                                             OpenCV k1, k2, p1, p2, k3
                               else drone-dji:CalibratedFocalLength          the same, no distortion
                               else EXIF FocalLengthIn35mmFilm               35 mm equivalent (43.27 mm
                                                                             diagonal), centred, no
                                                                             distortion
GNSS position                  EXIF GPSLatitude/Longitude (+Ref),            degrees
                               else drone-dji:GpsLatitude/GpsLong(t)itude
=============================  ============================================  =================================

DJI's gimbal angles are in the earth frame (a stabilised gimbal reports where the camera points,
not the airframe), which is what the Localizer's heading and attitude mean. Other vendors' XMP
conventions differ in sign and zero; they are not guessed at. A tag that is present but unusable
(not a number, out of range, an aspect ratio that does not match the pixels) is left out with a
warning: a faulty tag must never stop a photo from being localised without it.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FoenetError
from .camera import CameraIntrinsics
from .validate import check_altitude, check_attitude, check_heading, check_latlon

log = logging.getLogger(__name__)

DJI_NS = "http://www.dji.com/drone-dji/1.0/"
#: diagonal of the 36 x 24 mm frame that "35 mm equivalent" focal lengths refer to (mm)
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class PhotoMetadata:
    """The camera and pose a photo's tags state (None where a value is absent or unusable).

    Attributes:
        camera: intrinsics at the file's pixel size, with the lens distortion where DewarpData states it.
        heading_deg: true compass heading of the image-up direction, degrees in [0, 360).
        attitude: (roll_deg, pitch_deg) of the camera, pitch = tilt from nadir (see CameraPose).
        height_m: camera height above the take-off point, metres (> 0).
        gnss: (lat, lon) of the photo's GNSS tag, degrees.
        sources: for each value set above ("camera", "heading", "attitude", "height", "gnss"),
            the tag(s) it came from.
    """

    camera: CameraIntrinsics | None = None
    heading_deg: float | None = None
    attitude: tuple[float, float] | None = None
    height_m: float | None = None
    gnss: tuple[float, float] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the log, e.g. ``heading 92.9 deg, pitch 30.0 / roll 0.0 deg, ...``."""
        parts = []
        if self.heading_deg is not None:
            parts.append(f"heading {self.heading_deg:.1f} deg")
        if self.attitude is not None:
            parts.append(f"pitch {self.attitude[1]:.1f} / roll {self.attitude[0]:.1f} deg")
        if self.height_m is not None:
            parts.append(f"{self.height_m:.1f} m above take-off")
        if self.camera is not None:
            parts.append(f"hfov {self.camera.hfov_deg:.1f} deg ({self.sources['camera']})")
        if self.gnss is not None:
            parts.append("GNSS tag")
        return ", ".join(parts) or "nothing usable"


def read_tags(path: str | Path) -> tuple[dict[str, str], str | None]:
    """The file's EXIF items (``EXIF_*`` keys, GDAL's spelling) and its XMP packet (or None).

    Raises nothing for a file without tags; an unreadable file gives ``({}, None)`` (the pixels
    are read, and their errors reported, elsewhere).
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                exif = {k: v for k, v in ds.tags().items() if k.startswith("EXIF_")}
                xmp = ds.tags(ns="xml:XMP").get("xml:XMP") if "xml:XMP" in (ds.tag_namespaces() or []) else None
    except (RasterioIOError, OSError) as exc:
        log.debug("%s: no tags read (%s)", path, exc)
        return {}, None
    return exif, xmp


def dji_fields(xmp: str | None) -> dict[str, str]:
    """The ``drone-dji:*`` values of an XMP packet (attributes or elements), by local name."""
    if not xmp:
        return {}
    start, end = xmp.find("<x:xmpmeta"), xmp.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return {}
    try:
        root = ET.fromstring(xmp[start:end + len("</x:xmpmeta>")])
    except ET.ParseError as exc:
        log.warning("unreadable XMP packet ignored (%s)", exc)
        return {}
    out: dict[str, str] = {}
    prefix = "{" + DJI_NS + "}"
    for el in root.iter():
        for k, v in el.attrib.items():
            if k.startswith(prefix):
                out[k[len(prefix):]] = v.strip()
        if el.tag.startswith(prefix) and el.text and el.text.strip():
            out[el.tag[len(prefix):]] = el.text.strip()
    return out


def _num(text: str | None) -> float | None:
    """``"+92.90"``, ``"(8.8)"`` -> float; None for absent or not a finite number."""
    if text is None:
        return None
    try:
        v = float(text.strip().strip("()"))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _tag(fields: dict, key: str, where: str) -> float | None:
    """``fields[key]`` as a finite number; None where absent, and with a warning where it is not one."""
    text = fields.get(key)
    v = _num(text)
    if text is not None and v is None:
        log.warning("%s: %s = %r ignored: not a finite number", where, key, text[:40])
    return v


def _dms(text: str | None, ref: str | None) -> float | None:
    """GDAL's EXIF GPS value ``"(24) (40) (49.0009)"`` and its ``N/S/E/W`` ref -> signed degrees."""
    if text is None:
        return None
    vals = [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?", text)]
    if not vals or len(vals) > 3:
        return None
    deg = sum(v / 60.0**i for i, v in enumerate(vals))
    return -deg if (ref or "").strip().upper() in ("S", "W") else deg


def _dewarp(dji: dict) -> tuple[float, ...] | None:
    """DJI's lens calibration ``"date;fx,fy,cx,cy,k1,k2,p1,p2,k3"`` (pixels of the full sensor, cx / cy
    offsets from the optical centre; OpenCV's Brown model) -> 9 floats; None where absent, malformed,
    or where DewarpFlag = 1 says the pixels are already undistorted."""
    text = dji.get("DewarpData")
    if not text or dji.get("DewarpFlag", "0").strip() == "1":
        return None
    try:
        vals = tuple(float(v) for v in text.split(";")[-1].split(",") if v.strip())
    except ValueError:
        vals = ()
    if len(vals) != 9 or not all(math.isfinite(v) for v in vals) or min(vals[:2]) <= 0:
        log.warning("DewarpData %r ignored: expected 'date;fx,fy,cx,cy,k1,k2,p1,p2,k3'", text[:80])
        return None
    return vals


def _camera(exif: dict, dji: dict, width: int, height: int) -> tuple[CameraIntrinsics | None, str]:
    """Intrinsics at ``width x height``: the first valid of DJI's lens calibration (with distortion),
    its calibrated focal length and the 35 mm equivalent (both without distortion)."""
    found: list[tuple[str, object]] = []  # (tag, a function making the intrinsics), in order of preference
    f_cal = _tag(dji, "CalibratedFocalLength", "the photo")
    dewarp = _dewarp(dji)
    if dewarp is not None or (f_cal is not None and f_cal > 0):
        full_w = _num(exif.get("EXIF_PixelXDimension")) or float(width)
        full_h = _num(exif.get("EXIF_PixelYDimension")) or float(height)
        s = width / full_w
        if abs(full_h * s - height) > 0.01 * height + 1:  # another aspect (rotated, cropped): not these pixels
            log.warning("the calibrated camera is ignored: it is for %gx%g pixels, the image is %dx%d",
                        full_w, full_h, width, height)
        else:
            ox = _num(dji.get("CalibratedOpticalCenterX")) or full_w / 2.0
            oy = _num(dji.get("CalibratedOpticalCenterY")) or full_h / 2.0
            if dewarp is not None:
                fx, fy, dx, dy, *dist = dewarp
                found.append(("drone-dji:DewarpData", lambda: CameraIntrinsics(
                    int(width), int(height), fx * s, fy * s, (ox + dx) * s, (oy + dy) * s, tuple(dist))))
            if f_cal is not None and f_cal > 0:
                found.append(("drone-dji:CalibratedFocalLength", lambda: CameraIntrinsics(
                    int(width), int(height), f_cal * s, f_cal * s, ox * s, oy * s)))
    f35 = _tag(exif, "EXIF_FocalLengthIn35mmFilm", "the photo")
    if f35 is not None and f35 > 0:
        # the 35 mm equivalent keeps the diagonal's field of view: the width's share of a 43.27 mm diagonal
        w_mm = FULL_FRAME_DIAGONAL_MM * width / math.hypot(width, height)
        found.append(("EXIF FocalLengthIn35mmFilm", lambda: CameraIntrinsics.from_hfov(
            math.degrees(2 * math.atan(w_mm / (2 * f35))), width, height)))
    for tag, make in found:
        try:
            return make().validate(), tag
        except FoenetError as exc:
            log.warning("%s ignored: %s", tag, exc)
    return None, ""


def photo_metadata(path: str | Path, width: int, height: int) -> PhotoMetadata:
    """Read what ``path``'s tags state (see the module's table) for its ``width x height`` pixels
    (as decoded, i.e. after any EXIF orientation)."""
    exif, xmp = read_tags(path)
    dji = dji_fields(xmp)
    where = Path(path).name
    vals: dict = {}
    src: dict[str, str] = {}

    def keep(name: str, tag: str, fn):
        try:
            vals[name] = fn()
            src[name] = tag
        except FoenetError as exc:
            log.warning("%s: %s ignored: %s", where, tag, exc)

    cam, tag = _camera(exif, dji, width, height)
    if cam is not None:
        vals["camera"], src["camera"] = cam, tag
    yaw = _tag(dji, "GimbalYawDegree", where)
    if yaw is not None:
        keep("heading_deg", "drone-dji:GimbalYawDegree", lambda: check_heading(yaw))
    pitch = _tag(dji, "GimbalPitchDegree", where)
    if pitch is not None:
        roll = _tag(dji, "GimbalRollDegree", where) or 0.0
        keep("attitude", "drone-dji:GimbalPitchDegree/GimbalRollDegree", lambda: check_attitude(roll, 90.0 + pitch))
    rel = _tag(dji, "RelativeAltitude", where)
    if rel is not None:
        keep("height_m", "drone-dji:RelativeAltitude", lambda: check_altitude(rel))
    lat = _dms(exif.get("EXIF_GPSLatitude"), exif.get("EXIF_GPSLatitudeRef"))
    lon = _dms(exif.get("EXIF_GPSLongitude"), exif.get("EXIF_GPSLongitudeRef"))
    gps_tag = "EXIF GPSLatitude/GPSLongitude"
    if lat is None or lon is None:
        lat = _num(dji.get("GpsLatitude") or dji.get("Latitude"))
        lon = _num(dji.get("GpsLongtitude") or dji.get("GpsLongitude") or dji.get("Longitude"))
        gps_tag = "drone-dji:GpsLatitude/GpsLongtitude"
    if lat is not None and lon is not None and (lat, lon) != (0.0, 0.0):  # 0, 0: a camera without a fix
        keep("gnss", gps_tag, lambda: check_latlon(lat, lon, "GNSS tag"))
    return PhotoMetadata(camera=vals.get("camera"), heading_deg=vals.get("heading_deg"), attitude=vals.get("attitude"),
                         height_m=vals.get("height_m"), gnss=vals.get("gnss"),
                         sources={k.removesuffix("_deg").removesuffix("_m"): v for k, v in src.items()})
