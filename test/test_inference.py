"""dna_depth_core.inference: DepthEstimator plumbing and the metric scale from the camera height on synthetic drives
(exact depth from the ray caster, scaled by a hidden factor). Intrinsics under resizes and crops: test_camera.py."""
import math
import warnings

import cv2
import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core import inference as inf
from dna_depth_core.backends import BACKENDS, register_backend, resolve_device
from dna_depth_core.camera import centre_crop_box, crop_K, resize_K
from dna_depth_core.data.synthetic import synthetic_drive, synthetic_intrinsics
from conftest import lite0_checkpoint

NET_H, NET_W = 64, 224  # small network input keeps the CPU tests fast
K_KITTI = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return lite0_checkpoint(tmp_path_factory.mktemp("ckpt"), NET_H, NET_W)


@pytest.fixture(scope="module")
def estimator(checkpoint):
    return inf.DepthEstimator(checkpoint, device="cpu", backend="torch")  # loads the file


@pytest.fixture(scope="module")
def net(estimator):
    """The loaded network, shared by the estimators below (building one from the file takes seconds)."""
    return estimator.backend.net


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (24, 80, 3), dtype=np.uint8), (1242, 375), interpolation=cv2.INTER_CUBIC)
    return img


def _sigmoid_to_depth(s, lo=0.1, hi=100.0):
    return 1.0 / (1.0 / hi + (1.0 / lo - 1.0 / hi) * s)


# ----------------------------------------------------------------------------------------------------------------
# DepthEstimator plumbing
# ----------------------------------------------------------------------------------------------------------------
def test_network_output_matches_the_bare_model_call(checkpoint, image):
    est = inf.DepthEstimator(checkpoint, device="cpu", output="network")
    net = dna_depth_core.load_checkpoint(checkpoint)  # independently loaded
    x = torch.from_numpy(cv2.resize(image, (NET_W, NET_H), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)
    with torch.inference_mode():
        s = net(x[None].float() / 255.0)[0][0, 0].numpy()
    res = est.predict(image, K_KITTI)
    assert res.depth.shape == (NET_H, NET_W) and res.depth.dtype == np.float32
    np.testing.assert_allclose(res.depth, _sigmoid_to_depth(s.astype(np.float64)), rtol=1e-4)
    np.testing.assert_allclose(res.K, resize_K(K_KITTI, (1242, 375), (NET_W, NET_H)))
    assert res.scale == 1.0 and not res.metric and res.units == "relative" and res.scale_mode == "none"
    assert set(res.timings) == {"preprocess", "inference", "postprocess"}


def test_input_resolution_output_upsamples_the_disparity(estimator, image):
    res = estimator.predict(image, K_KITTI)
    assert res.depth.shape == (375, 1242)
    np.testing.assert_array_equal(res.K, K_KITTI)
    net_res = inf.DepthEstimator(estimator.backend.net, backend="torch", output="network").predict(image, K_KITTI)
    disp = 1.0 / net_res.depth
    up = cv2.resize(disp, (1242, 375), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(res.depth, 1.0 / up, rtol=1e-3)


@pytest.mark.parametrize("shape", [(37, 101, 3), (480, 640, 3), (64, 224, 3), (50, 50), (9, 700, 1)])
def test_any_input_size_works(estimator, shape):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    res = estimator.predict(img)
    assert res.depth.shape == shape[:2]
    assert res.K is None
    assert np.isfinite(res.depth).all() and (res.depth >= 0.1 - 1e-4).all() and (res.depth <= 100.0).all()


def test_crop_mode_keeps_intrinsics_consistent(net):
    img = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    full = inf.DepthEstimator(net, resize="crop").predict(img, K)
    x0, y0, w, h = centre_crop_box(640, 480, NET_W / NET_H)
    assert full.depth.shape == (480, 640)
    assert np.isnan(full.depth[:y0]).all() and np.isnan(full.depth[y0 + h:]).all()
    assert np.isfinite(full.depth[y0:y0 + h]).all()
    np.testing.assert_array_equal(full.K, K)
    small = inf.DepthEstimator(net, resize="crop", output="network").predict(img, K)
    expected = resize_K(crop_K(K, x0, y0), (w, h), (NET_W, NET_H))
    np.testing.assert_allclose(small.K, expected)
    # The network-resolution depth, upsampled into the crop, is the input-resolution depth.
    up = 1.0 / cv2.resize(1.0 / small.depth, (w, h), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(full.depth[y0:y0 + h], up, rtol=1e-3)


def test_fixed_scale_multiplies_depth(net, estimator, image):
    rel = estimator.predict(image, K_KITTI)
    fixed = inf.DepthEstimator(net, scale_mode="fixed", scale_factor=12.5).predict(image, K_KITTI)
    np.testing.assert_allclose(fixed.depth, rel.depth * 12.5, rtol=1e-5)
    assert fixed.metric and fixed.units == "m" and fixed.scale == 12.5


def test_input_size_override(net, image):
    est = inf.DepthEstimator(net, input_size=(96, 320), output="network")
    assert est.input_size == (96, 320)
    assert est.predict(image).depth.shape == (96, 320)


def test_device_selection(net):
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name|not supported"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            inf.DepthEstimator(net, device="cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = inf.DepthEstimator(net, device="auto", fp16=True)
        assert not est.fp16 and est.device.type == "cpu"
        assert any("fp16" in str(w.message) for w in caught)


def test_bad_arguments_are_named(net, tmp_path, estimator):
    with pytest.raises(ValueError, match="no checkpoint path given"):
        inf.DepthEstimator("")
    with pytest.raises(FileNotFoundError, match="weights file not found: .*nope.safetensors"):
        inf.DepthEstimator(str(tmp_path / "nope.safetensors"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="corrupt"):
        inf.DepthEstimator(str(corrupt))
    with pytest.raises(ValueError, match="multiples of 32"):
        inf.DepthEstimator(net, input_size=(100, 320))
    with pytest.raises(ValueError, match="backend 'onnx' unknown; available: auto, onnxruntime, openvino, torch"):
        inf.DepthEstimator(net, backend="onnx")
    with pytest.raises(ValueError, match="scale_mode 'metric' unknown"):
        inf.DepthEstimator(net, scale_mode="metric")
    with pytest.raises(ValueError, match="needs camera_height"):
        inf.DepthEstimator(net, scale_mode="camera_height")
    with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8"):
        estimator.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8"):
        estimator.predict(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError, match="image is empty"):
        estimator.predict(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"K must have shape \(3, 3\)"):
        estimator.predict(np.zeros((10, 10, 3), np.uint8), np.eye(4))


# ----------------------------------------------------------------------------------------------------------------
# Metric scale from the camera height, on synthetic drives
# ----------------------------------------------------------------------------------------------------------------
TRUE_SCALE = 3.7  # the "network" predicts metric depth / 3.7


def _drive(frames, seed, height, pitch_deg, roll_deg):
    """A synthetic drive with the camera at ``height`` m above the road, pitched and rolled: (scene, poses)."""
    drive = synthetic_drive(frames, seed, camera_height=height, pitch_deg=pitch_deg, roll_deg=roll_deg)
    return drive.scene, list(drive.poses)


def test_camera_height_scale_on_a_synthetic_drive():
    height = 1.25
    scene, poses = _drive(30, seed=11, height=height, pitch_deg=4.0, roll_deg=2.0)
    K = synthetic_intrinsics(320, 96)
    rng = np.random.default_rng(0)
    g = inf.GroundPlaneScale(height)
    raw, smooth, truth = [], [], []
    for pose in poses:
        _, depth = scene.render(pose, K, 320, 96, ss=1)
        jitter = math.exp(0.04 * rng.standard_normal())  # the network's scale wanders from frame to frame
        rel = np.where(depth > 0, depth, np.nan) / (TRUE_SCALE * jitter)
        rel *= 1.0 + 0.05 * rng.standard_normal(rel.shape)  # and each pixel is noisy
        truth.append(TRUE_SCALE * jitter)
        smooth.append(g.update(rel.astype(np.float32), K))
        raw.append(g.last_measurement)
    assert all(m is not None for m in raw)
    # Every frame's own fit is close to that frame's truth; the smoothed scale is within 5 % of the truth.
    np.testing.assert_allclose(raw, truth, rtol=0.05)
    assert abs(smooth[-1] / TRUE_SCALE - 1) < 0.05
    assert all(abs(s / TRUE_SCALE - 1) < 0.05 for s in smooth)
    # Smoothing: the published scale changes far less from frame to frame than the measurements do.
    assert np.std(np.diff(np.log(smooth))) < 0.3 * np.std(np.diff(np.log(raw)))
    assert g.last_fit.normal[1] == pytest.approx(math.cos(math.radians(math.hypot(4.0, 2.0))), abs=0.01)


def test_camera_height_through_the_estimator_follows_resize_and_intrinsics():
    """An oracle backend returns the true disparity (/ 3.7) at the network's input: the estimator must carry K
    through the resize for the ground fit to find the mounting height."""
    height, big_w, big_h = 1.65, 640, 192
    scene, poses = _drive(8, seed=4, height=height, pitch_deg=2.0, roll_deg=0.0)
    K_big = synthetic_intrinsics(big_w, big_h)
    state = {}

    class Oracle:
        name = "oracle"
        device = torch.device("cpu")
        fp16 = False

        def __init__(self, checkpoint, device, fp16):
            self.config = type("Cfg", (), {"height": 96, "width": 320, "min_depth": 0.1, "max_depth": 100.0})

        def supports_size(self, h, w):
            return (h, w) == (96, 320)

        def __call__(self, x):
            assert x.shape == (1, 3, 96, 320) and x.dtype == np.float32
            K_net = resize_K(K_big, (big_w, big_h), (320, 96))
            _, depth = scene.render(state["pose"], K_net, 320, 96, ss=1)
            rel = np.where(depth > 0, depth / TRUE_SCALE, 100.0)
            s = (1.0 / rel - 0.01) / (10.0 - 0.01)
            return s[None, None].astype(np.float32)

    register_backend("oracle", Oracle)
    try:
        est = inf.DepthEstimator(None, backend="oracle", scale_mode="camera_height", camera_height=height,
                                 scale_factor=1.0)
        for pose in poses:
            state["pose"] = pose
            rgb, depth = scene.render(pose, K_big, big_w, big_h, ss=1)
            res = est.predict(rgb, K_big)
        assert res.metric and res.units == "m"
        assert res.scale == pytest.approx(TRUE_SCALE, rel=0.05)
        assert res.depth.shape == (big_h, big_w)
        road = (depth > 0) & (depth < 30)
        ratio = np.median(res.depth[road] / depth[road])
        assert ratio == pytest.approx(1.0, abs=0.05)
        # No intrinsics: the ground cannot be fitted; the smoothed scale is kept (still metric).
        assert est.predict(rgb).scale == pytest.approx(res.scale)
        # Fresh estimator, no intrinsics ever: the initial factor, flagged as not metric.
        est2 = inf.DepthEstimator(None, backend="oracle", scale_mode="camera_height", camera_height=height,
                                  scale_factor=2.0)
        out = est2.predict(rgb)
        assert out.scale == 2.0 and not out.metric
    finally:
        BACKENDS.pop("oracle", None)


def test_plane_fit_rejects_scenes_without_ground():
    # A fronto-parallel wall 5 m ahead fills the image: no plane within the tilt limit.
    K = synthetic_intrinsics(320, 96)
    g = inf.GroundPlaneScale(1.5)
    assert g.update(np.full((96, 320), 5.0, np.float32), K) is None
    assert g.scale is None and g.last_fit is None
    assert g.update(np.full((96, 320), np.nan, np.float32), K) is None


def _level_ground(height_rel, K, w=320, h=96):
    v = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    ray_y = (v - K[1, 2]) / K[1, 1]
    with np.errstate(divide="ignore"):
        z = np.where(ray_y > 0.02, height_rel / ray_y, np.nan)
    return z.astype(np.float32)


def test_outliers_are_skipped_and_persistent_changes_restart():
    K = synthetic_intrinsics(320, 96)
    g = inf.GroundPlaneScale(1.5, warmup=3, max_jump=0.3, max_rejections=4, smoothing=0.2)
    for _ in range(5):
        g.update(_level_ground(0.5, K), K)  # fitted height 0.5 -> scale 3
    assert g.scale == pytest.approx(3.0, rel=1e-3)
    g.update(_level_ground(0.25, K), K)  # one frame says 6: an outlier
    assert g.last_measurement == pytest.approx(6.0, rel=1e-3)
    assert g.scale == pytest.approx(3.0, rel=1e-3)
    for _ in range(3):
        g.update(_level_ground(0.25, K), K)
    assert g.scale == pytest.approx(6.0, rel=1e-3)  # the 4th rejection in a row restarts at the new value


def test_ground_plane_arguments_are_checked():
    with pytest.raises(ValueError, match="camera_height must be a positive"):
        inf.GroundPlaneScale(0.0)
    with pytest.raises(ValueError, match="roi must be fractions"):
        inf.GroundPlaneScale(1.0, roi=(0.8, 0.5, 0.0, 1.0))
    with pytest.raises(ValueError, match="smoothing"):
        inf.GroundPlaneScale(1.0, smoothing=0.0)


def test_auto_backend_on_the_cpu_agrees_with_torch(checkpoint, image):
    pytest.importorskip("onnxruntime")
    from dna_depth_core.backends import recommended_backend

    auto = inf.DepthEstimator(checkpoint, device="cpu", output="network")
    # The rule's runtime for this CPU's ISA class (onnxruntime with AVX-512, openvino without: test_backends).
    assert auto.backend.name == recommended_backend("cpu", checkpoint) != "torch"
    assert auto.backend_reason.startswith(f"backend auto: {auto.backend.name} fp32")
    ref = inf.DepthEstimator(checkpoint, device="cpu", backend="torch", output="network")
    a, b = auto.predict(image, K_KITTI).depth, ref.predict(image, K_KITTI).depth
    # Equal to torch within 1e-4 in disparity (the bar), compared here through depth = 1/scaled disparity.
    np.testing.assert_allclose(1.0 / a, 1.0 / b, atol=1e-4)
