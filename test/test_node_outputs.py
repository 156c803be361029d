"""The node's outputs for Nav2 and SLAM in a real rclpy graph (loopback only, via dna_depth_ros.harness): REP 117
depth, clearing clouds, obstacle and ground clouds, the laser scan, the scale state (freeze, withhold, re-arm),
the republished image, and the compressed input resolved from the remapped image.

The network is replaced by an oracle after the node started (``node.estimator.backend``): it returns the exact
sigmoid disparity of a known scene (a floor 1 m below a level camera and a wall 4 m ahead, built here by
ray-plane intersection), divided by a hidden factor. Every expected value comes from that geometry.
"""
import array
import math

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan, PointCloud2
from std_msgs.msg import Empty

from dna_depth_core import geometry
from dna_depth_core.ros_images import decode_depth
from dna_depth_ros import conversions as conv
from dna_depth_ros.harness import Graph, make_header
from dna_depth_ros.params import NodeConfigError
from conftest import lite0_checkpoint

DOMAIN_ID = 140  # this module's own DDS domain

pytestmark = pytest.mark.ros

H, W = 64, 224  # the checkpoint's input size: the node does not resize
F = 80.0
K = np.array([[F, 0.0, (W - 1) / 2], [0.0, F, (H - 1) / 2], [0.0, 0.0, 1.0]])
HEIGHT = 1.0  # camera above the floor
WALL = (4.0, -1.0, 0.5, 2.5)  # front face 4 m ahead, from 1 m left to 0.5 m right, 2.5 m tall
HIDDEN = 2.5  # the oracle's relative depth is the true depth / 2.5
FRAME_ID = "cam_optical_frame"


def _rays():
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.stack([(u - K[0, 2]) / F, (v - K[1, 2]) / F, np.ones_like(u)], axis=-1)


def _scene():
    """Exact camera-z depth (NaN = sky) and what each pixel sees: 0 sky, 1 floor, 2 wall."""
    d = _rays()
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(d[..., 1] > 0, HEIGHT / d[..., 1], np.inf)
        dist, x0, x1, top = WALL
        p = d * dist
        on_wall = (p[..., 0] >= x0) & (p[..., 0] <= x1) & (HEIGHT - p[..., 1] <= top)
        t_wall = np.where(on_wall, dist, np.inf)
    t = np.minimum(t_floor, t_wall)
    hit = np.where(np.isinf(t), 0, np.where(t_wall <= t_floor, 2, 1))
    return np.where(np.isfinite(t), t, np.nan), hit


DEPTH, HIT = _scene()


class Oracle:
    """The network's output for the scene: sigmoid disparity of (true depth / factor), 0 (the far end) for the
    sky; ``(1, 1, H, W)`` whatever the input."""

    name, device = "oracle", "cpu"  # what the node's /diagnostics report reads of a backend

    def __init__(self, factor):
        rel = np.where(np.isfinite(DEPTH), DEPTH / factor, 1e9)
        s = np.clip(geometry.depth_to_disp(rel, 0.1, 100.0), 0.0, 1.0)
        self.out = s[None, None].astype(np.float32)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return self.out


def _expected_depth(factor_applied):
    """What the node's estimator makes of the oracle: disp_to_depth(s) times the applied scale."""
    s = Oracle(HIDDEN).out[0, 0]
    _, d = geometry.disp_to_depth(s, 0.1, 100.0)
    return d * factor_applied


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return lite0_checkpoint(tmp_path_factory.mktemp("ckpt"), H, W)


@pytest.fixture
def graph():
    with Graph(domain_id=DOMAIN_ID) as g:
        yield g


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _start(graph, checkpoint, ns, factor=HIDDEN, remaps=None, **params):
    node = graph.start_node(ns, {"weights": checkpoint, "log_throttle_sec": 0.0, "warmup": False, **params},
                            remaps=remaps)
    node.estimator.backend = Oracle(factor)
    return node


def _serve(graph, camera, frame, topics, start=0):
    """Send frames with fresh stamps until every topic answered one; returns its stamp key."""
    counter = iter(range(start, start + 10_000))
    return graph.send_until_answered(lambda: camera.send(frame, 1_700_000_000_000_000_000 + next(counter), K=K,
                                                         frame_id=FRAME_ID), topics, timeout=60.0, every=5.0)


