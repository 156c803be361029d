"""The node's outputs: its publishers and the messages of one frame.

Topics (relative to the node's namespace; image_transport's layout: an image ``<ns>/image`` beside its
``<ns>/camera_info``, so a CameraSubscriber on ``depth/image`` finds ``depth/camera_info``):

=====================  ================================  =====================================================
output (publisher)     topic                             message
=====================  ================================  =====================================================
``depth``              ``depth/image``                   Image 32FC1 metres (REP 117 values) or 16UC1 mm
``camera_info``        ``depth/camera_info``             CameraInfo of the depth image (its resolution)
``colored``            ``depth/colored``                 Image rgb8, colour view of the depth (same pixels)
``scale``              ``depth/scale``                   DiagnosticArray: the metric scale and its state
``points``             ``points``                        organised PointCloud2 (REP 117 or clearing points)
``obstacles``          ``points/obstacles``              PointCloud2 list: the obstacle band's points
``ground``             ``points/ground``                 PointCloud2 list: the ground's points
``scan``               ``scan``                          LaserScan in the camera's levelled frame
``rgb``                ``rgb/image``                     Image rgb8: the input at the depth's resolution
``rgb_info``           ``rgb/camera_info``               CameraInfo of ``rgb/image``
=====================  ================================  =====================================================

:class:`Outputs` holds the publishers (only the enabled ones exist; :meth:`Outputs.sync` follows a change of
``publish.*`` at runtime) and builds, for one
:class:`~dna_depth_core.inference.DepthResult`, the messages of the outputs that have a subscriber. Every message
carries the input's header (the scan: its stamp, with the levelled frame_id). The maths are core functions
(:mod:`dna_depth_core.inference.ranges`, :mod:`~dna_depth_core.inference.ground`, visualize); the messages come
from :mod:`dna_depth_ros.conversions`.
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, LaserScan, PointCloud2

from dna_depth_core.inference import (DepthResult, GroundPlane, PixelRays, cloud_points, laser_scan,
                                      mounting_plane, rep117_depth, split_ground)
from dna_depth_core.preprocess import fit_image
from dna_depth_core.visualize import colorize_depth

from dna_depth_ros import conversions as conv
from dna_depth_ros.throttle import ThrottledLogger

__all__ = ["OUTPUT_TOPICS", "OUTPUT_TYPES", "Outputs", "output_parameter", "scan_frame_id"]

# Output name -> topic (relative to the node's namespace).
OUTPUT_TOPICS = {
    "depth": "depth/image",
    "camera_info": "depth/camera_info",
    "colored": "depth/colored",
    "scale": "depth/scale",
    "points": "points",
    "obstacles": "points/obstacles",
    "ground": "points/ground",
    "scan": "scan",
    "rgb": "rgb/image",
    "rgb_info": "rgb/camera_info",
}
# Output name -> message type.
OUTPUT_TYPES = {
    "depth": Image, "camera_info": CameraInfo, "colored": Image, "scale": DiagnosticArray, "points": PointCloud2,
    "obstacles": PointCloud2, "ground": PointCloud2, "scan": LaserScan, "rgb": Image, "rgb_info": CameraInfo,
}


def output_parameter(name: str) -> str:
    """The ``publish.*`` parameter that enables output ``name`` (``rgb/camera_info`` goes with ``rgb/image``)."""
    return "publish.rgb" if name == "rgb_info" else f"publish.{name}"


def scan_frame_id(configured: str, image_frame_id: str) -> str | None:
    """The scan's frame_id: ``configured`` when set, else the image's frame_id without ``_optical``
    (``camera_color_optical_frame`` -> ``camera_color_frame``, ``zed_left_camera_frame_optical`` ->
    ``zed_left_camera_frame``), or None when it has no ``_optical``."""
    if configured:
        return configured
    if "_optical" not in image_frame_id:
        return None
    return image_frame_id.replace("_optical", "", 1)


class Outputs:
    """Publishers by output name (:data:`OUTPUT_TOPICS`; None = disabled) and the messages of one frame.

    Args:
        create: ``create(msg_type, topic)`` -> a publisher (the node's, with the output QoS).
        destroy: ``destroy(publisher)``.
        params: the node's parameters (name -> value): ``publish.*``, ``depth.*``, ``points.*``, ``ground.*``,
            ``scan.*``, ``scale.*``, ``colored.*`` (read for every frame: they may change at runtime).
        resize_mode: the estimator's resize mode (colours of a network-resolution cloud and image).
        log: throttled logger for the outputs a frame cannot give (no ground plane, no scan frame).

    Publishing (:meth:`publish`) and creating or destroying publishers (:meth:`sync`, :meth:`close`) take one
    lock, so a publisher is never destroyed while a frame is being published on it.
    """

    def __init__(self, create: Callable, destroy: Callable, params: dict, resize_mode: str,
                 log: ThrottledLogger | None = None):
        self._create = create
        self._destroy = destroy
        self.params = params
        self._resize_mode = resize_mode
        self._log = log
        self._rays: PixelRays | None = None
        self._lock = threading.Lock()
        self.publishers: dict = {name: None for name in OUTPUT_TOPICS}
        self.sync()

    def sync(self) -> list[str]:
        """Create the publishers whose ``publish.*`` parameter is true and destroy the others; returns the names
        of the outputs that changed."""
        changed = []
        with self._lock:
            for name, topic in OUTPUT_TOPICS.items():
                pub, on = self.publishers[name], bool(self.params[output_parameter(name)])
                if on and pub is None:
                    self.publishers[name] = self._create(OUTPUT_TYPES[name], topic)
                    changed.append(name)
                elif not on and pub is not None:
                    self.publishers[name] = None
                    self._destroy(pub)
                    changed.append(name)
        return changed

    def close(self) -> None:
        """Destroy every publisher."""
        with self._lock:
            for name, pub in self.publishers.items():
                if pub is not None:
                    self.publishers[name] = None
                    self._destroy(pub)

    def publish(self, msgs: list[tuple]) -> None:
        """Publish ``(publisher, message)`` pairs from :meth:`build` whose publisher still exists."""
        with self._lock:
            alive = {id(pub) for pub in self.publishers.values() if pub is not None}
            for pub, msg in msgs:
                if id(pub) in alive:
                    pub.publish(msg)

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

    def _warn(self, key: str, message: str) -> None:
        if self._log is not None:
            self._log.log("warning", key, message)

    # -- one frame ----------------------------------------------------------------------------------------------
    def build(self, res: DepthResult, rgb: np.ndarray, header) -> list[tuple]:
        """``(publisher, message)`` for each subscribed output of one frame.

        Args:
            res: the estimator's result: depth ``(h, w)`` float32 metres (NaN invalid), ``K`` at ``h x w`` or
                None (then no camera_info, clouds or scan), the scale state and the ground plane.
            rgb: ``(H, W, 3)`` uint8 RGB input (colours of the cloud, the republished image).
            header: the input's header, copied to every message.
        """
        p = self.params
        msgs = []
        state = res.scale_state
        if state is not None and self._subscribed("scale"):
            msgs.append((self.publishers["scale"], conv.scale_to_diagnostics(state, header)))
        if state is not None and state.withheld:
            if self._log is not None:
                self._log.log("info", "withheld", "scale.withhold: not publishing depth until the scale is "
                              + ("frozen" if p["scale.freeze"] else "metric") + " (see 'depth/scale')")
            return msgs

        depth, K = res.depth, res.K
        h, w = depth.shape
        if self._subscribed("depth"):
            ranged = rep117_depth(depth, p["depth.min_range"], p["depth.max_range"])
            msgs.append((self.publishers["depth"], conv.depth_to_image(ranged, header, p["depth.encoding"])))
        if K is not None and self._subscribed("camera_info"):
            msgs.append((self.publishers["camera_info"], conv.make_camera_info(K, w, h, header)))
        if self._subscribed("colored"):
            colored = colorize_depth(depth, p["colored.max_depth"])
            msgs.append((self.publishers["colored"], conv.rgb_to_image(colored, header, "rgb8")))
        rgb_out = None
        if self._subscribed("rgb") or (K is not None and self._subscribed("points") and p["points.xyzrgb"]):
            rgb_out = self._rgb_at(rgb, h, w)
        if self._subscribed("rgb"):
            msgs.append((self.publishers["rgb"], conv.rgb_to_image(rgb_out, header, "rgb8")))
        if K is not None and self._subscribed("rgb_info"):
            msgs.append((self.publishers["rgb_info"], conv.make_camera_info(K, w, h, header)))
        if K is None:
            return msgs

        d = int(p["points.decimation"])
        dd = depth[::d, ::d] if d > 1 else depth
        rays = self._rays_for(K, d, *dd.shape)
        if self._subscribed("points"):
            points = cloud_points(dd, rays, p["points.min_range"], p["points.max_range"], p["points.far_mode"],
                                  p["points.clearing_distance"] or p["points.max_range"])
            colors = rgb_out[::d, ::d] if p["points.xyzrgb"] else None
            msgs.append((self.publishers["points"], conv.points_to_cloud(points, header, colors)))
        wants = [name for name in ("obstacles", "ground", "scan") if self._subscribed(name)]
        if wants:
            msgs.extend(self._ground_outputs(wants, dd, rays, res.ground_plane, header))
        return msgs

    def _ground_outputs(self, wants: list[str], depth: np.ndarray, rays: PixelRays, fitted: GroundPlane | None,
                        header) -> list[tuple]:
        p = self.params
        plane = self._plane(fitted)
        if plane is None:
            self._warn("no_plane", "no ground plane yet (no successful ground fit, and no mounting plane: "
                       "scale.camera_height is 0): not publishing " + ", ".join(OUTPUT_TOPICS[n] for n in wants))
            return []
        band = (p["ground.min_height"], p["ground.max_height"])
        msgs = []
        if "obstacles" in wants or "ground" in wants:
            obstacles, ground = split_ground(depth, rays, plane, band, p["points.min_range"], p["points.max_range"])
            if "obstacles" in wants:
                msgs.append((self.publishers["obstacles"], conv.point_list_to_cloud(obstacles, header)))
            if "ground" in wants:
                msgs.append((self.publishers["ground"], conv.point_list_to_cloud(ground, header)))
        if "scan" in wants:
            frame_id = scan_frame_id(p["scan.frame_id"], header.frame_id)
            if frame_id is None:
                self._warn("scan_frame", f"the image's frame_id '{header.frame_id}' has no '_optical' to strip: "
                           f"set scan.frame_id to the camera's levelled frame; not publishing 'scan'")
            else:
                scan = laser_scan(depth, rays, plane, band, p["scan.range_min"], p["scan.range_max"],
                                  p["scan.beams"])
                msgs.append((self.publishers["scan"], conv.scan_to_laser_scan(scan, header, frame_id)))
        return msgs

    def _plane(self, fitted: GroundPlane | None) -> GroundPlane | None:
        """The frame's ground plane by ``ground.plane``: the fit (or the last fit's normal), else the mounting
        plane (auto), or None. Read from the parameters on every frame (they may change at run time)."""
        p = self.params
        source = p["ground.plane"]
        if source != "mounting" and fitted is not None:
            return fitted
        if source == "fit" or not p["scale.camera_height"] > 0:
            return None
        return mounting_plane(p["scale.camera_height"], p["ground.pitch_deg"], p["ground.roll_deg"])

    def _rgb_at(self, rgb: np.ndarray, h: int, w: int) -> np.ndarray:
        """The input image at the depth's resolution: itself at output_resolution input; at network, the colours
        the network saw (the estimator's crop and resize)."""
        if rgb.shape[:2] == (h, w):
            return rgb
        fitted, _ = fit_image(rgb, (w, h), self._resize_mode)
        return fitted

    def _rays_for(self, K: np.ndarray, d: int, h: int, w: int) -> PixelRays:
        """The rays of the depth grid decimated by ``d`` (cached: intrinsics rarely change). Pixel ``(i, j)`` of the
        decimated grid is pixel ``(d*i, d*j)`` of the depth image: ``fx/d``, ``cx/d`` (exactly)."""
        Kd = np.array(K, dtype=np.float64)
        if d > 1:
            Kd[:2] /= d
            Kd[2] = (0.0, 0.0, 1.0)
        if self._rays is None or not self._rays.matches(Kd, h, w):
            self._rays = PixelRays(Kd, h, w)
        return self._rays
