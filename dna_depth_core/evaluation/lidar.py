"""Depth against a robot's LiDAR: each camera frame of a bag is scored against the LiDAR cloud nearest in time
(:func:`~dna_depth_core.data.rosbag.lidar.pair_lidar`), projected into the camera
(:func:`dna_depth_core.geometry.points_to_depth`: points behind the camera or off the image dropped, the nearest
return per pixel, pixel ``(floor(u + 0.5), floor(v + 0.5))``).

Two rows, from one prediction per frame (:class:`~dna_depth_core.inference.DepthEstimator`, the one input rule):

- ``median``: per frame, the prediction times ``median(lidar) / median(prediction)`` (the monocular protocol);
  ``ratio_median`` is the median of those ratios over the frames: with the metric scale ``none``, the node's
  ``scale.factor`` that makes the network metric on this robot (otherwise the correction to the scale used).
- ``metric``: the prediction as the estimator gives it, i.e. as the ROS node would publish it with the same scale
  setting (``none``: the network's own units; ``fixed:S``; ``camera_height:H``: the ground-plane scale, smoothed
  over the frames in bag order as in the node).

Each row has the seven metrics of :func:`~dna_depth_core.evaluation.metrics.compute_errors` averaged over frames
(as the KITTI protocol does), and the same metrics by LiDAR depth bin, pooled over the points of every frame. Points
count when ``min_depth < lidar depth < max_depth`` (camera z, metres) and the prediction is finite and positive;
scaled predictions are clamped to ``[min_depth, max_depth]`` as in the protocol
(:func:`~dna_depth_core.evaluation.metrics.scale_prediction`); there is no image crop (the LiDAR only covers what
it sees).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from dna_depth_core.data.rosbag.lidar import DEFAULT_TOLERANCE, LidarFrame, pair_lidar
from dna_depth_core.evaluation.metrics import (MAX_DEPTH, METRIC_NAMES, MIN_DEPTH, ErrorAccumulator, aggregate,
                                               compute_errors, format_table_header, format_table_row,
                                               scale_prediction)
from dna_depth_core.geometry import matrix_to_quaternion, points_to_depth
from dna_depth_core.inference import DepthEstimator

#: Inner edges of the default distance bins (metres): 0-10, 10-20, 20-40, 40-80 with the default depth range.
DEFAULT_BINS = (10.0, 20.0, 40.0)
_COUNTS = ("points", "in_front", "on_image", "pixels")


def parse_metric_scale(text: str) -> dict[str, Any]:
    """``none``, ``fixed:S`` or ``camera_height:H`` (the CLI spelling) -> :class:`DepthEstimator` keyword arguments
    ``scale_mode``, ``scale_factor``, ``camera_height``."""
    text = str(text).strip()
    if text == "none":
        return {"scale_mode": "none"}
    kind, _, value = text.partition(":")
    kind = kind.replace("-", "_")
    if kind in ("fixed", "camera_height") and value:
        try:
            v = float(value)
        except ValueError:
            v = float("nan")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"metric scale {text}: {kind} needs a positive number, e.g. {kind}:1.65")
        return {"scale_mode": "fixed", "scale_factor": v} if kind == "fixed" else {
            "scale_mode": "camera_height", "camera_height": v}
    raise ValueError(f"metric scale {text}: expected none, fixed:S or camera_height:H (metres)")


def parse_bins(text: str | Sequence[float]) -> tuple[float, ...]:
    """Inner bin edges from ``"10,20,40"`` (or a sequence): increasing positive numbers."""
    try:
        edges = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip())
    except ValueError:
        raise ValueError(f"bins {text!r}: expected increasing distances in metres, e.g. 10,20,40") from None
    if any(not (math.isfinite(e) and e > 0) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bins {text!r}: expected increasing positive distances in metres, e.g. 10,20,40")
    return edges


def bin_ranges(bins: Sequence[float], min_depth: float, max_depth: float) -> list[tuple[float, float]]:
    """``[(lo, hi)]`` of the distance bins: 0 up to the first inner edge, ..., the last edge up to ``max_depth``
    (inner edges at or beyond ``max_depth`` are dropped). A point belongs to the bin with ``lo <= depth < hi``."""
    edges = [e for e in bins if min_depth < e < max_depth]
    lows = [0.0] + edges
    return list(zip(lows, edges + [float(max_depth)]))


def score_lidar(frames: Iterable[LidarFrame], predict: Callable[[LidarFrame], np.ndarray],
                bins: Sequence[float] = DEFAULT_BINS, min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH,
                progress: bool = False, total: int | None = None) -> dict:
    """Score predictions against the LiDAR of each frame (module docstring).

    Args:
        frames: :class:`~dna_depth_core.data.rosbag.lidar.LidarFrame` s (LiDAR points in the camera frame).
        predict: frame -> ``(H, W)`` depth (any other size is resized bilinearly to the image's, as
            :func:`~dna_depth_core.evaluation.metrics.evaluate_depth` does); NaN or <= 0 = no prediction.
        bins: inner edges of the distance bins (:func:`bin_ranges`).
    Returns:
        ``{"frames", "frames_without_points", "points", "counts", "median", "metric", "per_frame"}``: ``points``
        scored in all; ``counts`` sums :func:`~dna_depth_core.geometry.points_to_depth`'s counts (cloud points,
        in front, on the image, pixels); ``median`` and ``metric`` hold the metrics averaged over frames and
        ``bins`` (``[{"range": [lo, hi], "points": n, <metrics or None>}]``); ``median`` also ``ratio_median`` and
        ``ratio_std``; ``per_frame``: index, stamp, dt, points, ratio, abs_rel of both rows.
    """
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
    ranges = bin_ranges(bins, min_depth, max_depth)
    acc = {row: [ErrorAccumulator() for _ in ranges] for row in ("median", "metric")}
    errors: dict[str, list[dict]] = {"median": [], "metric": []}
    ratios, per_frame, empty = [], [], 0
    counts = dict.fromkeys(_COUNTS, 0)
    for f in tqdm(frames, desc="evaluate", unit="frame", total=total, disable=not progress):
        h, w = f.rgb.shape[:2]
        c: dict = {}
        gt = points_to_depth(f.points, f.K, h, w, counts=c)
        for k in _COUNTS:
            counts[k] += c[k]
        mask = (gt > min_depth) & (gt < max_depth)
        if not mask.any():  # nothing to score: the network is not run
            empty += 1
            continue
        pred = np.asarray(predict(f), np.float32)
        if pred.ndim != 2:
            raise ValueError(f"predict must return an (H, W) depth map, got shape {pred.shape}")
        if pred.shape != (h, w):
            pred = cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
        with np.errstate(invalid="ignore"):
            mask &= np.isfinite(pred) & (pred > 0)
        n = int(mask.sum())
        if n == 0:
            empty += 1
            continue
        g = gt[mask].astype(np.float64)
        rows = {"median": scale_prediction(g, pred[mask], "median", min_depth, max_depth),
                "metric": scale_prediction(g, pred[mask], "none", min_depth, max_depth)}
        for row, (p, _) in rows.items():
            errors[row].append(compute_errors(g, p))
            for (lo, hi), a in zip(ranges, acc[row]):
                sel = (g >= lo) & (g < hi)
                a.add(g[sel], p[sel])
        ratio = rows["median"][1]
        ratios.append(ratio)
        per_frame.append({"index": f.index, "stamp": f.stamp, "dt": f.dt, "points": n, "ratio": ratio,
                          "abs_rel_median": errors["median"][-1]["abs_rel"],
                          "abs_rel_metric": errors["metric"][-1]["abs_rel"]})
    out = {"frames": len(per_frame), "frames_without_points": empty,
           "points": int(sum(r["points"] for r in per_frame)), "counts": counts, "min_depth": float(min_depth),
           "max_depth": float(max_depth), "per_frame": per_frame}
    for row in ("median", "metric"):
        res: dict[str, Any] = aggregate(errors[row]) if errors[row] else dict.fromkeys(METRIC_NAMES)
        res["bins"] = [{"range": [lo, hi], "points": a.count, **(a.result() or dict.fromkeys(METRIC_NAMES))}
                       for (lo, hi), a in zip(ranges, acc[row])]
        out[row] = res
    out["median"]["ratio_median"] = float(np.median(ratios)) if ratios else None
    out["median"]["ratio_std"] = float(np.std(ratios)) if ratios else None
    return out


def evaluate_bag_lidar(bag, model: Any, lidar_topic: str | None = None, image_topic: str | None = None,
                       camera_info_topic: str | None = None, calibration=None, intrinsics_source: str = "auto",
                       extrinsics=None, camera_frame: str | None = None, lidar_frame: str | None = None,
                       tolerance: float = DEFAULT_TOLERANCE, every: int = 1, metric_scale: str = "none",
                       bins: Sequence[float] = DEFAULT_BINS, min_depth: float = MIN_DEPTH,
                       max_depth: float = MAX_DEPTH, device: str = "cpu", backend: str = "torch",
                       progress: bool = True) -> dict:
    """Score a depth model on a bag against its LiDAR: :func:`pair_lidar` (the arguments it shares are its),
    a :class:`DepthEstimator` of ``model`` (checkpoint, ``.onnx``, network; depth at the image's resolution, the
    ``metric_scale`` of :func:`parse_metric_scale`), :func:`score_lidar`.

    Returns :func:`score_lidar`'s dict plus ``bag``, ``image_topic``, ``lidar_topic``, ``tolerance``, ``every``,
    ``images`` (camera frames in the bag), ``clouds``, ``matched`` and ``unmatched`` (frames with and without a
    cloud within the tolerance), ``paired`` (the frames used: one in ``every`` of the matched ones), ``dt`` (median
    and max of |cloud - image| in seconds), ``transform`` (``source``, ``camera_frame``, ``lidar_frame``,
    ``chain``, ``T_camera_lidar``, ``translation``, ``quaternion``: the first pair of frames), ``metric_scale``
    and, in the ``metric`` row, ``scale_median`` (the scale the estimator applied, median over frames) and
    ``frames_not_metric`` (frames scored before a ground-plane fit succeeded).

    Raises:
        ValueError: :func:`pair_lidar`'s errors; no LiDAR point landing in the image in any frame (naming the
            counts and the frames: a wrong transform, or not the optical frame).
    """
    scale = parse_metric_scale(metric_scale)
    pairs = pair_lidar(bag, lidar_topic, image_topic, camera_info_topic, calibration, intrinsics_source, extrinsics,
                       camera_frame, lidar_frame, tolerance, every)
    estimator = DepthEstimator(model, device=device, backend=backend, output="input", **scale)
    scales, not_metric = [], 0

    def predict(f: LidarFrame) -> np.ndarray:
        nonlocal not_metric
        res = estimator.predict(f.rgb, f.K)
        scales.append(res.scale)
        not_metric += int(scale["scale_mode"] != "none" and not res.metric)
        return res.depth

    out = score_lidar(pairs, predict, bins, min_depth, max_depth, progress=progress, total=len(pairs))
    (cam, lid), (T, chain) = next(iter(pairs.transforms.items()))
    if out["frames"] == 0:
        c = out["counts"]
        raise ValueError(
            f"bag {pairs.bag}: no LiDAR point of the {len(pairs)} paired frames lands in the image within "
            f"{min_depth:g}..{max_depth:g} m ({c['points']} points, {c['in_front']} in front of the camera, "
            f"{c['on_image']} on the image): check camera <- LiDAR ({pairs.transform_source}: {' <- '.join(chain)}); "
            f"is '{cam}' the camera's optical frame (x right, y down, z forward)?")
    adt = np.abs(pairs.dt)
    out.update(bag=pairs.bag, image_topic=pairs.image_topic, lidar_topic=pairs.lidar_topic,
               tolerance=pairs.tolerance, every=pairs.every, images=pairs.images, clouds=pairs.clouds,
               matched=pairs.matched, unmatched=pairs.unmatched, paired=len(pairs),
               dt={"median": float(np.median(adt)), "max": float(adt.max())},
               transform={"source": pairs.transform_source, "camera_frame": cam, "lidar_frame": lid, "chain": chain,
                          "T_camera_lidar": T.tolist(), "translation": T[:3, 3].tolist(),
                          "quaternion": matrix_to_quaternion(T[:3, :3]).tolist()},
               metric_scale=metric_scale)
    out["metric"].update(scale_median=float(np.median(scales)), frames_not_metric=not_metric)
    return out


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_lidar_report(r: dict) -> str:
    """The text report of :func:`evaluate_bag_lidar`'s result."""
    t = r["transform"]
    angle = math.degrees(2 * math.acos(min(1.0, abs(t["quaternion"][3]))))
    c = r["counts"]
    lines = [
        f"bag {r['bag']}: {r['matched']} of {r['images']} camera frames ({r['image_topic']}) paired with a "
        f"{r['lidar_topic']} cloud within {r['tolerance']:g} s (|dt| median {1e3 * r['dt']['median']:.1f} ms, max "
        f"{1e3 * r['dt']['max']:.1f} ms); {r['unmatched']} without one"
        + (f"; one in {r['every']} used: {r['paired']}" if r["every"] > 1 else ""),
        f"camera <- LiDAR from {t['source']}: {' <- '.join(t['chain'])} (translation "
        f"[{', '.join(f'{v:.3f}' for v in t['translation'])}] m, rotation {angle:.2f} deg)",
        f"{r['frames']} frames scored ({r['frames_without_points']} without a LiDAR point in range), "
        f"{r['points']:,} points: of {c['points']:,} cloud points, {c['in_front']:,} in front of the camera, "
        f"{c['on_image']:,} on the image, {c['pixels']:,} pixels (nearest return each), "
        f"{r['min_depth']:g} < depth < {r['max_depth']:g} m",
        "",
        f"{'':<22}{format_table_header()}",
        f"{'median-scaled':<22}{format_table_row(r['median'])}   (ratio median {r['median']['ratio_median']:.4f}, "
        f"std {r['median']['ratio_std']:.4f})",
        f"{'metric (' + r['metric_scale'] + ')':<22}{format_table_row(r['metric'])}   (scale median "
        f"{r['metric']['scale_median']:.4f}"
        + (f", {r['metric']['frames_not_metric']} frames before the first ground-plane fit"
           if r["metric"]["frames_not_metric"] else "") + ")",
        "",
        "by LiDAR depth (AbsRel / RMSE m / a1; points pooled over the frames):",
        f"{'bin':<12}{'points':>10}   {'median-scaled':<26}{'metric':<26}",
    ]
    for bm, bx in zip(r["median"]["bins"], r["metric"]["bins"]):
        lo, hi = bm["range"]
        cells = [f"{_f(b['abs_rel'], '.3f')} / {_f(b['rmse'], '.2f')} / {_f(b['a1'], '.3f')}" for b in (bm, bx)]
        lines.append(f"{f'{lo:g}-{hi:g} m':<12}{bm['points']:>10,}   {cells[0]:<26}{cells[1]}")
    if r["metric_scale"] == "none":
        lines += ["", f"metric on this robot: the node's scale.mode fixed with scale.factor "
                      f"{r['median']['ratio_median']:.4f} (the median ratio), or evaluate --metric-scale "
                      f"fixed:{r['median']['ratio_median']:.4f} to score it"]
    return "\n".join(lines)


__all__ = ["DEFAULT_BINS", "bin_ranges", "evaluate_bag_lidar", "format_lidar_report", "parse_bins",
           "parse_metric_scale", "score_lidar"]
