"""The node's parameters: one table (:data:`PARAMETERS`) used to declare them, to check them, to document them
(docs/ros.md) and to check config/ros/dna_depth.yaml.

- :class:`ParamSpec`: name, default (which fixes the type), description, choices or range.
- :func:`descriptor`: the ``ParameterDescriptor`` a node declares a spec with.
- :func:`declare_parameters`: declare every spec on a node and read the values; a value of the wrong type or out
  of range is a :class:`NodeConfigError` naming the parameter (the node's FATAL line), not a traceback.
- :func:`check_params`: the checks a set of values must pass before the node starts with it
  (:class:`NodeConfigError` naming the parameter otherwise).
- :func:`refuse_change`: whether a change at runtime is allowed. Specs with ``dynamic=True`` can change while
  the node runs (they are read per frame or applied at once, see :mod:`dna_depth_ros.runtime`); the others are
  read when the node starts (the model, the subscriptions, the publishers' QoS) and a change is refused with
  the reason. Every change is checked by the same specs and :func:`check_params` first.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

from dna_depth_core.backends import PRECISIONS, list_backends
from dna_depth_core.camera import INTRINSICS_SOURCES
from dna_depth_core.inference import FAR_MODES, OUTPUT_MODES, RESIZE_MODES, SCALE_MODES
from dna_depth_core.ros_images import DEPTH_ENCODINGS

__all__ = ["NODE_NAME", "PARAMETERS", "SPECS", "NodeConfigError", "ParamSpec", "check_params", "declare_parameters",
           "descriptor", "refuse_change"]

NODE_NAME = "dna_depth"


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``default`` fixes its type; ``choices``, ``int_range`` or ``float_range`` its values;
    ``dynamic``: it may change while the node runs."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    dynamic: bool = False


RELIABILITY = ("reliable", "best_effort")
GROUND_PLANES = ("auto", "fit", "mounting")
DURABILITY = ("volatile", "transient_local")

PARAMETERS: tuple[ParamSpec, ...] = (
    # Model
    ParamSpec("weights", "", "Path to the dna-depth checkpoint (.safetensors). Required: a missing or bad file "
              "stops the node at start with an error naming it."),
    ParamSpec("device", "auto", "Inference device: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."),
    ParamSpec("fp16", False, "Half-precision inference on CUDA (ignored on the CPU)."),
    ParamSpec("backend", "auto", "Inference backend: auto (by the device, the model file, the CPU's ISA and the "
              "runtimes installed; the node logs what it picked and why: torch on CUDA; on the CPU OpenVINO bf16 "
              "where the CPU has native bf16 and the model passed the accuracy guard, else fp32 on the runtime "
              "measured faster for the ISA), torch, onnxruntime (also an exported .onnx as weights, fp32 or int8) "
              "or openvino (also an OpenVINO IR .xml).", choices=tuple(list_backends())),
    ParamSpec("precision", "auto", "Numeric precision: auto (the model file's own; bf16 only where the CPU computes "
              "it natively and the guard passed), fp32, bf16 (needs native bf16: avx512_bf16 or AMX) or int8 "
              "(needs an int8 model file from `dna-depth export-onnx --int8`).", choices=PRECISIONS),
    ParamSpec("input_height", 0, "Network input height in pixels, a multiple of 32; 0 = the checkpoint's.",
              int_range=(0, 4096)),
    ParamSpec("input_width", 0, "Network input width in pixels, a multiple of 32; 0 = the checkpoint's.",
              int_range=(0, 8192)),
    ParamSpec("resize_mode", "stretch", "How the image reaches the network's size: stretch (resize the whole "
              "image) or crop (centre-crop to the network's aspect ratio, then resize; with output_resolution "
              "input the depth outside the crop is invalid).", choices=RESIZE_MODES),
    ParamSpec("output_resolution", "input", "Resolution of every output (depth/image, depth/camera_info, the "
              "clouds, the scan, rgb/image): input (the camera's) or network (the network's input size; cheaper).",
              choices=OUTPUT_MODES),
    # Metric scale
    ParamSpec("scale.mode", "none", "Metric scale: none (relative depth, not metres), fixed (scale.factor from "
              "calibration) or camera_height (ground-plane fit against scale.camera_height).", choices=SCALE_MODES),
    ParamSpec("scale.factor", 1.0, "Depth multiplier for scale.mode fixed; in camera_height mode the factor used "
              "until the first ground-plane fit.", float_range=(1e-6, 1e6), dynamic=True),
    ParamSpec("scale.camera_height", 0.0, "Camera mounting height above the ground in metres (camera_height "
              "mode; also the height of the mounting ground plane, ground.plane).", float_range=(0.0, 100.0),
              dynamic=True),
    ParamSpec("scale.ground_roi", [0.55, 1.0, 0.1, 0.9], "Ground region for the plane fit, as fractions of the "
              "image: [top, bottom, left, right].", dynamic=True),
    ParamSpec("scale.max_tilt_deg", 25.0, "Largest angle between the ground normal and the camera's y axis "
              "(optical frame, down) that a plane fit accepts.", float_range=(1.0, 89.0), dynamic=True),
    ParamSpec("scale.smoothing", 0.1, "Weight of each new frame in the exponential smoothing of the log-scale "
              "(1 = no smoothing).", float_range=(0.001, 1.0), dynamic=True),
    ParamSpec("scale.converge_frames", 10, "The camera_height scale has converged when this many consecutive "
              "ground-fit measurements lie within scale.converge_tolerance of their median.", int_range=(2, 10000)),
    ParamSpec("scale.converge_tolerance", 0.05, "Largest relative deviation from the median for convergence "
              "(0.05 = 5 %).", float_range=(0.001, 0.5)),
    ParamSpec("scale.freeze", False, "Freeze the camera_height scale at the median of the convergence window the "
              "first time it converges, and keep it constant (for SLAM). Re-arm with a message on "
              "'depth/scale/rearm'."),
    ParamSpec("scale.withhold", False, "Publish no depth, clouds, scan or image until the scale is metric (the "
              "first ground fit in camera_height mode; with scale.freeze, until it is frozen). depth/scale is "
              "always published."),
    # Input
    ParamSpec("image_transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); compressed: subscribe to "
              "'<image>/compressed' (sensor_msgs/CompressedImage, jpeg or png), where <image> is the name 'image' "
              "resolves to (with the node's namespace and remappings).", choices=("raw", "compressed")),
    ParamSpec("max_input_pixels", 4096 * 2160, "Largest camera image (width x height) processed at its own "
              "resolution; a larger one is downscaled by the smallest integer factor that fits, while it is decoded "
              "(before any full-resolution float work; a JPEG is decoded at 1/2, 1/4 or 1/8 scale), and its "
              "intrinsics follow. The default covers 4K (4096x2160). 0 = no limit.",
              int_range=(0, 1 << 31), dynamic=True),
    ParamSpec("intrinsics_source", "auto", "Which CameraInfo matrix gives the intrinsics of the (rectified) input: "
              "P, K, or auto (P when it is set, else K).", choices=INTRINSICS_SOURCES, dynamic=True),
    ParamSpec("intrinsics.fx", 0.0, "Fallback focal length x in pixels, used when no camera_info has arrived "
              "(0 = no fallback).", dynamic=True),
    ParamSpec("intrinsics.fy", 0.0, "Fallback focal length y in pixels.", dynamic=True),
    ParamSpec("intrinsics.cx", 0.0, "Fallback principal point x in pixels.", dynamic=True),
    ParamSpec("intrinsics.cy", 0.0, "Fallback principal point y in pixels.", dynamic=True),
    ParamSpec("intrinsics.width", 0, "Image width the fallback intrinsics refer to (0 = the incoming image's); "
              "other image sizes get scaled intrinsics.", int_range=(0, 100000), dynamic=True),
    ParamSpec("intrinsics.height", 0, "Image height the fallback intrinsics refer to (0 = the incoming image's).",
              int_range=(0, 100000), dynamic=True),
    # Outputs
    ParamSpec("publish.depth", True, "Publish 'depth/image'.", dynamic=True),
    ParamSpec("publish.camera_info", True, "Publish 'depth/camera_info' (needs intrinsics).", dynamic=True),
    ParamSpec("publish.points", True, "Publish 'points' (needs intrinsics).", dynamic=True),
    ParamSpec("publish.colored", False, "Publish 'depth/colored' (rgb8, for viewing).", dynamic=True),
    ParamSpec("publish.obstacles", False, "Publish 'points/obstacles': the points inside the obstacle band "
              "(ground.min_height .. ground.max_height above the ground plane). Needs a metric scale.mode and a "
              "ground plane (ground.plane).", dynamic=True),
    ParamSpec("publish.ground", False, "Publish 'points/ground': the points within ground.min_height of the ground "
              "plane. Needs a metric scale.mode and a ground plane.", dynamic=True),
    ParamSpec("publish.scan", False, "Publish 'scan' (sensor_msgs/LaserScan): the obstacle band's nearest point "
              "per bearing, in the camera's levelled frame (scan.frame_id). Needs a metric scale.mode and a ground "
              "plane.", dynamic=True),
    ParamSpec("publish.scale", True, "Publish 'depth/scale' (diagnostic_msgs/DiagnosticArray stamped like the "
              "frame): the scale's value and state (mode, metric, converged, frozen, withheld, counters).",
              dynamic=True),
    ParamSpec("publish.rgb", False, "Republish the input image at the depth's resolution with the same header on "
              "'rgb/image' (rgb8), and its intrinsics on 'rgb/camera_info', so RGB-D SLAM (RTAB-Map) pairs "
              "image, depth and camera_info by exact stamp.", dynamic=True),
    ParamSpec("depth.encoding", "32FC1", "32FC1: metres with the REP 117 values (+inf beyond depth.max_range, "
              "-inf nearer than depth.min_range, NaN where there is no measurement). 16UC1: millimetres, 0 for "
              "every invalid pixel (REP 118).", choices=DEPTH_ENCODINGS, dynamic=True),
    ParamSpec("depth.min_range", 0.0, "Depth nearer than this many metres is -inf in 32FC1, 0 in 16UC1 "
              "(0 = no minimum).", float_range=(0.0, 1e6), dynamic=True),
    ParamSpec("depth.max_range", 0.0, "Depth beyond this many metres is +inf in 32FC1, 0 in 16UC1 "
              "(0 = no limit).", float_range=(0.0, 1e6), dynamic=True),
    ParamSpec("points.decimation", 1, "Keep every n-th row and column of the depth for the clouds (points, "
              "points/obstacles, points/ground) and the scan.", int_range=(1, 64), dynamic=True),
    ParamSpec("points.xyzrgb", False, "Add the camera colour to 'points' (field rgb, PCL packing).", dynamic=True),
    ParamSpec("points.min_range", 0.0, "Points nearer than this many metres from the camera (Euclidean) are -inf "
              "along their ray (0 = no minimum).", float_range=(0.0, 1e6), dynamic=True),
    ParamSpec("points.max_range", 8.0, "Points farther than this many metres from the camera (Euclidean) are far: "
              "see points.far_mode (0 = no limit). Nav2's guidance for learned depth is about 8 m. The obstacle "
              "and ground clouds keep only points within points.min_range .. points.max_range.",
              float_range=(0.0, 1e6), dynamic=True),
    ParamSpec("points.far_mode", "inf", "Far points (beyond points.max_range, the sky included) in 'points': inf "
              "(+inf along their ray, REP 117) or clearing (a point points.clearing_distance metres along their "
              "ray, so a costmap raytraces free space through them and clears stale obstacles).",
              choices=FAR_MODES, dynamic=True),
    ParamSpec("points.clearing_distance", 0.0, "Length of a clearing ray in metres (points.far_mode clearing; "
              "0 = points.max_range). Keep the costmap's obstacle_max_range below it and its raytrace_max_range "
              "at it.", float_range=(0.0, 1e6), dynamic=True),
    # Ground-aware outputs
    ParamSpec("ground.plane", "auto", "Ground plane of points/obstacles, points/ground and scan: fit (the "
              "ground-plane fit of scale.mode camera_height), mounting (scale.camera_height below the camera, "
              "pitched by ground.pitch_deg and rolled by ground.roll_deg) or auto (the fit in camera_height mode, "
              "the mounting plane until the first fit; the mounting plane otherwise).", choices=GROUND_PLANES,
              dynamic=True),
    ParamSpec("ground.pitch_deg", 0.0, "Camera pitch for the mounting plane, degrees, positive looking down.",
              float_range=(-89.0, 89.0), dynamic=True),
    ParamSpec("ground.roll_deg", 0.0, "Camera roll about its optical axis for the mounting plane, degrees.",
              float_range=(-89.0, 89.0), dynamic=True),
    ParamSpec("ground.min_height", 0.1, "Bottom of the obstacle band, metres above the ground; points within it of "
              "the ground plane (either side) are ground.", float_range=(0.0, 100.0), dynamic=True),
    ParamSpec("ground.max_height", 2.0, "Top of the obstacle band, metres above the ground.",
              float_range=(0.0, 100.0), dynamic=True),
    ParamSpec("scan.frame_id", "", "frame_id of 'scan': a frame at the camera's optical centre with x forward, "
              "y left, z up, levelled with the ground. Empty: the image's frame_id without '_optical' (e.g. "
              "camera_color_optical_frame -> camera_color_frame), right for a camera mounted level.", dynamic=True),
    ParamSpec("scan.range_min", 0.1, "range_min of 'scan' (horizontal metres); nearer obstacles only: -inf.",
              float_range=(0.0, 1e6), dynamic=True),
    ParamSpec("scan.range_max", 8.0, "range_max of 'scan' (horizontal metres); no obstacle nearer: +inf.",
              float_range=(0.0, 1e6), dynamic=True),
    ParamSpec("scan.beams", 0, "Number of beams of 'scan' (0 = one per pixel width at the image centre).",
              int_range=(0, 100000), dynamic=True),
    ParamSpec("colored.max_depth", 0.0, "Depth at the far end of the colour map in metres (0 = per-frame "
              "percentiles).", dynamic=True),
    # QoS
    ParamSpec("qos.input.reliability", "best_effort", "Reliability of the image and camera_info subscriptions. "
              "best_effort (SensorDataQoS) accepts both reliable and best-effort cameras.", choices=RELIABILITY),
    ParamSpec("qos.input.depth", 5, "History depth of the input subscriptions.", int_range=(1, 1000)),
    ParamSpec("qos.output.reliability", "reliable", "Reliability of the publishers. reliable is accepted by both "
              "best-effort (Nav2 SensorDataQoS) and reliable (RViz default) subscribers.", choices=RELIABILITY),
    ParamSpec("qos.output.durability", "volatile", "Durability of the publishers.", choices=DURABILITY),
    ParamSpec("qos.output.depth", 1, "History depth of the publishers.", int_range=(1, 1000)),
    # Diagnostics
    ParamSpec("diagnostics.period", 1.0, "Seconds between two /diagnostics reports (diagnostic_msgs/DiagnosticArray; "
              "0 = none). Each report covers the frames since the previous one.", float_range=(0.0, 3600.0)),
    ParamSpec("diagnostics.falling_behind", 0.2, "Fraction of the received frames dropped (replaced before the "
              "worker took them) above which the report says the node is falling behind (WARN).",
              float_range=(0.0, 1.0), dynamic=True),
    ParamSpec("diagnostics.no_frames_sec", 5.0, "Seconds without a frame while a camera publisher is matched "
              "before the report says frames do not arrive (ERROR, with the likely cause).",
              float_range=(0.1, 3600.0), dynamic=True),
    # Misc
    ParamSpec("warmup", True, "Run the network once at start so the first frame is not slow."),
    ParamSpec("log_throttle_sec", 5.0, "Minimum interval between two log messages about the same problem.",
              float_range=(0.0, 3600.0), dynamic=True),
)


SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}

#: Why a parameter without ``dynamic`` cannot change while the node runs (the text of a refused change).
STATIC_REASON = ("it is read when the node starts (model, backend, input and output set-up, subscriptions, QoS); "
                 "restart the node with the new value, or with depth_lifecycle_node: deactivate, cleanup, set it, "
                 "configure")

_TYPE_NAMES = {bool: "bool (true or false)", int: "integer (e.g. 2)", float: "double (with a decimal point, e.g. "
               "28.0 for 28)", str: "string", list: "double array (e.g. [0.5, 1.0, 0.1, 0.9])"}


class NodeConfigError(ValueError):
    """A parameter value the node cannot start with; the text names the parameter."""


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The descriptor ``spec`` is declared with: description, choices as a constraint text, ranges, and whether it
    can change at runtime (in the constraint text: changes of the other parameters are refused with the reason,
    not by ``read_only``, so that a lifecycle node can take them while unconfigured)."""
    desc = ParameterDescriptor(name=spec.name, description=spec.description)
    constraints = []
    if spec.choices:
        constraints.append("one of: " + ", ".join(spec.choices))
    constraints.append("can change at runtime" if spec.dynamic else "set at start (changes while running are "
                                                                     "refused)")
    desc.additional_constraints = "; ".join(constraints)
    if spec.int_range is not None:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    if spec.float_range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.float_range[0]),
                                                        to_value=float(spec.float_range[1]), step=0.0)]
    return desc


