"""Depth evaluation with the standard KITTI (Eigen split) protocol, and ground-truth export.

- :func:`compute_errors`: AbsRel, SqRel, RMSE, RMSE log, a1/a2/a3 on 1-D arrays of valid pixels.
- :func:`evaluate_depth`: one frame: resize the prediction to the ground truth, Garg/Eigen crop, valid depth
  range, per-image median scaling, clamping, errors.
- :func:`aggregate` (mean over frames) and :func:`format_table_row` (the paper's table row).
- :func:`read_velodyne`, :func:`velodyne_to_depth`: a raw scan projected into camera 2 or 3
  (``P_rect_0X @ R_rect_00 @ [R|T]_velo->cam``; depth = the projective depth, i.e. camera z, of points in front
  of the scanner; pixel = ``round(u, v) - 1`` since KITTI's calibration is 1-based; the nearest return wins).
- :func:`export_gt` / :func:`load_gt`: the ground truth of a split as an ``.npz`` (one array per frame, loadable
  with ``allow_pickle=False``).

Ground-truth maps use 0 for "no measurement".
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from dna_depth_core.data.kitti import SplitEntry, parse_split_line, read_calib_file
from dna_depth_core.data.poses import read_drive_poses

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# Garg/Eigen crop as fractions of the image: rows [top, bottom), columns [left, right).
EIGEN_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0


def compute_errors(gt, pred) -> dict[str, float]:
    """The seven standard depth metrics on 1-D arrays of valid pixels (metres, both > 0).

    AbsRel = mean |g - p| / g; SqRel = mean (g - p)^2 / g; RMSE = sqrt(mean (g - p)^2);
    RMSE log = sqrt(mean (ln g - ln p)^2); a_k = fraction of pixels with max(g/p, p/g) < 1.25^k.
    """
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    if gt.ndim != 1 or pred.ndim != 1:
        raise ValueError(f"gt and pred must be 1-D arrays of valid pixels, got gt {gt.shape}, pred {pred.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must have the same length")
    if gt.size == 0:
        raise ValueError("gt is empty: no valid pixel to evaluate")
    if not (np.all(gt > 0) and np.all(pred > 0)):
        raise ValueError("gt and pred must be > 0 (mask invalid pixels and clamp predictions first)")
    thresh = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25**2)),
        "a3": float(np.mean(thresh < 1.25**3)),
    }


def eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """Boolean (h, w) mask of the Garg/Eigen crop: rows [0.40810811 h, 0.99189189 h), columns
    [0.03594771 w, 0.96405229 w), bounds truncated to integers."""
    top, bottom, left, right = EIGEN_CROP
    mask = np.zeros((int(h), int(w)), bool)
    mask[int(top * h): int(bottom * h), int(left * w): int(right * w)] = True
    return mask


def evaluate_depth(
    gt_depth,
    pred_depth,
    scaling="median",
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    crop: bool = True,
) -> tuple[dict[str, float], float]:
    """Errors of one predicted depth map against its ground truth.

    Args:
        gt_depth: (H, W) ground truth in metres, 0 (or anything outside (min_depth, max_depth)) = invalid.
        pred_depth: (h, w) predicted depth in metres, any size: resized to (H, W) bilinearly (cv2).
        scaling: ``"median"`` (ratio = median(gt) / median(pred) over the valid pixels: monocular models),
            ``"none"`` (ratio 1) or ``("fixed", s)`` (ratio s, e.g. a stereo baseline scale).
        min_depth, max_depth: valid ground truth is min_depth < gt < max_depth; scaled predictions are
            clamped to [min_depth, max_depth].
        crop: apply the Garg/Eigen crop (:func:`eigen_crop_mask`).

    Returns:
        ``(errors, ratio)``: the :func:`compute_errors` dict and the scale applied to the prediction.
    """
    gt = np.asarray(gt_depth, np.float32)
    pred = np.asarray(pred_depth, np.float32)
    if gt.ndim != 2:
        raise ValueError(f"gt_depth must be (H, W), got {gt.shape}")
    if pred.ndim != 2:
        raise ValueError(f"pred_depth must be (h, w), got {pred.shape}")
    h, w = gt.shape
    if pred.shape != gt.shape:
        pred = cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = (gt > min_depth) & (gt < max_depth)
    if crop:
        mask &= eigen_crop_mask(h, w)
    if not mask.any():
        raise ValueError("gt_depth has no valid pixel (within the depth range and the crop)")
    g = gt[mask].astype(np.float64)
    p = pred[mask].astype(np.float64)
    if isinstance(scaling, str) and scaling == "median":
        med = float(np.median(p))
        if not np.isfinite(med) or med <= 0:
            raise ValueError(f"pred_depth has a non-positive median ({med}) over the valid pixels")
        ratio = float(np.median(g)) / med
    elif isinstance(scaling, str) and scaling == "none":
        ratio = 1.0
    elif isinstance(scaling, (tuple, list)) and len(scaling) == 2 and scaling[0] == "fixed":
        ratio = float(scaling[1])
    else:
        raise ValueError(f"scaling must be 'median', 'none' or ('fixed', s), got {scaling!r}")
    p = np.clip(p * ratio, min_depth, max_depth)
    return compute_errors(g, p), ratio


def aggregate(errors: Iterable[dict]) -> dict[str, float]:
    """Mean of each metric over frames (the KITTI protocol averages per-frame metrics)."""
    errors = list(errors)
    if not errors:
        raise ValueError("errors is empty: nothing to aggregate")
    return {k: float(np.mean([e[k] for e in errors])) for k in METRIC_NAMES}


def format_table_header() -> str:
    """``abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3``, the columns of :func:`format_table_row`."""
    return " | ".join(METRIC_NAMES)


def format_table_row(errors: dict) -> str:
    """The paper's table row: ``abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3`` with 3 decimals."""
    return " | ".join(f"{float(errors[k]):.3f}" for k in METRIC_NAMES)


