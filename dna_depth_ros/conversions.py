"""sensor_msgs <-> numpy for the node, written for this package (cv_bridge is not needed).

Decoding camera and depth images is :mod:`dna_depth_core.ros_images` (the one decoder, shared with the bag
reader) and reading CameraInfo is :func:`dna_depth_core.camera.camera_info_intrinsics` (the one camera model);
this module adds what needs the rclpy message classes:

- :func:`image_to_rgb`: Image or CompressedImage -> ``(H, W, 3)`` uint8 RGB through the core decoder; encodings
  it does not know go through cv_bridge when that is importable.
- :func:`rgb_to_image`, :func:`depth_to_image`: numpy -> ``sensor_msgs/Image`` (depth: ``32FC1`` metres with the
  REP 117 values ``+inf`` / ``-inf`` / NaN; or ``16UC1`` millimetres, 0 invalid as REP 118 says).
- :func:`make_camera_info`: ``K`` (3, 3) -> ``sensor_msgs/CameraInfo`` of an undistorted image.
- :func:`points_to_cloud` / :func:`cloud_to_arrays`: organised ``(H, W, 3)`` points (+ RGB) <->
  ``sensor_msgs/PointCloud2`` (fields x, y, z float32 and optionally rgb packed as in PCL);
  :func:`point_list_to_cloud`: an unorganised ``(N, 3)`` list of points (obstacles, ground).
- :func:`scan_to_laser_scan`: a core :class:`~dna_depth_core.inference.ground.Scan` -> ``sensor_msgs/LaserScan``.
- :func:`scale_status` / :func:`scale_to_diagnostics`: a core :class:`~dna_depth_core.inference.ScaleState` ->
  ``diagnostic_msgs/DiagnosticStatus`` (and a stamped ``DiagnosticArray`` holding it).

Pixel and camera conventions are the project's (docs/conventions.md): optical frame, ``(u, v)`` with the origin at
the centre of the top-left pixel.
"""
from __future__ import annotations

import array
import sys
from typing import TYPE_CHECKING

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, PointCloud2, PointField
from std_msgs.msg import Header

from dna_depth_core.ros_images import DEPTH_ENCODINGS, ConversionError, decode

if TYPE_CHECKING:  # annotations only: importing the inference package would load torch
    from dna_depth_core.inference import ScaleState, Scan

__all__ = [
    "ConversionError",
    "DEPTH_ENCODINGS",
    "copy_header",
    "image_to_rgb",
    "rgb_to_image",
    "depth_to_image",
    "make_camera_info",
    "points_to_cloud",
    "point_list_to_cloud",
    "cloud_to_arrays",
    "scan_to_laser_scan",
    "scale_status",
    "scale_to_diagnostics",
    "SCALE_STATUS_NAME",
]