def declare_parameters(node) -> dict:
    """Declare every spec of :data:`PARAMETERS` on ``node`` and return the values (name -> value).

    Raises:
        NodeConfigError: an override (``-p``, a YAML file, ``parameter_overrides``) of the wrong type, e.g.
            ``-p scale.factor:=28`` (an integer for a double), or outside the spec's range; the text names the
            parameter and the type or range it needs.
    """
    for spec in PARAMETERS:
        try:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        except InvalidParameterTypeException as exc:
            raise NodeConfigError(f"parameter '{spec.name}' must be a {_TYPE_NAMES[type(spec.default)]}: {exc}"
                                  ) from None
        except InvalidParameterValueException as exc:
            raise NodeConfigError(f"parameter '{spec.name}': {exc}") from None
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}


def refuse_change(current: dict, changes: dict, running: bool) -> str | None:
    """Why ``changes`` (name -> new value) cannot be applied to the parameters ``current``, or None when they can.

    While ``running`` only specs with ``dynamic`` may change; every change must pass :func:`check_params` with the
    other values (types and ranges are checked by rclpy against the descriptors before this is asked).
    """
    if running:
        static = [name for name in changes if name in SPECS and not SPECS[name].dynamic]
        if static:
            return f"parameter '{static[0]}' cannot change while the node runs: {STATIC_REASON}"
    try:
        check_params({**current, **changes})
    except NodeConfigError as exc:
        return str(exc)
    return None


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
    roi = [float(v) for v in p["scale.ground_roi"]]
    if len(roi) != 4 or not (0 <= roi[0] < roi[1] <= 1 and 0 <= roi[2] < roi[3] <= 1):
        raise NodeConfigError(f"parameter 'scale.ground_roi' must be 4 fractions [top, bottom, left, right] with "
                              f"0 <= top < bottom <= 1 and 0 <= left < right <= 1, got {list(p['scale.ground_roi'])}")
    for name in ("intrinsics.fx", "intrinsics.fy"):
        if p[name] < 0:
            raise NodeConfigError(f"parameter '{name}': {p[name]} is negative (0 = no fallback intrinsics)")
    _check_ranges(p)
    for name in ("input_height", "input_width"):
        if p[name] % 32:
            raise NodeConfigError(f"parameter '{name}': {p[name]} is not a multiple of 32")
    if bool(p["input_height"]) != bool(p["input_width"]):
        raise NodeConfigError("parameters 'input_height' and 'input_width' must both be set or both be 0")


