"""The node's intrinsics: camera_info messages by stamp, the ``intrinsics.*`` fallback, and which one a frame gets.

Reading a CameraInfo (P or K, ROI, binning, plausibility) is :func:`dna_depth_core.camera.camera_info_intrinsics`;
this module keeps the good ones, logs each kind of problem under its own throttle key (the core's
:class:`~dna_depth_core.camera.Problem` keys), and answers "which K for this image".
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np

from dna_depth_core.camera import CameraInfoError, CameraIntrinsics, camera_info_intrinsics

from dna_depth_ros.throttle import ThrottledLogger

__all__ = ["IntrinsicsStore", "fallback_intrinsics"]

KEEP = 32  # camera_info messages kept by stamp


def fallback_intrinsics(p: dict) -> CameraIntrinsics | None:
    """The intrinsics of the ``intrinsics.*`` parameters (``p``: name -> value), or None when fx or fy is not set."""
    if not (p["intrinsics.fx"] > 0 and p["intrinsics.fy"] > 0):
        return None
    K = np.array([[p["intrinsics.fx"], 0.0, p["intrinsics.cx"]],
                  [0.0, p["intrinsics.fy"], p["intrinsics.cy"]],
                  [0.0, 0.0, 1.0]])
    return CameraIntrinsics(K=K, size=(p["intrinsics.width"], p["intrinsics.height"]), source="parameters")


class IntrinsicsStore:
    """The last :data:`KEEP` good camera_info intrinsics by stamp, and the fallback.

    Args:
        source: which CameraInfo matrix to read ('auto', 'K' or 'P'; see ``camera_info_intrinsics``).
        fallback: intrinsics used while no good camera_info has arrived, or None.
        tlog: where problems are logged.


    Counters (for diagnostics): ``received``, ``rejected`` camera_info messages, ``problems`` by Problem key,
    ``last_good`` / ``last_rejected`` (``time.monotonic()``, None before the first).
    """

    def __init__(self, source: str, fallback: CameraIntrinsics | None, tlog: ThrottledLogger):
        self.source = source
        self._fallback = fallback
        self._tlog = tlog
        self._lock = threading.Lock()
        self._infos: collections.OrderedDict = collections.OrderedDict()  # (sec, nanosec) -> CameraIntrinsics
        self.received = 0
        self.rejected = 0
        self.problems: collections.Counter = collections.Counter()
        self.last_good: float | None = None
        self.last_rejected: float | None = None

    @property
    def fallback(self) -> CameraIntrinsics | None:
        return self._fallback

    def set_fallback(self, fallback: CameraIntrinsics | None) -> None:
        """New fallback intrinsics (the ``intrinsics.*`` parameters changed)."""
        self._fallback = fallback

    @property
    def has_camera_info(self) -> bool:
        """Whether a good camera_info has arrived."""
        with self._lock:
            return bool(self._infos)

    def add(self, msg) -> bool:
        """Keep the intrinsics of the CameraInfo ``msg``; a message with problems is ignored (the last good
        intrinsics, or the fallback, stay in use) and each problem logged under its own key (the core's
        :class:`~dna_depth_core.camera.Problem` key). Returns whether it was kept."""
        try:
            intrinsics = camera_info_intrinsics(msg, self.source)
        except CameraInfoError as exc:
            with self._lock:
                self.received += 1
                self.rejected += 1
                self.last_rejected = time.monotonic()
                self.problems.update(problem.key for problem in exc.problems)
            for problem in exc.problems:  # each kind of problem is throttled on its own
                self._tlog.log("warning", problem.key, f"ignoring camera_info: {problem.message}")
            return False
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._lock:
            self.received += 1
            self.last_good = time.monotonic()
            self._infos[key] = intrinsics
            self._infos.move_to_end(key)
            while len(self._infos) > KEEP:
                self._infos.popitem(last=False)
        return True

    def lookup(self, header, width: int, height: int) -> np.ndarray | None:
        """``K`` (3, 3) at ``width`` x ``height`` from the camera_info with the header's stamp (else the latest),
        else the fallback, else None."""
        key = (header.stamp.sec, header.stamp.nanosec)
        with self._lock:
            entry = self._infos.get(key)
            if entry is None and self._infos:
                entry = next(reversed(self._infos.values()))
        if entry is not None:
            iw, ih = entry.size
            if iw and ih and (iw, ih) != (width, height):
                self._tlog.log("warning", "info_size", f"camera_info is for {iw}x{ih} but the image is "
                               f"{width}x{height}: scaling the intrinsics to the image")
            return entry.at((width, height))
        if self._fallback is not None:
            self._tlog.once("warning", "fallback", "no camera_info received: using the intrinsics.* parameters")
            return self._fallback.at((width, height))
        self._tlog.once("warning", "no_intrinsics", "no camera_info received and no intrinsics.* parameters: "
                        "publishing depth only (no 'points', no 'depth/camera_info') until camera_info arrives")
        return None
