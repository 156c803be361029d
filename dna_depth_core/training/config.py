"""``TrainConfig``: every training option in one dataclass, read from YAML and ``key=value`` overrides.

Defaults are the paper's schedule (docs/model.md, section 5): Adam (0.9, 0.999),
lr 1e-4, batch 16, 40 epochs with the lr x0.1 from epoch 35, 640x192, depth 0.1..100 m, smoothness 1e-3, SSIM
weight 0.85, 4 scales, frames 0/-1/+1, ImageNet-pretrained encoders.

>>> cfg = load_config("config/train/train_dna_b0_640x192.yaml", ["batch_size=8", "learning_rate=5e-5"])
>>> cfg.to_yaml("run/config.yaml")

Values from YAML files and from overrides go through the same coercion (``coerce_value``): a field typed
``float`` accepts ``1e-4`` (which PyYAML reads as a string), ``list[int]`` accepts ``[0, -1, 1]`` or ``0,-1,1``,
``Optional`` fields accept ``null``/``none``. Unknown keys and values of the wrong type raise ``ValueError``
naming the key (and the closest known keys).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from typing import Any, Iterable, Optional

import yaml

from dna_depth_core.camera import INTRINSICS_SOURCES
from dna_depth_core.models.pose import list_pose_models

DEVICES_HELP = "auto (CUDA when present), cpu, cuda, cuda:N"
PRECISIONS = ("auto", "fp32", "bf16")


@dataclasses.dataclass
class TrainConfig:
    """All options of ``dna-depth train``. See docs/training.md for the meaning of each."""

    # -- depth network ------------------------------------------------------------------------------------
    model: str = "dna_b0"                     # registry name: dna_b0, dna_b1, dna_lite0, monodepth2_r18
    pretrained: Optional[str] = "imagenet"    # encoder init: imagenet | null (random) | path to weights
    height: int = 192                         # network input size (multiples of 32)
    width: int = 640
    min_depth: float = 0.1
    max_depth: float = 100.0
    num_scales: int = 4                       # disparity scales in the loss (1..4)
    depth_head_bias: Optional[float] = None   # initial bias of the final disparity convs (pre-sigmoid)
    init_from: Optional[str] = None           # start from a checkpoint's depth (+ pose, when it has one) weights
    freeze_encoder: bool = False              # the depth encoder stays fixed (no gradient, BatchNorm statistics kept)

    # -- pose ---------------------------------------------------------------------------------------------
    frame_ids: list[int] = dataclasses.field(default_factory=lambda: [0, -1, 1])  # target first, then sources
    pose_model: str = "resnet18"              # models.pose registry: resnet18 (paper) | lite0 | small (CPU)
    pose_pretrained: Optional[str] = "imagenet"  # resnet18 / lite0 pose encoder init: imagenet | null | path
    pose_output_scale: float = 0.01
    pose_head_weight_scale: float = 1.0       # the pose output conv's initial weights are multiplied by this
    pose_lr_scale: float = 1.0                # the pose network's lr is learning_rate x this
    pose_rotation_scale: Optional[float] = None  # the axis-angle outputs x this (null: pose_output_scale)
    pose_warmup_steps: int = 0                # the pose network is frozen (its initial output) for these steps
    pose_translation_bias: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])
    pose_gt: bool = False                     # use the dataset's ground-truth poses instead of the pose network

    # -- loss ---------------------------------------------------------------------------------------------
    smoothness_weight: float = 1e-3
    ssim_weight: float = 0.85
    automask: bool = True

    # -- data ---------------------------------------------------------------------------------------------
    dataset: str = "kitti"                    # a name registered with training.datasets.register_dataset
    data_path: Optional[str] = None           # KITTI-raw-layout root (synthetic drives use the same layout)
    split: Optional[str] = None               # training split file ("folder frame side" per line)
    val_split: Optional[str] = None           # validation split file (optional)
    augment: bool = True                      # colour jitter + horizontal flip (p = 0.5 each)
    use_calib: bool = False                   # K from calib_cam_to_cam.txt (false: KITTI's default K for every frame)
    num_workers: int = 4
    # -- ROS bags (dataset: bag; dna_depth_core.data.rosbag, docs/rosbag.md) ----------------------------------
    bags: list[str] = dataclasses.field(default_factory=list)  # ROS 1/ROS 2 bags (sqlite3, mcap) to train on
    image_topic: Optional[str] = None         # sensor_msgs/Image or CompressedImage (null: the bag's only one)
    camera_info_topic: Optional[str] = None   # sensor_msgs/CameraInfo (null: the bag's only one)
    calibration: Optional[str] = None         # calibration YAML overriding the CameraInfo intrinsics
    intrinsics_source: str = "auto"           # CameraInfo matrix: auto (P when set, else K) | K | P
    frame_spacing: float = 0.1                # seconds between a target and its neighbour frames
    static_threshold: float = 0.01            # skip targets whose mean abs grey change to a source is below this
    val_fraction: float = 0.1                 # the last part of each bag (by time) is validation
    bag_on_damage: str = "error"              # error | keep (train on the messages before a bag's damage)

    # -- optimisation -------------------------------------------------------------------------------------
    batch_size: int = 16                      # global batch: split evenly over the ranks of a torchrun job
    num_epochs: int = 40
    learning_rate: float = 1e-4
    adam_betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    lr_decay_epochs: list[int] = dataclasses.field(default_factory=lambda: [35])  # lr x lr_decay at each
    lr_decay: float = 0.1
    max_steps: Optional[int] = None           # stop after this many steps in total (null: run all epochs)
    grad_clip: Optional[float] = None         # clip the global gradient norm (null: no clipping)
    max_nonfinite: int = 5                    # abort after this many non-finite losses in a row
    amp: bool = True                          # autocast fp16 + GradScaler (CUDA only; ignored on CPU)
    precision: str = "auto"                   # CPU: auto (bf16 with native bf16, else fp32) | fp32 | bf16 autocast
    channels_last: bool = True                # NHWC memory format for both networks (faster convs, same math)
    sync_batchnorm: bool = False              # SyncBatchNorm under DistributedDataParallel
    device: str = "auto"                      # auto | cpu | cuda | cuda:N
    cpu_threads: Optional[int] = None         # torch intra-op threads (null: torch's default)
    seed: int = 0

    # -- logging and checkpoints --------------------------------------------------------------------------
    out_dir: str = "runs/train"
    log_every: int = 50                       # steps between CSV/TensorBoard scalar rows
    image_every: int = 500                    # steps between TensorBoard images (0: never)
    tensorboard: bool = True
    progress: bool = True                     # tqdm progress bar
    save_every_epochs: int = 1                # checkpoint at the end of every N-th epoch (0: never)
    save_every_steps: int = 0                 # checkpoint every N steps too (0: never)
    keep_checkpoints: int = 0                 # keep only the newest N step/epoch checkpoints (0: keep all)
    validate: bool = True                     # validation loss after each epoch when val_split is set
    val_max_batches: Optional[int] = None

    # ------------------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if self.dataset == "bag":  # bag sources split by time, not by split files: name the two parts
            if self.split is None:
                self.split = "bag:train"
            if self.val_split is None and self.val_fraction > 0:
                self.val_split = "bag:val"
        self.validate_values()

    def validate_values(self) -> None:
        """Raise ValueError naming the first option whose value cannot work."""
        def need(cond: bool, key: str, why: str) -> None:
            if not cond:
                raise ValueError(f"{key}: {why} (got {getattr(self, key)!r})")

        for key in ("height", "width"):
            need(getattr(self, key) > 0 and getattr(self, key) % 32 == 0, key, "must be a positive multiple of 32")
        need(0 < self.min_depth < self.max_depth, "min_depth", "need 0 < min_depth < max_depth")
        need(1 <= self.num_scales <= 4, "num_scales", "must be 1..4")
        need(len(self.frame_ids) >= 2 and self.frame_ids[0] == 0 and len(set(self.frame_ids)) == len(self.frame_ids)
             and 0 not in self.frame_ids[1:], "frame_ids", "must start with 0 followed by distinct source ids")
        need(self.pose_model in list_pose_models(), "pose_model", f"must be one of {', '.join(list_pose_models())}")
        need(self.pose_output_scale > 0, "pose_output_scale", "must be > 0")
        need(self.pose_head_weight_scale >= 0, "pose_head_weight_scale", "must be >= 0")
        need(self.pose_lr_scale > 0, "pose_lr_scale", "must be > 0")
        need(self.pose_rotation_scale is None or self.pose_rotation_scale > 0, "pose_rotation_scale",
             "must be > 0 or null")
        need(self.pose_warmup_steps >= 0, "pose_warmup_steps", "must be >= 0")
        need(len(self.pose_translation_bias) == 3, "pose_translation_bias", "must be a 3-vector")
        need(0 <= self.ssim_weight <= 1, "ssim_weight", "must be in [0, 1]")
        need(self.smoothness_weight >= 0, "smoothness_weight", "must be >= 0")
        need(self.num_workers >= 0, "num_workers", "must be >= 0")
        need(self.intrinsics_source in INTRINSICS_SOURCES, "intrinsics_source",
             f"must be one of {', '.join(INTRINSICS_SOURCES)}")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.num_epochs >= 1, "num_epochs", "must be >= 1")
        need(self.learning_rate > 0, "learning_rate", "must be > 0")
        need(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas), "adam_betas",
             "must be two numbers in [0, 1)")
        need(self.lr_decay > 0, "lr_decay", "must be > 0")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be >= 1 or null")
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or null")
        need(self.max_nonfinite >= 1, "max_nonfinite", "must be >= 1")
        need(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        need(self.init_from is None or str(self.init_from).strip() != "", "init_from", "must be a path or null")
        need(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda"), "device", DEVICES_HELP)
        for key in ("log_every", "image_every", "save_every_epochs", "save_every_steps", "keep_checkpoints"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(self.cpu_threads is None or self.cpu_threads >= 1, "cpu_threads", "must be >= 1 or null")
        need(self.frame_spacing > 0, "frame_spacing", "must be > 0 seconds")
        need(self.static_threshold >= 0, "static_threshold", "must be >= 0")
        need(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        need(self.bag_on_damage in ("error", "keep"), "bag_on_damage", "must be error or keep")
        need(self.dataset != "bag" or len(self.bags) > 0, "bags", "dataset: bag needs at least one bag")
        need(self.val_max_batches is None or self.val_max_batches >= 1, "val_max_batches", "must be >= 1 or null")

    # -- conversions ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | None = None) -> str:
        """The config as YAML (all keys, in declaration order); written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a mapping; unknown keys and uncoercible values raise ValueError naming ``source``."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of option: value, got {type(values).__name__}")
        hints = field_types()
        kwargs = {}
        for key, value in values.items():
            check_known_key(key, source)
            kwargs[key] = coerce_value(key, value, hints[key], source)
        return cls(**kwargs)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied (coerced and validated)."""
        merged = self.to_dict()
        merged.update(changes)
        return TrainConfig.from_dict(merged)


def field_types() -> dict[str, Any]:
    """``{field name: resolved type}`` of TrainConfig."""
    return typing.get_type_hints(TrainConfig)


def check_known_key(key: str, source: str = "config") -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    if key not in names:
        close = difflib.get_close_matches(str(key), names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see docs/training.md for the options"
        raise ValueError(f"{source}: unknown option '{key}'{hint}")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", "~", ""}


def coerce_value(key: str, value: Any, typ: Any, source: str = "config") -> Any:
    """Convert ``value`` (from YAML or from a ``key=value`` string) to the field type ``typ``."""
    def fail(expected: str) -> ValueError:
        return ValueError(f"{source}: option '{key}' expects {expected}, got {value!r}")

    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Union and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return coerce_value(key, value, inner, source)
    if value is None:
        raise fail(_type_name(typ) + " (null is not allowed here)")
    if origin is list:
        (item_type,) = args
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = yaml.safe_load(text)
                except yaml.YAMLError as exc:
                    raise fail(f"a list of {_type_name(item_type)}") from exc
            else:
                value = [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list of {_type_name(item_type)}")
        return [coerce_value(key, v, item_type, source) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail("true or false")
    if typ is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                try:
                    f = float(value)
                except ValueError:
                    raise fail("an integer") from None
                if f.is_integer():
                    return int(f)
        raise fail("an integer")
    if typ is float:
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise fail("a number") from None
        raise fail("a number")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail("a string")
    raise fail(_type_name(typ))  # pragma: no cover - every field type is handled above


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", str(typ))


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: coerced value}``; a malformed item or unknown key raises ValueError."""
    hints = field_types()
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}': expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        check_known_key(key, "override")
        typ = hints[key]
        # Let YAML type plain scalars ("true", "3", "[1, 2]"); the coercion below fixes what YAML leaves a string.
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if typ is str or (typing.get_origin(typ) is typing.Union and str in typing.get_args(typ)):
            value = raw if raw.strip().lower() not in _NONE else None
        out[key] = coerce_value(key, value, typ, f"override '{item}'")
    return out


def load_config(path: str | None = None, overrides: Iterable[str] = (),
                base: TrainConfig | dict | None = None) -> TrainConfig:
    """Defaults <- ``base`` (a config or dict, e.g. from a checkpoint) <- YAML file ``path`` <- ``overrides``."""
    values: dict[str, Any] = {}
    if base is not None:
        values.update(base.to_dict() if isinstance(base, TrainConfig) else dict(base))
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path) as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML ({exc})") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of option: value at the top level")
        hints = field_types()
        for key, value in data.items():
            check_known_key(key, path)
            values[key] = coerce_value(key, value, hints[key], path)
    values.update(parse_overrides(overrides))
    return TrainConfig.from_dict(values)
