"""``dna-depth synth``: render a synthetic street drive in the KITTI raw layout."""
from __future__ import annotations

import argparse
import os

from dna_depth_core.data.synthetic import DEFAULT_DATE, render_drive

NAME = "synth"
HELP = "render a synthetic street drive (KITTI raw layout, exact depth, velodyne scans, poses, split)"
DESCRIPTION = """\
Render a procedural street drive by ray casting (numpy), in the KITTI raw layout:

  OUT/DATE/calib_cam_to_cam.txt, OUT/DATE/calib_velo_to_cam.txt
  OUT/DATE/DATE_drive_XXXX_sync/image_02/data/%010d.png
  OUT/DATE/DATE_drive_XXXX_sync/velodyne_points/data/%010d.bin
  OUT/DATE/DATE_drive_XXXX_sync/depth/%010d.npy        exact depth (metres, 0 = sky)
  OUT/DATE/DATE_drive_XXXX_sync/poses.txt              T_world_cam, 3x4 row-major a line
  OUT/splits/DATE_drive_XXXX_sync.txt                  frames with both neighbours

With --bag OUT_BAG it writes the drive as a ROS 2 bag instead (--storage mcap (chunks with CRCs) or sqlite3):
  /camera/image_raw     sensor_msgs/Image rgb8 (or CompressedImage), frame camera_optical_frame, at --fps
  /camera/camera_info   sensor_msgs/CameraInfo
  /camera/depth_gt      the exact depth, 32FC1 metres (0 = sky)
  /lidar/points         PointCloud2 x, y, z, intensity in frame lidar: a 32-beam scan sampled from the exact
                        depth, stamped 5 ms after its image (--no-lidar: left out)
  /tf_static            base_link -> camera_optical_frame, base_link -> lidar (27 cm behind and above the
                        camera, rotated by a few degrees)
so `dna-depth evaluate --bag OUT_BAG --lidar-topic /lidar/points` can be checked against exact depth:
  dna-depth synth --bag data/synth_bag --frames 300 --width 320 --height 96

Use another --seed (and --drive) for a held-out drive, e.g.:
  dna-depth synth --out data/synth --frames 300
  dna-depth synth --out data/synth --frames 100 --seed 1 --drive 2
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="output root (the KITTI raw root: date folders go here)")
    out.add_argument("--bag", help="write a ROS 2 bag (folder) instead of the KITTI layout")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--fps", type=float, default=10.0, help="bag frame rate (default 10)")
    parser.add_argument("--compressed", choices=("jpeg", "png"), help="bag: CompressedImage instead of Image")
    parser.add_argument("--no-lidar", action="store_true", help="bag: no LiDAR PointCloud2 and no /tf_static")
    parser.add_argument("--frames", type=int, required=True, help="number of frames to render")
    parser.add_argument("--seed", type=int, default=0, help="scene and trajectory seed (default 0)")
    parser.add_argument("--width", type=int, default=640, help="image width (default 640)")
    parser.add_argument("--height", type=int, default=192, help="image height (default 192)")
    parser.add_argument("--drive", type=int, default=1, help="drive number XXXX in the folder name (default 1)")
    parser.add_argument("--date", default=None, help="date folder name (default 2000_01_01)")
    parser.add_argument("--ss", type=int, default=2, choices=(1, 2, 3, 4),
                        help="supersampling per axis at geometric edges (default 2: 2x2)")
    parser.add_argument("--workers", type=int, default=None,
                        help="render processes (default: min(2, CPU count))")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.bag:
        from dna_depth_core.data.rosbag import (  # optional dependency: rosbags (extra "bags")
            DEFAULT_LIDAR_TOPIC, write_synthetic_bag)

        info = write_synthetic_bag(args.bag, args.frames, seed=args.seed, width=args.width, height=args.height,
                                   fps=args.fps, storage=args.storage, ss=args.ss, compressed=args.compressed,
                                   lidar_topic=None if args.no_lidar else DEFAULT_LIDAR_TOPIC,
                                   tf_static=not args.no_lidar, progress=not args.quiet)
        lidar = "" if args.no_lidar else f", {info['lidar_points']:,} LiDAR points on {DEFAULT_LIDAR_TOPIC}"
        print(f"wrote {info['frames']} frames ({args.width}x{args.height}, {args.fps:g} Hz, {args.storage}{lidar}) "
              f"to {args.bag} in {info['seconds']:.1f} s")
        return 0
    workers = args.workers if args.workers is not None else min(2, os.cpu_count() or 1)
    info = render_drive(
        args.out,
        args.frames,
        seed=args.seed,
        width=args.width,
        height=args.height,
        drive=args.drive,
        date=args.date or DEFAULT_DATE,
        ss=args.ss,
        workers=max(1, workers),
        progress=not args.quiet,
    )
    print(f"wrote {info.frames} frames ({info.width}x{info.height}) to {info.drive_dir} in {info.seconds:.1f} s")
    print(f"split ({len(info.split_lines)} frames with both neighbours): {info.split_file}")
    return 0
