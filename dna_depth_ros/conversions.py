"""sensor_msgs <-> numpy, written for this package (cv_bridge is not needed).

- :func:`image_to_rgb`: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8 and their 16-bit variants) ->
  ``(H, W, 3)`` uint8 RGB. Row padding (``step > width * bytes_per_pixel``) and both byte orders are handled;
  an unknown encoding, an empty image, a step that is too small or truncated data raise
  :class:`ConversionError` naming the problem. Other encodings (bayer, yuv) go through cv_bridge when it is
  importable.
- :func:`compressed_to_rgb`: ``sensor_msgs/CompressedImage`` (jpeg or png) -> ``(H, W, 3)`` uint8 RGB.
- :func:`depth_to_image` / :func:`image_to_depth`: depth in metres <-> ``32FC1`` (metres, NaN invalid, REP 118)
  or ``16UC1`` (millimetres, 0 invalid, REP 117).
- :func:`camera_info_intrinsics` / :func:`make_camera_info`: ``sensor_msgs/CameraInfo`` <-> ``K`` (3, 3).
- :func:`points_to_cloud` / :func:`cloud_to_arrays`: organised ``(H, W, 3)`` points (+ RGB) <->
  ``sensor_msgs/PointCloud2`` (fields x, y, z float32 and optionally rgb packed as in PCL).
- :func:`colorize_depth`: depth -> ``(H, W, 3)`` uint8 RGB for viewing.

Pixel and camera conventions are the project's (docs/conventions.md): optical frame, ``(u, v)`` with the origin at
the centre of the top-left pixel.
"""
from __future__ import annotations

import array
import sys

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dna_depth_core.inference import resize_intrinsics

__all__ = [
    "ConversionError",
    "INPUT_ENCODINGS",
    "DEPTH_ENCODINGS",
    "copy_header",
    "image_to_rgb",
    "compressed_to_rgb",
    "rgb_to_image",
    "depth_to_image",
    "image_to_depth",
    "camera_info_intrinsics",
    "make_camera_info",
    "points_to_cloud",
    "cloud_to_arrays",
    "colorize_depth",
]

NATIVE_BIG_ENDIAN = sys.byteorder == "big"


class ConversionError(ValueError):
    """A message that cannot be converted. The text names the problem (encoding, size, step, data length...)."""


# encoding -> (channels, bytes per channel, indices of R, G, B among the channels)
_COLOR_ENCODINGS: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, (0, 0, 0)),
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "rgba16": (4, 2, (0, 1, 2)),
    "bgra16": (4, 2, (2, 1, 0)),
    "mono16": (1, 2, (0, 0, 0)),
}
#: Image encodings :func:`image_to_rgb` converts without cv_bridge.
INPUT_ENCODINGS = tuple(_COLOR_ENCODINGS)
#: Encodings of the published depth image.
DEPTH_ENCODINGS = ("32FC1", "16UC1")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------
def copy_header(header: Header) -> Header:
    """A new Header with the same stamp and frame_id (outputs carry the input's header, never ``now()``)."""
    return Header(stamp=Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec)),
                  frame_id=str(header.frame_id))


