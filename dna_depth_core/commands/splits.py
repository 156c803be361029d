"""``dna-depth splits``: fetch the standard KITTI split lists (not shipped with the project)."""
from __future__ import annotations

import argparse

from dna_depth_core.data.kitti import DEFAULT_SPLITS_URL, fetch_splits

NAME = "splits"
HELP = "fetch the standard KITTI split lists (eigen_zhou train/val, eigen test)"
DESCRIPTION = """\
dna-depth splits fetch [--from DIR_OR_URL] [--out DIR]

Copies eigen_zhou/train_files.txt, eigen_zhou/val_files.txt and eigen/test_files.txt into --out (keeping
the sub-folders), from a local folder holding them or from a base URL. The lists are not shipped with this
project; their public home is monodepth2's repository (licence: see that repository):
  https://raw.githubusercontent.com/nianticlabs/monodepth2/master/splits
Without network access, point --from at a local copy.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("fetch",), help="fetch: copy or download the split lists")
    parser.add_argument("--from", dest="source", default=None, metavar="DIR_OR_URL",
                        help=f"local folder or base URL (default: {DEFAULT_SPLITS_URL})")
    parser.add_argument("--out", default="splits", help="output folder (default: ./splits)")
    parser.add_argument("--timeout", type=float, default=30.0, help="download timeout in seconds (default 30)")


def run(args: argparse.Namespace) -> int:
    written = fetch_splits(args.source, args.out, timeout=args.timeout)
    for path in written:
        print(f"wrote {path}")
    return 0
