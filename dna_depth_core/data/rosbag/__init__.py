"""Training and evaluation data straight from ROS bags, read with the pure-Python ``rosbags`` library (no ROS
install needed).

Reads ROS 2 bags (mcap and sqlite3 storage) and ROS 1 bags; writes ROS 2 bags (mcap or sqlite3). Nothing here
imports rclpy. docs/rosbag.md is the user's guide.

Modules, lowest first (each imports only the ones above it):

- :mod:`~dna_depth_core.data.rosbag.damage`: :class:`BagDamage` (one damaged part of a bag: file, chunk, byte,
  time range, topics, reason) and :class:`BagReadError`.
- :mod:`~dna_depth_core.data.rosbag.mcap`: the mcap record reader (chunk CRCs checked, damaged chunks named and
  skippable, files cut short readable) and :func:`~dna_depth_core.data.rosbag.mcap.add_chunk_crcs`.
- :mod:`~dna_depth_core.data.rosbag.pointcloud`: ``sensor_msgs/PointCloud2`` <-> numpy (:func:`cloud_xyz`,
  :func:`cloud_msg`).
- :mod:`~dna_depth_core.data.rosbag.tf`: static transforms (``/tf_static`` or an extrinsics YAML) chained as tf
  does (:class:`TransformTree`, :func:`transforms_from_yaml`, :func:`tf_message`).
- :mod:`~dna_depth_core.data.rosbag.read`: :func:`iter_bag` (deserialised messages, one path per storage: mcap
  through the record reader, sqlite3 and ROS 1 through ``rosbags``' AnyReader) and :func:`bag_topics`.
- :mod:`~dna_depth_core.data.rosbag.frames`: :func:`read_bag_frames` -> :class:`BagFrames`: one bag's image
  topic decoded (:mod:`dna_depth_core.ros_images`), its intrinsics (CameraInfo through
  :func:`dna_depth_core.camera.camera_info_intrinsics`, or a calibration YAML through
  :func:`dna_depth_core.camera.intrinsics_from_yaml`), an optional depth topic.
- :mod:`~dna_depth_core.data.rosbag.pairing`: :func:`build_chains` (neighbours by time), the static filter
  (:func:`thumbnail`, :func:`photometric_change`) and :func:`make_samples` (train/val split by time) ->
  :class:`Sample`.
- :mod:`~dna_depth_core.data.rosbag.dataset`: :class:`BagDataset` (a
  :class:`~dna_depth_core.data.kitti.KittiDataset`) and :func:`dataset_from_config` (``dataset: bag``).
- :mod:`~dna_depth_core.data.rosbag.extract`: :func:`extract_bag` (``bag-extract``: a KITTI-layout cache).
- :mod:`~dna_depth_core.data.rosbag.lidar`: :func:`pair_lidar` -> :class:`LidarPairs`: each camera frame with the
  LiDAR cloud nearest in time, in the camera's optical frame (``evaluate --bag --lidar-topic``).
- :mod:`~dna_depth_core.data.rosbag.write`: :class:`ImageBagWriter`, :func:`write_synthetic_bag` (with a LiDAR and
  ``/tf_static``).
- :mod:`~dna_depth_core.data.rosbag.info`: :func:`bag_info`, :func:`format_bag_info` (``bag-info``).

Conventions:

- Topics: one image topic (``sensor_msgs/Image`` in any encoding :mod:`dna_depth_core.ros_images` decodes, or
  ``CompressedImage`` jpeg/png) and one ``sensor_msgs/CameraInfo`` topic; either may be left out when the bag
  holds exactly one topic of that kind. Images are assumed undistorted (use an ``image_rect`` topic).
- Intrinsics: per bag, from its first usable CameraInfo with the project's one rule (``P`` when valid, else
  ``K``; ROI and binning applied; plausibility checked), kept normalised in :mod:`dna_depth_core.camera`'s
  convention (``cx_n = (cx + 0.5) / W``); a calibration YAML overrides them.
- Timestamps: ``header.stamp`` when set, else the bag's receive time.
- Frames are resized to the training size with :func:`dna_depth_core.preprocess.fit_image`.
- Damage: a damaged bag raises :class:`BagReadError` naming the bag, the file, the place (mcap chunk and byte
  offset), the time range and topics of what is lost, and how many messages were read before it. With
  ``on_damage="keep"`` the intact parts are used (mcap: every intact chunk, before and after a damaged one) and
  one warning names the damaged parts.
"""
from __future__ import annotations

from dna_depth_core.data.rosbag.damage import BagDamage, BagReadError, format_ns
from dna_depth_core.data.rosbag.dataset import BagDataset, dataset_from_config
from dna_depth_core.data.rosbag.extract import extract_bag, kitti_calibration_text
from dna_depth_core.data.rosbag.frames import BagFrames, bag_label, image_encoding, pick_topic, read_bag_frames
from dna_depth_core.data.rosbag.info import bag_info, format_bag_info
from dna_depth_core.data.rosbag.lidar import DEFAULT_TOLERANCE, LidarFrame, LidarPairs, match_stamps, pair_lidar
from dna_depth_core.data.rosbag.mcap import add_chunk_crcs
from dna_depth_core.data.rosbag.pairing import (THUMB_WIDTH, Sample, build_chains, make_samples, photometric_change,
                                                thumbnail)
from dna_depth_core.data.rosbag.pointcloud import POINTCLOUD2_TYPE, cloud_msg, cloud_xyz
from dna_depth_core.data.rosbag.read import CAMERA_INFO_TYPE, IMAGE_TYPES, BagMessage, bag_topics, iter_bag
from dna_depth_core.data.rosbag.tf import (TF_MESSAGE_TYPE, TF_STATIC_TOPIC, TransformTree, tf_message,
                                          transforms_from_yaml)
from dna_depth_core.data.rosbag.write import (DEFAULT_CAMERA_INFO_TOPIC, DEFAULT_DEPTH_TOPIC, DEFAULT_IMAGE_TOPIC,
                                              DEFAULT_LIDAR_TOPIC, STORAGES, ImageBagWriter, camera_info_msg,
                                              write_synthetic_bag)

__all__ = [
    "BagDamage",
    "BagDataset",
    "BagFrames",
    "BagMessage",
    "BagReadError",
    "CAMERA_INFO_TYPE",
    "DEFAULT_CAMERA_INFO_TOPIC",
    "DEFAULT_DEPTH_TOPIC",
    "DEFAULT_IMAGE_TOPIC",
    "DEFAULT_LIDAR_TOPIC",
    "DEFAULT_TOLERANCE",
    "IMAGE_TYPES",
    "ImageBagWriter",
    "LidarFrame",
    "LidarPairs",
    "POINTCLOUD2_TYPE",
    "STORAGES",
    "Sample",
    "TF_MESSAGE_TYPE",
    "TF_STATIC_TOPIC",
    "THUMB_WIDTH",
    "TransformTree",
    "add_chunk_crcs",
    "bag_info",
    "bag_label",
    "bag_topics",
    "build_chains",
    "camera_info_msg",
    "cloud_msg",
    "cloud_xyz",
    "dataset_from_config",
    "extract_bag",
    "format_bag_info",
    "format_ns",
    "image_encoding",
    "iter_bag",
    "kitti_calibration_text",
    "make_samples",
    "match_stamps",
    "pair_lidar",
    "photometric_change",
    "pick_topic",
    "read_bag_frames",
    "tf_message",
    "thumbnail",
    "transforms_from_yaml",
    "write_synthetic_bag",
]