# ----------------------------------------------------------------------------------------------------------
# Velodyne ground truth
# ----------------------------------------------------------------------------------------------------------


def read_velodyne(path) -> np.ndarray:
    """A KITTI velodyne scan: (N, 4) float32 (x, y, z, reflectance), velodyne frame (x forward, y left, z up)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne scan not found: {path}")
    data = np.fromfile(path, dtype=np.float32)
    if data.size % 4:
        raise ValueError(f"{path}: size is not a multiple of 4 float32 values (not a KITTI velodyne .bin)")
    return data.reshape(-1, 4)


def _calib_dict(calib, name: str) -> dict:
    if isinstance(calib, dict):
        return calib
    return read_calib_file(Path(calib) / name)


def velodyne_to_camera_matrix(calib_dir, cam: int = 2) -> np.ndarray:
    """(3, 4) matrix ``P_rect_0{cam} @ R_rect_00 @ [R|T]`` mapping homogeneous velodyne points to KITTI's
    (1-based) image coordinates times depth. ``calib_dir`` holds ``calib_cam_to_cam.txt`` and
    ``calib_velo_to_cam.txt``."""
    if cam not in (0, 1, 2, 3):
        raise ValueError(f"cam must be 0..3, got {cam}")
    c2c = _calib_dict(calib_dir, "calib_cam_to_cam.txt")
    v2c = _calib_dict(calib_dir, "calib_velo_to_cam.txt")
    for key, d, name in ((f"P_rect_0{cam}", c2c, "calib_cam_to_cam.txt"), ("R_rect_00", c2c, "calib_cam_to_cam.txt"),
                         ("R", v2c, "calib_velo_to_cam.txt"), ("T", v2c, "calib_velo_to_cam.txt")):
        if key not in d:
            raise ValueError(f"{name} in {calib_dir} has no {key}")
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = np.asarray(v2c["R"], np.float64).reshape(3, 3)
    velo_to_cam[:3, 3] = np.asarray(v2c["T"], np.float64).reshape(3)
    rect = np.eye(4)
    rect[:3, :3] = np.asarray(c2c["R_rect_00"], np.float64).reshape(3, 3)
    P = np.asarray(c2c[f"P_rect_0{cam}"], np.float64).reshape(3, 4)
    return P @ rect @ velo_to_cam


def velodyne_to_depth(points, calib_dir, cam: int = 2, image_shape=None) -> np.ndarray:
    """Project a velodyne scan into camera ``cam`` as a sparse depth map (the KITTI ground-truth recipe).

    Args:
        points: (N, 3) or (N, 4) velodyne points (x forward, y left, z up); a 4th column is ignored.
        calib_dir: folder with ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` (the drive's date folder),
            or a dict with both files' entries.
        cam: 2 (left colour) or 3 (right colour); 0/1 also work.
        image_shape: (H, W); default: ``S_rect_0{cam}`` of the calibration.

    Points behind the scanner (x < 0) are dropped; each point goes to pixel ``round(u, v) - 1`` (KITTI's
    calibration is 1-based) with its projective depth (the third homogeneous coordinate: camera z); points off
    the image are dropped; when several land on one pixel the nearest wins.

    Returns:
        (H, W) float32 depth in metres, 0 where no point landed.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must be (N, 3) or (N, 4), got {pts.shape}")
    if image_shape is None:
        c2c = _calib_dict(calib_dir, "calib_cam_to_cam.txt")
        key = f"S_rect_0{cam}"
        if key not in c2c:
            raise ValueError(f"no image_shape given and the calibration has no {key}")
        width, height = (int(round(v)) for v in np.asarray(c2c[key]).ravel()[:2])
    else:
        if len(image_shape) < 2:
            raise ValueError(f"image_shape must be (H, W), got {image_shape}")
        height, width = int(image_shape[0]), int(image_shape[1])
    M = velodyne_to_camera_matrix(calib_dir, cam)
    pts = pts[pts[:, 0] >= 0, :3]
    proj = pts @ M[:, :3].T + M[:, 3]
    depth = proj[:, 2]
    front = depth > 0
    proj, depth = proj[front], depth[front]
    u = np.round(proj[:, 0] / depth).astype(np.int64) - 1
    v = np.round(proj[:, 1] / depth).astype(np.int64) - 1
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, depth = u[inside], v[inside], depth[inside]
    out = np.full(height * width, np.inf)
    np.minimum.at(out, v * width + u, depth)
    out[np.isinf(out)] = 0.0
    return out.reshape(height, width).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Ground-truth export
# ----------------------------------------------------------------------------------------------------------


def gt_sources(data_path, entry: SplitEntry) -> list[tuple[str, Path]]:
    """Candidate ground-truth files of a split entry, in order of preference: ``(kind, path)`` with kind one of
    ``velodyne`` (raw ``.bin``), ``png16`` (KITTI depth-annotated / projected 16-bit PNG, value/256 m),
    ``npz`` (key ``velodyne_depth``), ``npy`` (synthetic exact depth, camera 2 only)."""
    drive = Path(data_path) / entry.folder
    name = f"{entry.frame_index:010d}"
    cam = f"image_0{entry.cam}"
    out = [
        ("velodyne", drive / "velodyne_points" / "data" / f"{name}.bin"),
        ("png16", drive / "proj_depth" / "groundtruth" / cam / f"{name}.png"),
        ("npz", drive / "proj_depth" / "velodyne" / cam / f"{name}.npz"),
        ("png16", drive / "proj_depth" / "velodyne" / cam / f"{name}.png"),
    ]
    if entry.cam == 2:
        out.append(("npy", drive / "depth" / f"{name}.npy"))
    return out


def load_gt_depth(data_path, entry) -> tuple[np.ndarray, str]:
    """Ground-truth depth (H, W) float32 metres (0 = none) of one split entry (line or :class:`SplitEntry`),
    from the first source of :func:`gt_sources` that exists. Returns ``(depth, kind)``."""
    if not isinstance(entry, SplitEntry):
        entry = parse_split_line(entry)
    tried = []
    for kind, path in gt_sources(data_path, entry):
        if not path.is_file():
            tried.append(str(path))
            continue
        if kind == "velodyne":
            calib_dir = Path(data_path) / entry.date
            return velodyne_to_depth(read_velodyne(path), calib_dir, cam=entry.cam), kind
        if kind == "png16":
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None or img.dtype != np.uint16 or img.ndim != 2:
                raise ValueError(f"{path}: not a single-channel 16-bit depth PNG")
            return (img.astype(np.float32) / 256.0), kind
        if kind == "npz":
            with np.load(path, allow_pickle=False) as z:
                if "velodyne_depth" not in z.files:
                    raise ValueError(f"{path}: no 'velodyne_depth' array (has {z.files})")
                return np.asarray(z["velodyne_depth"], np.float32), kind
        depth = np.load(path, allow_pickle=False)
        return np.asarray(depth, np.float32), kind
    raise FileNotFoundError(f"no ground truth for '{entry.line}'; tried: " + ", ".join(tried))


def export_gt(data_path, split_lines: Sequence, out_npz, progress: bool = True) -> list[np.ndarray]:
    """Export the ground truth of a split to ``out_npz`` (the standard ``gt_depths.npz`` step).

    For each split line: the raw velodyne scan if present, else a 16-bit PNG / ``velodyne_depth`` npz projected
    map, else the synthetic exact depth (see :func:`gt_sources`). The file holds ``depth_00000``,
    ``depth_00001``, ... (float32 (H, W), sizes may differ) and ``split_lines``; read it with :func:`load_gt`.
    Returns the list of depth maps.
    """
    from tqdm import tqdm

    split_lines = list(split_lines)
    entries = [e if isinstance(e, SplitEntry) else parse_split_line(e) for e in split_lines]
    if not entries:
        raise ValueError("split_lines is empty")
    depths = []
    for entry in tqdm(entries, desc="export gt", unit="frame", disable=not progress):
        depths.append(load_gt_depth(data_path, entry)[0])
    out_npz = Path(out_npz)
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"depth_{i:05d}": d for i, d in enumerate(depths)}
    arrays["split_lines"] = np.array([ln.strip() if isinstance(ln, str) else ln.line for ln in split_lines])
    np.savez_compressed(out_npz, **arrays)
    return depths


def load_gt(path, allow_pickle: bool = False) -> list[np.ndarray]:
    """Ground-truth maps written by :func:`export_gt` (keys ``depth_00000``...) as a list, in split order.

    Also reads a stacked ``data`` array; monodepth2-style object arrays need ``allow_pickle=True`` (only for
    files you trust).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    with np.load(path, allow_pickle=allow_pickle) as z:
        keys = sorted(k for k in z.files if k.startswith("depth_"))
        if keys:
            return [np.asarray(z[k]) for k in keys]
        if "data" in z.files:
            try:
                data = z["data"]
            except ValueError as exc:
                raise ValueError(f"{path}: 'data' is an object array; load it with allow_pickle=True") from exc
            return [np.asarray(d) for d in data]
    raise ValueError(f"{path}: no depth_XXXXX or data arrays")


# ----------------------------------------------------------------------------------------------------------
# Model evaluation over a split
# ----------------------------------------------------------------------------------------------------------


def parse_scaling(text: str):
    """``"median"``, ``"none"`` or ``"fixed:S"`` (the CLI spelling) -> the ``scaling`` of :func:`evaluate_depth`."""
    if text in ("median", "none"):
        return text
    if text.startswith("fixed:"):
        try:
            s = float(text[len("fixed:"):])
        except ValueError:
            s = float("nan")
        if not np.isfinite(s) or s <= 0:
            raise ValueError(f"--scaling {text}: the fixed scale must be a positive number, e.g. fixed:5.4")
        return ("fixed", s)
    raise ValueError(f"--scaling {text}: expected median, none or fixed:S")


def predict_eval_depth(net, rgb: np.ndarray, out_shape: tuple[int, int], device="cpu") -> np.ndarray:
    """Depth for evaluation: the network's full-resolution disparity at its input size, resized to ``out_shape``
    (the ground truth's) and converted with :func:`dna_depth_core.geometry.disp_to_depth`."""
    from dna_depth_core.geometry import disp_to_depth
    from dna_depth_core.predict import predict_disparity

    disp = predict_disparity(net, rgb, device, out_size=tuple(out_shape))
    return disp_to_depth(disp, net.config.min_depth, net.config.max_depth)[1]


def evaluate_model(net, data_path, split_lines: Sequence, gt_depths: Sequence[np.ndarray], scaling="median",
                   device="cpu", progress: bool = True) -> dict:
    """Evaluate a depth network on a split against ground-truth maps (same order as the split).

    Returns ``{"abs_rel", ..., "a3", "frames", "ratio_median", "ratio_std", "per_frame": [...]}``: metrics averaged
    over frames, and the per-image scale ratios (their spread shows how consistent the network's scale is).
    """
    from tqdm import tqdm

    from dna_depth_core.data.kitti import image_path, load_image

    entries = [e if isinstance(e, SplitEntry) else parse_split_line(e) for e in split_lines]
    if len(entries) != len(gt_depths):
        raise ValueError(f"the split has {len(entries)} frames but the ground truth has {len(gt_depths)}")
    if not entries:
        raise ValueError("the split is empty")
    net = net.to(device).eval()
    per_frame, ratios = [], []
    for entry, gt in tqdm(list(zip(entries, gt_depths)), desc="evaluate", unit="frame", disable=not progress):
        rgb = load_image(image_path(data_path, entry.folder, entry.frame_index, entry.side))
        pred = predict_eval_depth(net, rgb, gt.shape, device)
        errors, ratio = evaluate_depth(gt, pred, scaling=scaling)
        per_frame.append(errors)
        ratios.append(ratio)
    result = aggregate(per_frame)
    result.update(frames=len(entries), ratio_median=float(np.median(ratios)), ratio_std=float(np.std(ratios)),
                  per_frame=per_frame)
    return result


# ----------------------------------------------------------------------------------------------------------
# Pose evaluation (synthetic drives: poses.txt)
# ----------------------------------------------------------------------------------------------------------


def pose_metrics(t_pred, t_true) -> dict:
    """Agreement of predicted and true per-pair translations (``(N, 3)`` each): ``pearson_speed`` (correlation of
    the norms), ``cos_mean`` (mean cosine of the vectors), ``scale`` (median of ``|t_true| / |t_pred|``),
    ``pairs``, ``spread_ratio`` (relative spread ``std / mean`` of the predicted norms over that of the true ones:
    1 when the speed varies as much as the truth, 0 for a constant output, whose correlation means nothing).
    The correlation is nan when either set of norms is constant."""
    t_pred = np.asarray(t_pred, np.float64).reshape(-1, 3)
    t_true = np.asarray(t_true, np.float64).reshape(-1, 3)
    if t_pred.shape != t_true.shape or len(t_pred) == 0:
        raise ValueError(f"t_pred {t_pred.shape} and t_true {t_true.shape}: need the same, non-empty (N, 3)")
    n_pred, n_true = np.linalg.norm(t_pred, axis=1), np.linalg.norm(t_true, axis=1)
    eps = 1e-12
    if len(n_pred) > 1 and n_pred.std() > eps and n_true.std() > eps:
        pearson = float(np.corrcoef(n_pred, n_true)[0, 1])
    else:
        pearson = float("nan")
    cos = np.sum(t_pred * t_true, axis=1) / np.maximum(n_pred * n_true, eps)
    cv_pred = n_pred.std() / max(n_pred.mean(), eps)
    cv_true = n_true.std() / max(n_true.mean(), eps)
    return {"pearson_speed": pearson, "cos_mean": float(np.mean(cos)),
            "scale": float(np.median(n_true / np.maximum(n_pred, eps))), "pairs": int(len(t_pred)),
            "spread_ratio": float(cv_pred / cv_true) if cv_true > eps else float("nan")}


def evaluate_pose(pose_net, data_path, split_lines: Sequence, height: int, width: int, device="cpu",
                  batch_size: int = 8, return_arrays: bool = False) -> dict:
    """Translations of a pose network against a drive's ground-truth poses (``poses.txt``).

    For each split frame ``i`` whose next frame ``i + 1`` exists, the network sees the pair in temporal order,
    ``pose_net(frame_i, frame_i+1)`` (images resized to ``height`` x ``width`` as in training), exactly as the
    trainer feeds its ``+1`` source. The trainer uses that output as ``T_source_target`` (source ``i + 1``, target
    ``i``), so the true value is ``T = inv(T_world_cam[i + 1]) @ T_world_cam[i]``: a point in camera ``i`` expressed
    in camera ``i + 1``. Driving forward (+z) gives a negative ``t_z``. Both translations are the ``[:3, 3]``
    column of the 4x4 transform (``geometry.pose_vec_to_mat`` of the network's output).

    Returns :func:`pose_metrics` (``pearson_speed``, ``cos_mean``, ``scale``, ``pairs``, ``spread_ratio``); with
    ``return_arrays`` also ``t_pred`` and ``t_true`` (``(N, 3)`` arrays).
    """
    import torch

    from dna_depth_core.data.kitti import image_path, load_image
    from dna_depth_core.geometry import pose_vec_to_mat
    from dna_depth_core.inference import image_to_input

    entries = [e if isinstance(e, SplitEntry) else parse_split_line(e) for e in split_lines]
    poses: dict[str, np.ndarray] = {}
    pairs = []
    for e in entries:
        if e.folder not in poses:
            poses[e.folder] = read_drive_poses(data_path, e.folder)
        T = poses[e.folder]
        i = e.frame_index
        if 0 <= i and i + 1 < len(T) and image_path(data_path, e.folder, i + 1, e.side).is_file():
            pairs.append((e, i))
    if not pairs:
        raise ValueError("evaluate_pose: no split frame has a next frame with a pose and an image")

    def load(e, i):  # resized as DepthEstimator resizes camera images
        return torch.from_numpy(image_to_input(load_image(image_path(data_path, e.folder, i, e.side)), height,
                                               width)[0])

    was_training = pose_net.training
    pose_net.eval()
    t_pred = []
    try:
        with torch.no_grad():
            for k in range(0, len(pairs), batch_size):
                chunk = pairs[k:k + batch_size]
                a = torch.stack([load(e, i) for e, i in chunk]).to(device)
                b = torch.stack([load(e, i + 1) for e, i in chunk]).to(device)
                axisangle, translation = pose_net(a, b)
                M = pose_vec_to_mat(axisangle.float(), translation.float())
                t_pred.append(M[:, :3, 3].cpu().double().numpy())
    finally:
        pose_net.train(was_training)
    t_pred = np.concatenate(t_pred)
    t_true = np.stack([(np.linalg.inv(poses[e.folder][i + 1]) @ poses[e.folder][i])[:3, 3] for e, i in pairs])
    out = pose_metrics(t_pred, t_true)
    if return_arrays:
        out.update(t_pred=t_pred, t_true=t_true)
    return out
