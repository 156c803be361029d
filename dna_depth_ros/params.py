"""The node's parameters: one table (:data:`PARAMETERS`) used to declare them, to check them, to document them
(docs/ros.md) and to check config/ros/dna_depth.yaml.

- :class:`ParamSpec`: name, default (which fixes the type), description, choices or range.
- :func:`descriptor`: the ``ParameterDescriptor`` a node declares a spec with.
- :func:`check_params`: the checks a set of values must pass before the node starts with it
  (:class:`NodeConfigError` naming the parameter otherwise).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from dna_depth_core.backends import list_backends
from dna_depth_core.camera import INTRINSICS_SOURCES
from dna_depth_core.inference import OUTPUT_MODES, RESIZE_MODES, SCALE_MODES
from dna_depth_core.ros_images import DEPTH_ENCODINGS

__all__ = ["NODE_NAME", "PARAMETERS", "NodeConfigError", "ParamSpec", "check_params", "descriptor"]

NODE_NAME = "dna_depth"


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``default`` fixes its type; ``choices``, ``int_range`` or ``float_range`` its values."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


RELIABILITY = ("reliable", "best_effort")
DURABILITY = ("volatile", "transient_local")

PARAMETERS: tuple[ParamSpec, ...] = (
    # Model
    ParamSpec("weights", "", "Path to the dna-depth checkpoint (.safetensors). Required: a missing or bad file "
              "stops the node at start with an error naming it."),
    ParamSpec("device", "auto", "Inference device: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."),
    ParamSpec("fp16", False, "Half-precision inference on CUDA (ignored on the CPU)."),
    ParamSpec("backend", "auto", "Inference backend: auto (onnxruntime on the CPU, where it is fastest at fp32 "
              "accuracy; torch on CUDA), torch or onnxruntime (which also takes an exported .onnx as weights, "
              "fp32 or int8 from `dna-depth export-onnx --int8`).",
              choices=tuple(list_backends())),
    ParamSpec("input_height", 0, "Network input height in pixels, a multiple of 32; 0 = the checkpoint's.",
              int_range=(0, 4096)),
    ParamSpec("input_width", 0, "Network input width in pixels, a multiple of 32; 0 = the checkpoint's.",
              int_range=(0, 8192)),
    ParamSpec("resize_mode", "stretch", "How the image reaches the network's size: stretch (resize the whole "
              "image) or crop (centre-crop to the network's aspect ratio, then resize; with output_resolution "
              "input the depth outside the crop is invalid).", choices=RESIZE_MODES),
    ParamSpec("output_resolution", "input", "Resolution of depth, depth/camera_info and points: input (the "
              "camera's) or network (the network's input size; cheaper).", choices=OUTPUT_MODES),
    # Metric scale
    ParamSpec("scale.mode", "none", "Metric scale: none (relative depth, not metres), fixed (scale.factor from "
              "calibration) or camera_height (ground-plane fit against scale.camera_height).", choices=SCALE_MODES),
    ParamSpec("scale.factor", 1.0, "Depth multiplier for scale.mode fixed; in camera_height mode the factor used "
              "until the first ground-plane fit.", float_range=(1e-6, 1e6)),
    ParamSpec("scale.camera_height", 0.0, "Camera mounting height above the ground in metres (camera_height "
              "mode).", float_range=(0.0, 100.0)),
    ParamSpec("scale.ground_roi", [0.55, 1.0, 0.1, 0.9], "Ground region for the plane fit, as fractions of the "
              "image: [top, bottom, left, right]."),
    ParamSpec("scale.max_tilt_deg", 25.0, "Largest angle between the ground normal and the camera's y axis "
              "(optical frame, down) that a plane fit accepts.", float_range=(1.0, 89.0)),
    ParamSpec("scale.smoothing", 0.1, "Weight of each new frame in the exponential smoothing of the log-scale "
              "(1 = no smoothing).", float_range=(0.001, 1.0)),
    # Input
    ParamSpec("image_transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); compressed: subscribe to "
              "'image/compressed' (sensor_msgs/CompressedImage, jpeg or png).", choices=("raw", "compressed")),
    ParamSpec("intrinsics_source", "auto", "Which CameraInfo matrix gives the intrinsics of the (rectified) input: "
              "P, K, or auto (P when it is set, else K).", choices=INTRINSICS_SOURCES),
    ParamSpec("intrinsics.fx", 0.0, "Fallback focal length x in pixels, used when no camera_info has arrived "
              "(0 = no fallback)."),
    ParamSpec("intrinsics.fy", 0.0, "Fallback focal length y in pixels."),
    ParamSpec("intrinsics.cx", 0.0, "Fallback principal point x in pixels."),
    ParamSpec("intrinsics.cy", 0.0, "Fallback principal point y in pixels."),
    ParamSpec("intrinsics.width", 0, "Image width the fallback intrinsics refer to (0 = the incoming image's); "
              "other image sizes get scaled intrinsics.", int_range=(0, 100000)),
    ParamSpec("intrinsics.height", 0, "Image height the fallback intrinsics refer to (0 = the incoming image's).",
              int_range=(0, 100000)),
    # Outputs
    ParamSpec("publish.depth", True, "Publish 'depth'."),
    ParamSpec("publish.camera_info", True, "Publish 'depth/camera_info'."),
    ParamSpec("publish.points", True, "Publish 'points' (needs intrinsics)."),
    ParamSpec("publish.colored", False, "Publish 'depth/colored' (rgb8, for viewing)."),
    ParamSpec("depth.encoding", "32FC1", "32FC1: metres, NaN invalid (REP 118). 16UC1: millimetres, 0 invalid "
              "(REP 117).", choices=DEPTH_ENCODINGS),
    ParamSpec("depth.max_range", 0.0, "Depth beyond this many metres is published as invalid (0 = no limit).",
              float_range=(0.0, 1e6)),
    ParamSpec("points.decimation", 1, "Keep every n-th row and column of the organised cloud.",
              int_range=(1, 64)),
    ParamSpec("points.xyzrgb", False, "Add the camera colour to the cloud (field rgb, PCL packing)."),
    ParamSpec("points.max_range", 8.0, "Points farther than this many metres from the camera (Euclidean) are NaN "
              "(0 = no limit). Nav2's guidance for learned depth is about 8 m.", float_range=(0.0, 1e6)),
    ParamSpec("colored.max_depth", 0.0, "Depth at the far end of the colour map in metres (0 = per-frame "
              "percentiles)."),
    # QoS
    ParamSpec("qos.input.reliability", "best_effort", "Reliability of the image and camera_info subscriptions. "
              "best_effort (SensorDataQoS) accepts both reliable and best-effort cameras.", choices=RELIABILITY),
    ParamSpec("qos.input.depth", 5, "History depth of the input subscriptions.", int_range=(1, 1000)),
    ParamSpec("qos.output.reliability", "reliable", "Reliability of the publishers. reliable is accepted by both "
              "best-effort (Nav2 SensorDataQoS) and reliable (RViz default) subscribers.", choices=RELIABILITY),
    ParamSpec("qos.output.durability", "volatile", "Durability of the publishers.", choices=DURABILITY),
    ParamSpec("qos.output.depth", 1, "History depth of the publishers.", int_range=(1, 1000)),
    # Misc
    ParamSpec("warmup", True, "Run the network once at start so the first frame is not slow."),
    ParamSpec("log_throttle_sec", 5.0, "Minimum interval between two log messages about the same problem.",
              float_range=(0.0, 3600.0)),
)


class NodeConfigError(ValueError):
    """A parameter value the node cannot start with; the text names the parameter."""


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The descriptor ``spec`` is declared with: description, choices as a constraint text, ranges."""
    desc = ParameterDescriptor(name=spec.name, description=spec.description, read_only=True)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.int_range is not None:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    if spec.float_range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.float_range[0]),
                                                        to_value=float(spec.float_range[1]), step=0.0)]
    return desc


