"""Writing ROS 2 bags (mcap or sqlite3, with ``rosbags``' writer): :class:`ImageBagWriter` (Image or
CompressedImage + CameraInfo + optional depth, LiDAR PointCloud2 and ``/tf_static``) and
:func:`write_synthetic_bag` (a synthetic drive as a bag, with a LiDAR sampled from its exact depth).

mcap files get their chunk CRCs filled in when the writer closes (:func:`~dna_depth_core.data.rosbag.mcap.
add_chunk_crcs`; ``rosbags`` leaves them at 0), so a bag damaged later is detected when it is read.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from dna_depth_core.data.rosbag.mcap import add_chunk_crcs
from dna_depth_core.data.rosbag.pointcloud import POINTCLOUD2_TYPE, cloud_msg
from dna_depth_core.data.rosbag.read import CAMERA_INFO_TYPE, mcap_files, typestore
from dna_depth_core.data.rosbag.tf import TF_MESSAGE_TYPE, TF_STATIC_TOPIC, tf_message
from dna_depth_core.data.synthetic import HDL32_ELEVATION, bag_extrinsics, depth_to_scan, synthetic_drive
from dna_depth_core.geometry import invert_pose

STORAGES = ("mcap", "sqlite3")
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_DEPTH_TOPIC = "/camera/depth_gt"
DEFAULT_LIDAR_TOPIC = "/lidar/points"
CAMERA_FRAME = "camera_optical_frame"
LIDAR_FRAME = "lidar"
BASE_FRAME = "base_link"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


def camera_info_msg(ts, header, K, width: int, height: int, P=None):
    """A rosbags ``sensor_msgs/msg/CameraInfo`` for undistorted ``width`` x ``height`` images: ``K`` (3, 3) pixels,
    ``P`` (3, 4) (default ``[K | 0]``), no distortion, no ROI or binning. ``ts``: the type store."""
    T = ts.types
    K = np.asarray(K, np.float64)
    P = np.hstack([K, np.zeros((3, 1))]) if P is None else np.asarray(P, np.float64)
    if K.shape != (3, 3) or P.shape != (3, 4):
        raise ValueError(f"K must be (3, 3) and P (3, 4), got {K.shape} and {P.shape}")
    return T["sensor_msgs/msg/CameraInfo"](
        header=header, height=int(height), width=int(width), distortion_model="plumb_bob", d=np.zeros(5),
        k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


class ImageBagWriter:
    """Write Image (or CompressedImage) + CameraInfo (+ optional 32FC1 depth) messages to a new ROS 2 bag, and
    optionally a LiDAR's PointCloud2 (:meth:`write_cloud`) and static transforms (:meth:`write_transforms`).

    >>> with ImageBagWriter("out_bag", storage="mcap") as w:
    ...     w.write(stamp_ns, rgb, K)

    Attributes for writing other messages: ``writer`` (the ``rosbags`` writer), ``ts`` (its type store),
    ``c_img``, ``c_info``, ``c_depth``, ``c_cloud``, ``c_tf`` (connections; None when not asked for),
    :meth:`header`.
    """

    def __init__(self, path, storage: str = "mcap", image_topic: str = DEFAULT_IMAGE_TOPIC,
                 camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC, depth_topic: str | None = None,
                 compressed: str | None = None, frame_id: str = CAMERA_FRAME, lidar_topic: str | None = None,
                 tf_static: bool = False):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if compressed not in (None, "jpeg", "png"):
            raise ValueError(f"compressed must be None, 'jpeg' or 'png', got {compressed!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag output exists already: {self.path}")
        self.storage = storage
        self.ts = typestore()
        self.compressed = compressed
        self.frame_id = frame_id
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(self.path, version=8, storage_plugin=plugin)
        self.writer.open()
        self.img_type = COMPRESSED_TYPE if compressed else IMAGE_TYPE
        self.c_img = self.writer.add_connection(image_topic, self.img_type, typestore=self.ts)
        self.c_info = self.writer.add_connection(camera_info_topic, CAMERA_INFO_TYPE, typestore=self.ts)
        self.c_depth = (self.writer.add_connection(depth_topic, IMAGE_TYPE, typestore=self.ts)
                        if depth_topic else None)
        self.c_cloud = (self.writer.add_connection(lidar_topic, POINTCLOUD2_TYPE, typestore=self.ts)
                        if lidar_topic else None)
        self.c_tf = (self.writer.add_connection(TF_STATIC_TOPIC, TF_MESSAGE_TYPE, typestore=self.ts)
                     if tf_static else None)

    def header(self, stamp: int, frame_id: str | None = None):
        """A ``std_msgs/msg/Header`` at ``stamp`` (ns) with ``frame_id`` (default: the writer's camera frame)."""
        T = self.ts.types
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)),
            frame_id=self.frame_id if frame_id is None else frame_id)

    def write_cloud(self, stamp: int, points: np.ndarray, frame_id: str = LIDAR_FRAME) -> None:
        """A PointCloud2 (x, y, z float32 and, for ``(N, 4)`` points, intensity) in ``frame_id`` at ``stamp`` (ns,
        header and receive time) on the writer's LiDAR topic."""
        if self.c_cloud is None:
            raise ValueError("this writer has no LiDAR topic (lidar_topic=...)")
        msg = cloud_msg(self.ts, self.header(stamp, frame_id), points)
        self.writer.write(self.c_cloud, int(stamp), self.ts.serialize_cdr(msg, POINTCLOUD2_TYPE))

    def write_transforms(self, stamp: int, transforms) -> None:
        """One ``tf2_msgs/TFMessage`` on ``/tf_static`` at ``stamp`` (ns) holding ``(parent, child,
        T_parent_child (4, 4))`` transforms."""
        if self.c_tf is None:
            raise ValueError("this writer has no /tf_static topic (tf_static=True)")
        msg = tf_message(self.ts, transforms, stamp)
        self.writer.write(self.c_tf, int(stamp), self.ts.serialize_cdr(msg, TF_MESSAGE_TYPE))

    def write(self, stamp: int, rgb: np.ndarray, K=None, depth: np.ndarray | None = None, P=None) -> None:
        """One frame at ``stamp`` (ns, header and receive time): the ``(H, W, 3)`` uint8 RGB image, CameraInfo
        (when ``K`` is given; ``P`` defaults to ``[K | 0]``) and ``(H, W)`` depth in metres (when given and the
        writer has a depth topic)."""
        T = self.ts.types
        rgb = np.ascontiguousarray(rgb, np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {rgb.shape}")
        h, w = rgb.shape[:2]
        if self.compressed:
            ok, buf = cv2.imencode(".jpg" if self.compressed == "jpeg" else ".png",
                                   cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"{self.compressed} encoding of a {w}x{h} image failed")
            msg = T[COMPRESSED_TYPE](header=self.header(stamp), format=self.compressed, data=buf.reshape(-1))
        else:
            msg = T[IMAGE_TYPE](header=self.header(stamp), height=h, width=w, encoding="rgb8", is_bigendian=0,
                                step=3 * w, data=rgb.reshape(-1))
        self.writer.write(self.c_img, int(stamp), self.ts.serialize_cdr(msg, self.img_type))
        if K is not None:
            self.writer.write(self.c_info, int(stamp), self.ts.serialize_cdr(
                camera_info_msg(self.ts, self.header(stamp), K, w, h, P), CAMERA_INFO_TYPE))
        if depth is not None and self.c_depth is not None:
            d = np.ascontiguousarray(depth, np.float32)
            dm = T[IMAGE_TYPE](header=self.header(stamp), height=d.shape[0], width=d.shape[1], encoding="32FC1",
                               is_bigendian=0, step=4 * d.shape[1], data=d.reshape(-1).view(np.uint8))
            self.writer.write(self.c_depth, int(stamp), self.ts.serialize_cdr(dm, IMAGE_TYPE))

    def close(self) -> None:
        """Close the bag (index, metadata.yaml) and fill in the chunk CRCs of an mcap bag."""
        self.writer.close()
        if self.storage == "mcap":
            for f in mcap_files(self.path):
                add_chunk_crcs(f)

    def __enter__(self) -> ImageBagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_synthetic_bag(out, frames: int, seed: int = 0, width: int = 320, height: int = 96, fps: float = 10.0,
                        storage: str = "mcap", ss: int = 2, compressed: str | None = None,
                        image_topic: str = DEFAULT_IMAGE_TOPIC, camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC,
                        depth_topic: str | None = DEFAULT_DEPTH_TOPIC, start_ns: int = 1_700_000_000_000_000_000,
                        lidar_topic: str | None = DEFAULT_LIDAR_TOPIC, lidar_delay: float = 0.005,
                        tf_static: bool = True, progress: bool = False) -> dict:
    """Render a synthetic drive (:mod:`dna_depth_core.data.synthetic`) into a ROS 2 bag at ``fps``.

    Writes Image (rgb8, or CompressedImage) + CameraInfo on every frame (stamps ``start_ns + i / fps``, frame
    ``camera_optical_frame``), the exact depth (32FC1, metres, 0 = sky) on ``depth_topic``, and on
    ``lidar_topic`` a 32-beam LiDAR scan per frame (HDL-32-like elevations, sampled from the exact depth:
    :func:`~dna_depth_core.data.synthetic.depth_to_scan`; x, y, z, intensity float32 in frame ``lidar``) stamped
    ``lidar_delay`` seconds after its image, as a LiDAR that is not triggered by the camera. With ``tf_static``
    one ``/tf_static`` message at ``start_ns`` holds ``base_link -> camera_optical_frame`` and
    ``base_link -> lidar`` (:func:`~dna_depth_core.data.synthetic.bag_extrinsics`: the LiDAR 27 cm behind and
    above the camera, its mount rotated by a few degrees). A topic set to None is not written.

    Returns ``{"path", "frames", "K", "seconds", "T_camera_lidar", "lidar_points"}`` (``T_camera_lidar``: the
    ``(4, 4)`` transform the scans were made with; ``lidar_points``: returns written).
    """
    t0 = time.perf_counter()
    drive = synthetic_drive(frames, seed)
    K = None
    period = int(round(1e9 / fps))
    delay = int(round(lidar_delay * 1e9))
    T_base_camera, T_base_lidar = bag_extrinsics()
    T_camera_lidar = invert_pose(T_base_camera) @ T_base_lidar
    seeds = np.random.default_rng(np.random.SeedSequence([int(seed), 7004])).integers(0, 2**31, frames)
    n_points = 0
    with ImageBagWriter(out, storage=storage, image_topic=image_topic, camera_info_topic=camera_info_topic,
                        depth_topic=depth_topic, compressed=compressed, lidar_topic=lidar_topic,
                        tf_static=tf_static) as w, \
            tqdm(total=frames, desc="synth bag", unit="frame", disable=not progress) as bar:
        if tf_static:
            w.write_transforms(start_ns, [(BASE_FRAME, CAMERA_FRAME, T_base_camera),
                                          (BASE_FRAME, LIDAR_FRAME, T_base_lidar)])
        for i in range(frames):
            rgb, K, depth = drive.render(i, width, height, ss=ss)
            stamp = start_ns + i * period
            w.write(stamp, rgb, K, depth if depth_topic else None)
            if lidar_topic:
                scan = depth_to_scan(depth, rgb, K, T_camera_lidar, np.random.default_rng(int(seeds[i])), beams=32,
                                     elevation_deg=HDL32_ELEVATION)
                w.write_cloud(stamp + delay, scan, LIDAR_FRAME)
                n_points += len(scan)
            bar.update(1)
    return {"path": str(out), "frames": frames, "K": K, "seconds": time.perf_counter() - t0,
            "T_camera_lidar": T_camera_lidar, "lidar_points": n_points}


__all__ = ["BASE_FRAME", "CAMERA_FRAME", "COMPRESSED_TYPE", "DEFAULT_CAMERA_INFO_TOPIC", "DEFAULT_DEPTH_TOPIC",
           "DEFAULT_IMAGE_TOPIC", "DEFAULT_LIDAR_TOPIC", "IMAGE_TYPE", "ImageBagWriter", "LIDAR_FRAME", "STORAGES",
           "camera_info_msg", "write_synthetic_bag"]
