"""Camera frames: ``sensor_msgs/Image`` and ``CompressedImage`` -> ``uint8`` RGB ``(H, W, 3)``.

One decoder for the node and the bag replay. It reads the fields of any message object (rclpy:
``data`` is ``bytes``/``array.array``; rosbags: a numpy array), never constructs one.

Pixel budget (:class:`DecodeLimits`): the size of a frame is known *before* any pixel is
allocated: from ``width``/``height`` of a raw Image, and from the PNG ``IHDR`` chunk or the JPEG
``SOFn`` segment of a compressed one (a 300 KB PNG can claim 18000 x 18000 pixels and make
OpenCV allocate ~1 GB). A frame over ``max_megapixels`` raises :class:`ImageError` with the
reason; a frame whose longer side exceeds ``max_side`` is downscaled once, here (JPEG decodes
directly at 1/2, 1/4 or 1/8 scale), so nothing downstream holds full-size copies. The
Localizer rescales intrinsics for a uniformly resized frame.

Raw images become numpy *views* where possible (row padding in ``step`` and the big-endian flag
honoured); YUV 4:2:2, Bayer and compressed data go through OpenCV. OpenCV's BGR never escapes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ImageError, ImageTooLargeError


@dataclass(frozen=True)
class DecodeLimits:
    """How large a frame may be (node parameters ``max_image_megapixels`` / ``max_image_side``).

    Attributes:
        max_megapixels: frames with more pixels (width x height / 1e6, from the header) are
            rejected before decoding; 0 = no limit.
        max_side: frames whose longer side is larger are downscaled to it (area interpolation,
            aspect kept); 0 = never downscale.
    """

    max_megapixels: float = 40.0
    max_side: int = 1920

    def __post_init__(self) -> None:
        if not (self.max_megapixels >= 0 and math.isfinite(self.max_megapixels)):
            raise ImageError(f"max_megapixels must be >= 0, got {self.max_megapixels}")
        if self.max_side < 0:
            raise ImageError(f"max_side must be >= 0, got {self.max_side}")

    def check(self, width: int, height: int, what: str) -> None:
        """Raise :class:`ImageTooLargeError` (an ImageError) when ``width x height`` is over the budget."""
        mp = width * height / 1e6
        if self.max_megapixels and mp > self.max_megapixels:
            raise ImageTooLargeError(
                f"{what} of {width}x{height} ({mp:.1f} MP) is over the pixel budget of {self.max_megapixels:g} MP "
                "(parameter max_image_megapixels): not decoded"
            )

    def scale_for(self, width: int, height: int) -> float:
        """Factor (<= 1) that brings the longer side down to ``max_side``."""
        side = max(width, height)
        return 1.0 if not self.max_side or side <= self.max_side else self.max_side / side


NO_LIMITS = DecodeLimits(max_megapixels=0.0, max_side=0)


@dataclass(frozen=True)
class _Encoding:
    channels: int
    dtype: str  # numpy base dtype ("u1" or "u2"); the byte order comes from msg.is_bigendian


# Names as in sensor_msgs/image_encodings.hpp.
_ENCODINGS: dict[str, _Encoding] = {
    "rgb8": _Encoding(3, "u1"),
    "bgr8": _Encoding(3, "u1"),
    "rgba8": _Encoding(4, "u1"),
    "bgra8": _Encoding(4, "u1"),
    "rgb16": _Encoding(3, "u2"),
    "bgr16": _Encoding(3, "u2"),
    "mono8": _Encoding(1, "u1"),
    "8UC1": _Encoding(1, "u1"),
    "8UC3": _Encoding(3, "u1"),  # cv_bridge convention: an 8UC3 image is BGR
    "mono16": _Encoding(1, "u2"),
    "16UC1": _Encoding(1, "u2"),
    "yuv422": _Encoding(2, "u1"),  # UYVY byte order
    "uyvy": _Encoding(2, "u1"),
    "yuv422_yuy2": _Encoding(2, "u1"),  # YUYV byte order
    "yuyv": _Encoding(2, "u1"),
    "bayer_rggb8": _Encoding(1, "u1"),
    "bayer_bggr8": _Encoding(1, "u1"),
    "bayer_gbrg8": _Encoding(1, "u1"),
    "bayer_grbg8": _Encoding(1, "u1"),
    "bayer_rggb16": _Encoding(1, "u2"),
    "bayer_bggr16": _Encoding(1, "u2"),
    "bayer_gbrg16": _Encoding(1, "u2"),
    "bayer_grbg16": _Encoding(1, "u2"),
}
# ROS 1 / older drivers spell a few in lower case
_ALIASES = {"8uc1": "8UC1", "8uc3": "8UC3", "16uc1": "16UC1"}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)


def encoding_info(encoding: str) -> tuple[str, int, int]:
    """``(canonical name, channels, bytes per sample)`` of a ROS image encoding.

    Raises:
        ImageError: unknown encoding (the message lists the supported ones).
    """
    name = _ALIASES.get(str(encoding), str(encoding))
    enc = _ENCODINGS.get(name)
    if enc is None:
        raise ImageError(
            f"unknown image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(or publish sensor_msgs/CompressedImage and set image_transport: compressed)"
        )
    return name, enc.channels, 2 if enc.dtype == "u2" else 1


def _bayer_code(encoding: str) -> int:
    """OpenCV demosaicing code (to RGB) for a ROS Bayer encoding.

    OpenCV names Bayer patterns after the 2nd row/2nd column 2x2 block, ROS after the
    top-left one, so ROS ``rggb`` is OpenCV ``BG`` (the same table cv_bridge uses).
    """
    import cv2

    pattern = encoding.split("_")[1][:4]
    return {
        "rggb": cv2.COLOR_BayerBG2RGB,
        "bggr": cv2.COLOR_BayerRG2RGB,
        "gbrg": cv2.COLOR_BayerGR2RGB,
        "grbg": cv2.COLOR_BayerGB2RGB,
    }[pattern]


def _bytes(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat uint8 array without copying (bytes, array.array, numpy)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else np.frombuffer(data.tobytes(), np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (hand-built messages)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def is_compressed(msg: Any) -> bool:
    """True for a CompressedImage (``format`` field, no ``encoding``)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def image_to_numpy(msg: Any) -> np.ndarray:
    """View a ``sensor_msgs/Image`` as a numpy array in its native encoding.

    Returns ``(H, W)`` for single-channel encodings (mono, Bayer) and ``(H, W, C)`` otherwise
    (YUV 4:2:2 gives ``C = 2``); dtype ``uint8`` or native-endian ``uint16``. The array is a view
    on ``msg.data`` where possible (no copy), so copy it if you keep it after the message.

    Raises:
        ImageError: unknown encoding, zero size, empty data, ``step`` smaller than a row, or a
            data length that is not ``step * height``.
    """
    encoding, channels, bps = encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    data = _bytes(msg.data)
    n_bytes = data.size
    if n_bytes == 0:
        raise ImageError("image message has empty data")
    row_bytes = width * channels * bps
    if step < row_bytes:
        raise ImageError(
            f"step {step} is smaller than one row ({width} px x {channels * bps} B = {row_bytes} B) for encoding {encoding}"
        )
    if n_bytes != step * height:
        raise ImageError(f"data length {n_bytes} B does not match step*height = {step}*{height} = {step * height} B")
    if channels == 2 and width % 2:
        raise ImageError(f"{encoding} needs an even width (2 pixels share U and V), got {width}")
    buf = data.reshape(height, step)[:, :row_bytes]
    if bps == 2:
        wire = np.dtype((">" if bool(msg.is_bigendian) else "<") + "u2")
        buf = np.ascontiguousarray(buf).view(wire)
        if wire != np.dtype(np.uint16):
            buf = buf.astype(np.uint16)  # byte-swap into native order (a copy)
    if channels == 1:
        return buf.reshape(height, width)
    return buf.reshape(height, width, channels)


