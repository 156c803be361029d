"""The project's one camera model: pinhole intrinsics, how they follow resizes, crops and flips, KITTI's default,
and how a ``sensor_msgs/CameraInfo`` is read. Every data source, the trainer, the evaluator and the ROS node call
these functions; nothing else converts intrinsics.

Conventions (docs/conventions.md):

- ``K`` is a ``(3, 3)`` float64 array in pixels of the image it is used with. Pixel ``(u, v)`` has its origin at
  the *centre* of the top-left pixel (as ROS and OpenCV), so an image ``W`` wide spans ``u`` in ``[-0.5, W-0.5]``.
- *Normalised* intrinsics describe the same camera independently of the resolution: coordinates are measured from
  the image's top-left *corner* in units of the image size, ``u_n = (u + 0.5) / W``. Hence ``fx_n = fx / W``,
  ``cx_n = (cx + 0.5) / W`` (and likewise with ``H``), and the centre of any image is ``cx_n = 0.5``. Resizing an
  image is then exact for every pixel-centre resampler (OpenCV, ``interpolate(align_corners=False)``):
  ``resize_K(K, src, dst) = pixel_K(normalise_K(K, src), dst)``, i.e. ``cx' = (cx + 0.5) * sx - 0.5``.
- Sizes are ``(width, height)`` tuples, as OpenCV's.

CameraInfo: :func:`camera_info_intrinsics` accepts an rclpy message, a ``rosbags`` message (same field names) and
a ROS 1 message (upper-case ``K``, ``P``, ``D``). It picks ``P`` (the rectified image's intrinsics) or ``K``,
applies the region of interest and binning, and checks that the result is plausible for the image size
(:func:`intrinsics_problems`). Each problem has its own key, so a caller can log each kind separately.
A calibration YAML (:func:`intrinsics_from_yaml`: what ``camera_calibration`` writes, or a flat K) is read with the
same rule.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

Size = tuple[int, int]  # (width, height)

#: KITTI's intrinsics as the self-supervised protocol uses them for every frame, normalised
#: (fx/W = 0.58, fy/H = 1.92, principal point at the image centre).
KITTI_K_NORMALISED = np.array([[0.58, 0.0, 0.5], [0.0, 1.92, 0.5], [0.0, 0.0, 1.0]])

#: Where :func:`camera_info_intrinsics` takes the intrinsics from: ``P`` when it holds positive focal lengths
#: (the rectified image's camera), else ``K`` (``"auto"``); or always one of them.
INTRINSICS_SOURCES = ("auto", "K", "P")

#: Plausibility bounds used by :func:`intrinsics_problems` (fractions of the image size).
FOCAL_RANGE = (0.05, 50.0)        # fx / W and fy / H: about 169 degrees to 1 degree of field of view
ASPECT_RANGE = (0.2, 5.0)         # (fy / fx): pixel aspect ratio, binning included
PRINCIPAL_MARGIN = 0.5            # cx within [-0.5 W, 1.5 W], cy likewise
MAX_BINNING = 64


def as_K(K: Any, name: str = "K") -> np.ndarray:
    """``K`` as a new float64 ``(3, 3)`` array; ``ValueError`` unless it is finite with ``fx, fy > 0``."""
    K = np.array(K, dtype=np.float64, copy=True)
    if K.shape != (3, 3):
        raise ValueError(f"{name} must have shape (3, 3), got {K.shape}")
    if not np.isfinite(K).all() or not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"{name} must be finite with fx, fy > 0, got fx={K[0, 0]:g}, fy={K[1, 1]:g}")
    return K


def _size(size: Sequence[float], name: str = "size") -> tuple[float, float]:
    w, h = (float(v) for v in size)
    if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
        raise ValueError(f"{name} must be a positive (width, height), got {tuple(size)}")
    return w, h


def normalise_K(K: Any, size: Sequence[float]) -> np.ndarray:
    """Pixel ``K`` of an image of ``size`` = (width, height) -> normalised intrinsics (see the module docstring)."""
    K = as_K(K)
    w, h = _size(size)
    Kn = K.copy()
    Kn[0, 2] += 0.5
    Kn[1, 2] += 0.5
    Kn[0] /= w
    Kn[1] /= h
    Kn[2] = (0.0, 0.0, 1.0)
    return Kn


def pixel_K(K_norm: Any, size: Sequence[float]) -> np.ndarray:
    """Normalised intrinsics -> pixel ``K`` at ``size`` = (width, height); the inverse of :func:`normalise_K`."""
    K = as_K(K_norm, "K_norm")
    w, h = _size(size)
    K[0] *= w
    K[1] *= h
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    K[2] = (0.0, 0.0, 1.0)
    return K


def resize_K(K: Any, src_size: Sequence[float], dst_size: Sequence[float]) -> np.ndarray:
    """``K`` of an image resized from ``src_size`` to ``dst_size`` (both (width, height)):
    ``fx' = fx sx``, ``cx' = (cx + 0.5) sx - 0.5`` with ``sx = dst_w / src_w`` (likewise along the height)."""
    return pixel_K(normalise_K(K, src_size), dst_size)


def crop_K(K: Any, x0: float, y0: float) -> np.ndarray:
    """``K`` of the crop whose top-left pixel is pixel ``(x0, y0)`` of the image: ``cx -= x0``, ``cy -= y0``."""
    K = as_K(K)
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def flip_K(K: Any, width: int):
    """``K`` of the horizontally flipped image: pixel ``u`` goes to ``width - 1 - u``, so ``cx' = width - 1 - cx``.

    ``K`` is a ``(..., 3, 3)`` numpy array or torch tensor in pixels of an image ``width`` wide; returns a copy of
    the same kind (the training datasets flip batches of tensors).
    """
    if tuple(K.shape[-2:]) != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got {tuple(K.shape)}")
    out = K.clone() if hasattr(K, "clone") else np.array(K, copy=True)
    out[..., 0, 2] = (width - 1) - out[..., 0, 2]
    return out


def centre_crop_box(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """The largest centred box ``(x0, y0, w, h)`` of a ``width`` x ``height`` image whose ``w / h`` is closest to
    ``aspect``."""
    if width <= 0 or height <= 0 or not aspect > 0:
        raise ValueError(f"need a positive image size and aspect, got {width}x{height}, aspect {aspect}")
    if width / height > aspect:
        w = min(width, max(1, int(round(height * aspect))))
        return (width - w) // 2, 0, w, height
    h = min(height, max(1, int(round(width / aspect))))
    return 0, (height - h) // 2, width, h


def network_K(K: Any, box: Sequence[int], net_size: Sequence[int]) -> np.ndarray:
    """``K`` of the network input made from the crop ``box`` = (x0, y0, w, h) of an image, resized to
    ``net_size`` = (width, height): the intrinsics that go with :func:`dna_depth_core.preprocess.prepare`."""
    x0, y0, w, h = box
    return resize_K(crop_K(K, x0, y0), (w, h), net_size)


def intrinsics_from_normalised(fx: float, fy: float, cx: float, cy: float, size: Sequence[float]) -> np.ndarray:
    """Pixel ``K`` at ``size`` from normalised ``fx/W, fy/H, cx_n, cy_n`` (e.g. the KITTI default)."""
    return pixel_K(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), size)


# ----------------------------------------------------------------------------------------------------------------
# Plausibility
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason to reject intrinsics: ``key`` names the field (``"camera_info.fx"``), ``message`` says what is
    wrong with which value."""

    key: str
    message: str


