"""The node's outputs: its publishers and the messages of one frame.

:class:`Outputs` holds the publishers (only the enabled ones exist) and builds, for a depth map and its ``K``,
the messages of the outputs that have a subscriber: ``depth`` (32FC1 or 16UC1), ``depth/camera_info``, the
organised ``points`` cloud and ``depth/colored``. The maths are core functions (geometry, visualize); the
messages come from :mod:`dna_depth_ros.conversions`.
"""
from __future__ import annotations

import numpy as np

from dna_depth_core import geometry
from dna_depth_core.preprocess import fit_image
from dna_depth_core.visualize import colorize_depth

from dna_depth_ros import conversions as conv

__all__ = ["Outputs"]


class Outputs:
    """Publishers by output name (``depth``, ``camera_info``, ``points``, ``colored``; None = disabled) and the
    messages of one frame.

    Args:
        publishers: output name -> publisher or None.
        params: the node's parameters (name -> value): ``depth.*``, ``points.*``, ``colored.*``.
        resize_mode: the estimator's resize mode (colours of a network-resolution cloud).
    """

    def __init__(self, publishers: dict, params: dict, resize_mode: str):
        self.publishers = publishers
        self.params = params
        self._resize_mode = resize_mode
        self._rays_cache: tuple | None = None

    @property
    def enabled(self) -> list:
        """The publishers that exist."""
        return [pub for pub in self.publishers.values() if pub is not None]

    def has_subscribers(self) -> bool:
        """Whether any output has a subscriber (else no frame needs computing)."""
        return any(pub.get_subscription_count() > 0 for pub in self.enabled)

    def _subscribed(self, name: str) -> bool:
        pub = self.publishers.get(name)
        return pub is not None and pub.get_subscription_count() > 0

    def build(self, depth: np.ndarray, K: np.ndarray | None, rgb: np.ndarray, header) -> list[tuple]:
        """``(publisher, message)`` for each subscribed output of one frame.

        Args:
            depth: ``(h, w)`` float32 metres, NaN invalid (modified: depth beyond ``depth.max_range`` -> NaN).
            K: ``(3, 3)`` intrinsics at ``h`` x ``w``, or None (then no camera_info and no points).
            rgb: ``(H, W, 3)`` uint8 RGB input (colours of the cloud).
            header: the input's header, copied to every message.
        """
        p = self.params
        if p["depth.max_range"] > 0:
            with np.errstate(invalid="ignore"):
                depth[depth > p["depth.max_range"]] = np.nan
        h, w = depth.shape
        msgs = []
        if self._subscribed("depth"):
            msgs.append((self.publishers["depth"], conv.depth_to_image(depth, header, p["depth.encoding"])))
        if K is not None and self._subscribed("camera_info"):
            msgs.append((self.publishers["camera_info"], conv.make_camera_info(K, w, h, header)))
        if K is not None and self._subscribed("points"):
            msgs.append((self.publishers["points"], self.cloud(depth, K, rgb, header)))
        if self._subscribed("colored"):
            colored = colorize_depth(depth, p["colored.max_depth"])
            msgs.append((self.publishers["colored"], conv.rgb_to_image(colored, header, "rgb8")))
        return msgs

    def _rays(self, K: np.ndarray, h: int, w: int) -> np.ndarray:
        """Unit-depth rays ``(h, w, 3)`` for ``K`` (cached: intrinsics rarely change)."""
        key = (K.tobytes(), h, w)
        if self._rays_cache is None or self._rays_cache[0] != key:
            self._rays_cache = (key, geometry.depth_to_points(np.ones((h, w), np.float32), K))
        return self._rays_cache[1]

    def cloud(self, depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, header):
        """The organised PointCloud2 of ``depth`` ``(h, w)`` with ``K`` at ``h`` x ``w``, decimated by
        ``points.decimation``, NaN beyond ``points.max_range``, coloured from ``rgb`` with ``points.xyzrgb``."""
        p = self.params
        d = int(p["points.decimation"])
        dd = depth[::d, ::d]
        # Pixel (i, j) of the decimated grid is pixel (d*i, d*j) of the depth image: fx/d, cx/d (exactly).
        Kd = np.array(K, dtype=np.float64)
        Kd[:2] /= d
        Kd[2] = (0.0, 0.0, 1.0)
        points = self._rays(Kd, *dd.shape) * dd[..., None]
        if p["points.max_range"] > 0:
            with np.errstate(invalid="ignore"):
                far = np.einsum("ijk,ijk->ij", points, points) > p["points.max_range"] ** 2
            points[far] = np.nan
        colors = None
        if p["points.xyzrgb"]:
            h, w = depth.shape
            if rgb.shape[:2] != (h, w):  # output at the network's resolution: the colours the network saw
                rgb, _ = fit_image(rgb, (w, h), self._resize_mode)
            colors = rgb[::d, ::d]
        return conv.points_to_cloud(points, header, colors)