def _pixel_directions():
    d = _rays()
    return d / np.linalg.norm(d, axis=2, keepdims=True)


# ----------------------------------------------------------------------------------------------------------------
# REP 117 and clearing
# ----------------------------------------------------------------------------------------------------------------
def test_depth_image_and_clearing_cloud(graph, checkpoint, frame):
    ns = "/rep117"
    node = _start(graph, checkpoint, ns, **{"scale.mode": "fixed", "scale.factor": HIDDEN, "depth.max_range": 6.0,
                                            "depth.min_range": 2.8, "points.max_range": 6.0,
                                            "points.far_mode": "clearing", "points.clearing_distance": 6.5})
    topics = graph.collect_outputs(ns, ("depth/image", "points"))
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)
    key = _serve(graph, camera, frame, topics)
    (depth_msg,) = graph.messages(f"{ns}/depth/image", key)
    (cloud_msg,) = graph.messages(f"{ns}/points", key)
    assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == FRAME_ID
    depth = np.frombuffer(bytes(depth_msg.data), np.float32).reshape(H, W)
    expected = _expected_depth(HIDDEN)
    true = np.where(np.isfinite(DEPTH), DEPTH, np.inf)
    np.testing.assert_allclose(expected[HIT > 0], DEPTH[HIT > 0], rtol=2e-3)  # the oracle is exact
    far, near = expected > 6.0, expected < 2.8
    edge = (np.abs(expected - 6.0) < 1e-3) | (np.abs(expected - 2.8) < 1e-3)
    assert far.sum() > 1000 and near.sum() > 50 and (HIT == 0).sum() > 1000
    assert np.isposinf(depth[far & ~edge]).all() and np.isposinf(depth[HIT == 0]).all()  # the sky included
    assert np.isneginf(depth[near & ~edge]).all()
    inside = ~far & ~near & ~edge
    np.testing.assert_allclose(depth[inside], true[inside], rtol=2e-3)

    # The cloud: far pixels (Euclidean range > 6 m, the sky included) are 6.5 m along their own rays.
    xyz, _ = conv.cloud_to_arrays(cloud_msg)
    rng = expected * np.linalg.norm(_rays(), axis=2)
    far3 = (rng > 6.0 + 1e-3)
    assert far3.sum() > 1000
    np.testing.assert_allclose(np.linalg.norm(xyz[far3], axis=1), 6.5, rtol=1e-5)
    np.testing.assert_allclose(xyz[far3] / 6.5, _pixel_directions()[far3], atol=1e-5)
    ok = rng < 6.0 - 1e-3
    np.testing.assert_allclose(xyz[ok], (_rays() * true[..., None])[ok], rtol=2e-3, atol=1e-4)

    # 16UC1 keeps 0 for every invalid pixel (REP 118).
    ns2 = "/rep118"
    node2 = _start(graph, checkpoint, ns2, **{"scale.mode": "fixed", "scale.factor": HIDDEN,
                                              "depth.max_range": 6.0, "depth.encoding": "16UC1"})
    graph.collect(f"{ns2}/depth/image")
    camera2 = graph.camera(ns2)
    camera2.wait_matched()
    graph.wait_node_ready(node2)
    key = _serve(graph, camera2, frame, [f"{ns2}/depth/image"], start=100)
    (mm_msg,) = graph.messages(f"{ns2}/depth/image", key)
    mm = np.frombuffer(bytes(mm_msg.data), np.uint16).reshape(H, W)
    assert (mm[far & ~edge] == 0).all()
    np.testing.assert_allclose(mm[inside], 1000 * true[inside], atol=8.0)


