"""``dna-depth bag-info``: the image and camera_info topics of ROS bags (counts, rates, encodings, sizes)."""
from __future__ import annotations

import json

NAME = "bag-info"
HELP = "list the image and camera_info topics of ROS 1/ROS 2 bags (counts, rates, encodings)"
DESCRIPTION = """\
Read ROS 2 bags (sqlite3, mcap) and ROS 1 bags with the pure-Python `rosbags` library (no ROS install needed) and
print, per bag, each sensor_msgs/Image, CompressedImage and CameraInfo topic: message count, rate (Hz), encodings
(or CompressedImage formats, CameraInfo distortion models), image sizes and the CameraInfo intrinsics (the matrix
training uses: P when valid, else K). For mcap bags: how many chunks carry a CRC (checked while reading).
Every damaged part is listed (file, chunk, byte offset, time range, topics and messages lost, reason); the counts
cover what can be read. Exit status 1 when a bag is damaged.

examples:
  dna-depth bag-info data/synth_bag
  dna-depth bag-info run1.bag run2_mcap/ --json
"""


def add_arguments(p) -> None:
    p.add_argument("bags", nargs="+", metavar="BAG", help="bag folders or files (.mcap, .db3, .bag)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from dna_depth_core.data.rosbag import bag_info, format_bag_info  # optional dependency: rosbags (extra "bags")

    infos = bag_info(args.bags)
    if args.json:
        print(json.dumps(infos, indent=1, default=list))
    else:
        print(format_bag_info(infos))
    return 1 if any(i["damaged"] for i in infos) else 0
