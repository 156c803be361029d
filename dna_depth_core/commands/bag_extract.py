"""``dna-depth bag-extract``: write ROS bags as a KITTI-style folder + split files (a cache for training)."""
from __future__ import annotations

NAME = "bag-extract"
HELP = "extract ROS bags to a KITTI-style folder and split files (a cache for repeated training)"
DESCRIPTION = """\
Decode the image topic of each bag and write it in the KITTI raw layout, with the same time pairing,
static-frame filter and time split as training from the bags (dataset: bag):

  OUT/LABEL/calib_cam_to_cam.txt                          P_rect_02 from CameraInfo (or --calibration), 1-based
  OUT/LABEL/LABEL_drive_XXXX_sync/image_02/data/%010d.png  one drive per chain of frames FRAME_SPACING apart
  OUT/splits/train_files.txt, OUT/splits/val_files.txt

Then train with:  dna-depth train --config RECIPE data_path=OUT split=splits/train_files.txt \\
                      val_split=splits/val_files.txt use_calib=true

examples:
  dna-depth bag-extract data/synth_bag --out data/synth_bag_kitti
  dna-depth bag-extract run1.bag --out cache --image-topic /cam/image_raw/compressed --camera-info-topic /cam/camera_info
"""


def add_arguments(p) -> None:
    p.add_argument("bags", nargs="+", metavar="BAG", help="bag folders or files (.mcap, .db3, .bag)")
    p.add_argument("--out", required=True, help="output folder (KITTI raw root)")
    p.add_argument("--image-topic", help="image topic (default: the bag's only one)")
    p.add_argument("--camera-info-topic", help="camera_info topic (default: the bag's only one)")
    p.add_argument("--calibration", help="calibration YAML overriding the CameraInfo intrinsics")
    p.add_argument("--intrinsics-source", choices=("auto", "K", "P"), default="auto",
                   help="CameraInfo (or calibration) matrix to use: auto = P when valid, else K (default auto)")
    p.add_argument("--frame-spacing", type=float, default=0.1, help="seconds between neighbours (default 0.1)")
    p.add_argument("--static-threshold", type=float, default=0.01,
                   help="skip targets whose mean abs grey change to a neighbour is below this (default 0.01)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last part of each bag for validation (0.1)")
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="resize the frames (default: as recorded)")
    p.add_argument("--keep-damaged", action="store_true",
                   help="use the intact parts of a damaged bag (mcap: every intact chunk), with a warning naming the "
                        "damage (default: stop with the error)")


def run(args) -> int:
    from dna_depth_core.data.rosbag import extract_bag  # optional dependency: rosbags (extra "bags")

    info = extract_bag(args.bags, args.out, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                       calibration=args.calibration, frame_spacing=args.frame_spacing,
                       static_threshold=args.static_threshold, val_fraction=args.val_fraction,
                       size=tuple(args.size) if args.size else None,
                       on_damage="keep" if args.keep_damaged else "error",
                       intrinsics_source=args.intrinsics_source)
    for b in info["bags"]:
        print(f"{b['bag']}: {b['frames']} frames -> {args.out}/{b['label']} ({b['train']} train, {b['val']} val)"
              + (f"; DAMAGED: {b['damaged']}" if b["damaged"] else ""))
    print(f"splits: {info['splits']['train']} ({info['train']}), {info['splits']['val']} ({info['val']})")
    return 0