# ----------------------------------------------------------------------------------------------------------------
# Ground-aware outputs
# ----------------------------------------------------------------------------------------------------------------
def test_obstacles_ground_and_scan_from_the_mounting_plane(graph, checkpoint, frame):
    ns = "/ground"
    node = _start(graph, checkpoint, ns, **{"scale.mode": "fixed", "scale.factor": HIDDEN,
                                            "scale.camera_height": HEIGHT, "ground.plane": "mounting",
                                            "publish.obstacles": True, "publish.ground": True,
                                            "publish.scan": True, "publish.points": False})
    topics = graph.collect_outputs(ns, ("points/obstacles", "points/ground", "scan"))
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)
    key = _serve(graph, camera, frame, topics)
    (obs_msg,) = graph.messages(f"{ns}/points/obstacles", key)
    (ground_msg,) = graph.messages(f"{ns}/points/ground", key)
    (scan,) = graph.messages(f"{ns}/scan", key)
    assert obs_msg.height == 1 and obs_msg.is_dense and obs_msg.header.frame_id == FRAME_ID
    obstacles = conv.cloud_to_arrays(obs_msg)[0][0]
    ground = conv.cloud_to_arrays(ground_msg)[0][0]
    # Obstacles: the wall's pixels 0.1 .. 2 m above the floor, within the 8 m range: all at z = 4 m.
    world = _rays() * DEPTH[..., None]
    wall_h = HEIGHT - world[..., 1]
    in_band = (HIT == 2) & (wall_h >= 0.1) & (wall_h <= 2.0)
    edge = (HIT == 2) & ((np.abs(wall_h - 0.1) < 2e-3) | (np.abs(wall_h - 2.0) < 2e-3))
    assert abs(len(obstacles) - in_band.sum()) <= edge.sum() and in_band.sum() > 300
    np.testing.assert_allclose(obstacles[:, 2], WALL[0], rtol=2e-3)
    # Ground: floor pixels within 8 m (Euclidean), on the plane y = 1 m, and the wall's foot (below 0.1 m).
    rng = np.linalg.norm(world, axis=2)
    floor = (HIT == 1) & (rng <= 8.0)
    foot = (HIT == 2) & (wall_h < 0.1)
    at_range_edge = (HIT == 1) & (np.abs(rng - 8.0) < 0.02)
    assert abs(len(ground) - floor.sum() - foot.sum()) <= at_range_edge.sum() + edge.sum()
    assert (np.abs(ground[:, 1] - HEIGHT) < 0.1 + 1e-3).all()
    assert (np.abs(ground[:, 1] - HEIGHT) < 5e-3).sum() >= floor.sum() - at_range_edge.sum()

    # Scan: in the levelled frame named after the optical one; the wall 4 m ahead at its bearings.
    assert scan.header.frame_id == "cam_frame" and scan.range_max == pytest.approx(8.0)
    ranges = np.asarray(scan.ranges, np.float32)
    bearings = scan.angle_min + scan.angle_increment * np.arange(len(ranges))
    assert bearings[-1] == pytest.approx(scan.angle_max, abs=1e-6)
    assert scan.angle_max == pytest.approx(math.atan((K[0, 2] + 0.5) / F), abs=1e-6)
    dist, x0, x1, _ = WALL
    lo, hi = math.atan2(-x1, dist), math.atan2(-x0, dist)
    inside = (bearings > lo + scan.angle_increment) & (bearings < hi - scan.angle_increment)
    outside = (bearings < lo - scan.angle_increment) | (bearings > hi + scan.angle_increment)
    assert inside.sum() > 20 and outside.sum() > 40
    np.testing.assert_allclose(ranges[inside], dist / np.cos(bearings[inside]), rtol=0.02)
    assert np.isposinf(ranges[outside]).all()


