"""The depth node in a real rclpy graph, on the real KITTI frames of ../shared/data/kitti_tiny.

The graph, the camera and the node process come from :mod:`dna_depth_ros.harness` (also used by
benchmarks/node_latency.py and the bag demo). DDS stays on loopback: the harness sets
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST before rclpy starts and passes it, with this module's own ROS_DOMAIN_ID, to
the node process; CI runs the suite inside a loopback-only network namespace (scripts/dev/run_tests.sh). Each test
uses its own namespace, so the graphs of different tests do not mix.
"""
import array
import itertools
import os
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from dna_depth_core.camera import resize_K
from dna_depth_core.ros_images import decode_depth
from dna_depth_ros import conversions as conv
from dna_depth_ros.harness import DEFAULT_OUTPUTS, Graph, NodeProcess, stamp_key
from conftest import FRAME_ID, NET_H, NET_W

DOMAIN_ID = 61  # this module's own DDS domain (passed explicitly: other test modules may set the variable too)

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------------
# Data and fixtures
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def graph():
    with Graph(domain_id=DOMAIN_ID) as g:
        yield g


def _header(i, frame_id=FRAME_ID):
    return Header(stamp=Time(sec=1_317_000_000 + i, nanosec=123_000 + i), frame_id=frame_id)


def _node(graph, checkpoint, ns, **params):
    return graph.start_node(ns, {"weights": checkpoint, "log_throttle_sec": 0.0, **params})


def _send(camera, kitti, i, msg=None, info=True):
    """Frame ``i`` (bgr8; or ``msg`` as given) with stamp ``_header(i)``, after the KITTI camera_info with the same
    header unless ``info`` is false. Returns the stamp key."""
    return camera.send(kitti["frames"][i % 7] if msg is None else None, _header(i),
                       info=kitti["info"] if info else None, msg=msg, encoding="bgr8")


def _check_outputs(graph, ns, stamp, K, size, max_range=0.0, encoding="32FC1", decimation=1):
    """Depth, camera_info and points for ``stamp``: encodings, shapes, stamps, frame ids, and the cloud projects
    back onto the depth image with the published intrinsics."""
    w, h = size
    (depth_msg,) = graph.messages(f"{ns}/depth/image", stamp)
    (info_msg,) = graph.messages(f"{ns}/depth/camera_info", stamp)
    (cloud_msg,) = graph.messages(f"{ns}/points", stamp)
    for m in (depth_msg, info_msg, cloud_msg):
        assert m.header.frame_id == FRAME_ID
        assert stamp_key(m) == stamp_key(stamp)
    assert (depth_msg.encoding, depth_msg.width, depth_msg.height) == (encoding, w, h)
    assert depth_msg.step == w * (4 if encoding == "32FC1" else 2)
    depth = decode_depth(depth_msg)
    assert np.isfinite(depth).mean() > 0.99
    assert (info_msg.width, info_msg.height) == (w, h)
    Kp = np.asarray(info_msg.k).reshape(3, 3)
    np.testing.assert_allclose(Kp, K, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(info_msg.p).reshape(3, 4)[:, :3], K, rtol=1e-9, atol=1e-9)
    assert not cloud_msg.is_dense
    assert (cloud_msg.height, cloud_msg.width) == (len(range(0, h, decimation)), len(range(0, w, decimation)))
    xyz, _ = conv.cloud_to_arrays(cloud_msg)
    # Every valid point projects onto its own pixel with the published K, at the published depth.
    ii, jj = np.mgrid[0:cloud_msg.height, 0:cloud_msg.width]
    v, u = ii * decimation, jj * decimation
    valid = np.isfinite(xyz).all(axis=2)
    assert valid.mean() > 0.3
    x, y, z = (xyz[..., k][valid].astype(np.float64) for k in range(3))
    np.testing.assert_allclose(Kp[0, 0] * x / z + Kp[0, 2], u[valid], atol=2e-3)
    np.testing.assert_allclose(Kp[1, 1] * y / z + Kp[1, 2], v[valid], atol=2e-3)
    # (16UC1 rounds to millimetres; the cloud keeps the unrounded depth.)
    np.testing.assert_allclose(z, depth[v[valid], u[valid]], rtol=1e-6 if encoding == "32FC1" else 0,
                               atol=1e-6 if encoding == "32FC1" else 5.001e-4)
    # Points that are not finite are exactly the invalid depths (NaN) and the ones beyond the maximum range
    # (+inf along their ray, REP 117).
    d = depth[v, u].astype(np.float64)
    rays = np.stack([(u - Kp[0, 2]) / Kp[0, 0], (v - Kp[1, 2]) / Kp[1, 1], np.ones_like(d)], -1)
    rng_ = d * np.linalg.norm(rays, axis=-1)
    expected = np.isfinite(d) & ((rng_ <= max_range * (1 - 1e-6)) if max_range > 0 else True)
    near_edge = np.abs(rng_ - max_range) < 1e-4 * max(max_range, 1)
    np.testing.assert_array_equal(valid[~near_edge], expected[~near_edge])
    np.testing.assert_array_equal(np.isnan(xyz[..., 2]), ~np.isfinite(d))
    np.testing.assert_array_equal(np.isposinf(xyz[..., 2])[~near_edge], (np.isfinite(d) & ~expected)[~near_edge])
    return depth, xyz


