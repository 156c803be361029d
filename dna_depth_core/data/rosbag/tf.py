"""Static transforms as tf keeps them: from a bag's ``/tf_static`` (``tf2_msgs/TFMessage``) or from a YAML file,
chained through intermediate frames (:class:`TransformTree`), and written to bags (:func:`tf_message`).

Conventions (tf's): a ``geometry_msgs/TransformStamped`` with ``header.frame_id`` = *parent* and
``child_frame_id`` = *child* is ``T_parent_child``: it maps points expressed in the child frame into the parent
frame (``p_parent = R p_child + t``; ``t`` is the child's origin in the parent frame, ``R`` the rotation of the
quaternion ``(x, y, z, w)``). Each frame has at most one parent; a later transform for the same child replaces the
earlier one (as ``/tf_static`` republished by a restarted node does). Frame names are compared without a leading
``/`` (ROS 1's ``/velodyne`` is ``velodyne``).

The YAML file (``--extrinsics``) holds the same transforms (here: the synthetic bag's rig)::

    transforms:
      - parent: base_link
        child: camera_optical_frame
        translation: [1.30, 0.0, 1.65]         # metres: the child's origin in the parent frame
        rotation: [-0.5, 0.5, -0.5, 0.5]       # quaternion x, y, z, w (geometry_msgs order)
      - parent: base_link
        child: lidar
        translation: [1.03, 0.02, 1.92]
        rotation: [[0.99905, -0.0352, -0.0257], [0.034981, 0.999348, -0.008905], [0.025997, 0.007997, 0.99963]]

The rotation is a quaternion ``[x, y, z, w]`` or a 3x3 matrix (rows). A matrix must be orthonormal within 1e-3 and
is snapped to the nearest rotation; a quaternion must have norm 1 within 1e-2 and is normalised.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from dna_depth_core.geometry import invert_pose, matrix_to_quaternion, quaternion_to_matrix

TF_STATIC_TOPIC = "/tf_static"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"


def frame_name(frame_id) -> str:
    """A tf frame id as tf2 compares it: without a leading ``/``."""
    return str(frame_id).lstrip("/")


def rigid(translation, rotation: np.ndarray) -> np.ndarray:
    """``(4, 4)`` transform from a translation (3,) and a ``(3, 3)`` rotation."""
    T = np.eye(4)
    T[:3, :3] = rotation
    T[:3, 3] = np.asarray(translation, np.float64).reshape(3)
    return T


@dataclasses.dataclass(frozen=True)
class StaticTransform:
    """``T`` ``(4, 4)`` = ``T_parent_child``; ``origin`` says where it came from (a message, a file entry)."""

    parent: str
    child: str
    T: np.ndarray
    origin: str


class TransformTree:
    """Static transforms by child frame; :meth:`lookup` chains them through common ancestors as tf does.

    >>> tree = TransformTree("/tf_static of my.bag")
    >>> tree.add("base_link", "lidar", T_base_lidar, "message 0")
    >>> tree.lookup("camera_optical_frame", "lidar")    # T_camera_lidar, via base_link
    """

    def __init__(self, name: str):
        self.name = name
        self.parent_of: dict[str, StaticTransform] = {}

    def __len__(self) -> int:
        return len(self.parent_of)

    def add(self, parent: str, child: str, T: np.ndarray, origin: str = "") -> None:
        """Add (or replace) ``T_parent_child`` ``(4, 4)``."""
        parent, child = frame_name(parent), frame_name(child)
        if not parent or not child:
            raise ValueError(f"{self.name}: a transform {origin} has an empty frame id (parent '{parent}', child "
                             f"'{child}')")
        if parent == child:
            raise ValueError(f"{self.name}: a transform {origin} maps frame '{child}' to itself")
        T = np.asarray(T, np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"{self.name}: transform {parent} <- {child} {origin} is not a finite (4, 4) matrix")
        self.parent_of[child] = StaticTransform(parent, child, T, origin)

    def add_message(self, msg, origin: str = "") -> None:
        """Add every transform of a ``tf2_msgs/TFMessage`` (rosbags or rclpy; ROS 1 or ROS 2)."""
        for k, t in enumerate(msg.transforms):
            where = f"{origin} transform {k}"
            tr, q = t.transform.translation, t.transform.rotation
            try:
                R = quaternion_to_matrix([q.x, q.y, q.z, q.w])
            except ValueError as exc:
                raise ValueError(f"{self.name}: {where} ({t.header.frame_id} <- {t.child_frame_id}): {exc}") from None
            self.add(t.header.frame_id, t.child_frame_id, rigid([tr.x, tr.y, tr.z], R), where)

    def frames(self) -> list[str]:
        """Every frame named, sorted."""
        out = set(self.parent_of)
        out.update(t.parent for t in self.parent_of.values())
        return sorted(out)

    def _to_root(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        path = [frame]
        while path[-1] in self.parent_of:
            nxt = self.parent_of[path[-1]].parent
            if nxt in path:
                raise ValueError(f"{self.name}: the transforms form a loop: {' -> '.join(path + [nxt])}")
            path.append(nxt)
        return path

    def trees(self) -> list[list[str]]:
        """The frames grouped by the tree they belong to (by root), each sorted."""
        groups: dict[str, list[str]] = {}
        for f in self.frames():
            groups.setdefault(self._to_root(f)[-1], []).append(f)
        return [sorted(g) for _, g in sorted(groups.items())]

    def chain(self, target: str, source: str) -> list[str]:
        """The frames from ``target`` to ``source`` through their nearest common ancestor, both ends included.

        Raises:
            ValueError: naming a frame that is not in the tree, or the two (unconnected) trees.
        """
        target, source = frame_name(target), frame_name(source)
        if target == source:
            return [target]
        known = self.frames()
        for f in (target, source):
            if f not in known:
                raise ValueError(f"no transform {target} <- {source} in {self.name}: frame '{f}' is not in it "
                                 f"(frames: {', '.join(known) or 'none'})")
        up_t, up_s = self._to_root(target), self._to_root(source)
        common = next((f for f in up_s if f in up_t), None)
        if common is None:
            trees = "; ".join("{" + ", ".join(g) + "}" for g in self.trees())
            raise ValueError(f"no transform {target} <- {source} in {self.name}: the two frames are not connected "
                             f"(its trees: {trees})")
        return up_t[: up_t.index(common) + 1] + list(reversed(up_s[: up_s.index(common)]))

    def lookup(self, target: str, source: str) -> np.ndarray:
        """``T_target_source`` ``(4, 4)``: maps points in ``source`` into ``target`` (tf's
        ``lookupTransform(target, source)``), chained along :meth:`chain`."""
        path = self.chain(target, source)
        T = np.eye(4)
        for a, b in zip(path[:-1], path[1:]):
            if b in self.parent_of and self.parent_of[b].parent == a:  # a is b's parent: T_a_b
                step = self.parent_of[b].T
            else:  # b is a's parent: T_a_b = inv(T_b_a)
                step = invert_pose(self.parent_of[a].T)
            T = T @ step
        return T


def _yaml_numbers(value, count: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.size != count or not np.isfinite(arr).all():
        raise ValueError(f"{where} must be {count} finite numbers, got {value!r}")
    return arr


def transforms_from_yaml(path) -> TransformTree:
    """The :class:`TransformTree` of an extrinsics YAML file (format: the module docstring).

    Raises:
        FileNotFoundError, ValueError: naming the file, the entry and the key that is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extrinsics file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"extrinsics {path}: not YAML ({exc})") from None
    items = data.get("transforms") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"extrinsics {path}: needs a non-empty list 'transforms' of {{parent, child, translation, "
                         f"rotation}} entries (docs/rosbag.md, 'Measure on your robot')")
    tree = TransformTree(f"extrinsics {path}")
    for k, item in enumerate(items):
        where = f"extrinsics {path}: transforms[{k}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a mapping with parent, child, translation, rotation")
        missing = [key for key in ("parent", "child", "translation", "rotation") if key not in item]
        if missing:
            raise ValueError(f"{where} has no {', '.join(missing)}")
        t = _yaml_numbers(item["translation"], 3, f"{where}.translation")
        rot = np.asarray(item["rotation"], dtype=object)
        if rot.size == 4:
            try:
                R = quaternion_to_matrix(_yaml_numbers(item["rotation"], 4, f"{where}.rotation"))
            except ValueError as exc:
                raise ValueError(f"{where}.rotation: {exc}") from None
        elif rot.size == 9:
            M = _yaml_numbers(item["rotation"], 9, f"{where}.rotation").reshape(3, 3)
            if np.abs(M @ M.T - np.eye(3)).max() > 1e-3 or np.linalg.det(M) < 0:
                raise ValueError(f"{where}.rotation is not a rotation matrix (orthonormal within 1e-3, determinant "
                                 f"+1): {M.tolist()}")
            U, _, Vt = np.linalg.svd(M)
            R = U @ Vt
        else:
            raise ValueError(f"{where}.rotation must be a quaternion [x, y, z, w] or a 3x3 matrix, got "
                             f"{item['rotation']!r}")
        tree.add(str(item["parent"]), str(item["child"]), rigid(t, R), f"transforms[{k}]")
    return tree


def tf_message(ts, transforms: Iterable[tuple[str, str, np.ndarray]], stamp: int):
    """A rosbags ``tf2_msgs/msg/TFMessage`` of ``(parent, child, T_parent_child (4, 4))`` transforms stamped
    ``stamp`` (ns). ``ts``: the type store."""
    T = ts.types
    time = T["builtin_interfaces/msg/Time"](sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000))
    out = []
    for parent, child, M in transforms:
        M = np.asarray(M, np.float64)
        q = matrix_to_quaternion(M[:3, :3])
        out.append(T["geometry_msgs/msg/TransformStamped"](
            header=T["std_msgs/msg/Header"](stamp=time, frame_id=parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=float(M[0, 3]), y=float(M[1, 3]), z=float(M[2, 3])),
                rotation=T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                           w=float(q[3])))))
    return T[TF_MESSAGE_TYPE](transforms=out)


__all__ = ["StaticTransform", "TF_MESSAGE_TYPE", "TF_STATIC_TOPIC", "TransformTree", "frame_name", "rigid",
           "tf_message", "transforms_from_yaml"]
