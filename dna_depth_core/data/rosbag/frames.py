"""The frames of one bag: its camera images (decoded by :mod:`dna_depth_core.ros_images`), their stamps, the
camera's intrinsics (CameraInfo read by :func:`dna_depth_core.camera.camera_info_intrinsics`, or a calibration
YAML) and optionally a depth topic."""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from dna_depth_core.camera import (CameraInfoError, CameraIntrinsics, camera_info_intrinsics, check_intrinsics,
                                   intrinsics_from_yaml, normalise_K)
from dna_depth_core.data.rosbag.damage import BagDamage, BagReadError, check_on_damage, damage_summary, format_ns
from dna_depth_core.data.rosbag.read import CAMERA_INFO_TYPE, IMAGE_TYPES, BagMessage, bag_topics, iter_bag
from dna_depth_core.preprocess import fit_image
from dna_depth_core.ros_images import decode, decode_depth


@dataclasses.dataclass
class BagFrames:
    """The decoded frames of one bag's image topic, in stamp order.

    Attributes:
        bag: the bag path; ``image_topic``: the topic read.
        stamps: ``(N,)`` int64 ns (``header.stamp``, or the receive time when the stamp is 0).
        images: ``N`` arrays ``(h, w, 3)`` uint8 RGB, resized with :func:`dna_depth_core.preprocess.fit_image`
            (``"stretch"``) when a size was asked.
        original_size: (width, height) of the images in the bag (of the first one).
        K_norm: ``(3, 3)`` normalised intrinsics in :mod:`dna_depth_core.camera`'s convention (``fx / W``,
            ``(cx + 0.5) / W``, ...), from the first usable CameraInfo or the calibration YAML; None when the bag
            has no CameraInfo topic and no calibration was given.
        intrinsics: the :class:`~dna_depth_core.camera.CameraIntrinsics` ``K_norm`` comes from (pixels, its size
            and whether CameraInfo's ``P`` or ``K`` was used).
        encodings: each frame's encoding (``rgb8``, ``compressed:png``...).
        depth: stamp -> ``(h, w)`` float32 metres, 0 where invalid (the depth topic, when one was read).
        damaged: the damage text when the bag is damaged (the intact frames are the ones here).
        damage: each damaged part.
    """

    bag: str
    image_topic: str
    stamps: np.ndarray
    images: list[np.ndarray]
    original_size: tuple[int, int]
    K_norm: np.ndarray | None
    encodings: list[str]
    intrinsics: CameraIntrinsics | None = None
    depth: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    damaged: str | None = None
    damage: list[BagDamage] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.stamps)


def image_encoding(msg, msgtype: str) -> str:
    """``"compressed:FORMAT"`` for a CompressedImage, the Image's ``encoding`` otherwise."""
    return f"compressed:{msg.format}" if msgtype.endswith("CompressedImage") else str(msg.encoding)


def message_stamp(m: BagMessage) -> int:
    """``header.stamp`` in ns, or the receive time when the message has no stamp (or a zero one)."""
    st = getattr(getattr(m.msg, "header", None), "stamp", None)
    ns = int(st.sec) * 1_000_000_000 + int(st.nanosec) if st is not None else 0
    return ns if ns > 0 else m.timestamp


def bag_label(path, taken: set) -> str:
    """A folder-safe name for a bag (its file or folder name), made unique among ``taken`` (which it joins)."""
    path = Path(path)
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", (path.stem if path.is_file() else path.name)) or "bag"
    label, k = base, 1
    while label in taken:
        k += 1
        label = f"{base}_{k}"
    taken.add(label)
    return label


def pick_topic(found: dict[str, str], kinds: Sequence[str], what: str, bag, given: str | None) -> str | None:
    """The topic of one of the types ``kinds``: ``given`` (checked), or the bag's only one (image topics named
    ``*depth*`` or ``*disp*`` are not camera frames). None when the bag has none; ValueError when it has several."""
    cands = [t for t, typ in found.items() if typ in kinds]
    if given is not None:
        if given not in found:
            raise ValueError(f"bag {bag}: no topic {given}; its {what} topics: {', '.join(cands) or 'none'}")
        if found[given] not in kinds:
            raise ValueError(f"bag {bag}: topic {given} is {found[given]}, not {' or '.join(kinds)}")
        return given
    if len(cands) > 1 and tuple(kinds) == IMAGE_TYPES:
        cands = [t for t in cands if "depth" not in t.lower() and "disp" not in t.lower()] or cands
    if len(cands) == 1:
        return cands[0]
    if not cands:
        return None
    raise ValueError(f"bag {bag}: several {what} topics ({', '.join(sorted(cands))}); choose one")


