"""``sensor_msgs/Image`` and ``CompressedImage`` payloads -> numpy arrays, without ROS.

The one decoder of camera and depth images: the bag reader (``rosbags`` messages, ROS 1 and ROS 2) and the ROS
node (rclpy messages) both call it; it only reads the messages' fields (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``; ``format`` and ``data`` of a CompressedImage).

- :func:`decode_image`: rgb8, bgr8, rgba8, bgra8, mono8 and their 16-bit variants (the high byte is kept),
  bayer_rggb8/bggr8/gbrg8/grbg8, yuv422 (UYVY) and yuv422_yuy2 (YUYV) -> ``(H, W, 3)`` uint8 RGB. Row padding
  (``step`` larger than a row) and both byte orders are handled.
- :func:`decode_compressed`: JPEG or PNG (recognised by their magic bytes, whatever ``format`` says) -> RGB. The
  size is read from the stream's header first (:func:`compressed_image_size`), so a decompression bomb can be
  refused or decoded at a reduced scale before any pixel is allocated; a JPEG without its end-of-image marker, or
  whose data libjpeg finds cut or corrupt, is rejected (libjpeg would fill the damaged part with grey or
  garbage). What libjpeg and libpng print about an image is captured (:mod:`dna_depth_core.image_codecs`), never
  written to the terminal: damage becomes the error's text, other
  messages go to a throttled log (:func:`dna_depth_core.image_codecs.report`).
- :func:`decode_depth`: ``32FC1`` (metres) or ``16UC1`` (millimetres) -> float32 metres, NaN where invalid.

Every problem raises :class:`ConversionError` (a ``ValueError``) naming it: encoding, size, step, data length,
container, decoder failure. ``max_pixels`` (both decoders) bounds the work per frame: a larger image is returned
downscaled by an integer factor (:func:`reduction_for`) so that it holds at most ``max_pixels`` pixels; the raw
pixels are reduced before any conversion (``INTER_AREA``), a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg.
"""
from __future__ import annotations

import math
import struct
from typing import Any

import cv2
import numpy as np

from dna_depth_core import image_codecs


class ConversionError(ValueError):
    """A message that cannot be converted. The text names the problem (encoding, size, step, data length...)."""


# encoding -> (channels, bytes per channel, indices of R, G, B among the channels)
_COLOR = {"rgb8": (3, 1, (0, 1, 2)), "bgr8": (3, 1, (2, 1, 0)), "rgba8": (4, 1, (0, 1, 2)),
          "bgra8": (4, 1, (2, 1, 0)), "mono8": (1, 1, (0, 0, 0)), "8uc1": (1, 1, (0, 0, 0)),
          "8uc3": (3, 1, (2, 1, 0)), "rgb16": (3, 2, (0, 1, 2)), "bgr16": (3, 2, (2, 1, 0)),
          "rgba16": (4, 2, (0, 1, 2)), "bgra16": (4, 2, (2, 1, 0)), "mono16": (1, 2, (0, 0, 0))}
# OpenCV names Bayer patterns by the second row; ROS by the first.
_BAYER = {"bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
          "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB}
_YUV = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
        "yuyv": cv2.COLOR_YUV2RGB_YUY2}
#: Image encodings :func:`decode_image` converts.
IMAGE_ENCODINGS = tuple(_COLOR) + tuple(_BAYER) + tuple(_YUV)
#: Depth encodings :func:`decode_depth` converts.
DEPTH_ENCODINGS = ("32FC1", "16UC1")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SCALES = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def _bytes(data: Any) -> np.ndarray:
    """A message's ``data`` (bytes, array.array, list, numpy) as a flat uint8 array, without a copy if possible;
    ConversionError when it is not a sequence of bytes."""
    try:
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "buffer_info"):
            return np.frombuffer(memoryview(data).cast("B"), np.uint8)
        if isinstance(data, str):
            raise TypeError("text")
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise ConversionError(f"data is not a sequence of bytes (got {type(data).__name__})") from None


def _shown(text: Any, limit: int = 60) -> str:
    """A message's text field as it appears in an error: control characters escaped (one line), cut to
    ``limit`` characters."""
    shown = str(text).encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def _int_field(msg: Any, name: str) -> int:
    """The integer field ``name`` of ``msg``; ConversionError naming it when it is missing or not an integer."""
    value = getattr(msg, name, None)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConversionError(f"field '{name}' must be an integer, got {type(value).__name__} {value!r:.40}")
    return int(value)


def _big_endian(msg: Any) -> bool:
    """Whether ``msg.is_bigendian`` says big-endian (a uint8 flag in the message, 0 or 1)."""
    value = getattr(msg, "is_bigendian", 0)
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return bool(value)
    raise ConversionError(f"field 'is_bigendian' must be 0 or 1, got {type(value).__name__} {value!r:.40}")