GROUND_OUTPUTS = ("publish.obstacles", "publish.ground", "publish.scan")


def _check_ranges(p: dict) -> None:
    """The output ranges and the ground-aware outputs' requirements."""
    for lo, hi in (("depth.min_range", "depth.max_range"), ("points.min_range", "points.max_range")):
        if p[hi] > 0 and p[lo] >= p[hi]:
            raise NodeConfigError(f"parameter '{lo}' ({p[lo]}) must be smaller than '{hi}' ({p[hi]})")
    if p["points.far_mode"] == "clearing" and not p["points.max_range"] > 0:
        raise NodeConfigError("parameter 'points.far_mode' clearing needs 'points.max_range' > 0 (the far points "
                              "are those beyond it)")
    if p["ground.min_height"] >= p["ground.max_height"]:
        raise NodeConfigError(f"parameter 'ground.min_height' ({p['ground.min_height']}) must be smaller than "
                              f"'ground.max_height' ({p['ground.max_height']})")
    if p["scan.range_min"] >= p["scan.range_max"]:
        raise NodeConfigError(f"parameter 'scan.range_min' ({p['scan.range_min']}) must be smaller than "
                              f"'scan.range_max' ({p['scan.range_max']})")
    wanted = [name for name in GROUND_OUTPUTS if p[name]]
    if not wanted:
        return
    if p["scale.mode"] == "none":
        raise NodeConfigError(f"parameters {', '.join(wanted)}: the ground-aware outputs need metric depth; set "
                              f"scale.mode to fixed or camera_height")
    fit = p["scale.mode"] == "camera_height"
    mounting = p["scale.camera_height"] > 0
    plane = p["ground.plane"]
    if (plane == "fit" and not fit) or (plane == "mounting" and not mounting) or (plane == "auto" and not
                                                                                  (fit or mounting)):
        raise NodeConfigError(f"parameters {', '.join(wanted)}: no ground plane: ground.plane '{plane}' needs "
                              + ("scale.mode camera_height" if plane == "fit" else "scale.camera_height > 0"
                                 if plane == "mounting" else "scale.mode camera_height or scale.camera_height > 0"))
