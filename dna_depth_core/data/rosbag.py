"""Training data straight from ROS bags, read with the pure-Python ``rosbags`` library (no ROS install needed).

Reads ROS 2 bags (sqlite3 and mcap storage) and ROS 1 bags through :class:`rosbags.highlevel.AnyReader`, and
writes ROS 2 bags (mcap or sqlite3) with :class:`rosbags.rosbag2.Writer`. Nothing here imports rclpy.

- Topics: one image topic (``sensor_msgs/Image`` in rgb8/bgr8/rgba8/bgra8/mono8/mono16/rgb16/bgr16/bayer_*/yuv422,
  or ``sensor_msgs/CompressedImage`` jpeg/png) and one ``sensor_msgs/CameraInfo`` topic. Either may be left out
  when the bag holds exactly one topic of that kind. Intrinsics come per bag from the first CameraInfo (its ``K``;
  ROS pixel coordinates have the origin at the centre of the top-left pixel, as in this project); a calibration
  YAML (:func:`load_calibration`) overrides them. Images are assumed undistorted (use an ``image_rect`` topic).
- Timestamps: ``header.stamp`` when set, else the bag's receive time.
- Neighbours are paired by time (:func:`build_chains`): each bag's frames are linked into chains whose
  consecutive members are ``frame_spacing`` seconds apart (within ``tolerance``), whatever the camera rate (a
  30 Hz camera at 0.1 s gives three interleaved chains); frame id ``k`` of a target is the chain member ``k``
  steps away, about ``k * frame_spacing`` seconds.
- Near-static frames are skipped: a target whose mean absolute grey-level change to any of its source frames
  (images in [0, 1], on a 64-pixel-wide thumbnail) is below ``static_threshold`` is dropped.
- Train/validation split by time: in each bag, samples whose frames all lie in the last ``val_fraction`` of the
  bag's time span are validation; samples straddling the boundary are dropped.
- Damage: a truncated or corrupt bag raises :class:`BagReadError` naming the bag, the message index and the
  timestamp where it broke; the messages read before the damage stay usable (``on_damage="keep"`` keeps them with
  a warning; the error's ``frames`` holds them otherwise). A truncated mcap file (a recording that was killed),
  which ``rosbags`` cannot open, is scanned record by record up to the damage.

:class:`BagDataset` yields :class:`~dna_depth_core.data.kitti.KittiDataset` items (it is a subclass: the same
resizing, augmentation and intrinsics scaling code). :func:`extract_bag` writes the same samples as a KITTI-style
folder + split files (a cache for repeated training); :func:`write_synthetic_bag` writes a synthetic drive.
"""
from __future__ import annotations

import dataclasses
import re
import struct
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from dna_depth_core.data.kitti import KittiDataset, SplitEntry

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STORAGES = ("mcap", "sqlite3")
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_DEPTH_TOPIC = "/camera/depth_gt"
THUMB_WIDTH = 64


class BagReadError(RuntimeError):
    """A bag that cannot be read (fully). ``bag``, ``index`` (messages read before the damage), ``timestamp``
    (ns of the last good message, or None) and ``frames`` (a :class:`BagFrames` of what was read, or None)."""

    def __init__(self, message: str, bag=None, index: int | None = None, timestamp: int | None = None):
        super().__init__(message)
        self.bag = None if bag is None else str(bag)
        self.index = index
        self.timestamp = timestamp
        self.frames: BagFrames | None = None


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def _fmt_ns(ns: int | None) -> str:
    return "none" if ns is None else f"{ns / 1e9:.6f} s"


# ----------------------------------------------------------------------------------------------------------------
# Reading messages
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BagMessage:
    topic: str
    msgtype: str
    timestamp: int  # bag receive time, ns
    msg: object     # the deserialised message (rosbags dataclass)
    index: int      # index among all messages yielded from this bag


def _mcap_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".mcap":
        return path
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        return files[0] if files else None
    return None


def _metadata_topics(path: Path) -> list[tuple[str, str]]:
    """``[(topic, type)]`` in the order of the bag's metadata.yaml (empty when absent/unreadable)."""
    import yaml

    meta = (path if path.is_dir() else path.parent) / "metadata.yaml"
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        return [(t["topic_metadata"]["name"], t["topic_metadata"]["type"]) for t in info["topics_with_message_count"]]
    except Exception:  # noqa: BLE001 - best effort
        return []


