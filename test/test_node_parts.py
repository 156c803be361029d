"""Pieces of the node without a graph: the parameter specs and their runtime rules, the diagnostics logic, the
camera_info store's per-problem logging, Python warnings through the logger, the output publishers' toggling.

Values are known independently: rates and percentiles are computed by hand from the counts and latencies fed
in; CameraInfo problems are the core's keys for hand-made bad messages.
"""
import array
import warnings

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from dna_depth_core.camera import resize_K
from dna_depth_ros.diagnostics import ERROR, OK, WARN, CameraLink, DiagnosticsMonitor, Inputs, to_message
from dna_depth_ros.intrinsics import IntrinsicsStore
from dna_depth_ros.outputs import OUTPUT_TOPICS, Outputs
from dna_depth_ros.params import PARAMETERS, SPECS, NodeConfigError, check_params, refuse_change
from dna_depth_ros.throttle import ThrottledLogger, WarningsToLogger

pytestmark = pytest.mark.ros


class Sink:
    """A logger that keeps its lines."""

    def __init__(self):
        self.lines = []

    def error(self, m):
        self.lines.append(("error", m))

    def warning(self, m):
        self.lines.append(("warning", m))

    def info(self, m):
        self.lines.append(("info", m))


def _defaults(**changes):
    p = {spec.name: spec.default for spec in PARAMETERS}
    p["weights"] = "/x.safetensors"
    p.update(changes)
    return p


# ----------------------------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------------------------
def test_runtime_changes_follow_the_specs():
    p = _defaults()
    # Dynamic parameters change while running; the checks of check_params still apply.
    assert refuse_change(p, {"points.decimation": 4, "scale.factor": 2.5, "publish.colored": True}, True) is None
    assert "cannot change while the node runs" in refuse_change(p, {"weights": "/y.safetensors"}, True)
    assert "cannot change while the node runs" in refuse_change(p, {"qos.input.reliability": "reliable"}, True)
    # ... but they can while a lifecycle node is unconfigured.
    assert refuse_change(p, {"weights": "/y.safetensors", "qos.input.reliability": "reliable"}, False) is None
    assert refuse_change(p, {"depth.encoding": "8UC1"}, True) == \
        "parameter 'depth.encoding': '8UC1' is not one of 32FC1, 16UC1"
    assert "0 <= top < bottom <= 1" in refuse_change(p, {"scale.ground_roi": [0.9, 0.5, 0.0, 1.0]}, True)
    assert "must be > 0 metres" in refuse_change(_defaults(**{"scale.mode": "camera_height",
                                                              "scale.camera_height": 1.2}),
                                                 {"scale.camera_height": 0.0}, True)
    with pytest.raises(NodeConfigError, match="intrinsics.fx.*negative"):
        check_params(_defaults(**{"intrinsics.fx": -1.0}))
    # The runtime set is what docs/ros.md promises.
    dynamic = {s.name for s in PARAMETERS if s.dynamic}
    assert {"depth.max_range", "points.decimation", "points.max_range", "scale.factor", "scale.camera_height",
            "colored.max_depth", "publish.depth", "publish.points", "publish.colored", "max_input_pixels"} <= dynamic
    assert not dynamic & {"weights", "backend", "device", "input_height", "image_transport", "scale.mode",
                          "qos.input.reliability", "qos.output.reliability", "diagnostics.period"}
    assert SPECS["max_input_pixels"].default == 4096 * 2160


# ----------------------------------------------------------------------------------------------------------------
# Diagnostics
# ----------------------------------------------------------------------------------------------------------------
def _inputs(now, **kw):
    base = dict(now=now, active=True, subscribed=True, received=0, processed=0, dropped=0, skipped=0, rejected=0,
                failed=0, rejected_reasons={}, latencies=[], since_frame=0.0,
                camera=CameraLink("/cam/image", "sensor_msgs/msg/Image", "best_effort",
                                  [("/camera", "sensor_msgs/msg/Image", "reliable")], 1),
                camera_info_received=0, camera_info_rejected=0, camera_info_problems=[], intrinsics="camera_info",
                scale={"mode": "fixed", "value": 2.0, "metric": True}, backend="onnxruntime", device="cpu",
                model="dna_b0")
    base.update(kw)
    return Inputs(**base)