def test_ground_outputs_need_a_metric_scale_and_a_plane(graph, checkpoint):
    cases = {
        "the ground-aware outputs need metric depth": {"publish.scan": True},
        "no ground plane: ground.plane 'fit' needs scale.mode camera_height":
            {"publish.obstacles": True, "scale.mode": "fixed", "ground.plane": "fit"},
        "no ground plane: ground.plane 'auto' needs scale.mode camera_height or scale.camera_height > 0":
            {"publish.ground": True, "scale.mode": "fixed"},
        "'points.far_mode' clearing needs 'points.max_range' > 0":
            {"points.far_mode": "clearing", "points.max_range": 0.0},
        "'depth.min_range' (5.0) must be smaller than 'depth.max_range' (4.0)":
            {"depth.min_range": 5.0, "depth.max_range": 4.0},
        "'ground.min_height' (2.0) must be smaller than 'ground.max_height' (1.0)":
            {"ground.min_height": 2.0, "ground.max_height": 1.0},
    }
    for message, params in cases.items():
        with pytest.raises(NodeConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            graph.start_node("/badground", {"weights": checkpoint, **params})


# ----------------------------------------------------------------------------------------------------------------
# Scale for SLAM
# ----------------------------------------------------------------------------------------------------------------
def _scale_values(msg: DiagnosticArray) -> dict:
    (status,) = msg.status
    assert status.name == conv.SCALE_STATUS_NAME
    return {kv.key: kv.value for kv in status.values}


def test_scale_is_published_frozen_withheld_and_rearmed(graph, checkpoint, frame):
    ns = "/slam"
    node = _start(graph, checkpoint, ns, **{"scale.mode": "camera_height", "scale.camera_height": HEIGHT,
                                            "scale.freeze": True, "scale.withhold": True,
                                            "scale.converge_frames": 3, "publish.rgb": True})
    graph.collect(f"{ns}/depth/scale", DiagnosticArray)
    graph.collect_outputs(ns, ("depth/image", "rgb/image"))
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)
    keys = []
    for i in range(6):  # one at a time
        keys.append(_serve(graph, camera, frame, [f"{ns}/depth/scale"], start=10 * i))
    states = [_scale_values(graph.messages(f"{ns}/depth/scale", k)[0]) for k in keys]
    # Withheld (no depth, no image) until the window of 3 measurements is full and frozen, then published.
    frozen = [s["frozen"] == "true" for s in states]
    assert frozen == [int(s["measured"]) >= 3 for s in states]
    first = frozen.index(True)
    assert all(frozen[first:]) and first >= 1
    assert all(s["withheld"] == "true" for s in states[:first])
    assert all(s["withheld"] == "false" for s in states[first:])
    assert all(not graph.messages(f"{ns}/depth/image", k) and not graph.messages(f"{ns}/rgb/image", k)
               for k in keys[:first])
    graph.wait_for(lambda: all(graph.messages(f"{ns}/depth/image", k) for k in keys[first:]),
                   what="depth once the scale is frozen")
    value = float(states[-1]["value"])
    assert value == pytest.approx(HIDDEN, rel=0.01)
    assert {s["value"] for s in states[first:]} == {states[-1]["value"]}
    assert states[-1]["mode"] == "camera_height" and states[-1]["metric"] == "true"
    (depth_msg,) = graph.messages(f"{ns}/depth/image", keys[-1])
    depth = decode_depth(depth_msg)
    floor = HIT == 1
    np.testing.assert_allclose(np.median(depth[floor] / DEPTH[floor]), 1.0, rtol=0.01)

    # Re-armed by a message: withheld again until it re-converges and freezes.
    rearm = graph.publisher(f"{ns}/depth/scale/rearm", Empty)
    graph.wait_matched(rearm)
    rearm.publish(Empty())
    graph.wait_for(lambda: not node.estimator.scale_tracker.state.frozen, what="the scale to be re-armed")
    key = _serve(graph, camera, frame, [f"{ns}/depth/scale"], start=100)
    state = _scale_values(graph.messages(f"{ns}/depth/scale", key)[0])
    assert state["frozen"] == "false" and state["withheld"] == "true"


# ----------------------------------------------------------------------------------------------------------------
# The republished image, for RGB-D SLAM
# ----------------------------------------------------------------------------------------------------------------
def test_republished_image_has_the_depth_resolution_and_header(graph, checkpoint):
    ns = "/rgbd"
    big = cv2.resize(np.random.default_rng(4).integers(0, 256, (H, W, 3), dtype=np.uint8), (2 * W, 2 * H),
                     interpolation=cv2.INTER_NEAREST)
    K_big = K.copy()
    K_big[:2] *= 2
    K_big[:2, 2] += 0.5  # pixel-centre exact resize by 2: cx' = (cx + 0.5) * 2 - 0.5
    node = _start(graph, checkpoint, ns, **{"scale.mode": "fixed", "scale.factor": HIDDEN,
                                            "output_resolution": "network", "publish.rgb": True})
    topics = graph.collect_outputs(ns, ("depth/image", "depth/camera_info", "rgb/image", "rgb/camera_info"))
    camera = graph.camera(ns)
    camera.wait_matched()
    graph.wait_node_ready(node)
    key = graph.send_until_answered(lambda: camera.send(big, 1_700_000_123_000_000_000, K=K_big,
                                                        frame_id=FRAME_ID), topics, timeout=60.0)
    depth_msg, info, rgb_msg, rgb_info = (graph.messages(t, key)[0] for t in topics)
    for m in (info, rgb_msg, rgb_info):
        assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == \
            (depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec, FRAME_ID)
    assert (rgb_msg.width, rgb_msg.height, rgb_msg.encoding) == (W, H, "rgb8")
    assert (rgb_msg.width, rgb_msg.height) == (depth_msg.width, depth_msg.height) == (rgb_info.width, rgb_info.height)
    np.testing.assert_array_equal(np.asarray(rgb_info.k), np.asarray(info.k))
    np.testing.assert_allclose(np.asarray(rgb_info.k).reshape(3, 3), K, atol=1e-9)
    # The pixels the network saw: the input shrunk by pixel-area averaging (preprocess's rule).
    rgb = np.frombuffer(bytes(rgb_msg.data), np.uint8).reshape(H, W, 3)
    np.testing.assert_array_equal(rgb, cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA))


# ----------------------------------------------------------------------------------------------------------------
# Compressed input follows the remapped image
# ----------------------------------------------------------------------------------------------------------------
def test_compressed_input_resolves_from_the_remapped_image(graph, checkpoint, frame):
    ns = "/compr"
    node = _start(graph, checkpoint, ns, remaps={"image": "/cam/front/image_rect"},
                  **{"image_transport": "compressed", "scale.mode": "fixed", "scale.factor": HIDDEN})
    assert node.sub_image.topic_name == "/cam/front/image_rect/compressed"
    topics = graph.collect_outputs(ns, ("depth/image",))
    camera = graph.camera(ns, compressed=True, image_topic="/cam/front/image_rect/compressed")
    camera.wait_matched()
    graph.wait_node_ready(node)
    ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    counter = iter(range(10_000))

    def send():
        header = make_header(1_700_000_500_000_000_000 + next(counter), FRAME_ID)
        msg = CompressedImage(header=header, format="png", data=array.array("B", png.tobytes()))
        return camera.send(msg=msg, stamp=header, info=conv.make_camera_info(K, W, H, header))

    key = graph.send_until_answered(send, topics, timeout=60.0)
    assert graph.messages(topics[0], key)
    # Without remapping, the compressed topic is <namespace>/image/compressed; a rule for that name still applies.
    plain = _start(graph, checkpoint, "/compr2", **{"image_transport": "compressed"})
    assert plain.sub_image.topic_name == "/compr2/image/compressed"
    legacy = _start(graph, checkpoint, "/compr3", remaps={"image/compressed": "/cam/legacy/compressed"},
                    **{"image_transport": "compressed"})
    assert legacy.sub_image.topic_name == "/cam/legacy/compressed"


def test_output_topics_and_types(graph, checkpoint):
    node = _start(graph, checkpoint, "/all", **{"scale.mode": "fixed", "scale.camera_height": HEIGHT,
                                                "publish.colored": True, "publish.obstacles": True,
                                                "publish.ground": True, "publish.scan": True,
                                                "publish.rgb": True})
    names = {pub.topic_name: pub.msg_type for pub in node.publishers if pub.topic_name.startswith("/all/")}
    assert names == {
        "/all/depth/image": Image, "/all/depth/camera_info": CameraInfo, "/all/depth/colored": Image,
        "/all/depth/scale": DiagnosticArray, "/all/points": PointCloud2, "/all/points/obstacles": PointCloud2,
        "/all/points/ground": PointCloud2, "/all/scan": LaserScan, "/all/rgb/image": Image,
        "/all/rgb/camera_info": CameraInfo,
    }