def _scan_mcap(path: Path, topics: set[str] | None, typestore) -> Iterator[BagMessage]:
    """Read an mcap file record by record (no summary needed); raise BagReadError where it breaks."""
    from rosbags.rosbag2.storage_mcap import DECOMPRESSORS

    data = path.read_bytes()
    if data[:8] != b"\x89MCAP0\r\n":
        raise BagReadError(f"{path}: not an mcap file (bad magic)", bag=path, index=0)
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    fallback = _metadata_topics(path)  # writers that keep channels only in the summary: ids follow this order
    state = {"n": 0, "t": None}

    def records(buf: bytes, start: int, base: int):
        pos = start
        while pos < len(buf):
            if pos + 9 > len(buf):
                raise ValueError(f"record header cut at byte {base + pos}")
            op = buf[pos]
            (length,) = struct.unpack_from("<Q", buf, pos + 1)
            if pos + 9 + length > len(buf):
                if op == 0x06 and base == 0:  # a cut chunk: an uncompressed one still holds whole records
                    yield -1, buf[pos + 9:], pos
                raise ValueError(f"record (opcode 0x{op:02x}, {length} bytes) cut at byte {base + pos}")
            yield op, buf[pos + 9: pos + 9 + length], base + pos
            pos += 9 + length

    def string(buf: bytes, pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<I", buf, pos)
        return buf[pos + 4: pos + 4 + n].decode("utf-8"), pos + 4 + n

    def handle(op: int, body: bytes, at: int):
        if op == 0x03:  # schema
            (sid,) = struct.unpack_from("<H", body, 0)
            schemas[sid], _ = string(body, 2)
        elif op == 0x04:  # channel
            cid, sid = struct.unpack_from("<HH", body, 0)
            topic, _ = string(body, 4)
            channels[cid] = (topic, schemas.get(sid, ""))
        elif op == 0x05:  # message
            cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", body, 0)
            chan = channels.get(cid)
            if chan is None and 1 <= cid <= len(fallback):
                chan = fallback[cid - 1]
            if chan is None:
                return
            topic, msgtype = chan
            if topics is not None and topic not in topics:
                state["n"] += 1
                state["t"] = log_time
                return
            try:
                msg = typestore.deserialize_cdr(bytes(body[22:]), msgtype)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"message at byte {at} ({topic}) does not deserialise: {exc}") from None
            yield BagMessage(topic, msgtype, log_time, msg, state["n"])
            state["n"] += 1
            state["t"] = log_time
        elif op == -1:  # the start of a cut chunk: its complete inner records (uncompressed chunks only)
            try:
                comp, pos = string(body, 28)
            except (struct.error, UnicodeDecodeError):
                return
            if comp == "":
                inner = body[pos + 8:]
                for sub in records(inner, 0, at + 9 + pos + 8):
                    yield from handle(*sub)
        elif op == 0x06:  # chunk
            _t0, _t1, size, crc = struct.unpack_from("<QQQI", body, 0)
            comp, pos = string(body, 28)
            (n,) = struct.unpack_from("<Q", body, pos)
            try:
                raw = DECOMPRESSORS[comp](body[pos + 8: pos + 8 + n], size)
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"chunk at byte {at} does not decompress ({comp or 'none'}): {exc}") from None
            for sub in records(raw, 0, at):
                yield from handle(*sub)

    try:
        for rec in records(data, 8, 0):
            if rec[0] == 0x02:  # footer: the data section is over
                return
            yield from handle(*rec)
    except (ValueError, struct.error, UnicodeDecodeError, KeyError) as exc:
        raise BagReadError(
            f"bag {path} is damaged: {exc}; {state['n']} messages read before the damage (last timestamp "
            f"{_fmt_ns(state['t'])})", bag=path, index=state["n"], timestamp=state["t"]) from None