def _byte_array(x: np.ndarray) -> array.array:
    """``array('B')`` holding the bytes of ``x`` (one copy). rclpy accepts it for ``uint8[]`` without a per-byte
    check, which a list or ``bytes`` would trigger."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(x).reshape(-1).view(np.uint8)))
    return out


def _rows(msg: Image, bytes_per_pixel: int) -> np.ndarray:
    """The pixel bytes of ``msg`` as an ``(H, W * bytes_per_pixel)`` uint8 view, row padding removed.

    Raises ConversionError for an empty image, a step smaller than a row, or data shorter than ``step * height``.
    Data longer than ``step * height`` is accepted (the extra bytes are ignored).
    """
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"empty image: {w}x{h} (encoding '{msg.encoding}')")
    row_bytes = w * bytes_per_pixel
    if step < row_bytes:
        raise ConversionError(f"wrong step: {step} bytes per row, but a {w}-pixel '{msg.encoding}' row needs "
                              f"{row_bytes} (width {w} x {bytes_per_pixel} bytes per pixel)")
    need = step * h
    n = len(msg.data)
    if n < need:
        raise ConversionError(f"truncated data: {n} bytes, but step {step} x height {h} needs {need}")
    data = np.frombuffer(msg.data, dtype=np.uint8, count=need)
    return data.reshape(h, step)[:, :row_bytes]


_cv_bridge = None


def _cv_bridge_to_rgb(msg: Image) -> np.ndarray | None:
    """Convert an encoding this module does not know with cv_bridge, if cv_bridge is importable; else None."""
    global _cv_bridge
    try:
        from cv_bridge import CvBridge  # noqa: WPS433 (optional dependency)
    except ImportError:
        return None
    if _cv_bridge is None:
        _cv_bridge = CvBridge()
    try:
        rgb = _cv_bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as exc:  # cv_bridge raises its own error types
        raise ConversionError(f"unsupported image encoding '{msg.encoding}' (cv_bridge: {exc})") from exc
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ConversionError(f"cv_bridge converted encoding '{msg.encoding}' to an unusable array "
                              f"{rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


# ----------------------------------------------------------------------------------------------------------------
# Camera images
# ----------------------------------------------------------------------------------------------------------------
def image_to_rgb(msg: Image) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``(H, W, 3)`` uint8 RGB (a new, contiguous array).

    Accepts the encodings in :data:`INPUT_ENCODINGS` (16-bit ones keep their high byte, in the message's byte
    order); mono is replicated to three channels and alpha is dropped. Other encodings are converted by
    cv_bridge when it is importable.

    Raises:
        ConversionError: unknown encoding, empty image, wrong step or truncated data.
    """
    enc = str(msg.encoding)
    spec = _COLOR_ENCODINGS.get(enc.lower())
    if spec is None:
        rgb = _cv_bridge_to_rgb(msg)
        if rgb is None:
            raise ConversionError(f"unsupported image encoding '{enc}'; supported: {', '.join(INPUT_ENCODINGS)}")
        return rgb
    channels, bpc, order = spec
    rows = _rows(msg, channels * bpc)
    h, w = int(msg.height), int(msg.width)
    if bpc == 1:
        px = rows.reshape(h, w, channels)
    else:
        px = rows.view(">u2" if msg.is_bigendian else "<u2").reshape(h, w, channels)
        px = (px >> 8).astype(np.uint8)
    return np.ascontiguousarray(px[..., list(order)])


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg or png, as image_transport's compressed plugin sends) -> RGB uint8.

    The container is recognised by its magic bytes, so ``format`` strings such as ``"rgb8; jpeg compressed bgr8"``
    or ``"png"`` all work.

    Raises:
        ConversionError: empty data, a compressedDepth stream, data that is neither JPEG nor PNG, a JPEG without its
            end-of-image marker (truncated), or data the decoder rejects.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ConversionError(f"CompressedImage format '{fmt}' is a depth stream, not a camera image")
    data = msg.data
    if len(data) == 0:
        raise ConversionError(f"empty CompressedImage data (format '{fmt}')")
    buf = np.frombuffer(data, dtype=np.uint8)
    head = buf[:8].tobytes()
    if head.startswith(_JPEG_MAGIC):
        # A JPEG ends with the EOI marker FF D9 (some encoders pad with zeros after it). libjpeg would decode a
        # truncated stream into a grey-filled image, so check the marker.
        tail = np.trim_zeros(buf[-64:], "b").tobytes()
        if not tail.endswith(b"\xff\xd9"):
            raise ConversionError(f"truncated JPEG: {len(data)} bytes and no end-of-image marker (format '{fmt}')")
    elif not head.startswith(_PNG_MAGIC):
        raise ConversionError(f"CompressedImage format '{fmt}': data is neither JPEG nor PNG "
                              f"(starts with {head[:4].hex()})")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ConversionError(f"could not decode CompressedImage ({len(data)} bytes, format '{fmt}'): "
                              f"corrupt or truncated")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """``(H, W, 3)`` uint8 RGB -> ``sensor_msgs/Image`` in ``encoding`` (rgb8, bgr8, rgba8, bgra8 or mono8)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    if encoding == "rgb8":
        px = rgb
    elif encoding == "bgr8":
        px = rgb[..., ::-1]
    elif encoding in ("rgba8", "bgra8"):
        alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
        px = np.concatenate([rgb if encoding == "rgba8" else rgb[..., ::-1], alpha], axis=2)
    elif encoding == "mono8":
        px = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"encoding: '{encoding}' not supported here; use rgb8, bgr8, rgba8, bgra8 or mono8")
    h, w = rgb.shape[:2]
    channels = 1 if px.ndim == 2 else px.shape[2]
    return Image(header=copy_header(header), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * channels, data=_byte_array(px))


# ----------------------------------------------------------------------------------------------------------------
# Depth images
# ----------------------------------------------------------------------------------------------------------------
def depth_to_image(depth: np.ndarray, header: Header, encoding: str = "32FC1") -> Image:
    """Depth ``(H, W)`` in metres -> ``sensor_msgs/Image``.

    - ``32FC1``: metres, NaN where invalid (REP 118). Invalid = not finite or ``<= 0``.
    - ``16UC1``: millimetres rounded to the nearest integer, 0 where invalid or beyond 65.535 m (REP 117).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty (H, W) array, got shape {depth.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if encoding == "32FC1":
        px = np.where(valid, depth, np.nan).astype(np.float32)
    elif encoding == "16UC1":
        with np.errstate(invalid="ignore"):
            mm = np.where(valid, np.rint(depth.astype(np.float64) * 1000.0), 0.0)
        mm[(mm > 65535) | (mm < 0)] = 0
        px = mm.astype(np.uint16)
    else:
        raise ValueError(f"encoding: '{encoding}' not supported; use one of {DEPTH_ENCODINGS}")
    h, w = depth.shape
    return Image(header=copy_header(header), height=h, width=w, encoding=encoding,
                 is_bigendian=int(NATIVE_BIG_ENDIAN), step=w * px.itemsize, data=_byte_array(px))


def image_to_depth(msg: Image) -> np.ndarray:
    """``32FC1`` (metres) or ``16UC1`` (millimetres) ``sensor_msgs/Image`` -> ``(H, W)`` float32 metres, NaN invalid."""
    enc = str(msg.encoding)
    order = ">" if msg.is_bigendian else "<"
    if enc.upper() == "32FC1":
        rows = _rows(msg, 4)
        depth = rows.view(order + "f4").reshape(msg.height, msg.width).astype(np.float32)
        with np.errstate(invalid="ignore"):
            depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return depth
    if enc.upper() == "16UC1":
        rows = _rows(msg, 2)
        mm = rows.view(order + "u2").reshape(msg.height, msg.width)
        depth = mm.astype(np.float32) / 1000.0
        depth[mm == 0] = np.nan
        return depth
    raise ConversionError(f"unsupported depth encoding '{enc}'; supported: {', '.join(DEPTH_ENCODINGS)}")


# ----------------------------------------------------------------------------------------------------------------
# Camera info
# ----------------------------------------------------------------------------------------------------------------
def camera_info_intrinsics(msg: CameraInfo, source: str = "auto") -> tuple[np.ndarray, int, int]:
    """Pinhole intrinsics of the (rectified) image that a CameraInfo describes.

    Args:
        source: ``"P"`` (the projection matrix: the intrinsics of rectified images), ``"K"`` (the raw camera
            matrix), or ``"auto"``: P when it holds positive focal lengths, K otherwise.
    Returns:
        ``(K, width, height)``: ``K`` (3, 3) float64 for an image of ``width`` x ``height`` (0 when the message does
        not say). A region of interest and binning are applied (``cx -= x_offset``; binning ``b`` maps pixel
        ``j`` to the centre of original pixels ``b*j .. b*j+b-1``).

    Raises:
        ConversionError: no positive focal lengths in the chosen matrix, or an unknown ``source``.
    """
    if source not in ("auto", "K", "P"):
        raise ConversionError(f"intrinsics source '{source}' unknown; use 'auto', 'K' or 'P'")
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    p = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    use_p = source == "P" or (source == "auto" and p[0, 0] > 0 and p[1, 1] > 0)
    K = (p[:, :3] if use_p else k).copy()
    if not (K[0, 0] > 0 and K[1, 1] > 0 and np.isfinite(K).all()):
        raise ConversionError(f"camera_info has no valid intrinsics: {'P' if use_p else 'K'} has "
                              f"fx={K[0, 0]:g}, fy={K[1, 1]:g} (need > 0)")
    K[2] = (0.0, 0.0, 1.0)
    width, height = int(msg.width), int(msg.height)
    roi = msg.roi
    full_frame = (roi.x_offset, roi.y_offset, roi.width, roi.height) == (0, 0, width, height)
    if roi.width > 0 and roi.height > 0 and not full_frame:
        K[0, 2] -= roi.x_offset
        K[1, 2] -= roi.y_offset
        width, height = int(roi.width), int(roi.height)
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    if bx > 1 or by > 1:
        K[0, 0] /= bx
        K[0, 1] /= bx
        K[0, 2] = (K[0, 2] - (bx - 1) / 2.0) / bx
        K[1, 1] /= by
        K[1, 2] = (K[1, 2] - (by - 1) / 2.0) / by
        width, height = width // bx, height // by
    return K, width, height


def intrinsics_for_image(K: np.ndarray, info_width: int, info_height: int, width: int, height: int) -> np.ndarray:
    """Intrinsics for a ``width`` x ``height`` image, given ``K`` for ``info_width`` x ``info_height`` (0 = same).

    A camera_info whose resolution differs from the image's (a resized stream, or a resolution change at
    runtime) is taken to describe the same field of view, resized.
    """
    if info_width <= 0 or info_height <= 0 or (info_width, info_height) == (width, height):
        return np.asarray(K, dtype=np.float64)
    return resize_intrinsics(K, (info_width, info_height), (width, height))


def make_camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """CameraInfo for an undistorted (rectified) image: ``K``, ``D = 0`` (plumb_bob), ``R = I``, ``P = [K | 0]``."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got {K.shape}")
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg = CameraInfo()
    msg.header = copy_header(header)
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = "plumb_bob"
    msg.d = array.array("d", [0.0] * 5)
    msg.k = K.reshape(-1).copy()
    msg.r = np.eye(3).reshape(-1)
    msg.p = P.reshape(-1)
    return msg


# ----------------------------------------------------------------------------------------------------------------
# Point clouds
# ----------------------------------------------------------------------------------------------------------------
def points_to_cloud(points: np.ndarray, header: Header, rgb: np.ndarray | None = None) -> PointCloud2:
    """Organised ``(H, W, 3)`` xyz (NaN invalid) -> PointCloud2 with ``height = H``, ``width = W``,
    ``is_dense = False``.

    Fields: ``x, y, z`` float32 (point_step 12), plus ``rgb`` (``0x00RRGGBB`` in a float32, as PCL and RViz read
    it; point_step 16) when ``rgb`` ``(H, W, 3)`` uint8 is given.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"points must have shape (H, W, 3), got {points.shape}")
    h, w = points.shape[:2]
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    if rgb is None:
        buf = np.ascontiguousarray(points, dtype=np.float32)
        point_step = 12
    else:
        rgb = np.asarray(rgb)
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be a ({h}, {w}, 3) uint8 array matching points, got {rgb.shape} {rgb.dtype}")
        buf = np.empty((h, w, 4), np.float32)
        buf[..., :3] = points
        c = rgb.astype(np.uint32)
        buf[..., 3].view(np.uint32)[...] = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
        point_step = 16
    return PointCloud2(header=copy_header(header), height=h, width=w, fields=fields,
                       is_bigendian=NATIVE_BIG_ENDIAN, point_step=point_step, row_step=point_step * w,
                       data=_byte_array(buf), is_dense=False)


