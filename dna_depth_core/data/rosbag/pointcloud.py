"""``sensor_msgs/PointCloud2`` <-> numpy for bags: the xyz of any LiDAR driver's layout (:func:`cloud_xyz`), and the
x, y, z, intensity float32 layout the synthetic bags are written with (:func:`cloud_msg`).

A PointCloud2 is ``height`` rows of ``width`` points, ``point_step`` bytes a point and ``row_step`` bytes a row
(rows may be padded), each field at its byte ``offset`` with its ``datatype`` (``sensor_msgs/PointField``:
1 INT8, 2 UINT8, 3 INT16, 4 UINT16, 5 INT32, 6 UINT32, 7 FLOAT32, 8 FLOAT64), little-endian unless
``is_bigendian``. Works on rosbags messages (ROS 1 and ROS 2) and rclpy messages alike (same field names).
"""
from __future__ import annotations

import numpy as np

POINTCLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"
_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_FLOAT32 = 7


def _bytes(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype != np.uint8 else data.reshape(-1)
    return np.frombuffer(memoryview(data).cast("B"), np.uint8)


def cloud_xyz(msg, drop_invalid: bool = True) -> np.ndarray:
    """The points of a PointCloud2 as ``(N, 3)`` float64 ``x, y, z`` in the message's frame (``header.frame_id``).

    ``x``, ``y`` and ``z`` may be FLOAT32 or FLOAT64, at any offsets, in either byte order, organised
    (``height > 1``) or not, with padded rows. With ``drop_invalid`` (default) points with a coordinate that is
    not finite (no return, in organised clouds) and points at exactly ``(0, 0, 0)`` (how some drivers, e.g.
    Ouster's, mark a missing return in organised clouds) are left out.

    Raises:
        ValueError: no ``x``/``y``/``z`` field, a non-float coordinate type, or data shorter than the layout says.
    """
    fields = {str(f.name): f for f in msg.fields}
    missing = [n for n in "xyz" if n not in fields]
    if missing:
        raise ValueError(f"PointCloud2 has no field {', '.join(missing)} (fields: "
                         f"{', '.join(fields) or 'none'})")
    order = ">" if bool(msg.is_bigendian) else "<"
    formats = []
    for n in "xyz":
        dt = int(fields[n].datatype)
        if dt not in (_FLOAT32, 8):
            raise ValueError(f"PointCloud2 field {n} has datatype {dt} ({_TYPES.get(dt, 'unknown')}); only FLOAT32 "
                             "(7) and FLOAT64 (8) coordinates are read")
        formats.append(order + _TYPES[dt])
    height, width = int(msg.height), int(msg.width)
    step, row_step = int(msg.point_step), int(msg.row_step)
    offsets = [int(fields[n].offset) for n in "xyz"]
    end = max(o + np.dtype(f).itemsize for o, f in zip(offsets, formats))
    if step < end or row_step < width * step:
        raise ValueError(f"PointCloud2 layout is inconsistent: point_step {step}, row_step {row_step}, width "
                         f"{width}, fields end at byte {end}")
    data = _bytes(msg.data)
    need = (height - 1) * row_step + width * step if height and width else 0
    if data.size < need:
        raise ValueError(f"PointCloud2 data has {data.size} bytes; {height}x{width} points of {step} bytes "
                         f"(row_step {row_step}) need {need}")
    if need == 0:
        return np.zeros((0, 3))
    if height * row_step > data.size:  # the last row without its padding
        data = np.concatenate([data, np.zeros(height * row_step - data.size, np.uint8)])
    rows = data[:height * row_step].reshape(height, row_step)[:, :width * step]
    dtype = np.dtype({"names": list("xyz"), "formats": formats, "offsets": offsets, "itemsize": step})
    pts = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)
    if drop_invalid:
        keep = np.isfinite(xyz).all(axis=1) & (xyz != 0).any(axis=1)
        xyz = xyz[keep]
    return xyz


def cloud_msg(ts, header, points: np.ndarray):
    """A rosbags ``sensor_msgs/msg/PointCloud2`` (unorganised: ``height`` 1) with FLOAT32 fields ``x, y, z`` and,
    when ``points`` has a fourth column, ``intensity`` (``point_step`` 12 or 16, little-endian). ``ts``: the type
    store; ``points``: ``(N, 3)`` or ``(N, 4)``."""
    pts = np.ascontiguousarray(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must have shape (N, 3) or (N, 4), got {pts.shape}")
    T = ts.types
    names = ["x", "y", "z", "intensity"][: pts.shape[1]]
    fields = [T["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=_FLOAT32, count=1)
              for i, n in enumerate(names)]
    step = 4 * pts.shape[1]
    return T[POINTCLOUD2_TYPE](header=header, height=1, width=len(pts), fields=fields, is_bigendian=False,
                               point_step=step, row_step=step * len(pts), data=pts.reshape(-1).view(np.uint8),
                               is_dense=bool(np.isfinite(pts).all()))


__all__ = ["POINTCLOUD2_TYPE", "cloud_msg", "cloud_xyz"]