class CameraInfoError(ValueError):
    """CameraInfo (or intrinsics) that cannot be used. ``problems``: every :class:`Problem` found; the message is
    the first one's (and how many others there are)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        text = self.problems[0].message if self.problems else "unusable camera_info"
        if len(self.problems) > 1:
            text += f" (and {len(self.problems) - 1} other problem(s))"
        super().__init__(text)


def intrinsics_problems(K: Any, size: Sequence[float] | None = None, prefix: str = "intrinsics") -> list[Problem]:
    """What makes pixel ``K`` implausible for an image of ``size`` (``(width, height)``; None or zeros: only
    checks that need no size): non-finite entries, a last row other than ``[0, 0, 1]`` (e.g. a transposed K), focal
    lengths outside :data:`FOCAL_RANGE` of the image size (a normalised matrix has fx near 1), a pixel aspect
    ratio outside :data:`ASPECT_RANGE`, a principal point far outside the image. Empty list: plausible."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        return [Problem(f"{prefix}.shape", f"{prefix}: K must have 9 values (3x3), got shape {K.shape}")]
    names = (("fx", 0, 0), ("fy", 1, 1), ("cx", 0, 2), ("cy", 1, 2), ("skew", 0, 1))
    out = []
    for name, i, j in names:
        if not math.isfinite(K[i, j]):
            out.append(Problem(f"{prefix}.{name}", f"{prefix}: {name} is {K[i, j]} (must be finite)"))
    if out:
        return out
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (fx > 0 and fy > 0):
        return [Problem(f"{prefix}.focal", f"{prefix}: focal lengths must be > 0, got fx={fx:g}, fy={fy:g}")]
    if not np.allclose(K[2], (0.0, 0.0, 1.0)) or K[1, 0] != 0:
        out.append(Problem(f"{prefix}.layout", f"{prefix}: K is not an upper-triangular pinhole matrix (last row "
                                              f"{K[2].tolist()}, K[1][0]={K[1, 0]:g}); is it transposed?"))
    aspect = fy / fx
    if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        out.append(Problem(f"{prefix}.aspect", f"{prefix}: fy/fx = {aspect:.3g} (fx={fx:g}, fy={fy:g}) is outside "
                                              f"[{ASPECT_RANGE[0]:g}, {ASPECT_RANGE[1]:g}]"))
    if size is not None and size[0] > 0 and size[1] > 0:
        w, h = float(size[0]), float(size[1])
        lo, hi = FOCAL_RANGE
        for name, f, extent in (("fx", fx, w), ("fy", fy, h)):
            if not lo <= f / extent <= hi:
                out.append(Problem(f"{prefix}.{name}", f"{prefix}: {name}={f:g} px is implausible for a "
                                                       f"{int(w)}x{int(h)} image ({name}/size = {f / extent:.3g}, "
                                                       f"expected {lo:g}..{hi:g}; a normalised matrix?)"))
        m = PRINCIPAL_MARGIN
        for name, c, extent in (("cx", cx, w), ("cy", cy, h)):
            if not -m * extent <= c <= (1 + m) * extent:
                out.append(Problem(f"{prefix}.{name}", f"{prefix}: principal point {name}={c:g} px is far outside "
                                                       f"the {int(w)}x{int(h)} image"))
    return out