# ----------------------------------------------------------------------------------------------------------------
# In-process node
# ----------------------------------------------------------------------------------------------------------------
def test_in_process_reliable_and_best_effort_cameras(graph, checkpoint, kitti):
    ns = "/inproc"
    # A fixed scale puts this random-init network's depth near 5.5 m, so a 7 m range limit cuts the periphery.
    node = _node(graph, checkpoint, ns, **{"scale.mode": "fixed", "scale.factor": 28.0,
                                          "points.max_range": 7.0, "publish.colored": True})
    graph.collect(f"{ns}/depth/image", Image)                                   # reliable, like RViz
    graph.collect(f"{ns}/depth/camera_info", CameraInfo, qos_profile_sensor_data)  # best effort, like Nav2
    graph.collect(f"{ns}/points", PointCloud2, qos_profile_sensor_data)
    graph.collect(f"{ns}/depth/colored", Image)
    for reliable in (True, False):
        camera = graph.camera(ns, reliable=reliable)
        camera.wait_matched()
        graph.wait_node_ready(node)
        for i in range(3 if reliable else 2):
            idx = i + (0 if reliable else 3)
            stamp = _send(camera, kitti, idx)
            graph.wait_for(lambda: all(graph.messages(f"{ns}/{t}", stamp) for t in
                                       ("depth/image", "depth/camera_info", "points", "depth/colored")),
                           what=f"outputs of frame {idx} ({'reliable' if reliable else 'best-effort'} camera)")
            depth, xyz = _check_outputs(graph, ns, stamp, kitti["K"], kitti["size"], max_range=7.0)
            assert 3.0 < np.nanmedian(depth) < 7.0  # metres: 28 x the random network's ~0.2
            assert np.isposinf(xyz[..., 2]).any() and np.isfinite(xyz[..., 2]).any()  # the range limit bites
            (colored,) = graph.messages(f"{ns}/depth/colored", stamp)
            assert (colored.encoding, colored.width, colored.height) == ("rgb8", 1242, 375)
        camera.close()
    s = node.stats
    assert s.processed == 5 and s.rejected == 0 and s.failed == 0


