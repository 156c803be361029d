"""``dna-depth train``: self-supervised training from a YAML recipe (one process, or scaled out with torchrun)."""
from __future__ import annotations

import os

from dna_depth_core.training.config import load_config
from dna_depth_core.training.state import config_from_checkpoint, run_folder
from dna_depth_core.training.trainer import train

NAME = "train"
HELP = "train a depth network (self-supervised, monocular video)"
DESCRIPTION = """Train from a YAML recipe (config/train/train_*.yaml); KEY=VALUE arguments override its options (see
docs/training.md for every option). Checkpoints go to OUT/checkpoints/step_XXXXXXXX/ (model.safetensors is what
`dna-depth predict --weights` reads); OUT/checkpoints/latest names the newest. Logs: OUT/train_log.csv,
OUT/val_log.csv, OUT/tensorboard/.

--init-from starts from a checkpoint's weights instead (a fine-tune): the depth network, and the pose network when
the file has one of the configured pose_model (e.g. `dna-depth convert-official` output, an earlier run's
model.safetensors or checkpoint folder); optimizer, lr schedule and step count start fresh. --freeze-encoder keeps
the depth encoder fixed. With --resume, the resumed checkpoint wins and init_from is not used.

--resume continues a run exactly (weights, optimizer, lr schedule, step, RNG states). Without a value it resumes
from OUT; with one, from a run folder, a checkpoint folder or its model.safetensors. Without --config the
checkpoint's own config is used (overrides still apply, e.g. num_epochs=50).

The same command scales out: `torchrun --nproc_per_node 4 -m dna_depth_core.cli train --config ...`
(DistributedDataParallel, nccl on CUDA, gloo on CPU; batch_size is the global batch).

examples:
  dna-depth train --config config/train/train_dna_b0_640x192.yaml data_path=/data/kitti_raw
  dna-depth train --config config/train/train_synthetic.yaml --out runs/synth max_steps=200 batch_size=4
  dna-depth train --resume runs/synth num_epochs=30
  dna-depth train --config config/train/train_synthetic.yaml --bag my_bag --init-from kitti_b0.safetensors \
      --out runs/finetune max_steps=300 learning_rate=1e-4 pose_warmup_steps=0
  dna-depth train --config config/train/train_synthetic.yaml --bag drive.mcap_bag --image-topic /camera/image_raw \
      --camera-info-topic /camera/camera_info --out runs/bag max_steps=200"""


def add_arguments(p) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config options")
    p.add_argument("--config", help="YAML recipe (config/train/train_*.yaml); without it: the paper's defaults, or the "
                   "checkpoint's config when resuming")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue from a checkpoint (default: the newest in OUT)")
    p.add_argument("--out", help="output folder (overrides out_dir)")
    p.add_argument("--init-from", metavar="CKPT", help="initialise from this checkpoint's weights (sets init_from): "
                   "depth network, and pose network when the file has one of the configured kind")
    p.add_argument("--freeze-encoder", action="store_true", help="keep the depth encoder fixed (freeze_encoder: "
                   "true)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    g = p.add_argument_group("ROS bags (dataset: bag; see docs/rosbag.md)")
    g.add_argument("--bag", nargs="+", metavar="BAG", help="train straight from these ROS 1/ROS 2 bags (sets "
                   "dataset=bag and bags=[...]; split by time with val_fraction)")
    g.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage topic (default: the bag's only one)")
    g.add_argument("--camera-info-topic", help="sensor_msgs/CameraInfo topic (default: the bag's only one)")
    g.add_argument("--calibration", help="calibration YAML overriding the bags' CameraInfo intrinsics")


def run(args) -> int:
    resume = args.resume
    overrides = list(args.overrides)
    if resume and "=" in resume and not os.path.exists(resume):
        # `--resume key=value`: argparse took an override for the optional CKPT
        overrides.insert(0, resume)
        resume = ""
    base = None
    if args.config is None and resume is not None:
        if resume == "" and args.out is None:
            raise ValueError("--resume without a checkpoint needs --config or --out to know where the run is")
        base = config_from_checkpoint(resume or args.out)
    bag_overrides = []
    if getattr(args, "bag", None):
        bags = []
        for b in args.bag:  # `--bag a b key=value`: nargs="+" also took the overrides
            (overrides.append(b) if "=" in b and not os.path.exists(b) else bags.append(b))
        bag_overrides = ["dataset=bag", "bags=[" + ",".join(repr(os.path.abspath(b)) for b in bags) + "]"]
        if not any(o.split("=", 1)[0].strip() in ("split", "val_split") for o in overrides):
            bag_overrides += ["split=bag:train", "val_split=bag:val"]
    if getattr(args, "init_from", None):
        bag_overrides.append(f"init_from={os.path.abspath(args.init_from)}")
    if getattr(args, "freeze_encoder", False):
        bag_overrides.append("freeze_encoder=true")
    for key, value in (("image_topic", getattr(args, "image_topic", None)),
                       ("camera_info_topic", getattr(args, "camera_info_topic", None)),
                       ("calibration", getattr(args, "calibration", None))):
        if value is not None:
            bag_overrides.append(f"{key}={value}")
    cfg = load_config(args.config, bag_overrides + overrides, base=base)
    if cfg.dataset == "bag" and cfg.val_fraction == 0 and cfg.val_split == "bag:val":
        cfg = cfg.replace(val_split=None)
    if args.out is not None:
        cfg = cfg.replace(out_dir=args.out)
    elif resume and not any(o.split("=", 1)[0].strip() == "out_dir" for o in overrides):
        cfg = cfg.replace(out_dir=run_folder(resume))  # keep writing into the run the checkpoint belongs to
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    if resume == "":
        resume = cfg.out_dir

    summary = train(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained to step {summary['step']} (epoch {summary['epoch']}); last loss {summary['last_loss']}; "
              f"checkpoint: {summary['checkpoint']}")
    return 0