def read_bag_frames(path, image_topic: str | None = None, camera_info_topic: str | None = None,
                    size: tuple[int, int] | None = None, calibration=None, on_damage: str = "error",
                    depth_topic: str | None = None, intrinsics_source: str = "auto") -> BagFrames:
    """Decode the image topic of one bag.

    Args:
        path: the bag.
        image_topic, camera_info_topic: topics (None: the bag's only one of that kind).
        size: (width, height): resize every frame to it (:func:`dna_depth_core.preprocess.fit_image`, stretch).
        calibration: a calibration YAML (:func:`dna_depth_core.camera.intrinsics_from_yaml`) overriding the
            CameraInfo.
        on_damage: ``"error"``: a damaged bag or an undecodable image raises :class:`BagReadError` (its
            ``frames`` holds what was read before); ``"keep"``: damaged parts are skipped with one warning naming
            them (mcap: the intact chunks after a damaged one are read too).
        depth_topic: a depth Image topic (32FC1 metres or 16UC1 millimetres) to read into ``depth``.
        intrinsics_source: CameraInfo matrix to use: ``"auto"`` (``P`` when valid, else ``K``), ``"P"`` or ``"K"``.
    Raises:
        ValueError: no image topic, an ambiguous or wrong topic, no usable CameraInfo on the topic (and no
            calibration).
    """
    check_on_damage(on_damage)
    path = Path(path)
    found = {t: m for t, m, _ in bag_topics(path)}
    img_topic = pick_topic(found, IMAGE_TYPES, "image", path, image_topic)
    if img_topic is None:
        raise ValueError(f"bag {path}: no sensor_msgs/Image or CompressedImage topic (topics: "
                         f"{', '.join(sorted(found)) or 'none'})")
    info_topic = pick_topic(found, (CAMERA_INFO_TYPE,), "camera_info", path, camera_info_topic)
    topics = {img_topic} | ({info_topic} if info_topic else set()) | ({depth_topic} if depth_topic in found else set())
    stamps, images, encodings, depth = [], [], [], {}
    intrinsics, info_problem, original_size = None, None, None
    damage: list[BagDamage] = []
    error = None
    try:
        for m in iter_bag(path, topics, on_damage, damage if on_damage == "keep" else None):
            if m.topic == info_topic:
                if intrinsics is None and calibration is None:
                    try:
                        intrinsics = camera_info_intrinsics(m.msg, intrinsics_source)
                    except CameraInfoError as exc:
                        info_problem = info_problem or f"message {m.index} at {format_ns(m.timestamp)}: {exc}"
            elif m.topic == img_topic:
                try:
                    rgb = decode(m.msg)
                except ValueError as exc:
                    text = (f"image message {m.index} ({img_topic}, timestamp {format_ns(m.timestamp)}) cannot be "
                            f"decoded: {exc}")
                    if on_damage == "error":
                        raise BagReadError(f"bag {path}: {text}", bag=path, index=m.index,
                                           timestamp=m.timestamp) from None
                    damage.append(BagDamage(str(path), str(path), "message", text, start=m.timestamp,
                                            end=m.timestamp, topics={img_topic: 1}))
                    continue
                if original_size is None:
                    original_size = (rgb.shape[1], rgb.shape[0])
                if size is not None:
                    rgb = fit_image(rgb, size, "stretch")[0]
                stamps.append(message_stamp(m))
                images.append(rgb)
                encodings.append(image_encoding(m.msg, m.msgtype))
            elif m.topic == depth_topic:
                try:
                    depth[message_stamp(m)] = np.nan_to_num(decode_depth(m.msg), nan=0.0)
                except ValueError as exc:
                    raise ValueError(f"bag {path}: depth message {m.index} ({depth_topic}) cannot be decoded: "
                                     f"{exc}") from None
    except BagReadError as exc:
        error = exc
        if exc.damage is not None:
            damage.append(exc.damage)
    order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
    frames = BagFrames(bag=str(path), image_topic=img_topic, stamps=np.asarray(stamps, np.int64)[order],
                       images=[images[i] for i in order], original_size=original_size or (0, 0), K_norm=None,
                       encodings=[encodings[i] for i in order], depth=depth, damage=damage)
    if error is not None:
        frames.damaged = str(error)
        error.frames = frames
        raise error
    if damage:
        frames.damaged = f"bag {path} is damaged: {damage_summary(damage)}"
        tail = (f"reading stopped there: using the {len(frames)} frames before the damage" if damage[-1].stopped
                else f"using the {len(frames)} frames of the intact parts")
        warnings.warn(f"{frames.damaged}; {tail}", stacklevel=2)
    if calibration is not None:
        intrinsics = intrinsics_from_yaml(calibration, intrinsics_source)
    elif info_topic is not None and intrinsics is None:
        raise ValueError(f"bag {path}: no usable camera_info on {info_topic}"
                         + (f" (first problem: {info_problem})" if info_problem else " (no message read)")
                         + "; give a calibration YAML or another --camera-info-topic")
    if intrinsics is not None:
        frames.intrinsics = intrinsics
        what = f"calibration {calibration}" if calibration is not None else f"camera_info ({info_topic})"
        frames.K_norm = normalised_intrinsics(intrinsics, frames.original_size, path, what)
    return frames


def normalised_intrinsics(intrinsics: CameraIntrinsics, image_size: tuple[int, int], bag, what: str) -> np.ndarray:
    """Normalised K of ``intrinsics`` (from ``what``, for messages) for the bag's images of ``image_size`` =
    (width, height); a CameraInfo without a size is taken to be at the images' size (and checked for it). Warns
    when the two sizes have different aspect ratios."""
    size = intrinsics.size
    if size[0] <= 0 or size[1] <= 0:
        if image_size[0] <= 0:
            raise ValueError(f"bag {bag}: {what} gives no image size and the bag has no images to take it from")
        check_intrinsics(intrinsics.K, image_size, prefix="camera_info")
        size = image_size
    elif image_size[0] > 0 and abs(size[0] / size[1] - image_size[0] / image_size[1]) > 0.01 * size[0] / size[1]:
        warnings.warn(f"bag {bag}: {what} describes {size[0]}x{size[1]} images but the images are "
                      f"{image_size[0]}x{image_size[1]} (another aspect ratio); its intrinsics are scaled to them "
                      "anyway", stacklevel=3)
    return normalise_K(intrinsics.K, size)


__all__ = ["BagFrames", "bag_label", "image_encoding", "message_stamp", "normalised_intrinsics", "pick_topic",
           "read_bag_frames"]