def check_params(p: dict) -> None:
    """Raise :class:`NodeConfigError` naming the first parameter of ``p`` (name -> value) the node cannot start
    with: a value outside its choices, an empty weights path, inconsistent scale or input-size settings."""
    for spec in PARAMETERS:
        if spec.choices and p[spec.name] not in spec.choices:
            raise NodeConfigError(f"parameter '{spec.name}': '{p[spec.name]}' is not one of "
                                  f"{', '.join(spec.choices)}")
    if not str(p["weights"]).strip():
        raise NodeConfigError("parameter 'weights' is empty: give the path of a dna-depth checkpoint "
                              "(.safetensors)")
    if p["scale.mode"] == "camera_height" and not p["scale.camera_height"] > 0:
        raise NodeConfigError("parameter 'scale.camera_height' must be > 0 metres when scale.mode is "
                              "camera_height")
    if len(p["scale.ground_roi"]) != 4:
        raise NodeConfigError(f"parameter 'scale.ground_roi' must have 4 values [top, bottom, left, right], "
                              f"got {list(p['scale.ground_roi'])}")
    for name in ("input_height", "input_width"):
        if p[name] % 32:
            raise NodeConfigError(f"parameter '{name}': {p[name]} is not a multiple of 32")
    if bool(p["input_height"]) != bool(p["input_width"]):
        raise NodeConfigError("parameters 'input_height' and 'input_width' must both be set or both be 0")
