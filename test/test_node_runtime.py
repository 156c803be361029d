"""The node's runtime behaviour in a real rclpy graph (loopback only; DDS domain 150): the lifecycle variant driven
through lifecycle_msgs services, parameters changed through rcl_interfaces services, /diagnostics, camera_info
that goes bad, frames above max_input_pixels, and the executables' start errors and shutdown.

Frames are the real KITTI frames of ../shared (the fixtures and the output checks of test_depth_node); expected
values are independent: the published K is the calibration's (resized by camera.resize_K where the image is),
the cloud projects onto its pixels with it, a fixed scale factor changes the depth by exactly its ratio.
"""
import re
import time

import cv2
import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from diagnostic_msgs.msg import DiagnosticArray

from dna_depth_core.camera import resize_K
from dna_depth_core.ros_images import decode_depth
from dna_depth_ros.harness import Graph, NodeProcess, stamp_key
from dna_depth_ros.lifecycle_node import DepthLifecycleNode
from test_depth_node import _check_outputs, _header, _send

DOMAIN_ID = 150

pytestmark = pytest.mark.ros


@pytest.fixture
def graph():
    with Graph(domain_id=DOMAIN_ID) as g:
        yield g


def _call(graph, client, request, timeout=60.0):
    graph.wait_for(lambda: client.service_is_ready(), timeout, what=f"service {client.srv_name}")
    future = client.call_async(request)
    graph.wait_for(future.done, timeout, what=f"answer of {client.srv_name}")
    return future.result()


def _collect_all(graph, ns):
    graph.collect(f"{ns}/depth/image", Image)
    graph.collect(f"{ns}/depth/camera_info", CameraInfo)
    graph.collect(f"{ns}/points", PointCloud2)


# ----------------------------------------------------------------------------------------------------------------
# Lifecycle
# ----------------------------------------------------------------------------------------------------------------
def test_lifecycle_node_through_its_services(graph, checkpoint, kitti, tmp_path):
    ns = "/life"
    node = graph.add_node(DepthLifecycleNode(context=graph.context, namespace=ns, parameter_overrides=[
        Parameter("weights", value=str(tmp_path / "missing.safetensors")), Parameter("log_throttle_sec", value=0.0),
        Parameter("diagnostics.period", value=0.5)]))
    change = graph.tester.create_client(ChangeState, f"{ns}/dna_depth/change_state")
    get = graph.tester.create_client(GetState, f"{ns}/dna_depth/get_state")

    def state():
        return _call(graph, get, GetState.Request()).current_state.id

    def transition(tid):
        return _call(graph, change, ChangeState.Request(transition=Transition(id=tid))).success

    _collect_all(graph, ns)
    camera = graph.camera(ns)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED and node.runtime.estimator is None
    # A bad weights path fails configure; the node stays unconfigured and takes a new value (any parameter
    # can change while unconfigured), then configures.
    assert not transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    set_params = graph.tester.create_client(SetParameters, f"{ns}/dna_depth/set_parameters")
    res = _call(graph, set_params, SetParameters.Request(parameters=[_param("weights", checkpoint)]))
    assert res.results[0].successful, res.results[0].reason
    assert transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_INACTIVE and node.runtime.estimator is not None
    # Inactive: the model is loaded, the image is not subscribed, nothing is published.
    time.sleep(1.0)
    assert camera.image.get_subscription_count() == 0 and camera.info.get_subscription_count() == 1
    assert graph.tester.count_publishers(f"{ns}/depth/image") == 1
    assert node.runtime.last_report is not None and node.runtime.last_report.message.startswith("inactive")

    for round_ in range(2):  # activate -> frames -> deactivate, twice: the model stays loaded in between
        estimator = node.runtime.estimator
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        camera.wait_matched()
        graph.wait_for(node.runtime.has_subscribers, what="the node's subscribers")
        stamp = graph.send_until_answered(lambda: _send(camera, kitti, 10 * round_ + len(camera.sent)),
                                          [f"{ns}/depth/image", f"{ns}/points"], timeout=60.0, every=5.0)
        _check_outputs(graph, ns, stamp, kitti["K"], kitti["size"], max_range=8.0)
        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert node.runtime.estimator is estimator and not node.runtime.worker.running
        graph.wait_for(lambda: camera.image.get_subscription_count() == 0, what="the image unsubscribed")
        processed = node.stats.processed
        _send(camera, kitti, 99)
        time.sleep(0.5)
        assert node.stats.processed == processed

    # Cleanup frees the model and the publishers; configure again loads it.
    assert transition(Transition.TRANSITION_CLEANUP)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED and node.runtime.estimator is None
    graph.wait_for(lambda: graph.tester.count_publishers(f"{ns}/depth/image") == 0, what="publishers destroyed")
    assert transition(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
    assert node.stats.rejected == 0 and node.stats.failed == 0


# ----------------------------------------------------------------------------------------------------------------
# Parameters at runtime
# ----------------------------------------------------------------------------------------------------------------
def _param(name, value):
    if isinstance(value, bool):
        v = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    elif isinstance(value, int):
        v = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    elif isinstance(value, float):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    elif isinstance(value, list):
        v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
    else:
        v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
    return ParameterMsg(name=name, value=v)


def test_parameters_change_at_runtime_within_their_specs(graph, checkpoint, kitti):
    ns = "/dyn"
    node = graph.start_node(ns, {"weights": checkpoint, "log_throttle_sec": 0.0, "scale.mode": "fixed",
                                 "scale.factor": 28.0, "points.max_range": 0.0})
    _collect_all(graph, ns)
    client = graph.tester.create_client(SetParameters, f"{ns}/dna_depth/set_parameters")
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)

    def set_(**values):
        req = SetParameters.Request(parameters=[_param(k.replace("__", "."), v) for k, v in values.items()])
        return [(r.successful, r.reason) for r in _call(graph, client, req).results]

    def frame(i):
        # The same image under a new stamp until the node answers on depth and points.
        def send():
            return camera.send(kitti["frames"][0], _header(i + len(camera.sent)), info=kitti["info"],
                               encoding="bgr8")
        return graph.send_until_answered(send, [f"{ns}/depth/image", f"{ns}/points"], timeout=60.0, every=5.0)

    s1 = frame(0)
    (d1,) = graph.messages(f"{ns}/depth/image", s1)
    # scale.factor 28 -> 14 (a power-of-two ratio: exact in float32) and a decimated cloud.
    assert set_(scale__factor=14.0, points__decimation=2) == [(True, ""), (True, "")]
    s2 = frame(100)
    (d2,) = graph.messages(f"{ns}/depth/image", s2)
    np.testing.assert_array_equal(decode_depth(d2) * 2, decode_depth(d1))
    _check_outputs(graph, ns, s2, kitti["K"], kitti["size"], decimation=2)
    # An output appears and disappears with its publish.* parameter.
    assert set_(publish__colored=True, publish__points=False) == [(True, ""), (True, "")]
    graph.wait_for(lambda: graph.tester.count_publishers(f"{ns}/depth/colored") == 1, what="depth/colored")
    graph.wait_for(lambda: graph.tester.count_publishers(f"{ns}/points") == 0, what="points gone")
    assert node.pub_points is None and node.pub_colored is not None

    # Refused, with the reason: a start-only parameter, a value outside the choices, the range, or the type.
    (ok, reason), = set_(weights="/other.safetensors")
    assert not ok and "parameter 'weights' cannot change while the node runs" in reason
    (ok, reason), = set_(depth__encoding="8UC1")
    assert not ok and reason == "parameter 'depth.encoding': '8UC1' is not one of 32FC1, 16UC1"
    (ok, reason), = set_(points__decimation=0)
    assert not ok and "points.decimation" in reason
    (ok, reason), = set_(scale__factor=28)
    assert not ok and "type" in reason.lower()
    assert node.params["weights"] == checkpoint and node.params["points.decimation"] == 2
    assert node.estimator.scale_factor == 14.0


# ----------------------------------------------------------------------------------------------------------------
# /diagnostics
# ----------------------------------------------------------------------------------------------------------------
def test_diagnostics_in_a_graph(graph, checkpoint, kitti):
    reports = {}

    def on_diag(msg):
        for status in msg.status:
            reports.setdefault(status.name, []).append(status)

    graph.tester.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
    # A node whose camera sends images but no camera_info, and a reliable node fed by a best-effort camera.
    ok = graph.start_node("/diag_ok", {"weights": checkpoint, "diagnostics.period": 0.5})
    mismatch = graph.start_node("/diag_qos", {"weights": checkpoint, "diagnostics.period": 0.5,
                                              "qos.input.reliability": "reliable"})
    silent = graph.start_node("/diag_silent", {"weights": checkpoint, "diagnostics.period": 0.5,
                                               "diagnostics.no_frames_sec": 1.0})
    for ns in ("/diag_ok", "/diag_qos", "/diag_silent"):
        graph.collect(f"{ns}/depth/image", Image)
    cam_ok = graph.camera("/diag_ok", info_topic=None)
    graph.camera("/diag_qos", reliable=False)  # a best-effort camera for the reliable node
    cam_silent = graph.camera("/diag_silent")
    cam_ok.wait_matched()
    cam_silent.wait_matched()
    graph.wait_node_ready(ok)
    graph.send_until_answered(lambda: _send(cam_ok, kitti, len(cam_ok.sent), info=False), ["/diag_ok/depth/image"])

    def latest(name, pred):
        return graph.wait_for(lambda: next((s for s in reversed(reports.get(name, [])) if pred(s)), None),
                              timeout=30.0, what=f"a matching report of {name}")

    s = latest("/diag_ok/dna_depth: depth estimation", lambda s: dict((v.key, v.value) for v in s.values)
               .get("processed", "0") != "0")
    values = {v.key: v.value for v in s.values}
    assert s.level == b"\x01" and "no camera_info: publishing depth only" in s.message
    assert values["backend"] == ok.estimator.backend.name and values["device"] == "cpu"
    assert values["input topic"] == "/diag_ok/image" and values["camera publishers (matched/total)"] == "1/1"
    assert s.hardware_id == f"{ok.estimator.backend.name} on cpu"
    # QoS mismatch: named, with the fix.
    s = latest("/diag_qos/dna_depth: depth estimation", lambda s: s.level == b"\x02")
    assert "QoS mismatch" in s.message and "qos.input.reliability: best_effort" in s.message
    # A matched camera that sends camera_info but no image: the transport is named.
    for _ in range(30):
        cam_silent.info.publish(kitti["info"])
        time.sleep(0.1)
    s = latest("/diag_silent/dna_depth: depth estimation",
               lambda s: s.level == b"\x02" and "camera_info arrives" in s.message)
    assert "likely cause: the transport" in s.message
    assert mismatch.stats.received == 0 and silent.stats.received == 0