def cloud_to_arrays(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with float32 ``x, y, z`` (and optionally a packed ``rgb``) -> ``(xyz (H, W, 3) float32,
    rgb (H, W, 3) uint8 or None)``. Honours point_step, row_step and byte order."""
    h, w = int(msg.height), int(msg.width)
    if h <= 0 or w <= 0:
        raise ConversionError(f"empty point cloud: {w}x{h}")
    fields = {f.name: f for f in msg.fields}
    for name in "xyz":
        if name not in fields or fields[name].datatype != PointField.FLOAT32:
            raise ConversionError(f"point cloud has no float32 field '{name}'")
    step, row_step = int(msg.point_step), int(msg.row_step)
    if row_step < step * w or len(msg.data) < row_step * h:
        raise ConversionError(f"point cloud data too short: {len(msg.data)} bytes for {h} rows of {row_step}")
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=row_step * h).reshape(h, row_step)[:, :step * w]
    raw = raw.reshape(h, w, step)
    order = ">" if msg.is_bigendian else "<"

    def field(name: str, kind: str) -> np.ndarray:
        off = fields[name].offset
        return np.ascontiguousarray(raw[..., off:off + 4]).view(order + kind)[..., 0]

    xyz = np.stack([field(n, "f4") for n in "xyz"], axis=-1).astype(np.float32)
    rgb = None
    if "rgb" in fields:
        packed = field("rgb", "u4")
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)
    return xyz, rgb


# ----------------------------------------------------------------------------------------------------------------
# Viewing
# ----------------------------------------------------------------------------------------------------------------
def colorize_depth(depth: np.ndarray, max_depth: float = 0.0) -> np.ndarray:
    """Depth ``(H, W)`` -> ``(H, W, 3)`` uint8 RGB (turbo colour map on inverse depth: near is red, far is blue);
    invalid pixels are black. The far end is ``max_depth`` metres, or (``max_depth`` <= 0) each frame's 1st
    percentile of inverse depth; the near end is its 99th percentile."""
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
        inv = np.where(valid, 1.0 / depth, 0.0)
    if not valid.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    lo = 1.0 / max_depth if max_depth > 0 else float(np.percentile(inv[valid], 1))
    hi = float(np.percentile(inv[valid], 99))
    norm = np.clip((inv - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    bgr = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb
