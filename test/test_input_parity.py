"""One real KITTI frame with its CameraInfo through every path to the network: the KITTI-folder dataset, the ROS bag
dataset, ``predict``, ``evaluate`` and the ROS node's estimator must feed the network bit-identical inputs with
identical intrinsics (the one rule of dna_depth_core.preprocess and the one camera model of dna_depth_core.camera).

The node part runs a real rclpy graph on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, this module's own
domain id; CI runs the suite inside a loopback-only network namespace).
"""
import os

DOMAIN_ID = 71
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import threading  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dna_depth_core import camera  # noqa: E402
from dna_depth_core.backends import BACKENDS, register_backend  # noqa: E402
from dna_depth_core.data import rosbag as rb  # noqa: E402
from dna_depth_core.data.kitti import KittiDataset, read_calib_file  # noqa: E402
from dna_depth_core.evaluation import evaluate_model  # noqa: E402
from dna_depth_core.inference import DepthEstimator  # noqa: E402
from dna_depth_core.predict import predict_paths  # noqa: E402
from dna_depth_core.preprocess import load_image  # noqa: E402
from conftest import lite0_checkpoint, require_shared  # noqa: E402

NET_W, NET_H = 640, 192
FOLDER = "2011_09_26/2011_09_26_drive_0023_sync"
FRAME = 1  # its neighbours 0 and 2 exist, as a training triplet needs


@pytest.fixture(scope="module")
def kitti():
    root = require_shared("data/kitti_tiny")
    P = read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")["P_rect_02"].reshape(3, 4).copy()
    P[:2, 2] -= 1.0  # KITTI's calibration is 1-based; a CameraInfo is 0-based (pixel centres at integers)
    frames = [load_image(root / FOLDER / "image_02" / "data" / f"{i:010d}.png") for i in range(3)]
    h, w = frames[0].shape[:2]
    info = SimpleNamespace(width=w, height=h, k=P[:, :3].reshape(-1), p=P.reshape(-1), d=np.zeros(5),
                           binning_x=0, binning_y=0,
                           roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False))
    return {"root": root, "frames": frames, "K": camera.camera_info_intrinsics(info).K, "size": (w, h)}


@pytest.fixture(scope="module")
def reference(kitti):
    """The KITTI-folder dataset's network input and K for the frame (calibration from calib_cam_to_cam.txt)."""
    ds = KittiDataset(kitti["root"], [f"{FOLDER} {FRAME} l"], NET_H, NET_W, is_train=False, use_calib=True)
    item = ds[0]
    x, K = item["color"][0], item["K"][0]
    assert x.shape == (3, NET_H, NET_W) and x.dtype == torch.float32
    return x.numpy(), K.numpy()


class Recorder:
    """A backend that records what the network would be given (and answers a constant disparity)."""

    name = "recorder"
    device = torch.device("cpu")
    fp16 = False
    inputs: list = []

    def __init__(self, checkpoint, device="cpu", fp16=False):
        self.config = SimpleNamespace(name="recorder", height=NET_H, width=NET_W, min_depth=0.1, max_depth=100.0)
        self.height, self.width = NET_H, NET_W

    def supports_size(self, h, w):
        return (h, w) == (NET_H, NET_W)

    def __call__(self, x):
        Recorder.inputs.append(np.array(x))
        return np.full((x.shape[0], 1, NET_H, NET_W), 0.05, np.float32)


@pytest.fixture
def recorder():
    Recorder.inputs = []
    register_backend("recorder", Recorder)
    yield Recorder
    BACKENDS.pop("recorder", None)


def test_bag_dataset_feeds_the_same_pixels_and_K(kitti, reference, tmp_path):
    bag = tmp_path / "kitti.mcap"
    with rb.ImageBagWriter(bag, storage="mcap") as writer:
        for i, rgb in enumerate(kitti["frames"]):
            writer.write(1_317_000_000_000_000_000 + i * 100_000_000, rgb, kitti["K"])
    ds = rb.BagDataset([bag], NET_H, NET_W, part="all", frame_spacing=0.1, static_threshold=0.0)
    (item,) = [ds[i] for i in range(len(ds)) if int(ds[i]["frame_index"]) == FRAME]
    np.testing.assert_array_equal(item["color"][0].numpy(), reference[0])
    np.testing.assert_array_equal(item["K"][0].numpy(), reference[1])


def test_estimator_predict_and_evaluate_feed_the_same_pixels_and_K(kitti, reference, recorder, tmp_path):
    rgb = kitti["frames"][FRAME]
    est = DepthEstimator(None, backend="recorder", output="network")
    x, K_net, box = est.preprocess(rgb, kitti["K"])
    assert box == (0, 0, *kitti["size"])
    np.testing.assert_array_equal(x[0], reference[0])
    np.testing.assert_array_equal(K_net.astype(np.float32), reference[1])
    res = est.predict(rgb, kitti["K"])
    np.testing.assert_array_equal(res.K.astype(np.float32), reference[1])

    recorder.inputs = []
    predict_paths(est, [kitti["root"] / FOLDER / "image_02" / "data" / f"{FRAME:010d}.png"], tmp_path / "pred",
                  progress=False)
    (x_predict,) = recorder.inputs
    np.testing.assert_array_equal(x_predict[0], reference[0])

    recorder.inputs = []
    gt = np.full((kitti["size"][1], kitti["size"][0]), 10.0, np.float32)
    evaluate_model(est, kitti["root"], [f"{FOLDER} {FRAME} l"], [gt], progress=False)
    (x_eval,) = recorder.inputs
    np.testing.assert_array_equal(x_eval[0], reference[0])


@pytest.mark.ros
def test_the_node_feeds_the_same_pixels_and_publishes_the_same_K(kitti, reference, tmp_path):
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from dna_depth_ros import conversions as conv
    from dna_depth_ros.depth_node import DepthNode

    weights = lite0_checkpoint(tmp_path, NET_H, NET_W)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    tester = Node("parity_tester", context=context)
    node = DepthNode(context=context, namespace="/parity", parameter_overrides=[
        Parameter("weights", value=weights), Parameter("backend", value="torch"),
        Parameter("output_resolution", value="network"), Parameter("publish.points", value=False),
        Parameter("qos.input.reliability", value="reliable")])
    seen = []
    node.estimator.backend.net.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    infos, lock = [], threading.Lock()
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    tester.create_subscription(CameraInfo, "/parity/depth/camera_info", lambda m: (lock.acquire(), infos.append(m),
                                                                                   lock.release()), reliable)
    tester.create_subscription(Image, "/parity/depth", lambda m: None, reliable)
    pub_img = tester.create_publisher(Image, "/parity/image", reliable)
    pub_info = tester.create_publisher(CameraInfo, "/parity/camera_info", reliable)
    for n in (tester, node):
        executor.add_node(n)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (pub_img.get_subscription_count() and
                                                   node.pub_info.get_subscription_count()):
            time.sleep(0.05)
        header = Header(stamp=Time(sec=1_317_000_001, nanosec=0), frame_id="cam2")
        info = CameraInfo(header=header, width=kitti["size"][0], height=kitti["size"][1], distortion_model="plumb_bob")
        info.k = kitti["K"].reshape(-1).copy()
        info.p = np.hstack([kitti["K"], np.zeros((3, 1))]).reshape(-1)
        seen.clear()
        while time.monotonic() < deadline and not infos:
            pub_info.publish(info)
            pub_img.publish(conv.rgb_to_image(kitti["frames"][FRAME], header, "rgb8"))
            time.sleep(1.0)
        assert infos, "no depth/camera_info from the node"
        x_node = seen[-1]
        assert x_node.shape == (1, 3, NET_H, NET_W)
        np.testing.assert_array_equal(x_node[0].float().numpy(), reference[0])
        K_pub = np.asarray(infos[-1].k).reshape(3, 3)
        np.testing.assert_array_equal(K_pub.astype(np.float32), reference[1])
        assert (infos[-1].width, infos[-1].height) == (NET_W, NET_H)
    finally:
        executor.shutdown(timeout_sec=5)
        spin.join(10)
        node.destroy_node()
        tester.destroy_node()
        rclpy.shutdown(context=context)