# ----------------------------------------------------------------------------------------------------------------
# camera_info gone bad; frames above max_input_pixels
# ----------------------------------------------------------------------------------------------------------------
def test_bad_camera_info_keeps_the_last_good_K_and_big_frames_are_downscaled(graph, checkpoint, kitti):
    ns = "/big"
    # 1242x375 is above this limit: decoded at 1/2 (621x187).
    node = graph.start_node(ns, {"weights": checkpoint, "log_throttle_sec": 0.0,
                                 "max_input_pixels": 1242 * 375 // 3})
    _collect_all(graph, ns)
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)
    size2 = (621, 187)
    K2 = resize_K(kitti["K"], kitti["size"], size2)
    stamp = graph.send_until_answered(lambda: _send(camera, kitti, len(camera.sent)), [f"{ns}/points"])
    _check_outputs(graph, ns, stamp, K2, size2, max_range=8.0)

    # camera_info goes bad (a normalised P: fx = 1): the last good intrinsics stay in use, the problem is counted.
    bad = CameraInfo()
    bad.width, bad.height = kitti["size"]
    bad.k = kitti["info"].k
    bad.p = (np.asarray(kitti["info"].p) / 721.5377).tolist()
    bad.d = kitti["info"].d

    def send_bad():
        i = 100 + len(camera.sent)
        return camera.send(kitti["frames"][0], _header(i), info=bad, encoding="bgr8")
    stamp = graph.send_until_answered(send_bad, [f"{ns}/points"])
    _check_outputs(graph, ns, stamp, K2, size2, max_range=8.0)
    assert node.runtime.intrinsics.problems["camera_info.K_P"] >= 1

    # A compressed PNG above the limit follows the same rule (its size read from its header).
    comp = graph.start_node("/bigc", {"weights": checkpoint, "image_transport": "compressed",
                                      "max_input_pixels": 1242 * 375 // 3})
    _collect_all(graph, "/bigc")
    ccam = graph.camera("/bigc", compressed=True)
    ccam.wait_matched()
    graph.wait_node_ready(comp)
    ok, png = cv2.imencode(".png", kitti["frames"][3])

    def send_png():
        i = 200 + len(ccam.sent)
        msg = CompressedImage(header=_header(i), format="png", data=png.tobytes())
        return ccam.send(msg=msg, stamp=_header(i), info=kitti["info"])
    stamp = graph.send_until_answered(send_png, ["/bigc/points"])
    _check_outputs(graph, "/bigc", stamp, K2, size2, max_range=8.0)
    assert node.stats.failed == 0 and comp.stats.failed == 0


# ----------------------------------------------------------------------------------------------------------------
# The executables: start errors, backend warnings, shutdown
# ----------------------------------------------------------------------------------------------------------------
def test_executables_start_errors_warnings_and_clean_shutdown(graph, checkpoint):
    cases = {
        "parameter 'scale.factor' must be a double": {"scale.factor": 28},
        "parameter 'points.decimation'": {"points.decimation": 0},
        "parameter 'publish.points' must be a bool": {"publish.points": "maybe"},
    }
    for executable in ("depth_node", "depth_lifecycle_node"):
        for message, params in cases.items():
            with NodeProcess(params={"weights": checkpoint, **params}, domain_id=DOMAIN_ID,
                             executable=executable) as proc:
                code, out = proc.wait(timeout=120)
            assert code == 1, out
            assert re.search(r"\[FATAL\] .*\[dna_depth\]: cannot start: " + re.escape(message), out), out
            assert "Traceback" not in out, out

    # A backend warning goes through the node's logger; Ctrl-C stops the node cleanly.
    with NodeProcess(namespace="/proc_ok", params={"weights": checkpoint, "backend": "torch", "fp16": True},
                     domain_id=DOMAIN_ID) as proc:
        # Active: the node logs it once its image subscription exists (a Ctrl-C before that ends the start-up).
        graph.wait_for(lambda: "active: subscribed to" in proc.output or not proc.alive(),
                       timeout=120, what="the node process")
        assert proc.alive(), proc.output
        code, out = proc.stop(timeout=60)
    assert code == 0, out
    assert re.search(r"\[WARN\] .*\[proc_ok.dna_depth\]: UserWarning: fp16 requested on the CPU: ignored", out), out
    assert "frames: received 0" in out
    assert "Failed to publish log message to rosout" not in out and "Traceback" not in out, out
    assert stamp_key((1, 2)) == (1, 2)
