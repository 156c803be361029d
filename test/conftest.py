"""Shared test fixtures."""
import array

import cv2
import numpy as np
import pytest
import torch
from sensor_msgs.msg import CameraInfo

from dna_depth_core.data.kitti import read_calib_file


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


def _texture(p: np.ndarray) -> np.ndarray:
    """Smooth RGB texture (..., 3) in [0.2, 0.8] of points p (..., 3) on the plane (target-frame metres)."""
    x, y = p[..., 0], p[..., 1]
    channels = [
        0.5 + 0.15 * np.sin(2 * np.pi * x / 1.1 + 0.3) + 0.15 * np.sin(2 * np.pi * (y / 0.9 + x / 2.3)),
        0.5 + 0.15 * np.sin(2 * np.pi * y / 1.3 + 1.0) + 0.15 * np.cos(2 * np.pi * (x / 0.8 - y / 2.9)),
        0.5 + 0.3 * np.sin(2 * np.pi * (x + y) / 1.7 + 2.0),
    ]
    return np.stack(channels, axis=-1)


@pytest.fixture(scope="session")
def plane_scene():
    """A textured tilted plane ~5 m ahead seen by a 64x48 camera (fx = fy = 50) from two poses.

    Both images are rendered analytically by ray-plane intersection (no warping code involved).
    The source camera sits 0.5 m forward, 0.4 m right, 0.05 m up of the target camera, yawed by 3 degrees.
    Returns a dict of float32 tensors: ``target``, ``source`` (1, 3, H, W), ``depth`` (1, 1, H, W),
    ``K`` (1, 3, 3), ``T_source_target`` (1, 4, 4).
    """
    w, h, f = 64, 48, 50.0
    K = np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])
    n = np.array([0.1, -0.25, 1.0])
    n /= np.linalg.norm(n)
    d = n @ np.array([0.0, 0.0, 5.0])  # plane {p : n.p = d} through (0, 0, 5), target frame

    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # (H, W, 3), z = 1

    depth = d / (rays @ n)
    target = _texture(rays * depth[..., None])

    R_t_s, c = _rot_y(3.0), np.array([0.4, -0.05, 0.5])  # source camera in the target frame
    dirs = rays @ R_t_s.T
    lam = (d - n @ c) / (dirs @ n)
    source = _texture(c + lam[..., None] * dirs)

    T_t_s = np.eye(4)
    T_t_s[:3, :3], T_t_s[:3, 3] = R_t_s, c

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).float()

    return {
        "target": t(target.transpose(2, 0, 1))[None],
        "source": t(source.transpose(2, 0, 1))[None],
        "depth": t(depth)[None, None],
        "K": t(K)[None],
        "T_source_target": t(np.linalg.inv(T_t_s))[None],
    }


# ------------------------------------------------------------------------------------------------------------------
# ../shared (non-commercial reference data): read by path, never copied. Absent -> skip, except under CI=true.
# ------------------------------------------------------------------------------------------------------------------
import os  # noqa: E402
from pathlib import Path  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def require_shared(relative: str) -> Path:
    """The path ``../shared/<relative>``; skip the test with a reason when it is absent (fail under CI=true)."""
    path = SHARED / relative
    if not path.exists():
        msg = f"reference data {path} is absent (it lives in ../shared beside the repository, never in it)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI must provide it")
        pytest.skip(msg)
    return path


def lite0_checkpoint(directory, height: int, width: int, seed: int = 0) -> str:
    """Save a randomly initialised (seeded) dna_lite0 checkpoint at ``height`` x ``width`` into ``directory``."""
    import dna_depth_core

    torch.manual_seed(seed)
    net = dna_depth_core.build_model("dna_lite0", height=height, width=width)
    path = Path(directory) / f"lite0_{height}x{width}.safetensors"
    dna_depth_core.save_checkpoint(net, str(path))
    return str(path)


def image_dependent_decoder(net):
    """Re-draw the decoder's convolutions (not the heads) of a depth network with variance 1/fan_in, in place.

    A freshly initialised DNA decoder forgets the image: each random convolution shrinks the signal (~x0.3) and after
    ~30 of them the disparity is the same for any input (to 1e-7), so no int8 error, nor a wrongly prepared
    calibration image, could change it. With this draw the disparity depends on the image (0.27..0.55 over
    synthetic street frames, per-image std 0.03), as a trained network's does (int8 and OpenVINO tests).
    """
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, m in net.decoder.named_modules():
            if isinstance(m, torch.nn.Conv2d) and not name.startswith("heads"):
                m.weight.normal_(0.0, (1.0 / m.weight[0].numel()) ** 0.5, generator=gen)
    return net


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for the test: on a shared 2-core machine multi-threaded torch is erratic and slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------------------------
# The node tests' camera: the real KITTI frames of ../shared and a small random network
# ------------------------------------------------------------------------------------------------------------------
KITTI = "data/kitti_tiny/2011_09_26"  # in ../shared
NET_H, NET_W = 64, 224
FRAME_ID = "kitti_cam2_optical_frame"


@pytest.fixture(scope="module")
def kitti():
    """The 7 real frames (RGB) and a CameraInfo built from calib_cam_to_cam.txt (camera 2, rectified)."""
    calib = read_calib_file(require_shared(f"{KITTI}/calib_cam_to_cam.txt"))
    drive = require_shared(f"{KITTI}/2011_09_26_drive_0023_sync/image_02/data")
    P = calib["P_rect_02"].reshape(3, 4)
    w, h = (int(x) for x in calib["S_rect_02"])
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(drive.glob("*.png"))]
    assert len(frames) == 7 and frames[0].shape == (h, w, 3) == (375, 1242, 3)
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    info.header.frame_id = FRAME_ID
    info.k = P[:, :3].reshape(-1).copy()
    info.p = P.reshape(-1).copy()
    info.r = np.eye(3).reshape(-1)
    info.d = array.array("d", [0.0] * 5)
    return {"frames": frames, "info": info, "K": P[:, :3].copy(), "size": (w, h)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random dna_lite0 checkpoint at NET_H x NET_W (the node tests' network)."""
    return lite0_checkpoint(tmp_path_factory.mktemp("ckpt"), NET_H, NET_W)