def reduction_for(width: int, height: int, max_pixels: int | None) -> int:
    """The smallest integer factor ``f`` such that ``(width // f) * (height // f) <= max_pixels`` (1 when no limit
    or already small enough), never larger than the image's shorter side (so both sides keep at least a pixel: an
    image thinner than the factor it would need stays above ``max_pixels``)."""
    if not max_pixels or width * height <= max_pixels:
        return 1
    limit = min(width, height)
    if limit <= 1:
        return 1

    def fits(f: int) -> bool:
        return (width // f) * (height // f) <= max_pixels

    f = min(max(2, int(math.ceil(math.sqrt(width * height / max_pixels)))), limit)
    while f < limit and not fits(f):
        f += 1
    while f > 2 and fits(f - 1):  # integer division can let a slightly smaller factor fit
        f -= 1
    return f


def _rows(msg: Any, bytes_per_pixel: int) -> np.ndarray:
    """The pixel bytes of ``msg`` as an ``(H, W * bytes_per_pixel)`` uint8 view, row padding removed."""
    h, w, step = _int_field(msg, "height"), _int_field(msg, "width"), _int_field(msg, "step")
    enc = getattr(msg, "encoding", "")
    if h <= 0 or w <= 0:
        raise ConversionError(f"empty image: {w}x{h} (encoding '{_shown(enc)}')")
    row_bytes = w * bytes_per_pixel
    if step < row_bytes:
        raise ConversionError(f"wrong step: {step} bytes per row, but a {w}-pixel '{_shown(enc)}' row needs "
                              f"{row_bytes} (width {w} x {bytes_per_pixel} bytes per pixel)")
    data = _bytes(getattr(msg, "data", None))
    need = step * h
    if data.size < need:
        raise ConversionError(f"truncated data: {data.size} bytes, but step {step} x height {h} needs {need}")
    return data[:need].reshape(h, step)[:, :row_bytes]


def decode_image(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``(H, W, 3)`` uint8 RGB, a new contiguous array (see the module docstring).

    Raises:
        ConversionError: unsupported encoding, empty image, wrong step, truncated data, or a field of the wrong
            kind (e.g. a height that is not an integer).
    """
    enc = str(getattr(msg, "encoding", ""))
    key = enc.lower()
    if key in _COLOR:
        ch, bpc, order = _COLOR[key]
    elif key in _BAYER:
        ch, bpc, order = 1, 1, None
    elif key in _YUV:
        ch, bpc, order = 2, 1, None
    else:
        raise ConversionError(f"unsupported image encoding '{_shown(enc)}'; supported: "
                              f"{', '.join(IMAGE_ENCODINGS)}")
    rows = _rows(msg, ch * bpc)
    h, w = int(msg.height), int(msg.width)
    if bpc == 2:
        px = rows.view(">u2" if _big_endian(msg) else "<u2").reshape(h, w, ch)
        px = (px >> 8).astype(np.uint8)
    else:
        px = rows.reshape(h, w, ch)
    f = reduction_for(w, h, max_pixels)
    if order is not None:
        if f > 1:  # reduce first (an average over f x f pixels), then pick the colour channels
            px = cv2.resize(np.ascontiguousarray(px), (w // f, h // f), interpolation=cv2.INTER_AREA)
            px = px.reshape(h // f, w // f, ch)
        return np.ascontiguousarray(px[..., list(order)])
    if key in _YUV and w % 2:
        raise ConversionError(f"'{_shown(enc)}' packs pixel pairs: its width must be even, got {w}")
    code = _BAYER.get(key, _YUV.get(key))
    rgb = cv2.cvtColor(np.ascontiguousarray(px.reshape(h, w) if ch == 1 else px), code)
    if f > 1:
        rgb = cv2.resize(rgb, (w // f, h // f), interpolation=cv2.INTER_AREA)
    return rgb


def compressed_image_size(data: Any) -> tuple[str, int, int]:
    """``(container, width, height)`` of a JPEG or PNG stream, read from its header (no pixels decoded).

    Raises:
        ConversionError: empty data, neither JPEG nor PNG, or a header that ends before the size.
    """
    buf = _bytes(data)
    if buf.size == 0:
        raise ConversionError("empty CompressedImage data")
    head = buf[:8].tobytes()
    if head.startswith(_PNG_MAGIC):
        if buf.size < 24 or buf[12:16].tobytes() != b"IHDR":
            raise ConversionError("PNG header cut short (no IHDR chunk)")
        w, h = struct.unpack(">II", buf[16:24].tobytes())
        return "png", int(w), int(h)
    if head.startswith(_JPEG_MAGIC):
        pos, n = 2, buf.size
        while pos + 4 <= n:
            if buf[pos] != 0xFF:
                raise ConversionError(f"JPEG header corrupt at byte {pos}")
            marker = int(buf[pos + 1])
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                pos += 2
                continue
            (length,) = struct.unpack(">H", buf[pos + 2:pos + 4].tobytes())
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                if pos + 9 > n:
                    break
                h, w = struct.unpack(">HH", buf[pos + 5:pos + 9].tobytes())
                return "jpeg", int(w), int(h)
            if marker == 0xDA:  # start of scan before any frame header
                break
            pos += 2 + length
        raise ConversionError("JPEG header has no frame size (SOF marker missing or cut)")
    raise ConversionError(f"data is neither JPEG nor PNG (starts with {head[:4].hex()})")


def decode_compressed(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg or png, as image_transport's compressed plugin sends) -> RGB uint8.

    Raises:
        ConversionError: a compressedDepth stream, empty data, neither JPEG nor PNG, a truncated JPEG, a header
            whose size is 0, data the decoder rejects, or a JPEG whose data libjpeg reports as cut or corrupt
            (``corrupt JPEG data: ...``, with the decoder's words).
    """
    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ConversionError(f"CompressedImage format '{_shown(fmt)}' is a depth stream, not a camera image")
    buf = _bytes(getattr(msg, "data", None))
    if buf.size == 0:
        raise ConversionError(f"empty CompressedImage data (format '{_shown(fmt)}')")
    try:
        kind, w, h = compressed_image_size(buf)
    except ConversionError as exc:
        raise ConversionError(f"CompressedImage format '{_shown(fmt)}': {exc}") from None
    if w <= 0 or h <= 0:
        raise ConversionError(f"CompressedImage format '{_shown(fmt)}': its {kind} header says {w}x{h}")
    if kind == "jpeg":
        # A JPEG ends with the EOI marker FF D9 (some encoders pad with zeros after it).
        tail = np.trim_zeros(buf[-64:], "b").tobytes()
        if not tail.endswith(b"\xff\xd9"):
            raise ConversionError(f"truncated JPEG: {buf.size} bytes and no end-of-image marker "
                                  f"(format '{_shown(fmt)}')")
    f = reduction_for(w, h, max_pixels)
    flag = cv2.IMREAD_COLOR
    if f > 1 and kind == "jpeg":
        flag = next((code for s, code in _JPEG_SCALES if s <= f), cv2.IMREAD_COLOR)
    what = f"CompressedImage of {buf.size} bytes, format '{_shown(fmt)}'"
    try:
        bgr, messages = image_codecs.decode_bytes(buf, flag)
    except cv2.error as exc:
        raise ConversionError(f"could not decode CompressedImage: OpenCV refused the {kind} stream ({what}; "
                              f"{' '.join(str(exc).split())[:200]})") from None
    if bgr is None or bgr.size == 0:
        detail = f"; {messages[-1]}" if messages else ""
        raise ConversionError(f"could not decode CompressedImage: corrupt or truncated {kind} ({what}{detail})")
    problem = image_codecs.damage(messages)
    if problem is not None:
        raise ConversionError(f"{problem} ({what})")
    image_codecs.report(what, messages)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if f > 1 and (rgb.shape[1] > w // f or rgb.shape[0] > h // f):
        rgb = cv2.resize(rgb, (w // f, h // f), interpolation=cv2.INTER_AREA)
    return rgb


def decode(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """An Image or a CompressedImage (told apart by the ``format`` field) -> ``(H, W, 3)`` uint8 RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg, max_pixels)
    return decode_image(msg, max_pixels)


def decode_depth(msg: Any) -> np.ndarray:
    """``32FC1`` (metres) or ``16UC1`` (millimetres) Image -> ``(H, W)`` float32 metres.

    Invalid pixels (NaN, +-Inf, <= 0; 0 in 16UC1) are NaN. Raises :class:`ConversionError` for other encodings.
    """
    enc = str(getattr(msg, "encoding", ""))
    order = ">" if _big_endian(msg) else "<"
    h, w = _int_field(msg, "height"), _int_field(msg, "width")
    if enc.upper() == "32FC1":
        depth = _rows(msg, 4).view(order + "f4").reshape(h, w).astype(np.float32)
        with np.errstate(invalid="ignore"):
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return depth
    if enc.upper() == "16UC1":
        mm = _rows(msg, 2).view(order + "u2").reshape(h, w)
        depth = mm.astype(np.float32) / 1000.0
        depth[mm == 0] = np.nan
        return depth
    raise ConversionError(f"unsupported depth encoding '{_shown(enc)}'; supported: {', '.join(DEPTH_ENCODINGS)}")


__all__ = [
    "ConversionError",
    "DEPTH_ENCODINGS",
    "IMAGE_ENCODINGS",
    "compressed_image_size",
    "decode",
    "decode_compressed",
    "decode_depth",
    "decode_image",
    "reduction_for",
]
