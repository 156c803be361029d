"""``dna-depth evaluate``: the KITTI (Eigen) protocol on a split, or a bag scored against its LiDAR."""
from __future__ import annotations

import json

from dna_depth_core.backends import list_backends
from dna_depth_core.data.kitti import read_split_file
from dna_depth_core.evaluation import (METRIC_NAMES, evaluate_model, format_table_header, format_table_row, load_gt,
                                       parse_scaling)

NAME = "evaluate"
HELP = "evaluate a checkpoint: on a KITTI-layout split (Eigen protocol) or on a bag against its LiDAR"
DESCRIPTION = """Evaluate depth, in one of two forms.

KITTI form (--data-path, --split, --gt): the standard protocol: prediction resized to the ground truth,
Garg/Eigen crop, valid 1e-3 < gt < 80 m, per-image median scaling (monocular default), predictions clamped to
[1e-3, 80]. Metrics are averaged over frames. Ground truth comes from `dna-depth export-gt`.

Bag form (--bag, --lidar-topic): your robot's accuracy against its LiDAR, read from the bag without ROS. Each
camera frame is paired with the PointCloud2 nearest in time (within --tolerance); the cloud goes into the camera
with camera <- LiDAR from the bag's /tf_static (chained through base_link etc. from the messages' frame ids, as
tf does) or from --extrinsics FILE; points behind the camera or off the image are dropped and the nearest return
per pixel is kept. Two rows: median-scaled (per frame; its median ratio is the scale.factor that makes the network
metric) and metric (as the node would publish it with --metric-scale), each also by LiDAR depth bin (--bins),
with the counts of frames and points used. No crop; 1e-3 < LiDAR depth < 80 m. docs/rosbag.md, "Measure on your
robot", explains the YAML format and how to read the bins.

Frames reach the network exactly as in training and in the ROS node (DepthEstimator); --backend evaluates an
exported model too (e.g. an int8 .onnx against its fp32 checkpoint).

examples:
  dna-depth export-gt --data-path kitti_raw --split splits/eigen/test_files.txt --out gt_depths.npz
  dna-depth evaluate --weights dna_b0.safetensors --data-path kitti_raw \\
      --split splits/eigen/test_files.txt --gt gt_depths.npz
  dna-depth evaluate --weights model.safetensors --bag my_drive.mcap --lidar-topic /velodyne_points \\
      --image-topic /cam/image_rect --camera-info-topic /cam/camera_info --metric-scale camera_height:1.2"""

_KITTI = ("data_path", "split", "gt", "scaling")
_BAG = ("lidar_topic", "image_topic", "camera_info_topic", "calibration", "intrinsics_source", "extrinsics",
        "camera_frame", "lidar_frame", "tolerance", "every", "metric_scale", "bins")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def add_arguments(p) -> None:
    p.add_argument("--weights", required=True, help="dna-depth checkpoint (.safetensors) or exported .onnx")
    k = p.add_argument_group("KITTI form", "a split of a KITTI-layout folder against exported ground truth")
    k.add_argument("--data-path", help="KITTI raw root (DATE/DATE_drive_XXXX_sync/...)")
    k.add_argument("--split", help="split file, one 'folder frame side' line per frame")
    k.add_argument("--gt", help="ground truth .npz from `dna-depth export-gt` (same split order)")
    k.add_argument("--scaling", default=None,
                   help="median (per image, monocular; default), none, or fixed:S (multiply predictions by S)")
    b = p.add_argument_group("bag form", "a ROS 1 / ROS 2 bag with a camera and a LiDAR (PointCloud2)")
    b.add_argument("--bag", help="the bag (ROS 2 folder, .mcap, .db3 or ROS 1 .bag)")
    b.add_argument("--lidar-topic", help="sensor_msgs/PointCloud2 topic (default: the bag's only one)")
    b.add_argument("--image-topic", help="Image or CompressedImage topic, undistorted (default: the bag's only one)")
    b.add_argument("--camera-info-topic", help="CameraInfo topic giving the intrinsics (default: the bag's only one)")
    b.add_argument("--calibration", help="calibration YAML instead of the CameraInfo (camera_calibration format)")
    b.add_argument("--intrinsics-source", choices=("auto", "K", "P"), default=None,
                   help="CameraInfo matrix: auto (P when valid, else K; default), K or P")
    b.add_argument("--extrinsics", help="YAML of static transforms (parent, child, translation, rotation) used "
                                        "instead of the bag's /tf_static")
    b.add_argument("--camera-frame", help="tf frame of the camera's optical frame (default: the images' "
                                          "header.frame_id)")
    b.add_argument("--lidar-frame", help="tf frame of the LiDAR (default: the clouds' header.frame_id)")
    b.add_argument("--tolerance", type=float, default=None,
                   help="seconds between an image and its cloud at most (default 0.05: half a 10 Hz scan); the "
                        "offset is not motion-compensated, so keep it small on a moving robot")
    b.add_argument("--every", type=int, default=None, help="score every N-th paired frame (default 1: all)")
    b.add_argument("--metric-scale", default=None,
                   help="scale of the metric row, as the node's scale.mode: none (the network's own units; "
                        "default), fixed:S, or camera_height:H (ground-plane fit, H metres)")
    b.add_argument("--bins", default=None,
                   help="inner edges of the LiDAR depth bins in metres (default 10,20,40: 0-10, 10-20, 20-40, "
                        "40-80)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--backend", default="torch", choices=list_backends(),
                   help="inference backend (default torch; an .onnx file needs onnxruntime or auto)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (KITTI form: abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3, frames; bag "
                        "form: everything of the report, bins and per-frame values included)")


