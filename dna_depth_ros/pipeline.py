"""The per-frame processing of the node: decode -> intrinsics -> estimator -> outputs -> publish, timed.

:class:`FramePipeline` is what the worker thread (:mod:`dna_depth_ros.worker`) runs for each frame. It raises
``ConversionError`` / ``ValueError`` for a frame it cannot use; the worker counts and logs them.
"""
from __future__ import annotations

import collections
import time

from dna_depth_core.inference import DepthEstimator

from dna_depth_ros import conversions as conv
from dna_depth_ros.intrinsics import IntrinsicsStore
from dna_depth_ros.outputs import Outputs

__all__ = ["FramePipeline", "TIMING_STAGES"]

# The per-frame timings (seconds) kept in FramePipeline.timings, besides "scale".
TIMING_STAGES = ("queue", "convert", "preprocess", "inference", "postprocess", "outputs", "publish", "total")


class FramePipeline:
    """One frame from message to published outputs.

    Args:
        estimator: the depth estimator (image + K -> depth, K at the output's resolution).
        intrinsics: where the frame's K comes from.
        outputs: the publishers and the messages of one frame.

    ``timings`` keeps the last 1000 frames' stage times (:data:`TIMING_STAGES`, seconds) and scales.
    """

    def __init__(self, estimator: DepthEstimator, intrinsics: IntrinsicsStore, outputs: Outputs):
        self.estimator = estimator
        self.intrinsics = intrinsics
        self.outputs = outputs
        self.timings: collections.deque = collections.deque(maxlen=1000)

    def process(self, msg, t_recv: float) -> None:
        """Decode ``msg`` (Image or CompressedImage), estimate depth and publish the subscribed outputs.
        ``t_recv``: when the message arrived (``time.perf_counter()``)."""
        t0 = time.perf_counter()
        header = msg.header
        rgb = conv.image_to_rgb(msg)
        H, W = rgb.shape[:2]
        K = self.intrinsics.lookup(header, W, H)
        t1 = time.perf_counter()

        res = self.estimator.predict(rgb, K)
        t2 = time.perf_counter()
        msgs = self.outputs.build(res, rgb, header)
        t3 = time.perf_counter()
        for pub, out in msgs:
            pub.publish(out)
        t4 = time.perf_counter()
        self.timings.append({
            "queue": t0 - t_recv, "convert": t1 - t0, "preprocess": res.timings["preprocess"],
            "inference": res.timings["inference"], "postprocess": res.timings["postprocess"],
            "outputs": t3 - t2, "publish": t4 - t3, "total": t4 - t0, "scale": res.scale,
        })
