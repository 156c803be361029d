"""Writing ROS 2 bags (mcap or sqlite3, with ``rosbags``' writer): :class:`ImageBagWriter` (Image or
CompressedImage + CameraInfo + optional depth) and :func:`write_synthetic_bag` (a synthetic drive as a bag).

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
from dna_depth_core.data.rosbag.read import CAMERA_INFO_TYPE, mcap_files, typestore
from dna_depth_core.data.synthetic import synthetic_drive

STORAGES = ("mcap", "sqlite3")
DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_DEPTH_TOPIC = "/camera/depth_gt"
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
    """Write Image (or CompressedImage) + CameraInfo (+ optional 32FC1 depth) messages to a new ROS 2 bag.

    >>> with ImageBagWriter("out_bag", storage="mcap") as w:
    ...     w.write(stamp_ns, rgb, K)

    Attributes for writing other messages: ``writer`` (the ``rosbags`` writer), ``ts`` (its type store),
    ``c_img``, ``c_info``, ``c_depth`` (connections), :meth:`header`.
    """

    def __init__(self, path, storage: str = "mcap", image_topic: str = DEFAULT_IMAGE_TOPIC,
                 camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC, depth_topic: str | None = None,
                 compressed: str | None = None, frame_id: str = "camera_optical_frame"):
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

    def header(self, stamp: int):
        """A ``std_msgs/msg/Header`` at ``stamp`` (ns) with the writer's frame id."""
        T = self.ts.types
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](
            sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)), frame_id=self.frame_id)

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
                        progress: bool = False) -> dict:
    """Render a synthetic drive (:mod:`dna_depth_core.data.synthetic`) into a ROS 2 bag at ``fps``.

    Writes Image (rgb8, or CompressedImage) + CameraInfo on every frame (stamps ``start_ns + i / fps``), and the
    exact depth (32FC1, metres, 0 = sky) on ``depth_topic`` (None: not written). Returns ``{"path", "frames",
    "K", "seconds"}``.
    """
    t0 = time.perf_counter()
    drive = synthetic_drive(frames, seed)
    K = None
    period = int(round(1e9 / fps))
    with ImageBagWriter(out, storage=storage, image_topic=image_topic, camera_info_topic=camera_info_topic,
                        depth_topic=depth_topic, compressed=compressed) as w, \
            tqdm(total=frames, desc="synth bag", unit="frame", disable=not progress) as bar:
        for i in range(frames):
            rgb, K, depth = drive.render(i, width, height, ss=ss)
            w.write(start_ns + i * period, rgb, K, depth if depth_topic else None)
            bar.update(1)
    return {"path": str(out), "frames": frames, "K": K, "seconds": time.perf_counter() - t0}


__all__ = ["COMPRESSED_TYPE", "DEFAULT_CAMERA_INFO_TOPIC", "DEFAULT_DEPTH_TOPIC", "DEFAULT_IMAGE_TOPIC", "IMAGE_TYPE",
           "ImageBagWriter", "STORAGES", "camera_info_msg", "write_synthetic_bag"]