NATIVE_BIG_ENDIAN = sys.byteorder == "big"


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
def image_to_rgb(msg: Image | CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` or ``CompressedImage`` -> ``(H, W, 3)`` uint8 RGB (a new, contiguous array) through
    :func:`dna_depth_core.ros_images.decode` (``max_pixels``: see there). Image encodings the core decoder does not
    know are converted by cv_bridge when it is importable.

    Raises:
        ConversionError: unknown encoding, empty image, wrong step, truncated or corrupt data.
    """
    try:
        return decode(msg, max_pixels)
    except ConversionError as exc:
        if isinstance(msg, CompressedImage) or not str(exc).startswith("unsupported image encoding"):
            raise
        rgb = _cv_bridge_to_rgb(msg)
        if rgb is None:
            raise
        return rgb


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

    - ``32FC1``: metres; ``+inf`` (beyond range) and ``-inf`` (nearer than the minimum) pass through as REP 117
      defines them (:func:`dna_depth_core.inference.rep117_depth` makes them); NaN and values ``<= 0`` are NaN (no
      measurement).
    - ``16UC1``: millimetres rounded to the nearest integer, 0 for every invalid pixel (NaN, infinite, ``<= 0``)
      and beyond 65.535 m (REP 118: an integer image has no room for the REP 117 values).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty (H, W) array, got shape {depth.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if encoding == "32FC1":
        keep = valid | np.isinf(depth)
        px = np.where(keep, depth, np.nan).astype(np.float32)
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


# ----------------------------------------------------------------------------------------------------------------
# Camera info
# ----------------------------------------------------------------------------------------------------------------
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


def point_list_to_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """An unorganised list of points ``(N, 3)`` -> PointCloud2 with ``height = 1``, ``width = N`` (0 allowed: an
    empty cloud still tells a costmap that nothing was seen), fields ``x, y, z`` float32, ``is_dense`` true when
    every point is finite."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    buf = np.ascontiguousarray(points, dtype=np.float32)
    n = len(buf)
    fields = [PointField(name=c, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, c in enumerate("xyz")]
    return PointCloud2(header=copy_header(header), height=1, width=n, fields=fields,
                       is_bigendian=NATIVE_BIG_ENDIAN, point_step=12, row_step=12 * n, data=_byte_array(buf),
                       is_dense=bool(np.isfinite(buf).all()))


def cloud_to_arrays(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with float32 ``x, y, z`` (and optionally a packed ``rgb``) -> ``(xyz (H, W, 3) float32,
    rgb (H, W, 3) uint8 or None)``. Honours point_step, row_step and byte order. An unorganised cloud of no points
    (``height`` 1, ``width`` 0) gives ``(1, 0, 3)``."""
    h, w = int(msg.height), int(msg.width)
    if h == 1 and w == 0 and {f.name for f in msg.fields} >= set("xyz"):
        return np.zeros((1, 0, 3), np.float32), None
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
# Laser scan
# ----------------------------------------------------------------------------------------------------------------
def scan_to_laser_scan(scan: Scan, header: Header, frame_id: str) -> LaserScan:
    """A core :class:`~dna_depth_core.inference.ground.Scan` -> ``sensor_msgs/LaserScan`` with ``header``'s stamp
    and ``frame_id`` (the levelled frame the scan is measured in). All beams are measured at once (a camera frame):
    ``time_increment`` and ``scan_time`` are 0. Ranges keep the REP 117 values; no intensities."""
    if not frame_id:
        raise ValueError("frame_id of the scan is empty")
    ranges = np.ascontiguousarray(scan.ranges, dtype=np.float32)
    msg = LaserScan()
    msg.header = Header(stamp=Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec)),
                        frame_id=str(frame_id))
    msg.angle_min, msg.angle_max = float(scan.angle_min), float(scan.angle_max)
    msg.angle_increment = float(scan.angle_increment)
    msg.time_increment, msg.scan_time = 0.0, 0.0
    msg.range_min, msg.range_max = float(scan.range_min), float(scan.range_max)
    msg.ranges = array.array("f", ranges.tobytes())
    return msg


# ----------------------------------------------------------------------------------------------------------------
# Scale state
# ----------------------------------------------------------------------------------------------------------------
SCALE_STATUS_NAME = "dna_depth: metric scale"


def scale_status(state: ScaleState, hardware_id: str = "") -> DiagnosticStatus:
    """The scale's state as a ``diagnostic_msgs/DiagnosticStatus`` named :data:`SCALE_STATUS_NAME`.

    Level: OK when the depth is metric and (frozen or converged); WARN while the scale is relative (``none``),
    has no measurement yet, or has not converged. ``values`` (KeyValue, strings): ``mode``, ``value`` (the
    factor applied, ``%.6g``), ``metric``, ``converged``, ``frozen``, ``withheld`` (``true``/``false``),
    ``measured``, ``rejected``, ``failed`` (frame counts), ``last_measurement`` and ``spread`` (``%.6g``, empty
    when there is none).
    """
    def flag(b: bool) -> str:
        return "true" if b else "false"

    def num(x) -> str:
        return "" if x is None else f"{x:.6g}"

    if state.mode == "none":
        level, message = DiagnosticStatus.WARN, "relative depth (scale.mode none): not metres"
    elif not state.metric:
        level, message = DiagnosticStatus.WARN, "no ground-plane measurement yet: depth is not metric"
    elif state.frozen:
        level, message = DiagnosticStatus.OK, f"metric, frozen at {state.value:.4g}"
    elif state.converged:
        level, message = DiagnosticStatus.OK, f"metric, converged at {state.value:.4g}"
    else:
        level, message = DiagnosticStatus.WARN, f"metric, not converged yet ({state.value:.4g})"
    if state.withheld:
        message += "; depth withheld"
    values = [("mode", state.mode), ("value", num(state.value)), ("metric", flag(state.metric)),
              ("converged", flag(state.converged)), ("frozen", flag(state.frozen)),
              ("withheld", flag(state.withheld)), ("measured", str(state.measured)),
              ("rejected", str(state.rejected)), ("failed", str(state.failed)),
              ("last_measurement", num(state.last_measurement)), ("spread", num(state.spread))]
    return DiagnosticStatus(level=level, name=SCALE_STATUS_NAME, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values])


def scale_to_diagnostics(state: ScaleState, header: Header, hardware_id: str = "") -> DiagnosticArray:
    """A ``DiagnosticArray`` stamped with the frame's header holding the one :func:`scale_status`."""
    return DiagnosticArray(header=copy_header(header), status=[scale_status(state, hardware_id)])