def test_diagnostics_rates_latency_and_ok():
    mon = DiagnosticsMonitor()
    mon.update(_inputs(100.0))
    # 2 s later: 20 frames in, 18 processed, 1 dropped; camera_info 20. Latencies 10..100 ms.
    rep = mon.update(_inputs(102.0, received=20, processed=18, dropped=1, camera_info_received=20,
                             latencies=[0.01 * k for k in range(1, 11)]))
    values = dict(rep.values)
    assert rep.level == OK and rep.reasons == []
    assert values["input rate (Hz)"] == "10.00" and values["output rate (Hz)"] == "9.00"
    assert values["camera_info rate (Hz)"] == "10.00"
    # numpy's linear percentile of 10, 20, ..., 100 ms: p50 = 55, p90 = 91.
    assert values["latency p50 (ms)"] == "55.0" and values["latency p90 (ms)"] == "91.0"
    assert values["backend"] == "onnxruntime" and values["device"] == "cpu" and values["scale"] == "2"
    assert rep.message == "active: 10.0 Hz in, 9.0 Hz out"
    msg = to_message(rep, "/ns/dna_depth: depth estimation", "onnxruntime on cpu", _stamp())
    (status,) = msg.status
    assert status.level == b"\x00" and status.name == "/ns/dna_depth: depth estimation"
    assert {kv.key: kv.value for kv in status.values}["latency p90 (ms)"] == "91.0"


def _stamp():
    from builtin_interfaces.msg import Time
    return Time(sec=5, nanosec=0)


def test_diagnostics_levels_and_reasons():
    cam = CameraLink("/cam/image", "sensor_msgs/msg/Image", "reliable",
                     [("/camera", "sensor_msgs/msg/Image", "best_effort")], 0)
    mon = DiagnosticsMonitor()
    mon.update(_inputs(0.0, camera=cam))
    rep = mon.update(_inputs(1.0, camera=cam, since_frame=1.0))
    assert rep.level == ERROR and [r[0] for r in rep.reasons] == ["qos_mismatch"]
    assert "set qos.input.reliability: best_effort" in rep.message and "'/camera'" in rep.message

    wrong = CameraLink("/cam/image", "sensor_msgs/msg/Image", "best_effort",
                       [("/camera", "sensor_msgs/msg/CompressedImage", "reliable")], 0)
    mon = DiagnosticsMonitor()
    mon.update(_inputs(0.0, camera=wrong))
    assert "sends sensor_msgs/msg/CompressedImage" in mon.update(_inputs(1.0, camera=wrong)).message

    # Matched, camera_info at 10 Hz, no image for 6 s: the transport.
    mon = DiagnosticsMonitor(no_frames_sec=5.0)
    mon.update(_inputs(0.0))
    rep = mon.update(_inputs(2.0, since_frame=6.0, camera_info_received=20))
    assert rep.level == ERROR and [r[0] for r in rep.reasons] == ["no_frames"]
    assert "camera_info arrives at 10.0 Hz" in rep.message and "transport" in rep.message
    # ... under the limit: not yet.
    mon = DiagnosticsMonitor(no_frames_sec=5.0)
    mon.update(_inputs(0.0))
    assert mon.update(_inputs(2.0, since_frame=4.0, camera_info_received=20)).level == OK

    # Images at half camera_info's rate: lost in transit (WARN). Falling behind: 5 of 10 dropped.
    mon = DiagnosticsMonitor(falling_behind=0.2)
    mon.update(_inputs(0.0))
    rep = mon.update(_inputs(2.0, received=10, processed=5, dropped=5, camera_info_received=20,
                             latencies=[0.2] * 5))
    assert rep.level == WARN and [r[0] for r in rep.reasons] == ["lost_in_transit", "falling_behind"]
    assert "5 of 10 frames dropped (processing 2.5 Hz of a 5.0 Hz camera, 200 ms per frame)" in rep.message

    # Every frame rejected: ERROR naming the reason; no camera_info, camera_info rejected, scale not converged.
    mon = DiagnosticsMonitor()
    mon.update(_inputs(0.0, scale={"mode": "camera_height", "value": 1.0, "metric": False}))
    rep = mon.update(_inputs(1.0, received=10, rejected=10, rejected_reasons={"wrong step": 10},
                             intrinsics="none", camera_info_received=3, camera_info_rejected=3,
                             camera_info_problems=["camera_info.fx"],
                             scale={"mode": "camera_height", "value": 1.0, "metric": False}))
    assert rep.level == ERROR
    assert [r[0] for r in rep.reasons] == ["all_bad", "no_camera_info", "camera_info_rejected",
                                           "scale_not_converged"]
    assert "'wrong step'" in rep.message and "camera_info rejected (camera_info.fx): using no intrinsics" in \
        rep.message and "depth is not metric" in rep.message
    # The scale's own convergence flag wins when it is known.
    mon = DiagnosticsMonitor()
    mon.update(_inputs(0.0))
    rep = mon.update(_inputs(1.0, scale={"mode": "camera_height", "value": 1.3, "metric": True,
                                         "converged": False}))
    assert [r[0] for r in rep.reasons] == ["scale_not_converged"] and "not metric" not in rep.message

    # Inactive (lifecycle): OK whatever the camera does.
    mon = DiagnosticsMonitor()
    mon.update(_inputs(0.0, active=False, camera=cam))
    rep = mon.update(_inputs(1.0, active=False, camera=cam, since_frame=100.0))
    assert rep.level == OK and rep.message.startswith("inactive")