def _raw_to_rgb(msg: Any) -> np.ndarray:
    import cv2

    encoding = encoding_info(msg.encoding)[0]
    arr = image_to_numpy(msg)
    if arr.dtype == np.uint16 and not encoding.startswith("bayer"):
        arr = (arr >> 8).astype(np.uint8)
    if encoding in ("rgb8", "rgb16"):
        out = arr
    elif encoding in ("bgr8", "bgr16", "8UC3"):
        out = arr[..., ::-1]
    elif encoding == "rgba8":
        out = arr[..., :3]
    elif encoding == "bgra8":
        out = arr[..., 2::-1]
    elif encoding in ("mono8", "8UC1", "mono16", "16UC1"):
        out = np.repeat(arr[..., None], 3, axis=2)
    elif encoding in ("yuv422", "uyvy"):
        out = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_UYVY)
    elif encoding in ("yuv422_yuy2", "yuyv"):
        out = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_YUV2RGB_YUY2)
    else:  # bayer_*
        out = cv2.cvtColor(np.ascontiguousarray(arr), _bayer_code(encoding))
        if out.dtype == np.uint16:
            out = (out >> 8).astype(np.uint8)
    return out


def image_to_rgb(msg: Any, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to a contiguous ``uint8`` RGB array ``(H, W, 3)``.

    16-bit data is scaled to 8 bits by dropping the low byte (``v >> 8``). The pixel budget is
    checked from ``width``/``height`` before any conversion; large frames are downscaled.

    Raises:
        ImageError: see :func:`image_to_numpy`, or a frame over the pixel budget.
    """
    limits.check(int(msg.width), int(msg.height), "image")
    return _downscale(np.ascontiguousarray(_raw_to_rgb(msg)), limits)


# --------------------------------------------------------------------------- compressed

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, ...): not DHT/JPG/DAC
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_size(data: bytes | np.ndarray) -> tuple[str, int, int]:
    """``(format, width, height)`` from a PNG or JPEG header, without decoding any pixel.

    Raises:
        ImageError: neither PNG nor JPEG, or a truncated / malformed header.
    """
    head = bytes(data[:8]) if len(data) >= 8 else b""
    if head == _PNG_SIG:
        if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
            raise ImageError("PNG without an IHDR header chunk")
        w, h = struct.unpack(">II", bytes(data[16:24]))
        return "png", int(w), int(h)
    if len(data) >= 4 and data[0] == 0xFF and data[1] == 0xD8:
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                raise ImageError(f"malformed JPEG: no marker at byte {i}")
            marker = int(data[i + 1])
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # standalone markers
                i += 2
                continue
            seg_len = int(data[i + 2]) << 8 | int(data[i + 3])
            if marker in _SOF:
                if i + 9 > n:
                    break
                h = int(data[i + 5]) << 8 | int(data[i + 6])
                w = int(data[i + 7]) << 8 | int(data[i + 8])
                return "jpeg", w, h
            if marker in (0xDA, 0xD9) or seg_len < 2:  # start of scan / end before any frame header
                break
            i += 2 + seg_len
        raise ImageError("malformed JPEG: no frame header (SOF) before the image data")
    raise ImageError("compressed image is neither PNG nor JPEG (unknown signature)")


def compressed_to_rgb(msg: Any, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to ``uint8`` RGB ``(H, W, 3)``.

    The size is read from the header first: over the budget -> :class:`ImageError`, nothing
    decoded; larger than ``limits.max_side`` -> a JPEG is decoded at a reduced scale directly.

    Raises:
        ImageError: empty data, a ``compressedDepth`` stream, an unknown format, a frame over the
            pixel budget, or bytes OpenCV cannot decode.
    """
    import cv2

    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise ImageError(f"compressedDepth images are not camera frames (format {fmt!r})")
    data = _bytes(msg.data)
    if data.size == 0:
        raise ImageError("compressed image message has empty data")
    kind, width, height = compressed_size(data)
    if width <= 0 or height <= 0:
        raise ImageError(f"compressed {kind} header claims a zero size ({width}x{height})")
    limits.check(width, height, f"compressed {kind} image")
    flag = cv2.IMREAD_COLOR
    scale = limits.scale_for(width, height)
    if kind == "jpeg" and scale < 1.0:
        # libjpeg's DCT scaling: decode at 1/2, 1/4 or 1/8 without ever holding the full frame
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):  # fmt: skip
            if max(width, height) / factor >= limits.max_side:
                flag = reduced
                break
    bgr = cv2.imdecode(data, flag)
    if bgr is None:
        raise ImageError(f"could not decode compressed image (format {fmt!r}, {data.size} B)")
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return _downscale(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), limits)


def _downscale(rgb: np.ndarray, limits: DecodeLimits) -> np.ndarray:
    s = limits.scale_for(rgb.shape[1], rgb.shape[0])
    if s >= 1.0:
        return rgb
    import cv2

    size = (max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def decode_image(msg: Any, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
    """An Image or a CompressedImage (rclpy, rosbags or ROS 1) -> ``uint8`` RGB ``(H, W, 3)``.

    Raises:
        ImageError: see :func:`image_to_rgb` / :func:`compressed_to_rgb`.
    """
    return compressed_to_rgb(msg, limits) if is_compressed(msg) else image_to_rgb(msg, limits)
