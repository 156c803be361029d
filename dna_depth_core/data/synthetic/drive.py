"""Drives through the synthetic street: camera trajectories, and the one builder of synthetic camera frames in
memory (tests, benchmarks, int8 calibration, bags, KITTI-layout drives)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dna_depth_core.data.synthetic.rig import ROAD_Y, rotation_xyz, synthetic_intrinsics
from dna_depth_core.data.synthetic.scene import SyntheticScene

def make_trajectory(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Camera poses of a drive: ``(poses (N, 4, 4) T_world_cam, steps (N-1,) metres per frame)``.

    Forward speed is smooth random noise in 0.4..1.4 m/frame (mean 0.8..1.0); the heading oscillates slowly
    with the distance driven (a few tenths of a degree per frame at most), and the camera stays within about
    0.7 m of the street's centre line, at height 0 (1.65 m above the road).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7002]))
    m = max(frames - 1, 1)
    sigma = 3.0
    half = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    smooth = np.convolve(rng.standard_normal(m + 2 * half), kernel / kernel.sum(), mode="valid")[:m]
    smooth = (smooth - smooth.mean()) / smooth.std() if m > 2 else np.zeros(m)
    steps = np.clip(rng.uniform(0.8, 1.0) + 0.3 * smooth, 0.4, 1.4)[: frames - 1]
    amps = rng.uniform(0.008, 0.02, 2)
    lens = rng.uniform(40.0, 100.0, 2)
    phases = rng.uniform(0.0, 2.0 * np.pi, 2)

    def heading(s):
        return np.sum(amps * np.sin(2.0 * np.pi * np.asarray(s)[..., None] / lens + phases), axis=-1)

    # lateral offset of a zero-mean heading oscillation, integrated with midpoints
    x = -np.sum(amps * lens / (2 * np.pi) * np.cos(phases))
    z = 0.0
    s = 0.0
    poses = np.zeros((frames, 4, 4))
    for i in range(frames):
        psi = float(heading(s))
        c, sn = np.cos(psi), np.sin(psi)
        poses[i] = [[c, 0, sn, x], [0, 1, 0, 0], [-sn, 0, c, z], [0, 0, 0, 1]]
        if i < frames - 1:
            ds = steps[i]
            psi_mid = float(heading(s + ds / 2))
            x += ds * np.sin(psi_mid)
            z += ds * np.cos(psi_mid)
            s += ds
    return poses, np.asarray(steps, np.float64)


@dataclass
class SyntheticDrive:
    """A street and the camera poses of one drive through it (:func:`synthetic_drive`)."""

    scene: SyntheticScene
    poses: np.ndarray  # (N, 4, 4) T_world_cam
    steps: np.ndarray  # (N-1,) metres driven between consecutive frames

    def __len__(self) -> int:
        return len(self.poses)

    def render(self, i: int, width: int, height: int, K: np.ndarray | None = None, ss: int = 2):
        """Frame ``i`` as ``(rgb, K, depth)``: (H, W, 3) uint8 RGB, the (3, 3) pixel intrinsics (default
        :func:`synthetic_intrinsics`) and the (H, W) float32 camera-z depth in metres (0 = sky)."""
        K = synthetic_intrinsics(width, height) if K is None else np.asarray(K, np.float64)
        rgb, depth = self.scene.render(self.poses[i], K, width, height, ss=ss)
        return rgb, K, depth


def synthetic_drive(frames: int, seed: int = 0, camera_height: float = ROAD_Y, pitch_deg: float = 0.0,
                    roll_deg: float = 0.0) -> SyntheticDrive:
    """A drive of ``frames`` poses (:func:`make_trajectory`) through the street of ``seed``, the street long
    enough for it (20 m beyond the last pose).

    The camera rig: ``camera_height`` metres above the road (default 1.65, KITTI's), pitched down by
    ``pitch_deg`` (a rotation about the camera's x axis; positive looks down) after a roll of ``roll_deg`` about
    its optical axis.
    """
    poses, steps = make_trajectory(frames, seed)
    scene = SyntheticScene(seed, length=float(poses[:, 2, 3].max()) + 20.0)
    if camera_height != ROAD_Y or pitch_deg or roll_deg:
        rig = rotation_xyz(-np.deg2rad(pitch_deg), 0.0, 0.0) @ rotation_xyz(0.0, 0.0, np.deg2rad(roll_deg))
        poses = poses.copy()
        poses[:, :3, :3] = poses[:, :3, :3] @ rig
        poses[:, 1, 3] = ROAD_Y - camera_height  # the road is the plane y = ROAD_Y of the street frame
    return SyntheticDrive(scene=scene, poses=poses, steps=steps)


def iter_synthetic_frames(count: int, width: int, height: int, seed: int = 0, every: int = 1, ss: int = 2):
    """``count`` synthetic street frames ``(rgb, K, depth)`` (see :meth:`SyntheticDrive.render`), one every
    ``every`` frames of a drive of ``count * every`` frames with ``seed``, rendered one at a time."""
    if count < 1 or every < 1:
        raise ValueError(f"count and every must be >= 1, got {count} and {every}")
    drive = synthetic_drive(count * every, seed)
    for i in range(0, count * every, every):
        yield drive.render(i, width, height, ss=ss)


def synthetic_frames(count: int, width: int, height: int, seed: int = 0, every: int = 1,
                     ss: int = 2) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The list of :func:`iter_synthetic_frames`: ``[(rgb (H, W, 3) uint8, K (3, 3), depth (H, W) float32)]``.

    ``every`` > 1 spaces the frames out along the drive (more varied views, e.g. for int8 calibration); ``ss``
    is the supersampling at geometric edges (1 is quicker)."""
    return list(iter_synthetic_frames(count, width, height, seed=seed, every=every, ss=ss))