def iter_bag(path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Deserialised messages of one bag (ROS 1 ``.bag``, ROS 2 folder or ``.mcap``/``.db3``), in time order.

    ``topics`` restricts the output. Raises :class:`BagReadError` where the bag breaks, after yielding every
    message before the damage.
    """
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    wanted = None if topics is None else set(topics)
    typestore = _typestore()
    n, last = 0, None
    reader = None
    try:
        reader = AnyReader([path], default_typestore=typestore)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises many kinds; name the bag
        reader = None
        mcap = _mcap_file(path)
        if mcap is None:
            raise BagReadError(f"bag {path} cannot be opened ({exc}); no messages could be read",
                               bag=path, index=0) from None
        warnings.warn(f"bag {path} cannot be opened normally ({exc}); scanning {mcap.name} record by record",
                      stacklevel=2)
        yield from _scan_mcap(mcap, wanted, typestore)
        return
    try:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        it = reader.messages(connections=conns) if conns else iter(())
        while True:
            try:
                conn, t, raw = next(it)
                msg = reader.deserialize(raw, conn.msgtype)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001
                raise BagReadError(
                    f"bag {path} is damaged at message {n} (after timestamp {_fmt_ns(last)}): {exc}; {n} messages "
                    "read before the damage", bag=path, index=n, timestamp=last) from None
            yield BagMessage(conn.topic, conn.msgtype, int(t), msg, n)
            n, last = n + 1, int(t)
    finally:
        reader.close()


def bag_topics(path) -> list[tuple[str, str, int]]:
    """``[(topic, msgtype, count)]`` of a bag (from its index; a damaged mcap: from a scan)."""
    from rosbags.highlevel import AnyReader

    path = Path(path)
    try:
        with AnyReader([path], default_typestore=_typestore()) as reader:
            out: dict[tuple[str, str], int] = {}
            for c in reader.connections:
                out[(c.topic, c.msgtype)] = out.get((c.topic, c.msgtype), 0) + int(c.msgcount)
            return [(t, m, n) for (t, m), n in out.items()]
    except Exception:  # noqa: BLE001
        counts: dict[tuple[str, str], int] = {}
        try:
            for m in iter_bag(path):
                counts[(m.topic, m.msgtype)] = counts.get((m.topic, m.msgtype), 0) + 1
        except BagReadError:
            if not counts:
                raise
        return [(t, m, n) for (t, m), n in counts.items()]


# ----------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------
_COLOR = {"rgb8": (3, 1, (0, 1, 2)), "bgr8": (3, 1, (2, 1, 0)), "rgba8": (4, 1, (0, 1, 2)),
          "bgra8": (4, 1, (2, 1, 0)), "mono8": (1, 1, (0, 0, 0)), "8uc1": (1, 1, (0, 0, 0)),
          "8uc3": (3, 1, (2, 1, 0)), "rgb16": (3, 2, (0, 1, 2)), "bgr16": (3, 2, (2, 1, 0)),
          "rgba16": (4, 2, (0, 1, 2)), "bgra16": (4, 2, (2, 1, 0)), "mono16": (1, 2, (0, 0, 0))}
_BAYER = {"bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
          "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB}
_YUV = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
        "yuyv": cv2.COLOR_YUV2RGB_YUY2}
IMAGE_ENCODINGS = tuple(_COLOR) + tuple(_BAYER) + tuple(_YUV)


def decode_image(msg, msgtype: str | None = None) -> np.ndarray:
    """A ``sensor_msgs/Image`` or ``CompressedImage`` (rosbags message) as ``(H, W, 3)`` uint8 RGB."""
    msgtype = msgtype or getattr(msg, "__msgtype__", "")
    data = np.frombuffer(memoryview(msg.data), np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    data = data.view(np.uint8).reshape(-1)
    if msgtype.endswith("CompressedImage"):
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise ValueError(f"CompressedImage (format '{msg.format}') could not be decoded as jpeg/png")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    enc = str(msg.encoding).lower()
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h} (encoding '{msg.encoding}')")
    if enc in _COLOR:
        ch, bpc, idx = _COLOR[enc]
    elif enc in _BAYER:
        ch, bpc, idx = 1, 1, None
    elif enc in _YUV:
        ch, bpc, idx = 2, 1, None
    else:
        raise ValueError(f"unsupported image encoding '{msg.encoding}' (supported: {', '.join(IMAGE_ENCODINGS)})")
    row = w * ch * bpc
    if step < row or data.size < step * h:
        raise ValueError(f"image data too short: {data.size} bytes for {w}x{h} '{msg.encoding}' with step {step}")
    rows = data[: step * h].reshape(h, step)[:, :row]
    if bpc == 2:
        dt = np.dtype(">u2" if msg.is_bigendian else "<u2")
        px = np.ascontiguousarray(rows).view(dt).reshape(h, w, ch)
        px = (px >> 8).astype(np.uint8)
    else:
        px = rows.reshape(h, w, ch)
    if idx is not None:
        return np.ascontiguousarray(px[..., list(idx)])
    code = _BAYER.get(enc, _YUV.get(enc))
    return cv2.cvtColor(np.ascontiguousarray(px.reshape(h, w) if ch == 1 else px), code)


def image_encoding(msg, msgtype: str) -> str:
    return f"compressed:{msg.format}" if msgtype.endswith("CompressedImage") else str(msg.encoding)


def camera_info_intrinsics(msg) -> tuple[np.ndarray, tuple[int, int]]:
    """``(K (3, 3) pixels, (width, height))`` of a CameraInfo message (its ``K``; ``P`` when ``K`` is zero).

    ROS 2 names the fields ``k``/``p``, ROS 1 ``K``/``P``; both are read."""

    def field(name: str):
        value = getattr(msg, name, None)
        return getattr(msg, name.upper()) if value is None else value

    K = np.asarray(field("k"), np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        K = np.asarray(field("p"), np.float64).reshape(3, 4)[:, :3]
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError("CameraInfo has neither a valid K nor P (fx, fy must be > 0)")
    return K, (int(msg.width), int(msg.height))


def normalise_K(K, size) -> np.ndarray:
    """Pixel K at ``size`` = (width, height) -> the project's normalised K (first row / W, second row / H)."""
    Kn = np.array(K, np.float64, copy=True)
    Kn[0] /= float(size[0])
    Kn[1] /= float(size[1])
    Kn[2] = (0.0, 0.0, 1.0)
    return Kn


def pixel_K(K_norm, size) -> np.ndarray:
    """The inverse of :func:`normalise_K`: normalised K -> pixel K at ``size`` = (width, height)."""
    K = np.array(K_norm, np.float64, copy=True)
    K[0] *= float(size[0])
    K[1] *= float(size[1])
    return K


def load_calibration(path) -> tuple[np.ndarray, tuple[int, int]]:
    """Intrinsics from a calibration YAML: ``(K (3, 3) pixels, (width, height))``.

    Accepts the ROS ``camera_calibration`` format (``image_width``, ``image_height``, ``camera_matrix: {data:
    [9 numbers]}``; ``projection_matrix`` is used when ``camera_matrix`` is absent) or a flat one: ``width``,
    ``height`` and ``K: [9 numbers]`` (or ``fx, fy, cx, cy``).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    d = yaml.safe_load(path.read_text()) or {}
    try:
        w = int(d.get("image_width", d.get("width")))
        h = int(d.get("image_height", d.get("height")))
        if "camera_matrix" in d:
            K = np.asarray(d["camera_matrix"]["data"], np.float64).reshape(3, 3)
        elif "projection_matrix" in d:
            K = np.asarray(d["projection_matrix"]["data"], np.float64).reshape(3, 4)[:, :3]
        elif "K" in d or "k" in d:
            K = np.asarray(d.get("K", d.get("k")), np.float64).reshape(3, 3)
        else:
            K = np.array([[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], np.float64)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a calibration YAML (need image_width/image_height and camera_matrix, or "
                         f"width/height and K or fx/fy/cx/cy): {exc}") from None
    if K[0, 0] <= 0 or K[1, 1] <= 0 or w <= 0 or h <= 0:
        raise ValueError(f"{path}: fx, fy, width and height must be > 0")
    return K, (w, h)


# ----------------------------------------------------------------------------------------------------------------
# Frames of one bag
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BagFrames:
    """The decoded frames of one bag's image topic, in time order."""

    bag: str
    image_topic: str
    stamps: np.ndarray                 # (N,) int64 ns
    images: list[np.ndarray]           # (h, w, 3) uint8 RGB, resized to ``size`` when one was asked
    original_size: tuple[int, int]     # (width, height) of the images in the bag
    K_norm: np.ndarray | None          # normalised intrinsics (CameraInfo or calibration), None when neither
    encodings: list[str]
    depth: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # stamp -> depth (GT topic, if read)
    damaged: str | None = None         # the BagReadError text when the bag broke (frames before it are kept)

    def __len__(self) -> int:
        return len(self.stamps)


def _pick_topic(found: dict[str, str], kinds: Sequence[str], what: str, bag: Path, given: str | None) -> str | None:
    cands = [t for t, typ in found.items() if typ in kinds]
    if given is not None:
        if given not in found:
            raise ValueError(f"bag {bag}: no topic {given}; its {what} topics: {', '.join(cands) or 'none'}")
        if found[given] not in kinds:
            raise ValueError(f"bag {bag}: topic {given} is {found[given]}, not {' or '.join(kinds)}")
        return given
    if len(cands) > 1 and kinds is IMAGE_TYPES:  # depth/disparity images are not camera frames
        cands = [t for t in cands if "depth" not in t.lower() and "disp" not in t.lower()] or cands
    if len(cands) == 1:
        return cands[0]
    if not cands:
        return None
    raise ValueError(f"bag {bag}: several {what} topics ({', '.join(sorted(cands))}); choose one")


def read_bag_frames(path, image_topic: str | None = None, camera_info_topic: str | None = None,
                    size: tuple[int, int] | None = None, calibration=None, on_damage: str = "error",
                    depth_topic: str | None = None) -> BagFrames:
    """Decode the image topic of one bag (resized to ``size`` = (width, height) when given).

    ``calibration`` (a YAML path, see :func:`load_calibration`) overrides the CameraInfo intrinsics. A damaged
    bag raises :class:`BagReadError` (its ``frames`` holds what was read) when ``on_damage="error"``, or warns and
    returns the frames before the damage when ``"keep"``.
    """
    if on_damage not in ("error", "keep"):
        raise ValueError(f"on_damage must be 'error' or 'keep', got {on_damage!r}")
    path = Path(path)
    found = {t: m for t, m, _ in bag_topics(path)}
    img_topic = _pick_topic(found, IMAGE_TYPES, "image", path, image_topic)
    if img_topic is None:
        raise ValueError(f"bag {path}: no sensor_msgs/Image or CompressedImage topic (topics: "
                         f"{', '.join(sorted(found)) or 'none'})")
    info_topic = _pick_topic(found, (CAMERA_INFO_TYPE,), "camera_info", path, camera_info_topic)
    topics = {img_topic} | ({info_topic} if info_topic else set()) | ({depth_topic} if depth_topic in found else set())
    stamps, images, encodings, depth = [], [], [], {}
    K_norm, original_size = None, None
    damaged = None

    def stamp_of(m: BagMessage) -> int:
        st = getattr(getattr(m.msg, "header", None), "stamp", None)
        ns = int(st.sec) * 1_000_000_000 + int(st.nanosec) if st is not None else 0
        return ns if ns > 0 else m.timestamp

    try:
        for m in iter_bag(path, topics):
            if m.topic == info_topic and K_norm is None:
                K, sz = camera_info_intrinsics(m.msg)
                if sz[0] <= 0 or sz[1] <= 0:
                    continue
                K_norm = normalise_K(K, sz)
            elif m.topic == img_topic:
                try:
                    rgb = decode_image(m.msg, m.msgtype)
                except ValueError as exc:
                    raise BagReadError(f"bag {path}: image message {m.index} ({img_topic}, timestamp "
                                       f"{_fmt_ns(m.timestamp)}) cannot be decoded: {exc}",
                                       bag=path, index=m.index, timestamp=m.timestamp) from None
                h0, w0 = rgb.shape[:2]
                if original_size is None:
                    original_size = (w0, h0)
                if size is not None and (w0, h0) != tuple(size):
                    interp = cv2.INTER_AREA if (w0 >= size[0] and h0 >= size[1]) else cv2.INTER_LINEAR
                    rgb = cv2.resize(rgb, tuple(size), interpolation=interp)
                stamps.append(stamp_of(m))
                images.append(rgb)
                encodings.append(image_encoding(m.msg, m.msgtype))
            elif m.topic == depth_topic:
                st = stamp_of(m)
                d = np.frombuffer(memoryview(m.msg.data), np.float32 if m.msg.encoding == "32FC1" else np.uint16)
                d = d.reshape(int(m.msg.height), int(m.msg.width)).astype(np.float32)
                if m.msg.encoding != "32FC1":
                    d = d / 1000.0
                depth[st] = np.nan_to_num(d, nan=0.0)
    except BagReadError as exc:
        damaged = str(exc)
        err = exc
    if calibration is not None:
        K, sz = load_calibration(calibration)
        K_norm = normalise_K(K, sz)
    order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
    frames = BagFrames(bag=str(path), image_topic=img_topic, stamps=np.asarray(stamps, np.int64)[order],
                       images=[images[i] for i in order], original_size=original_size or (0, 0), K_norm=K_norm,
                       encodings=[encodings[i] for i in order], depth=depth, damaged=damaged)
    if damaged is not None:
        if on_damage == "error":
            err.frames = frames
            raise err
        warnings.warn(f"{damaged}; using the {len(frames)} frames before the damage", stacklevel=2)
    return frames


# ----------------------------------------------------------------------------------------------------------------
# Pairing, static filter, split
# ----------------------------------------------------------------------------------------------------------------
def build_chains(stamps, spacing: float, tolerance: float | None = None) -> list[list[int]]:
    """Link frames (``stamps`` ns, sorted) into chains of members about ``spacing`` s apart.

    Each frame not yet used starts a chain, extended with the unused frame closest to ``t + spacing`` when it is
    within ``tolerance`` (default ``spacing / 2``). Every frame ends up in exactly one chain.
    """
    if spacing <= 0:
        raise ValueError(f"frame_spacing must be > 0, got {spacing}")
    tol = 0.5 * spacing if tolerance is None else float(tolerance)
    t = np.asarray(stamps, np.int64)
    used = np.zeros(len(t), bool)
    step, tol_ns = int(round(spacing * 1e9)), int(round(tol * 1e9))
    chains = []
    for i in range(len(t)):
        if used[i]:
            continue
        chain, cur = [i], i
        used[i] = True
        while True:
            want = t[cur] + step
            lo, hi = np.searchsorted(t, want - tol_ns, "left"), np.searchsorted(t, want + tol_ns, "right")
            cand = [j for j in range(lo, hi) if not used[j] and j > cur]
            if not cand:
                break
            nxt = min(cand, key=lambda j: (abs(int(t[j]) - int(want)), j))
            chain.append(nxt)
            used[nxt] = True
            cur = nxt
        chains.append(chain)
    return chains


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """Grey thumbnail (``THUMB_WIDTH`` wide) in [0, 1], float32, for the photometric-change test."""
    h, w = rgb.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, int(round(h * tw / w)))
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def photometric_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (:func:`thumbnail`), in [0, 1]."""
    return float(np.mean(np.abs(a - b)))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One training sample: ``frames`` maps each frame id to an index into the bag's frames."""

    bag: int
    target: int
    frames: dict
    stamp: int