def test_bad_messages_and_resolution_change_keep_the_node_serving(graph, checkpoint, kitti):
    ns = "/bad"
    node = _node(graph, checkpoint, ns)
    graph.collect(f"{ns}/depth/image", Image)
    graph.collect(f"{ns}/depth/camera_info", CameraInfo)
    graph.collect(f"{ns}/points", PointCloud2)
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)

    unknown = conv.rgb_to_image(kitti["frames"][0], _header(0), "rgb8")
    unknown.encoding = "yuv_weird"
    wrong_step = conv.rgb_to_image(kitti["frames"][0], _header(0), "rgb8")
    wrong_step.step = 1242 * 3 - 10
    truncated = conv.rgb_to_image(kitti["frames"][0], _header(0), "rgb8")
    truncated.data = truncated.data[: len(truncated.data) // 2]
    bad = {
        "unsupported image encoding 'yuv_weird'": unknown,
        "empty image": Image(height=0, width=0, encoding="rgb8", step=0),
        "wrong step": wrong_step,
        "truncated data": truncated,
    }
    serials = itertools.count(10)

    def serve(make_image, topic="points"):
        """Send good frames ``make_image(header)`` with fresh stamps until the node answers on ``topic``; returns
        the answered stamp. The node's camera subscription is best-effort, so on a loaded machine a 1.4 MB frame
        can be lost in transit; a frame that only arrives late gets its own answer, under its own stamp."""
        def send():
            i = next(serials)
            return _send(camera, kitti, i, msg=make_image(_header(i)))
        return graph.send_until_answered(send, [f"{ns}/{topic}"], timeout=60.0, every=10.0)

    for reason, msg in bad.items():
        _send(camera, kitti, next(serials), msg=msg)
        graph.wait_for(lambda: node.stats.rejected_reasons[reason] == 1, what=f"rejection of '{reason}'")
        # ... and the node still serves the next good frame.
        stamp = serve(lambda header: conv.rgb_to_image(kitti["frames"][0], header, "rgb8"))
        _check_outputs(graph, ns, stamp, kitti["K"], kitti["size"], max_range=8.0)
    assert node.stats.rejected == 4 and node.stats.failed == 0

    # Resolution change at runtime (camera_info still says 1242x375): the intrinsics follow the image.
    for size in ((621, 188), (320, 240), (1242, 375)):
        rgb = cv2.resize(kitti["frames"][1], size, interpolation=cv2.INTER_AREA)
        stamp = serve(lambda header: conv.rgb_to_image(rgb, header, "rgba8"))
        K = resize_K(kitti["K"], kitti["size"], size) if size != kitti["size"] else kitti["K"]
        _check_outputs(graph, ns, stamp, K, size, max_range=8.0)

    # mono8 cameras work too.
    grey = cv2.cvtColor(kitti["frames"][2], cv2.COLOR_RGB2GRAY)[..., None]
    serve(lambda header: Image(header=header, height=375, width=1242, encoding="mono8", step=1242,
                               data=array.array("B", grey.tobytes())), topic="depth/image")
    assert node.stats.rejected == 4 and node.stats.failed == 0


def test_compressed_input_network_resolution_decimated_xyzrgb_16bit(graph, checkpoint, kitti):
    ns = "/comp"
    node = _node(graph, checkpoint, ns, **{
        "image_transport": "compressed", "output_resolution": "network", "points.decimation": 2,
        "points.xyzrgb": True, "depth.encoding": "16UC1", "points.max_range": 0.0,
        "scale.mode": "fixed", "scale.factor": 10.0})
    graph.collect(f"{ns}/depth/image", Image)
    graph.collect(f"{ns}/depth/camera_info", CameraInfo)
    graph.collect(f"{ns}/points", PointCloud2)
    camera = graph.camera(ns, compressed=True)
    camera.wait_matched()
    graph.wait_node_ready(node)
    rgb = kitti["frames"][4]
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(header=_header(40), format="png", data=array.array("B", png.tobytes()))
    stamp = _header(40).stamp
    graph.send_until(lambda: _send(camera, kitti, 40, msg=msg),
                     lambda: all(graph.messages(f"{ns}/{t}", stamp) for t in ("depth/image", "depth/camera_info", "points")),
                     what="outputs of a compressed frame")
    K_net = resize_K(kitti["K"], kitti["size"], (NET_W, NET_H))
    depth, _ = _check_outputs(graph, ns, stamp, K_net, (NET_W, NET_H), encoding="16UC1", decimation=2)
    (cloud,) = graph.messages(f"{ns}/points", stamp)
    _, colours = conv.cloud_to_arrays(cloud)
    expected = cv2.resize(rgb, (NET_W, NET_H), interpolation=cv2.INTER_AREA)[::2, ::2]
    np.testing.assert_array_equal(colours, expected)
    # Millimetres, rounded.
    (dmsg,) = graph.messages(f"{ns}/depth/image", stamp)
    mm = np.frombuffer(bytes(dmsg.data), np.uint16).reshape(NET_H, NET_W)
    assert 1000 < np.median(mm) < 4000 and (mm > 0).all()

    # Bad compressed data is dropped with a reason; the node keeps serving.
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    # One at a time: only the latest frame is kept, so a burst could replace a bad frame before it is decoded.
    for i, data in enumerate((jpg.tobytes()[:5000], b"garbage bytes", b"")):
        bad = CompressedImage(header=_header(41 + i), format="jpeg", data=array.array("B", data))
        graph.send_until(lambda: _send(camera, kitti, 41 + i, msg=bad),
                         lambda: node.stats.rejected >= i + 1, what=f"rejection of bad compressed frame {i}")
    assert node.stats.failed == 0
    assert {"truncated JPEG", "CompressedImage format 'jpeg'", "empty CompressedImage data (format 'jpeg')"} \
        <= set(node.stats.rejected_reasons)
    msg = CompressedImage(header=_header(50), format="jpeg", data=array.array("B", jpg.tobytes()))
    stamp = _header(50).stamp
    graph.send_until(lambda: _send(camera, kitti, 50, msg=msg),
                     lambda: graph.messages(f"{ns}/depth/image", stamp), what="output after bad compressed frames")


def test_intrinsics_fallback_and_none(graph, checkpoint, kitti):
    fx, cx, cy = 700.0, 600.0, 180.0
    with_fallback = _node(graph, checkpoint, "/fb", **{"intrinsics.fx": fx, "intrinsics.fy": fx,
                                                       "intrinsics.cx": cx, "intrinsics.cy": cy,
                                                       "intrinsics.width": 1242, "intrinsics.height": 375})
    without = _node(graph, checkpoint, "/noK")
    for ns in ("/fb", "/noK"):
        graph.collect(f"{ns}/depth/image", Image)
        graph.collect(f"{ns}/depth/camera_info", CameraInfo)
        graph.collect(f"{ns}/points", PointCloud2)
    cameras = {ns: graph.camera(ns, info_topic=None) for ns in ("/fb", "/noK")}
    for camera in cameras.values():
        camera.wait_matched()
    graph.wait_node_ready(with_fallback)
    graph.wait_node_ready(without)
    K_fb = np.array([[fx, 0, cx], [0, fx, cy], [0, 0, 1.0]])
    for i in range(2):
        stamps = {ns: _send(camera, kitti, 60 + i, info=False) for ns, camera in cameras.items()}
        graph.wait_for(lambda: graph.messages("/fb/points", stamps["/fb"]), what="fallback-intrinsics cloud")
        _check_outputs(graph, "/fb", stamps["/fb"], K_fb, kitti["size"], max_range=8.0)
        graph.wait_for(lambda: graph.messages("/noK/depth/image", stamps["/noK"]), what="depth without intrinsics")
    time.sleep(0.5)
    assert graph.messages("/noK/points") == [] and graph.messages("/noK/depth/camera_info") == []
    assert without.stats.processed == 2 and with_fallback.stats.processed == 2


def test_no_subscriber_no_inference_and_latest_frame_only(graph, checkpoint, kitti):
    ns = "/lazy"
    node = _node(graph, checkpoint, ns, **{"qos.input.reliability": "reliable", "qos.input.depth": 50})
    camera = graph.camera(ns)
    graph.wait_matched(camera.image)
    calls = []
    predict = node.estimator.predict
    node.estimator.predict = lambda *a, **k: calls.append(1) or predict(*a, **k)
    for i in range(3):
        _send(camera, kitti, 70 + i)
    graph.wait_for(lambda: node.stats.received == 3, what="three frames received")
    time.sleep(0.3)
    assert node.stats.skipped_no_subscribers == 3 and node.stats.processed == 0 and calls == []

    # A subscriber appears: a burst of frames faster than inference. Only the newest waiting frame is kept.
    graph.collect(f"{ns}/depth/image", Image)
    graph.wait_for(node.has_subscribers, what="the node to see the subscriber")
    small = [cv2.resize(f, (621, 188), interpolation=cv2.INTER_AREA) for f in kitti["frames"]]
    last = None
    for i in range(12):
        last = _header(80 + i)
        camera.send(small[i % 7], last)
    graph.wait_for(lambda: graph.messages(f"{ns}/depth/image", last.stamp), what="the last frame of the burst")
    graph.wait_for(lambda: node.stats.received == 15, what="all frames received")
    time.sleep(0.3)
    s = node.stats
    assert s.dropped > 0
    assert s.processed + s.dropped == 12 and s.processed == len(graph.messages(f"{ns}/depth/image")) == len(calls)
    assert s.received == s.processed + s.dropped + s.skipped_no_subscribers + s.rejected + s.failed


# ----------------------------------------------------------------------------------------------------------------
# The node as a separate process
# ----------------------------------------------------------------------------------------------------------------
def test_separate_process_with_yaml_and_remaps(graph, checkpoint, kitti):
    ns = "/proc"
    with NodeProcess(namespace=ns, params_file=REPO / "config" / "ros" / "dna_depth.yaml",
                     params={"weights": checkpoint, "log_throttle_sec": 0.0},
                     remaps={"image": "/cam/image_rect", "camera_info": "/cam/camera_info"},
                     domain_id=DOMAIN_ID) as node:
        outputs = graph.collect_outputs(ns, DEFAULT_OUTPUTS)
        camera = graph.camera(image_topic="/cam/image_rect", info_topic="/cam/camera_info", reliable=False,
                              info_reliable=True)
        # The process imports torch and prepares its backend before it subscribes: slow on a loaded machine.
        graph.wait_for(lambda: camera.image.get_subscription_count() >= 1 or not node.alive(), timeout=120,
                       what="the node process to subscribe")
        assert node.alive(), node.wait()[1]
        graph.wait_publisher(f"{ns}/points")
        sent = []

        def send():
            sent.append(_send(camera, kitti, 80 + len(sent)))
            return sent[-1]

        # Early frames are skipped while the node's publishers discover our subscriptions, and a best-effort camera
        # can lose a 1.4 MB frame in transit: publish new stamps until the node answers.
        graph.send_until_answered(send, outputs, timeout=60.0, alive=node.alive)  # discovery done both ways
        time.sleep(0.5)
        stamp = graph.send_until_answered(send, outputs, timeout=60.0, alive=node.alive)
        _check_outputs(graph, ns, stamp, kitti["K"], kitti["size"], max_range=8.0)
        bad = Image(header=_header(200), height=0, width=0, encoding="rgb8")
        camera.image.publish(bad)
        stamp = graph.send_until_answered(send, outputs, timeout=60.0, alive=node.alive)
        _check_outputs(graph, ns, stamp, kitti["K"], kitti["size"], max_range=8.0)
        time.sleep(0.5)
        assert node.alive()
        code, out = node.stop(timeout=30)
        assert code == 0, out
        assert "dropping frame: empty image: 0x0" in out
        m = re.search(r"received (\d+), processed (\d+), dropped (\d+), skipped \(no subscribers\) (\d+), "
                      r"rejected (\d+), failed (\d+)", out)
        received, processed, dropped, skipped, rejected, failed = (int(x) for x in m.groups())
        answered = sum(any(graph.messages(t, p) for t in outputs) for p in sent)
        assert (processed, rejected, failed) == (answered, 1, 0)
        assert received <= len(sent) + 1
        assert received == processed + rejected + skipped + dropped


def test_bad_weights_path_is_a_clear_error_at_start(tmp_path):
    missing = tmp_path / "no_such_model.safetensors"
    with NodeProcess(params={"weights": missing}, domain_id=DOMAIN_ID) as node:
        code, out = node.wait(timeout=120)
    assert code == 1
    assert f"weights file not found: {missing}" in out and "cannot start" in out
    with NodeProcess(params={"weights": "/tmp/x.safetensors", "scale.mode": "metres"}, domain_id=DOMAIN_ID) as node:
        code, out = node.wait(timeout=120)
    assert code == 1
    assert "parameter 'scale.mode': 'metres' is not one of none, fixed, camera_height" in out


# ----------------------------------------------------------------------------------------------------------------
# Pieces of the node, without a graph
# ----------------------------------------------------------------------------------------------------------------
def test_bad_parameters_are_named(graph, checkpoint):
    from dna_depth_ros.params import NodeConfigError

    cases = {
        "parameter 'weights' is empty": {"weights": ""},
        "parameter 'input_height': 100 is not a multiple of 32": {"input_height": 100, "input_width": 320},
        "parameter 'scale.camera_height' must be > 0": {"scale.mode": "camera_height"},
        "parameter 'depth.encoding': '8UC1' is not one of 32FC1, 16UC1": {"depth.encoding": "8UC1"},
    }
    for message, params in cases.items():
        with pytest.raises(NodeConfigError, match=re.escape(message)):
            graph.start_node("/badparams", {"weights": checkpoint, **params})
    # Nothing half-built stays in the graph.
    assert "dna_depth" not in graph.tester.get_node_names()


def test_harness_stamps_environment_and_output_types(graph):
    from dna_depth_ros.harness import OUTPUT_TYPES, loopback_env, make_header

    header = make_header((3, 7), "cam")
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (3, 7, "cam")
    for stamp in (3_000_000_007, (3, 7), Time(sec=3, nanosec=7), header, Image(header=header)):
        assert stamp_key(stamp) == (3, 7)
    env = loopback_env(5, base={"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_DOMAIN_ID": "1", "OTHER": "x"})
    assert env == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": "5", "OTHER": "x",
                   "PYTHONUNBUFFERED": "1"}
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"  # set by the Graph before rclpy started
    for topic, msg_type in OUTPUT_TYPES.items():
        assert graph.collect(f"/types/{topic}").msg_type is msg_type
    with pytest.raises(ValueError, match="not a node output"):
        graph.collect("/types/image")


def test_throttled_logger_counts_what_it_holds_back():
    from dna_depth_ros.throttle import ThrottledLogger

    class Sink:
        def __init__(self):
            self.lines = []

        def error(self, m):
            self.lines.append(("error", m))

        def warning(self, m):
            self.lines.append(("warning", m))

        def info(self, m):
            self.lines.append(("info", m))

    sink = Sink()
    log = ThrottledLogger(sink, period=0.2)
    for _ in range(5):
        log.log("error", "truncated", "truncated data")
    log.log("error", "step", "wrong step")
    assert sink.lines == [("error", "truncated data"), ("error", "wrong step")]
    time.sleep(0.25)
    log.log("error", "truncated", "truncated data")
    assert sink.lines[-1] == ("error", "truncated data (4 similar message(s) suppressed in the last 0.2 s)")
    assert log.once("warning", "fallback", "x") and not log.once("warning", "fallback", "x")
    assert sink.lines[-1] == ("warning", "x") and len(sink.lines) == 4


def test_latest_slot_keeps_only_the_newest():
    from dna_depth_ros.worker import LatestSlot

    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 dropped
    assert slot.take(0.01) == 2 and slot.take(0.01) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    t.start()
    slot.put(3)
    t.join(5)
    assert got == [3]
    slot.close()
    t0 = time.monotonic()
    assert slot.take(5.0) is None and time.monotonic() - t0 < 1.0