def run(args) -> int:
    if args.bag:
        given = [_flag(d) for d in _KITTI if getattr(args, d) is not None]
        if given:
            raise ValueError(f"KITTI-form options ({', '.join(given)}) do not go with --bag: the bag form reports "
                             "both the median-scaled and the metric row (--metric-scale chooses the metric one's "
                             "scale)")
        return _run_bag(args)
    given = [_flag(d) for d in _BAG if getattr(args, d) is not None]
    if given:
        raise ValueError(f"bag-form options ({', '.join(given)}) need --bag BAG")
    missing = [_flag(d) for d in ("data_path", "split", "gt") if getattr(args, d) is None]
    if missing:
        raise ValueError(f"give --data-path, --split and --gt (KITTI form) or --bag and --lidar-topic (bag form); "
                         f"missing {', '.join(missing)}")
    scaling_text = args.scaling or "median"
    scaling = parse_scaling(scaling_text)
    lines = read_split_file(args.split)
    gt = load_gt(args.gt)
    r = evaluate_model(args.weights, args.data_path, lines, gt, scaling=scaling, device=args.device,
                       backend=args.backend, progress=not args.json)
    if args.json:
        print(json.dumps({k: r[k] for k in (*METRIC_NAMES, "frames")}))
        return 0
    print(f"{r['frames']} frames, scaling {scaling_text}"
          + (f" (median ratio {r['ratio_median']:.3f}, std {r['ratio_std']:.3f})" if scaling_text == "median" else ""))
    print(format_table_header())
    print(format_table_row(r))
    return 0


def _run_bag(args) -> int:
    from dna_depth_core.data.rosbag import DEFAULT_TOLERANCE  # optional dependency: rosbags (extra "bags")
    from dna_depth_core.evaluation import lidar  # optional dependency: rosbags (extra "bags")

    r = lidar.evaluate_bag_lidar(
        args.bag, args.weights, lidar_topic=args.lidar_topic, image_topic=args.image_topic,
        camera_info_topic=args.camera_info_topic, calibration=args.calibration,
        intrinsics_source=args.intrinsics_source or "auto", extrinsics=args.extrinsics,
        camera_frame=args.camera_frame, lidar_frame=args.lidar_frame,
        tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
        every=1 if args.every is None else args.every, metric_scale=args.metric_scale or "none",
        bins=lidar.DEFAULT_BINS if args.bins is None else lidar.parse_bins(args.bins), device=args.device,
        backend=args.backend, progress=not args.json)
    print(json.dumps(r) if args.json else lidar.format_lidar_report(r))
    return 0
