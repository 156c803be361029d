"""The per-frame processing of the node: decode -> intrinsics -> estimator -> outputs -> publish, timed.

:class:`FramePipeline` is what the worker thread (:mod:`dna_depth_ros.worker`) runs for each frame. It raises
``ConversionError`` / ``ValueError`` for a frame it cannot use; the worker counts and logs them.
"""
from __future__ import annotations

import collections
import time

from dna_depth_core.camera import resize_K
from dna_depth_core.inference import DepthEstimator
from dna_depth_core.ros_images import compressed_image_size

from dna_depth_ros import conversions as conv
from dna_depth_ros.intrinsics import IntrinsicsStore
from dna_depth_ros.outputs import Outputs

__all__ = ["FramePipeline", "TIMING_STAGES"]

# The per-frame timings (seconds) kept in FramePipeline.timings, besides "scale" and "done" (perf_counter time
# when the frame's outputs were published).
TIMING_STAGES = ("queue", "convert", "preprocess", "inference", "postprocess", "outputs", "publish", "total")


def message_size(msg) -> tuple[int, int]:
    """``(width, height)`` a camera message says it has: an Image's fields, a CompressedImage's JPEG/PNG header.

    Raises:
        ConversionError: a CompressedImage whose header does not give a size.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        _, w, h = compressed_image_size(msg.data)
        return w, h
    return int(msg.width), int(msg.height)


class FramePipeline:
    """One frame from message to published outputs.

    Args:
        estimator: the depth estimator (image + K -> depth, K at the output's resolution).
        intrinsics: where the frame's K comes from.
        outputs: the publishers and the messages of one frame.
        params: the node's parameters (``max_input_pixels`` is read for every frame).
        tlog: where a downscaled frame is reported.
        timings: the deque the stage times go to (default: a new one of 1000).

    A frame larger than ``max_input_pixels`` is downscaled while it is decoded (by the smallest integer factor
    that fits; :func:`dna_depth_core.ros_images.decode`) and its intrinsics follow (``camera.resize_K`` from the
    message's size to the decoded one); the outputs are then at the decoded resolution.

    ``timings`` keeps the last 1000 frames' stage times (:data:`TIMING_STAGES`, seconds), scales and ``done``.
    """

    def __init__(self, estimator: DepthEstimator, intrinsics: IntrinsicsStore, outputs: Outputs, params: dict,
                 tlog, timings: collections.deque | None = None):
        self.estimator = estimator
        self.intrinsics = intrinsics
        self.outputs = outputs
        self.params = params
        self._tlog = tlog
        self.timings = timings if timings is not None else collections.deque(maxlen=1000)
        self.last_result = None  # the DepthResult of the last published frame (its scale, for diagnostics)

    def process(self, msg, t_recv: float) -> None:
        """Decode ``msg`` (Image or CompressedImage), estimate depth and publish the subscribed outputs.
        ``t_recv``: when the message arrived (``time.perf_counter()``)."""
        t0 = time.perf_counter()
        header = msg.header
        max_pixels = int(self.params["max_input_pixels"]) or None
        rgb = conv.image_to_rgb(msg, max_pixels)
        H, W = rgb.shape[:2]
        W0, H0 = message_size(msg)  # the camera_info describes the image as sent
        K = self.intrinsics.lookup(header, W0, H0)
        if (W0, H0) != (W, H):
            self._tlog.log("warning", "downscaled", f"image {W0}x{H0} has more than max_input_pixels "
                           f"({max_pixels}) pixels: processed at {W}x{H} (outputs at that resolution)")
            if K is not None:
                K = resize_K(K, (W0, H0), (W, H))
        t1 = time.perf_counter()

        res = self.estimator.predict(rgb, K)
        t2 = time.perf_counter()
        msgs = self.outputs.build(res, rgb, header)
        t3 = time.perf_counter()
        self.outputs.publish(msgs)
        t4 = time.perf_counter()
        self.timings.append({
            "queue": t0 - t_recv, "convert": t1 - t0, "preprocess": res.timings["preprocess"],
            "inference": res.timings["inference"], "postprocess": res.timings["postprocess"],
            "outputs": t3 - t2, "publish": t4 - t3, "total": t4 - t0, "scale": res.scale, "done": t4,
        })
        self.last_result = res