def make_samples(frames: BagFrames, frame_ids: Sequence[int], spacing: float, static_threshold: float,
                 val_fraction: float, tolerance: float | None = None, bag_index: int = 0,
                 stats: dict | None = None) -> dict[str, list[Sample]]:
    """``{"train": [...], "val": [...]}`` samples of one bag: time pairing, static filter, split by time."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out: dict[str, list[Sample]] = {"train": [], "val": []}
    st = {"frames": len(frames), "triplets": 0, "static": 0, "straddling": 0}
    if len(frames) == 0:
        if stats is not None:
            stats.update(st)
        return out
    t = frames.stamps
    t_split = t[0] + (1.0 - val_fraction) * (t[-1] - t[0]) if val_fraction > 0 else np.inf
    thumbs: dict[int, np.ndarray] = {}

    def thumb(i):
        if i not in thumbs:
            thumbs[i] = thumbnail(frames.images[i])
        return thumbs[i]

    for chain in build_chains(t, spacing, tolerance):
        for pos in range(len(chain)):
            if not all(0 <= pos + f < len(chain) for f in frame_ids):
                continue
            members = {f: chain[pos + f] for f in frame_ids}
            st["triplets"] += 1
            tgt = members[0]
            change = min((photometric_change(thumb(tgt), thumb(j)) for f, j in members.items() if f != 0),
                         default=np.inf)
            if change < static_threshold:
                st["static"] += 1
                continue
            times = [t[j] for j in members.values()]
            if max(times) < t_split:
                part = "train"
            elif min(times) >= t_split:
                part = "val"
            else:
                st["straddling"] += 1
                continue
            out[part].append(Sample(bag_index, tgt, members, int(t[tgt])))
    for part in out:
        out[part].sort(key=lambda s: s.stamp)
    st.update(train=len(out["train"]), val=len(out["val"]))
    if stats is not None:
        stats.update(st)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------------
def _bag_label(path: Path, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", (path.stem if path.is_file() else path.name)) or "bag"
    label, k = base, 1
    while label in taken:
        k += 1
        label = f"{base}_{k}"
    taken.add(label)
    return label


class BagDataset(KittiDataset):
    """KittiDataset-layout samples read straight from ROS bags (see the module docstring).

    Args:
        bags: bag paths (ROS 2 folders / .mcap / .db3, ROS 1 .bag).
        height, width, frame_ids, num_scales, is_train, seed: as :class:`KittiDataset`.
        part: ``"train"`` or ``"val"`` (the last ``val_fraction`` of each bag, by time), or ``"all"``.
        image_topic, camera_info_topic: topics (None: the bag's only one of that kind).
        calibration: a YAML overriding every bag's intrinsics.
        frame_spacing, tolerance: seconds between neighbour frames (tolerance default: half the spacing).
        static_threshold: minimum mean absolute grey change (0..1) between target and each source.
        on_damage: ``"error"`` or ``"keep"`` (use the messages before the damage, with a warning).

    Items are KittiDataset's, with ``folder`` = the bag's label and ``frame_index`` = the target's index among
    the bag's frames; ``stamp`` (ns) is added. ``stats`` holds per-bag counts (frames, static, train, val).
    """

    def __init__(self, bags, height: int, width: int, frame_ids: Sequence[int] = (0, -1, 1), num_scales: int = 4,
                 is_train: bool = False, part: str = "train", image_topic: str | None = None,
                 camera_info_topic: str | None = None, calibration=None, frame_spacing: float = 0.1,
                 static_threshold: float = 0.01, val_fraction: float = 0.1, tolerance: float | None = None,
                 on_damage: str = "error", seed: int | None = None):
        if isinstance(bags, (str, Path)):
            bags = [bags]
        bags = [Path(b) for b in bags]
        if not bags:
            raise ValueError("no bag given")
        if part not in ("train", "val", "all"):
            raise ValueError(f"part must be train, val or all, got {part!r}")
        self.bags: list[BagFrames] = []
        self.labels: list[str] = []
        self.stats: list[dict] = []
        samples: list[Sample] = []
        entries: list[SplitEntry] = []
        taken: set = set()
        for b, path in enumerate(bags):
            fr = read_bag_frames(path, image_topic, camera_info_topic, size=(int(width), int(height)),
                                 calibration=calibration, on_damage=on_damage)
            if fr.K_norm is None:
                raise ValueError(f"bag {path}: no camera_info topic and no calibration; give --camera-info-topic or "
                                 "a calibration YAML")
            st: dict = {"bag": str(path)}
            parts = make_samples(fr, tuple(frame_ids), frame_spacing, static_threshold,
                                 val_fraction if part != "all" else 0.0, tolerance, b, st)
            label = _bag_label(path, taken)
            chosen = parts["train"] + parts["val"] if part == "all" else parts[part]
            self.bags.append(fr)
            self.labels.append(label)
            self.stats.append(st)
            for s in chosen:
                samples.append(s)
                entries.append(SplitEntry(label, int(s.target), "l"))
        self.samples = samples
        super().__init__(bags[0], entries, height, width, frame_ids=frame_ids, num_scales=num_scales,
                         is_train=is_train, use_calib=True, seed=seed)
        self._by_entry = {(e.folder, e.frame_index): s for e, s in zip(entries, samples)}
        self._bag_of_label = {lab: i for i, lab in enumerate(self.labels)}

    def load_frame(self, entry: SplitEntry, fid: int) -> np.ndarray:
        s = self._by_entry[(entry.folder, entry.frame_index)]
        return self.bags[s.bag].images[s.frames[fid]]

    def normalised_K(self, entry: SplitEntry, original_size) -> np.ndarray:
        return self.bags[self._bag_of_label[entry.folder]].K_norm.copy()

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["stamp"] = self.samples[index].stamp
        return item


# ----------------------------------------------------------------------------------------------------------------
# bag-info
# ----------------------------------------------------------------------------------------------------------------
def bag_info(paths, max_decode: int = 20) -> list[dict]:
    """Per bag: its image and camera_info topics with counts, rates, encodings and sizes (and K for CameraInfo).

    Rates are ``(count - 1) / (last - first)`` of the receive times. Only the first ``max_decode`` messages of
    each topic are decoded (encodings, sizes). A damaged bag reports ``damaged`` and the counts up to the damage.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for path in map(Path, paths):
        found = {t: m for t, m, _ in bag_topics(path)}
        wanted = {t for t, m in found.items() if m in IMAGE_TYPES or m == CAMERA_INFO_TYPE}
        topics: dict[str, dict] = {t: {"topic": t, "type": found[t], "count": 0, "encodings": set(), "sizes": set(),
                                       "_t": []} for t in sorted(wanted)}
        damaged = None
        try:
            for m in iter_bag(path, wanted):
                d = topics[m.topic]
                d["count"] += 1
                d["_t"].append(m.timestamp)
                if d["count"] <= max_decode:
                    if m.msgtype == CAMERA_INFO_TYPE:
                        K, sz = camera_info_intrinsics(m.msg)
                        d["sizes"].add(sz)
                        d.setdefault("K", K.round(3).tolist())
                        d["encodings"].add(str(m.msg.distortion_model) or "none")
                    else:
                        d["encodings"].add(image_encoding(m.msg, m.msgtype))
                        if m.msgtype.endswith("/Image"):
                            d["sizes"].add((int(m.msg.width), int(m.msg.height)))
        except BagReadError as exc:
            damaged = str(exc)
        for d in topics.values():
            ts = np.asarray(d.pop("_t"), np.int64)
            d["rate_hz"] = float((len(ts) - 1) / ((ts[-1] - ts[0]) / 1e9)) if len(ts) > 1 and ts[-1] > ts[0] else 0.0
            d["duration_s"] = float((ts[-1] - ts[0]) / 1e9) if len(ts) > 1 else 0.0
            d["encodings"] = sorted(d["encodings"])
            d["sizes"] = sorted(d["sizes"])
        out.append({"bag": str(path), "topics": list(topics.values()), "other_topics":
                    sorted((t, m) for t, m in found.items() if t not in wanted), "damaged": damaged})
    return out


def format_bag_info(infos: list[dict]) -> str:
    lines = []
    for info in infos:
        lines.append(f"{info['bag']}")
        if not info["topics"]:
            lines.append("  no image or camera_info topics")
        for d in info["topics"]:
            sizes = ", ".join(f"{w}x{h}" for w, h in d["sizes"]) or "-"
            lines.append(f"  {d['topic']:<32} {d['type']:<32} {d['count']:>7} msgs {d['rate_hz']:8.2f} Hz  "
                         f"{', '.join(d['encodings']) or '-'}  {sizes}")
            if "K" in d:
                K = d["K"]
                lines.append(f"  {'':<32} fx={K[0][0]:g} fy={K[1][1]:g} cx={K[0][2]:g} cy={K[1][2]:g}")
        for t, m in info["other_topics"]:
            lines.append(f"  {t:<32} {m} (not used)")
        if info["damaged"]:
            lines.append(f"  DAMAGED: {info['damaged']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# bag-extract: a KITTI-style cache
# ----------------------------------------------------------------------------------------------------------------
def extract_bag(paths, out_dir, image_topic: str | None = None, camera_info_topic: str | None = None,
                calibration=None, frame_spacing: float = 0.1, static_threshold: float = 0.01,
                val_fraction: float = 0.1, tolerance: float | None = None, on_damage: str = "error",
                size: tuple[int, int] | None = None, frame_ids: Sequence[int] = (0, -1, 1)) -> dict:
    """Write bags as a KITTI-raw-style folder that :class:`KittiDataset` (``dna-depth train``) reads.

    Layout: ``OUT/LABEL/calib_cam_to_cam.txt`` (``P_rect_02`` from the bag's intrinsics, KITTI 1-based) and one
    drive folder per chain (:func:`build_chains`): ``OUT/LABEL/LABEL_drive_XXXX_sync/image_02/data/%010d.png``,
    so index neighbours are ``frame_spacing`` apart. Splits: ``OUT/splits/train_files.txt`` and
    ``val_files.txt`` (same pairing, static filter and time split as :class:`BagDataset`, for frame ids
    (0, -1, 1) by default). ``size`` = (width, height) resizes the stored frames (default: as recorded).
    Returns ``{"train": n, "val": n, "frames": n, "bags": [...], "splits": {...}}``.
    """
    from dna_depth_core.data.synthetic import _fmt

    out = Path(out_dir)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    lines: dict[str, list[str]] = {"train": [], "val": []}
    taken: set = set()
    summary = {"bags": [], "frames": 0}
    for path in map(Path, paths):
        fr = read_bag_frames(path, image_topic, camera_info_topic, size=size, calibration=calibration,
                             on_damage=on_damage)
        if fr.K_norm is None:
            raise ValueError(f"bag {path}: no camera_info topic and no calibration")
        label = _bag_label(path, taken)
        h, w = fr.images[0].shape[:2] if fr.images else (0, 0)
        (out / label).mkdir(parents=True, exist_ok=True)
        K1 = pixel_K(fr.K_norm, (w, h))
        K1[0, 2] += 1.0  # KITTI calibration files are 1-based
        K1[1, 2] += 1.0
        P = np.hstack([K1, np.zeros((3, 1))])
        (out / label / "calib_cam_to_cam.txt").write_text(
            f"calib_time: extracted from {path.name} by dna-depth bag-extract\n"
            f"S_rect_02: {_fmt([w, h])}\nP_rect_02: {_fmt(P)}\n")
        parts = make_samples(fr, tuple(frame_ids), frame_spacing, static_threshold, val_fraction, tolerance)
        where: dict[int, tuple[str, int]] = {}
        for c, chain in enumerate(build_chains(fr.stamps, frame_spacing, tolerance), 1):
            folder = f"{label}/{label}_drive_{c:04d}_sync"
            d = out / folder / "image_02" / "data"
            d.mkdir(parents=True, exist_ok=True)
            with open(out / folder / "timestamps_ns.txt", "w") as ts:
                for k, i in enumerate(chain):
                    cv2.imwrite(str(d / f"{k:010d}.png"), cv2.cvtColor(fr.images[i], cv2.COLOR_RGB2BGR))
                    ts.write(f"{int(fr.stamps[i])}\n")
                    where[i] = (folder, k)
        for part, samples in parts.items():
            for s in samples:
                folder, k = where[s.target]
                lines[part].append(f"{folder} {k} l")
        summary["bags"].append({"bag": str(path), "label": label, "frames": len(fr), "train": len(parts["train"]),
                                "val": len(parts["val"]), "damaged": fr.damaged})
        summary["frames"] += len(fr)
    (out / "splits").mkdir(parents=True, exist_ok=True)
    splits = {}
    for part, name in (("train", "train_files.txt"), ("val", "val_files.txt")):
        p = out / "splits" / name
        p.write_text("".join(ln + "\n" for ln in lines[part]))
        splits[part] = str(p)
    summary.update(train=len(lines["train"]), val=len(lines["val"]), splits=splits)
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Writing bags
# ----------------------------------------------------------------------------------------------------------------
class ImageBagWriter:
    """Write Image (or CompressedImage) + CameraInfo (+ optional 32FC1 depth) messages to a ROS 2 bag.

    >>> with ImageBagWriter("out_bag", storage="mcap") as w:
    ...     w.write(stamp_ns, rgb, K)
    """

    def __init__(self, path, storage: str = "mcap", image_topic: str = DEFAULT_IMAGE_TOPIC,
                 camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC, depth_topic: str | None = None,
                 compressed: str | None = None, frame_id: str = "camera_optical_frame"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if compressed not in (None, "jpeg", "png"):
            raise ValueError(f"compressed must be None, 'jpeg' or 'png', got {compressed!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag output exists already: {self.path}")
        self.ts = _typestore()
        self.compressed = compressed
        self.frame_id = frame_id
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(self.path, version=8, storage_plugin=plugin)
        self.writer.open()
        img_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        self.img_type = img_type
        self.c_img = self.writer.add_connection(image_topic, img_type, typestore=self.ts)
        self.c_info = self.writer.add_connection(camera_info_topic, CAMERA_INFO_TYPE, typestore=self.ts)
        self.c_depth = (self.writer.add_connection(depth_topic, "sensor_msgs/msg/Image", typestore=self.ts)
                        if depth_topic else None)

    def _header(self, stamp: int):
        T = self.ts.types
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)), frame_id=self.frame_id)

    def write(self, stamp: int, rgb: np.ndarray, K=None, depth: np.ndarray | None = None) -> None:
        """One frame at ``stamp`` (ns): the image, CameraInfo (when ``K`` is given) and depth (when given)."""
        T = self.ts.types
        rgb = np.ascontiguousarray(rgb, np.uint8)
        h, w = rgb.shape[:2]
        if self.compressed:
            ok, buf = cv2.imencode(".jpg" if self.compressed == "jpeg" else ".png",
                                   cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError("image encoding failed")
            msg = T["sensor_msgs/msg/CompressedImage"](header=self._header(stamp), format=self.compressed,
                                                      data=buf.reshape(-1))
        else:
            msg = T["sensor_msgs/msg/Image"](header=self._header(stamp), height=h, width=w, encoding="rgb8",
                                            is_bigendian=0, step=3 * w, data=rgb.reshape(-1))
        self.writer.write(self.c_img, int(stamp), self.ts.serialize_cdr(msg, self.img_type))
        if K is not None:
            self.writer.write(self.c_info, int(stamp), self.ts.serialize_cdr(
                camera_info_msg(self.ts, self._header(stamp), K, w, h), CAMERA_INFO_TYPE))
        if depth is not None and self.c_depth is not None:
            d = np.ascontiguousarray(depth, np.float32)
            dm = T["sensor_msgs/msg/Image"](header=self._header(stamp), height=d.shape[0], width=d.shape[1],
                                           encoding="32FC1", is_bigendian=0, step=4 * d.shape[1],
                                           data=d.reshape(-1).view(np.uint8))
            self.writer.write(self.c_depth, int(stamp), self.ts.serialize_cdr(dm, "sensor_msgs/msg/Image"))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def camera_info_msg(ts, header, K, width: int, height: int):
    """A rosbags ``sensor_msgs/msg/CameraInfo`` for undistorted pixels with intrinsics ``K``."""
    T = ts.types
    K = np.asarray(K, np.float64)
    P = np.hstack([K, np.zeros((3, 1))])
    return T["sensor_msgs/msg/CameraInfo"](
        header=header, height=int(height), width=int(width), distortion_model="plumb_bob", d=np.zeros(5),
        k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def write_synthetic_bag(out, frames: int, seed: int = 0, width: int = 320, height: int = 96, fps: float = 10.0,
                        storage: str = "mcap", ss: int = 2, compressed: str | None = None,
                        image_topic: str = DEFAULT_IMAGE_TOPIC, camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC,
                        depth_topic: str | None = DEFAULT_DEPTH_TOPIC, start_ns: int = 1_700_000_000_000_000_000,
                        progress: bool = False) -> dict:
    """Render a synthetic drive (:mod:`dna_depth_core.data.synthetic`) into a ROS 2 bag at ``fps``.

    Writes Image (rgb8, or CompressedImage) + CameraInfo on every frame, and the exact depth (32FC1, metres,
    0 = sky) on ``depth_topic`` (None: not written). Returns ``{"path", "frames", "K", "seconds"}``.
    """
    import time

    from dna_depth_core.data.synthetic import SyntheticScene, make_trajectory, synthetic_intrinsics

    t0 = time.perf_counter()
    poses, _ = make_trajectory(frames, seed)
    scene = SyntheticScene(seed, length=float(poses[:, 2, 3].max()) + 20.0)
    K = synthetic_intrinsics(width, height)
    period = int(round(1e9 / fps))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=frames, desc="synth bag", unit="frame")
    with ImageBagWriter(out, storage=storage, image_topic=image_topic, camera_info_topic=camera_info_topic,
                        depth_topic=depth_topic, compressed=compressed) as w:
        for i in range(frames):
            rgb, depth = scene.render(poses[i], K, width, height, ss=ss)
            w.write(start_ns + i * period, rgb, K, depth if depth_topic else None)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {"path": str(out), "frames": frames, "K": K, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------------------------
# Training config hook (``dataset: bag``, registered in training/datasets.py)
# ----------------------------------------------------------------------------------------------------------------


def dataset_from_config(cfg, split_file: str | None, is_train: bool) -> BagDataset:
    """The ``dataset: bag`` source: ``split``/``val_split`` name the part (``bag:train``, ``bag:val``, ``bag:all``;
    anything else: train when ``is_train``)."""
    if cfg.pose_gt:
        raise ValueError("pose_gt: bags carry no ground-truth poses")
    part = str(split_file).split(":", 1)[1] if str(split_file).startswith("bag:") else ("train" if is_train else "val")
    return BagDataset(list(cfg.bags), cfg.height, cfg.width, frame_ids=tuple(cfg.frame_ids),
                      num_scales=cfg.num_scales, is_train=is_train and cfg.augment, part=part,
                      image_topic=cfg.image_topic, camera_info_topic=cfg.camera_info_topic,
                      calibration=cfg.calibration, frame_spacing=cfg.frame_spacing,
                      static_threshold=cfg.static_threshold, val_fraction=cfg.val_fraction,
                      on_damage=cfg.bag_on_damage, seed=cfg.seed)