# ----------------------------------------------------------------------------------------------------------------
# CameraInfo: each problem its own key and line; the last good intrinsics stay
# ----------------------------------------------------------------------------------------------------------------
def _info(stamp, fx=721.5, cx=609.5, d=(0.0,) * 5, roi=None, binning=0):
    msg = CameraInfo(width=1242, height=375, distortion_model="plumb_bob", binning_x=binning, binning_y=binning)
    msg.header.stamp.sec = stamp
    K = np.array([[fx, 0, cx], [0, fx, 172.9], [0, 0, 1.0]])
    msg.k = K.reshape(-1).copy()
    msg.p = np.hstack([K, np.zeros((3, 1))]).reshape(-1)
    msg.d = array.array("d", d)
    if roi:
        msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = roi
    return msg


def test_camera_info_problems_are_logged_each_on_its_own_and_the_last_good_K_stays():
    sink = Sink()
    store = IntrinsicsStore("auto", None, ThrottledLogger(sink, period=60.0))
    assert store.add(_info(1))
    K_good = np.array([[721.5, 0, 609.5], [0, 721.5, 172.9], [0, 0, 1.0]])
    bad = [_info(2, fx=1e-30), _info(3, d=(0.0, float("nan"), 0, 0, 0)), _info(4, roi=(1000, 0, 500, 375)),
           _info(5, binning=100000), _info(6, fx=1e-30)]
    for msg in bad:
        assert not store.add(msg)
    keys = sorted(store.problems)
    assert store.problems["camera_info.D"] == 1 and store.problems["camera_info.roi"] == 1
    assert store.problems["camera_info.binning"] == 1 and store.rejected == 5 and store.received == 6
    # One line per kind within the throttle period (the repeated fx problem is held back), each naming it.
    lines = [m for level, m in sink.lines]
    assert len(lines) == len(keys)
    assert any("distortion D has non-finite values" in m for m in lines)
    assert any("ROI x=1000" in m for m in lines) and any("binning 100000x100000" in m for m in lines)
    # Meanwhile the last good intrinsics are used, for the bad messages' stamps too.
    class Header:
        class stamp:
            sec, nanosec = 2, 0
    np.testing.assert_allclose(store.lookup(Header, 1242, 375), K_good)
    np.testing.assert_allclose(store.lookup(Header, 621, 187), resize_K(K_good, (1242, 375), (621, 187)))


# ----------------------------------------------------------------------------------------------------------------
# Python warnings through the logger; publishers toggled at runtime
# ----------------------------------------------------------------------------------------------------------------
def test_python_warnings_go_through_the_node_logger():
    sink = Sink()
    route = WarningsToLogger(ThrottledLogger(sink, period=60.0)).install()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(3):
                warnings.warn("fp16 requested on the CPU: ignored", UserWarning)
    finally:
        route.uninstall()
    assert len(sink.lines) == 1  # throttled per text
    level, text = sink.lines[0]
    assert level == "warning" and text.startswith("UserWarning: fp16 requested on the CPU: ignored (")
    assert warnings.showwarning is not route._show


def test_outputs_create_and_destroy_publishers_as_publish_parameters_change():
    made, gone = [], []

    class Pub:
        def __init__(self, topic):
            self.topic_name = topic

        def get_subscription_count(self):
            return 1

        def publish(self, msg):
            made.append(("sent", self.topic_name, msg))

    params = _defaults()
    outputs = Outputs(lambda msg_type, topic: made.append(topic) or Pub(topic), gone.append, params, "stretch")
    # publish.colored, .obstacles, .ground, .scan and .rgb are false by default
    assert made == ["depth/image", "depth/camera_info", "depth/scale", "points"]
    params["publish.colored"], params["publish.points"] = True, False
    assert sorted(outputs.sync()) == ["colored", "points"]
    assert made[-1] == "depth/colored" and [p.topic_name for p in gone] == ["points"]
    # A message built for a publisher destroyed since is not sent.
    points = gone[0]
    outputs.publish([(points, "cloud"), (outputs.publishers["depth"], "depth")])
    assert made[-1] == ("sent", "depth/image", "depth") and ("sent", "points", "cloud") not in made
    outputs.close()
    assert outputs.enabled == [] and len(gone) == 5
    assert set(OUTPUT_TOPICS) == {"depth", "camera_info", "colored", "scale", "points", "obstacles", "ground", "scan",
                                  "rgb", "rgb_info"}