def check_intrinsics(K: Any, size: Sequence[float] | None = None, prefix: str = "intrinsics") -> np.ndarray:
    """``K`` as a float64 array when :func:`intrinsics_problems` finds nothing; :class:`CameraInfoError` otherwise."""
    problems = intrinsics_problems(K, size, prefix)
    if problems:
        raise CameraInfoError(problems)
    return np.array(K, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------
# CameraInfo
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CameraIntrinsics:
    """What a CameraInfo says about the image it accompanies: ``K`` (3, 3) pixels for an image of ``size`` =
    (width, height) (``(0, 0)`` when the message does not say), and which matrix it came from (``"K"`` or
    ``"P"``)."""

    K: np.ndarray
    size: Size
    source: str

    def at(self, size: Sequence[int]) -> np.ndarray:
        """``K`` for an image of ``size``: the same field of view, resized (unchanged when the sizes agree or the
        message gave none)."""
        if self.size[0] <= 0 or self.size[1] <= 0 or tuple(self.size) == tuple(size):
            return self.K.copy()
        return resize_K(self.K, self.size, size)


def _field(msg: Any, name: str) -> Any:
    """A CameraInfo field by its ROS 2 name (``k``), falling back to ROS 1's (``K``)."""
    value = getattr(msg, name, None)
    if value is None:
        value = getattr(msg, name.upper(), None)
    if value is None:
        raise CameraInfoError([Problem(f"camera_info.{name}", f"camera_info has no field '{name}' (is it a "
                                                             f"sensor_msgs/CameraInfo?)")])
    return value


def _field_numbers(msg: Any, name: str) -> np.ndarray:
    """A CameraInfo array field (``k``, ``p``, ``d``) as a flat float64 array; CameraInfoError naming it when it
    is not a sequence of numbers."""
    value = _field(msg, name)
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise CameraInfoError([Problem(f"camera_info.{name.upper()}", f"camera_info: {name.upper()} is not a "
                                                                     f"list of numbers")]) from None


def _integer(value: Any, what: str, key: str) -> int:
    """A CameraInfo integer field (a uint32 in the message) as an int; CameraInfoError naming ``what`` when it is
    not an integer (a whole finite float is accepted) or lies outside +-2**32."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok and isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        ok = True
    if not ok or not -(2 ** 32) < value < 2 ** 32:
        raise CameraInfoError([Problem(key, f"camera_info: {what} is {value!r:.40}, not a 32-bit integer")])
    return int(value)


def _matrix(msg: Any, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    values = _field_numbers(msg, name)
    if values.size != shape[0] * shape[1]:
        return None
    return values.reshape(shape)


def camera_info_intrinsics(msg: Any, source: str = "auto", image_size: Sequence[int] | None = None
                           ) -> CameraIntrinsics:
    """The pinhole intrinsics of the image that a ``sensor_msgs/CameraInfo`` describes.

    Args:
        msg: an rclpy, rosbags or ROS 1 CameraInfo (fields ``k``/``K``, ``p``/``P``, ``d``/``D``, ``width``,
            ``height``, ``binning_x``, ``binning_y``, ``roi``).
        source: ``"P"`` (the projection matrix: intrinsics of rectified images, what a depth network on an
            ``image_rect`` stream needs), ``"K"`` (the raw camera matrix), or ``"auto"``: P when it holds positive
            focal lengths, else K.
        image_size: (width, height) of the image it goes with, used for the plausibility checks when the message
            gives no size.
    Returns:
        :class:`CameraIntrinsics`; the region of interest (``cx -= x_offset``, size = the ROI's; given in
        unbinned pixels) and then binning ``b`` (pixel ``j`` is the centre of original pixels ``b j .. b j + b - 1``)
        are applied.
    Raises:
        CameraInfoError: every problem found (each with its own key): no usable matrix, implausible focal lengths
            or principal point for the image size, K and P that disagree, an ROI outside the image, binning out of
            range, non-finite distortion coefficients.
    """
    if source not in INTRINSICS_SOURCES:
        raise ValueError(f"intrinsics source '{source}' unknown; use one of {', '.join(INTRINSICS_SOURCES)}")
    problems: list[Problem] = []
    k = _matrix(msg, "k", (3, 3))
    p = _matrix(msg, "p", (3, 4))
    if k is None:
        problems.append(Problem("camera_info.K", "camera_info: K must have 9 values"))
    if p is None:
        problems.append(Problem("camera_info.P", "camera_info: P must have 12 values"))
    if problems:
        raise CameraInfoError(problems)
    p_valid = bool(np.isfinite(p[:, :3]).all() and p[0, 0] > 0 and p[1, 1] > 0)
    k_valid = bool(np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0)
    use_p = source == "P" or (source == "auto" and p_valid)
    which = "P" if use_p else "K"
    K = (p[:, :3] if use_p else k).copy()
    if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
        bad = [f"{n}={K[i, j]:g}" for n, i, j in (("fx", 0, 0), ("fy", 1, 1), ("cx", 0, 2), ("cy", 1, 2))
               if not (math.isfinite(K[i, j]) and (K[i, j] > 0 or n in ("cx", "cy")))]
        raise CameraInfoError([Problem(f"camera_info.{which}", f"camera_info has no valid intrinsics: {which} has "
                                                               f"{', '.join(bad) or 'no positive focal lengths'}")])

    problems += [q for q in intrinsics_problems(K, prefix="camera_info") if q.key == "camera_info.layout"]
    width = _integer(_field(msg, "width"), "width", "camera_info.size")
    height = _integer(_field(msg, "height"), "height", "camera_info.size")
    if width < 0 or height < 0:
        problems.append(Problem("camera_info.size", f"camera_info: width/height {width}x{height} are negative"))
    d = _field_numbers(msg, "d")
    if d.size and not np.isfinite(d).all():
        problems.append(Problem("camera_info.D", f"camera_info: distortion D has non-finite values "
                                                 f"{[float(v) for v in d]}"))
    if use_p and k_valid and np.isfinite(k).all():
        # P may re-scale and shift the rectified image a little, not by large factors.
        ratio = K[0, 0] / k[0, 0]
        if not 0.5 <= ratio <= 2.0:
            problems.append(Problem("camera_info.K_P", f"camera_info: P (fx={K[0, 0]:g}) and K (fx={k[0, 0]:g}) "
                                                       f"disagree by {ratio:.3g}x; is P normalised or from another "
                                                       f"camera? (set the intrinsics source to K to use K)"))

    # Region of interest (unbinned pixels), then binning.
    roi = getattr(msg, "roi", None)
    if roi is not None:
        rx, ry, rw, rh = (_integer(getattr(roi, f, None), f"roi.{f}", "camera_info.roi")
                          for f in ("x_offset", "y_offset", "width", "height"))
        full_frame = (rx, ry, rw, rh) in ((0, 0, width, height), (0, 0, 0, 0))
        if rw > 0 and rh > 0 and not full_frame:
            if width > 0 and height > 0 and (rx + rw > width or ry + rh > height):
                problems.append(Problem("camera_info.roi", f"camera_info: ROI x={rx} y={ry} {rw}x{rh} lies outside "
                                                           f"the {width}x{height} image"))
            K[0, 2] -= rx
            K[1, 2] -= ry
            width, height = rw, rh
        elif (rw > 0) != (rh > 0) or ((rw == 0 and rh == 0) and (rx or ry)):
            problems.append(Problem("camera_info.roi", f"camera_info: ROI x={rx} y={ry} {rw}x{rh} is malformed"))
    bx = _integer(_field(msg, "binning_x"), "binning_x", "camera_info.binning")
    by = _integer(_field(msg, "binning_y"), "binning_y", "camera_info.binning")
    if not (0 <= bx <= MAX_BINNING and 0 <= by <= MAX_BINNING):
        problems.append(Problem("camera_info.binning", f"camera_info: binning {bx}x{by} is out of range "
                                                       f"(0..{MAX_BINNING})"))
    else:
        bx, by = max(1, bx), max(1, by)
        if bx > 1 or by > 1:
            if width > 0 and height > 0:
                K = resize_K(K, (width, height), (width / bx, height / by))
                width, height = width // bx, height // by
            else:
                K = resize_K(K, (bx, by), (1, 1))
    K[2] = (0.0, 0.0, 1.0)
    size = (width, height) if width > 0 and height > 0 else (
        tuple(int(v) for v in image_size) if image_size is not None else None)
    problems += [q for q in intrinsics_problems(K, size, prefix="camera_info") if q.key != "camera_info.layout"]
    if problems:
        raise CameraInfoError(problems)
    return CameraIntrinsics(K=K, size=(width, height), source=which)


# ----------------------------------------------------------------------------------------------------------------
# Calibration files
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _CalibrationFile:
    """A calibration file's contents under CameraInfo's field names, for :func:`camera_info_intrinsics`."""

    k: np.ndarray
    p: np.ndarray
    d: np.ndarray
    width: int
    height: int
    binning_x: int = 0
    binning_y: int = 0


def _numbers(path: Path, value: Any, name: str, count: int | None) -> np.ndarray:
    """``value`` (a list, or a ``{data: [...]}`` mapping as ``camera_calibration`` writes) as a flat float array."""
    if isinstance(value, dict):
        value = value.get("data")
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {name} must be a list of numbers, got {value!r}") from None
    if count is not None and arr.size != count:
        raise ValueError(f"{path}: {name} must hold {count} numbers, got {arr.size}")
    return arr


def intrinsics_from_yaml(path: Any, source: str = "auto") -> CameraIntrinsics:
    """The intrinsics in a calibration YAML, read with the CameraInfo rule (:func:`camera_info_intrinsics`: ``P``
    when valid, else ``K``, or ``source``; the same plausibility checks).

    Formats:

    - ROS ``camera_calibration`` / ``camera_info_manager`` (what ``cameracalibrator`` writes): ``image_width``,
      ``image_height``, ``camera_matrix: {rows: 3, cols: 3, data: [9 numbers]}``, and optionally
      ``projection_matrix: {rows: 3, cols: 4, data: [12 numbers]}`` and ``distortion_coefficients: {data: [...]}``;
    - flat: ``width``, ``height`` and ``K: [9 numbers]`` (or ``k``), or ``fx``, ``fy``, ``cx``, ``cy``; optionally
      ``P: [12 numbers]`` (or ``p``) and ``D``.

    Without a projection matrix ``P = [K | 0]``. Pixel coordinates as CameraInfo's (origin at the centre of the
    top-left pixel).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not YAML, or a field missing or malformed (named, with the file).
        CameraInfoError: implausible intrinsics (each problem's message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    try:
        d = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a YAML file: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a calibration YAML (expected a mapping, got {type(d).__name__})")
    width, height = d.get("image_width", d.get("width")), d.get("image_height", d.get("height"))
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise ValueError(f"{path}: image_width/image_height (or width/height) must be positive integers, got "
                         f"{width!r} x {height!r}")
    if "camera_matrix" in d:
        k = _numbers(path, d["camera_matrix"], "camera_matrix", 9)
    elif "K" in d or "k" in d:
        k = _numbers(path, d.get("K", d.get("k")), "K", 9)
    elif all(name in d for name in ("fx", "fy", "cx", "cy")):
        fx, fy, cx, cy = (_numbers(path, [d[n]], n, 1)[0] for n in ("fx", "fy", "cx", "cy"))
        k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])
    else:
        raise ValueError(f"{path}: not a calibration YAML: it needs camera_matrix (camera_calibration format), or K, "
                         f"or fx, fy, cx, cy (found keys: {', '.join(map(str, d)) or 'none'})")
    p_value = d.get("projection_matrix", d.get("P", d.get("p")))
    p = (np.hstack([k.reshape(3, 3), np.zeros((3, 1))]).reshape(-1) if p_value is None
         else _numbers(path, p_value, "projection_matrix", 12))
    dist = _numbers(path, d.get("distortion_coefficients", d.get("D", d.get("d", []))), "distortion", None)
    try:
        return camera_info_intrinsics(_CalibrationFile(k, p, dist, width, height), source)
    except CameraInfoError as exc:
        raise CameraInfoError([Problem(q.key, f"{path}: {q.message}") for q in exc.problems]) from None


__all__ = [
    "ASPECT_RANGE",
    "CameraInfoError",
    "CameraIntrinsics",
    "FOCAL_RANGE",
    "INTRINSICS_SOURCES",
    "KITTI_K_NORMALISED",
    "Problem",
    "as_K",
    "camera_info_intrinsics",
    "centre_crop_box",
    "check_intrinsics",
    "crop_K",
    "flip_K",
    "intrinsics_from_normalised",
    "intrinsics_from_yaml",
    "intrinsics_problems",
    "network_K",
    "normalise_K",
    "pixel_K",
    "resize_K",
]
