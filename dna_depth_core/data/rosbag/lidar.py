"""A bag's camera frames paired with its LiDAR: for each image, the ``sensor_msgs/PointCloud2`` nearest in time
within a tolerance, its points expressed in the camera's optical frame (``camera <- LiDAR`` from the bag's
``/tf_static`` or an extrinsics YAML, :mod:`~dna_depth_core.data.rosbag.tf`). :func:`pair_lidar` reads the bag
twice: first stamps, frame ids, intrinsics and transforms (every problem is reported before any image is decoded),
then, while iterating the returned :class:`LidarPairs`, the images and clouds of the pairs, a few at a time (a long
recording is never held in memory).

- Topics: the image topic is chosen as :func:`~dna_depth_core.data.rosbag.frames.read_bag_frames` does (the bag's
  only one unless given); likewise the CameraInfo topic (or a calibration YAML) and the PointCloud2 topic.
- Stamps: ``header.stamp`` (the receive time when it is 0), of the image and of the cloud. The pair's offset is
  not compensated (no ego-motion between the two stamps): keep the tolerance small on a moving robot.
- Frames: the image's and the cloud's ``header.frame_id`` (overridable), looked up as tf does: ``T_camera_lidar``
  = ``lookup(camera_frame, lidar_frame)``. The camera frame must be the optical frame (x right, y down, z
  forward) of the image as published: rectified images are assumed undistorted with CameraInfo's ``R`` the
  identity, as for training.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import numpy as np

from dna_depth_core.camera import (CameraInfoError, CameraIntrinsics, camera_info_intrinsics, intrinsics_from_yaml,
                                   pixel_K)
from dna_depth_core.data.rosbag.damage import format_ns
from dna_depth_core.data.rosbag.frames import message_stamp, normalised_intrinsics, pick_topic
from dna_depth_core.data.rosbag.pointcloud import POINTCLOUD2_TYPE, cloud_xyz
from dna_depth_core.data.rosbag.read import CAMERA_INFO_TYPE, IMAGE_TYPES, bag_topics, iter_bag
from dna_depth_core.data.rosbag.tf import (TF_MESSAGE_TYPE, TF_STATIC_TOPIC, TransformTree, frame_name,
                                          transforms_from_yaml)
from dna_depth_core.ros_images import decode

DEFAULT_TOLERANCE = 0.05  # seconds: half the period of a 10 Hz LiDAR


def match_stamps(image_stamps, cloud_stamps, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For each image stamp, the cloud stamp nearest to it.

    Args:
        image_stamps, cloud_stamps: ``(N,)`` and ``(M,)`` ns, any order.
        tolerance: seconds; a nearest cloud further than this does not count.
    Returns:
        ``(index (N,) int64, dt (N,) float64)``: the index into ``cloud_stamps`` of the nearest cloud (the earlier
        one on a tie), -1 when it is further than ``tolerance``; ``dt`` = cloud - image in seconds for the nearest
        cloud whatever the tolerance (NaN when there is no cloud at all).
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 seconds, got {tolerance}")
    img = np.asarray(image_stamps, np.int64).reshape(-1)
    cld = np.asarray(cloud_stamps, np.int64).reshape(-1)
    if cld.size == 0:
        return np.full(img.size, -1, np.int64), np.full(img.size, np.nan)
    order = np.argsort(cld, kind="stable")
    s = cld[order]
    pos = np.searchsorted(s, img)  # s[pos - 1] < img <= s[pos]
    lo = np.clip(pos - 1, 0, s.size - 1)
    hi = np.clip(pos, 0, s.size - 1)
    d_lo = np.abs(img - s[lo])
    d_hi = np.abs(s[hi] - img)
    pick = np.where(d_hi < d_lo, hi, lo)
    idx = order[pick]
    dt = (cld[idx] - img) / 1e9
    idx = np.where(np.abs(dt) <= tolerance, idx, -1)
    return idx.astype(np.int64), dt


@dataclasses.dataclass
class LidarFrame:
    """One camera frame and its LiDAR cloud.

    Attributes:
        index: the image's position among the image topic's messages (bag order, from 0); ``cloud_index``: the
            cloud's among the LiDAR topic's.
        stamp, cloud_stamp: ns (``header.stamp``).
        rgb: ``(H, W, 3)`` uint8, the image as decoded (:mod:`dna_depth_core.ros_images`), full size.
        K: ``(3, 3)`` pixel intrinsics at ``H x W`` (:mod:`dna_depth_core.camera`).
        points: ``(N, 3)`` float64 LiDAR points in the camera's optical frame (invalid returns left out,
            :func:`~dna_depth_core.data.rosbag.pointcloud.cloud_xyz`; nothing else filtered).
        camera_frame, lidar_frame: the frames the transform was looked up for.
    """

    index: int
    stamp: int
    cloud_index: int
    cloud_stamp: int
    rgb: np.ndarray
    K: np.ndarray
    points: np.ndarray
    camera_frame: str
    lidar_frame: str

    @property
    def dt(self) -> float:
        """Cloud stamp - image stamp, seconds."""
        return (self.cloud_stamp - self.stamp) / 1e9


@dataclasses.dataclass
class LidarPairs:
    """What :func:`pair_lidar` found; iterate it for the :class:`LidarFrame` s (in bag order, one pass over the
    bag per iteration).

    Attributes:
        images: camera frames in the bag; ``clouds``: LiDAR clouds in the bag.
        pairs: ``[(image index, cloud index)]`` of the frames to yield (every ``every``-th frame with a cloud
            within the tolerance, in time order).
        matched: camera frames with a cloud within the tolerance (before ``every``); ``unmatched``: without.
        dt: ``(len(pairs),)`` cloud - image, seconds.
        transforms: ``{(camera_frame, lidar_frame): (T_camera_lidar (4, 4), chain of frames)}`` used.
        transform_source: ``"/tf_static"`` or the extrinsics file.
        intrinsics: the CameraInfo's (or calibration's) :class:`~dna_depth_core.camera.CameraIntrinsics`.
    """

    bag: str
    image_topic: str
    camera_info_topic: str | None
    lidar_topic: str
    tolerance: float
    every: int
    images: int
    clouds: int
    pairs: list[tuple[int, int]]
    matched: int
    unmatched: int
    dt: np.ndarray
    transforms: dict
    transform_source: str
    intrinsics: CameraIntrinsics
    intrinsics_origin: str
    image_frames: list[str] = dataclasses.field(repr=False, default_factory=list)
    cloud_frames: list[str] = dataclasses.field(repr=False, default_factory=list)
    image_stamps: np.ndarray = dataclasses.field(repr=False, default=None)
    cloud_stamps: np.ndarray = dataclasses.field(repr=False, default=None)

    def __len__(self) -> int:
        return len(self.pairs)

    def _K(self, size: tuple[int, int], cache: dict) -> np.ndarray:
        if size not in cache:
            cache[size] = pixel_K(normalised_intrinsics(self.intrinsics, size, self.bag, self.intrinsics_origin),
                                  size)
        return cache[size]

    def __iter__(self) -> Iterator[LidarFrame]:
        cloud_of = dict(self.pairs)  # image index -> cloud index
        users: dict[int, int] = {}
        for _, c in self.pairs:
            users[c] = users.get(c, 0) + 1
        images: dict[int, np.ndarray] = {}  # decoded images waiting for their cloud
        clouds: dict[int, np.ndarray] = {}  # clouds (LiDAR frame) waiting for their images
        waiting: dict[int, list[int]] = {}  # cloud index -> image indices decoded before it
        n_img = n_cld = 0
        K_cache: dict = {}

        def frame(i: int, rgb: np.ndarray) -> LidarFrame:
            c = cloud_of[i]
            key = (self.image_frames[i], self.cloud_frames[c])
            T = self.transforms[key][0]
            users[c] -= 1
            xyz = clouds[c] if users[c] else clouds.pop(c)
            return LidarFrame(i, int(self.image_stamps[i]), c, int(self.cloud_stamps[c]), rgb,
                              self._K((rgb.shape[1], rgb.shape[0]), K_cache), xyz @ T[:3, :3].T + T[:3, 3], *key)

        for m in iter_bag(self.bag, {self.image_topic, self.lidar_topic}):
            if m.topic == self.image_topic:
                i, n_img = n_img, n_img + 1
                self._check_order("image", i, message_stamp(m), self.image_stamps)
                if i not in cloud_of:
                    continue
                try:
                    rgb = decode(m.msg)
                except ValueError as exc:
                    raise ValueError(f"bag {self.bag}: image message {i} ({self.image_topic}, stamp "
                                     f"{format_ns(int(self.image_stamps[i]))}) cannot be decoded: {exc}") from None
                if cloud_of[i] in clouds:
                    yield frame(i, rgb)
                else:
                    images[i] = rgb
                    waiting.setdefault(cloud_of[i], []).append(i)
            else:
                c, n_cld = n_cld, n_cld + 1
                self._check_order("cloud", c, message_stamp(m), self.cloud_stamps)
                if c not in users:
                    continue
                try:
                    clouds[c] = cloud_xyz(m.msg)
                except ValueError as exc:
                    raise ValueError(f"bag {self.bag}: cloud message {c} ({self.lidar_topic}, stamp "
                                     f"{format_ns(int(self.cloud_stamps[c]))}): {exc}") from None
                for i in waiting.pop(c, []):
                    yield frame(i, images.pop(i))

    def _check_order(self, what: str, k: int, stamp: int, stamps: np.ndarray) -> None:
        if k >= len(stamps) or int(stamps[k]) != stamp:
            raise RuntimeError(f"bag {self.bag}: {what} message {k} differs between two reads of the bag (was it "
                               "modified while being read?)")


def pair_lidar(bag, lidar_topic: str | None = None, image_topic: str | None = None,
               camera_info_topic: str | None = None, calibration=None, intrinsics_source: str = "auto",
               extrinsics=None, camera_frame: str | None = None, lidar_frame: str | None = None,
               tolerance: float = DEFAULT_TOLERANCE, every: int = 1) -> LidarPairs:
    """Pair a bag's camera frames with its LiDAR clouds (module docstring); nothing is decoded yet.

    Args:
        bag: ROS 2 folder, ``.mcap``, ``.db3`` or ROS 1 ``.bag``.
        lidar_topic, image_topic, camera_info_topic: topics (None: the bag's only one of that type).
        calibration: a calibration YAML for the intrinsics instead of the CameraInfo
            (:func:`dna_depth_core.camera.intrinsics_from_yaml`); ``intrinsics_source``: ``auto``, ``P`` or ``K``.
        extrinsics: an extrinsics YAML (:mod:`~dna_depth_core.data.rosbag.tf`) instead of the bag's
            ``/tf_static``.
        camera_frame, lidar_frame: frame ids to use instead of the messages' ``header.frame_id``.
        tolerance: seconds between an image and its cloud at most.
        every: keep every ``every``-th paired frame (1: all).
    Raises:
        FileNotFoundError: no bag (or extrinsics file).
        ValueError: a missing or ambiguous topic (naming the topics found), no ``/tf_static`` and no extrinsics,
            no transform between the camera's and the LiDAR's frames (naming the frames there are), no cloud
            within the tolerance of any image (naming the nearest offset and both stamp ranges), no usable
            intrinsics, an empty frame id.
    """
    path = Path(bag)
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 seconds, got {tolerance}")
    found = {t: m for t, m, _ in bag_topics(path)}
    img_topic = pick_topic(found, IMAGE_TYPES, "image", path, image_topic)
    if img_topic is None:
        raise ValueError(f"bag {path}: no sensor_msgs/Image or CompressedImage topic (topics: "
                         f"{', '.join(sorted(found)) or 'none'})")
    cloud_topic = pick_topic(found, (POINTCLOUD2_TYPE,), "PointCloud2", path, lidar_topic)
    if cloud_topic is None:
        raise ValueError(f"bag {path}: no sensor_msgs/PointCloud2 topic (topics: {', '.join(sorted(found)) or 'none'})")
    info_topic = None if calibration is not None else pick_topic(found, (CAMERA_INFO_TYPE,), "camera_info", path,
                                                                 camera_info_topic)
    if calibration is None and info_topic is None:
        raise ValueError(f"bag {path}: no sensor_msgs/CameraInfo topic to project the LiDAR with (topics: "
                         f"{', '.join(sorted(found))}); give a calibration YAML")
    if extrinsics is not None:
        tree = transforms_from_yaml(extrinsics)
        source = str(extrinsics)
    else:
        if TF_STATIC_TOPIC not in found:
            raise ValueError(f"bag {path} has no {TF_STATIC_TOPIC} topic for camera <- LiDAR (topics: "
                             f"{', '.join(sorted(found))}); give the transform in an extrinsics YAML "
                             "(docs/rosbag.md, 'Measure on your robot')")
        if found[TF_STATIC_TOPIC] != TF_MESSAGE_TYPE:
            raise ValueError(f"bag {path}: {TF_STATIC_TOPIC} is {found[TF_STATIC_TOPIC]}, not {TF_MESSAGE_TYPE}")
        tree = TransformTree(f"{TF_STATIC_TOPIC} of bag {path}")
        source = TF_STATIC_TOPIC
    intrinsics = intrinsics_from_yaml(calibration, intrinsics_source) if calibration is not None else None
    origin = f"calibration {calibration}" if calibration is not None else f"camera_info ({info_topic})"
    info_problem = None
    img_stamps, img_frames, cld_stamps, cld_frames = [], [], [], []
    topics = {img_topic, cloud_topic} | ({info_topic} if info_topic else set())
    if extrinsics is None:
        topics.add(TF_STATIC_TOPIC)
    for m in iter_bag(path, topics):
        if m.topic == img_topic:
            img_stamps.append(message_stamp(m))
            img_frames.append(frame_name(m.msg.header.frame_id))
        elif m.topic == cloud_topic:
            cld_stamps.append(message_stamp(m))
            cld_frames.append(frame_name(m.msg.header.frame_id))
        elif m.topic == info_topic:
            if intrinsics is None:
                try:
                    intrinsics = camera_info_intrinsics(m.msg, intrinsics_source)
                except CameraInfoError as exc:
                    info_problem = info_problem or f"message {m.index} at {format_ns(m.timestamp)}: {exc}"
        else:
            tree.add_message(m.msg, f"message at {format_ns(m.timestamp)}")
    if not img_stamps:
        raise ValueError(f"bag {path}: no message on the image topic {img_topic}")
    if not cld_stamps:
        raise ValueError(f"bag {path}: no message on the LiDAR topic {cloud_topic}")
    if intrinsics is None:
        raise ValueError(f"bag {path}: no usable camera_info on {info_topic}"
                         + (f" (first problem: {info_problem})" if info_problem else " (no message read)")
                         + "; give a calibration YAML or another camera_info topic")
    if camera_frame is not None:
        img_frames = [frame_name(camera_frame)] * len(img_stamps)
    if lidar_frame is not None:
        cld_frames = [frame_name(lidar_frame)] * len(cld_stamps)
    img_t, cld_t = np.asarray(img_stamps, np.int64), np.asarray(cld_stamps, np.int64)
    idx, dt = match_stamps(img_t, cld_t, tolerance)
    order = np.argsort(img_t, kind="stable")
    matched = [int(i) for i in order if idx[i] >= 0]
    if not matched:
        k = int(np.nanargmin(np.abs(dt)))
        raise ValueError(
            f"bag {path}: no {cloud_topic} cloud within {tolerance:g} s of any {img_topic} frame; the nearest pair "
            f"is {abs(dt[k]):.6f} s apart ({len(img_t)} images stamped {format_ns(int(img_t.min()))} .. "
            f"{format_ns(int(img_t.max()))}; {len(cld_t)} clouds stamped {format_ns(int(cld_t.min()))} .. "
            f"{format_ns(int(cld_t.max()))}): raise the tolerance, or check the two clocks")
    n_matched = len(matched)
    matched = matched[::every]
    transforms: dict = {}
    for i in matched:
        key = (img_frames[i], cld_frames[int(idx[i])])
        if key in transforms:
            continue
        for what, f in (("image", key[0]), ("cloud", key[1])):
            if not f:
                raise ValueError(f"bag {path}: the {what} messages have an empty header.frame_id; name the "
                                 f"{'camera' if what == 'image' else 'LiDAR'} frame explicitly")
        try:
            transforms[key] = (tree.lookup(*key), tree.chain(*key))
        except ValueError as exc:
            raise ValueError(f"bag {path}: {exc}; give camera <- LiDAR in an extrinsics YAML (docs/rosbag.md), or "
                             f"name the camera or LiDAR frame when the messages' frame_id is not the tf one") from None
    return LidarPairs(
        bag=str(path), image_topic=img_topic, camera_info_topic=info_topic, lidar_topic=cloud_topic,
        tolerance=float(tolerance), every=int(every), images=len(img_t), clouds=len(cld_t),
        pairs=[(i, int(idx[i])) for i in matched], matched=n_matched, unmatched=int(np.sum(idx < 0)),
        dt=np.array([dt[i] for i in matched]), transforms=transforms, transform_source=source,
        intrinsics=intrinsics, intrinsics_origin=origin, image_frames=img_frames, cloud_frames=cld_frames,
        image_stamps=img_t, cloud_stamps=cld_t)


__all__ = ["DEFAULT_TOLERANCE", "LidarFrame", "LidarPairs", "match_stamps", "pair_lidar"]
