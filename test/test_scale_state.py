"""dna_depth_core.inference.scale_state: the scale's state over a drive (convergence, freezing, re-arming,
withholding) on synthetic drives whose exact depth is divided by a hidden factor, and through the estimator."""
import math

import numpy as np
import pytest
import torch

from dna_depth_core import inference as inf
from dna_depth_core.backends import BACKENDS, register_backend
from dna_depth_core.data.synthetic import synthetic_drive, synthetic_intrinsics

HIDDEN = 2.9  # the "network" predicts metric depth / 2.9 (times a per-frame jitter)
HEIGHT = 1.25


@pytest.fixture(scope="module")
def drive_depths():
    """Exact depth (NaN for the sky) of 24 frames of a drive with the camera 1.25 m high, pitched 4 deg, rolled
    2 deg, and the intrinsics."""
    drive = synthetic_drive(24, seed=21, camera_height=HEIGHT, pitch_deg=4.0, roll_deg=2.0)
    K = synthetic_intrinsics(320, 96)
    depths = []
    for pose in drive.poses:
        _, depth = drive.scene.render(pose, K, 320, 96, ss=1)
        depths.append(np.where(depth > 0, depth, np.nan).astype(np.float32))
    return depths, K


def _network(depths, factor, seed):
    """Relative depth as a network would give it: exact / (factor * per-frame jitter of 4 %), 5 % pixel noise."""
    rng = np.random.default_rng(seed)
    for depth in depths:
        jitter = math.exp(0.04 * rng.standard_normal())
        rel = depth / (factor * jitter) * (1.0 + 0.05 * rng.standard_normal(depth.shape))
        yield rel.astype(np.float32)


def test_frozen_scale_is_constant_and_within_3_percent(drive_depths):
    depths, K = drive_depths
    tracker = inf.ScaleTracker("camera_height", camera_height=HEIGHT, converge_frames=8, converge_tolerance=0.1,
                               freeze=True, withhold=True)
    states = [tracker.update(rel, K) for rel in _network(depths, HIDDEN, seed=1)]
    frozen = [s.frozen for s in states]
    assert any(frozen), [s.spread for s in states]
    first = frozen.index(True)
    assert first >= 7  # not before the window (8 measurements) is full
    assert not any(frozen[:first]) and all(frozen[first:])
    # Withheld until frozen, published after.
    assert all(s.withheld for s in states[:first]) and not any(s.withheld for s in states[first:])
    values = {s.value for s in states[first:]}
    assert len(values) == 1  # constant
    value = values.pop()
    assert value == pytest.approx(HIDDEN, rel=0.03)
    last = states[-1]
    assert last.metric and last.converged and last.mode == "camera_height"
    assert last.measured + last.rejected + last.failed == len(depths)
    assert last.measured >= 20

    # The network's scale changes (a new scene): the frozen value stays, however far the measurements move.
    states = [tracker.update(rel, K) for rel in _network(depths, 1.4 * HIDDEN, seed=2)]
    assert {s.value for s in states} == {value} and all(s.frozen for s in states)
    assert np.median([s.last_measurement for s in states]) == pytest.approx(1.4 * HIDDEN, rel=0.05)

    # Re-armed: withheld again until it converges and freezes at the new scale.
    tracker.rearm(reset_filter=True)
    assert not tracker.state.frozen and tracker.state.withheld and not tracker.state.converged
    states = [tracker.update(rel, K) for rel in _network(depths, 1.4 * HIDDEN, seed=3)]
    first = [s.frozen for s in states].index(True)
    assert {s.value for s in states[first:]} == {states[-1].value}
    assert states[-1].value == pytest.approx(1.4 * HIDDEN, rel=0.03)


def test_without_freeze_the_scale_follows_and_is_withheld_only_until_metric(drive_depths):
    depths, K = drive_depths
    tracker = inf.ScaleTracker("camera_height", camera_height=HEIGHT, factor=7.0, converge_frames=8,
                               converge_tolerance=0.1, withhold=True)
    # Before any measurement: the initial factor, not metric, withheld; no intrinsics = a failed frame.
    state = tracker.update(depths[0], None)
    assert (state.value, state.metric, state.withheld, state.failed) == (7.0, False, True, 1)
    assert tracker.plane is None
    states = [tracker.update(rel, K) for rel in _network(depths, HIDDEN, seed=4)]
    assert states[0].metric and not states[0].withheld  # metric from the first fit
    assert not any(s.frozen for s in states)
    assert len({s.value for s in states}) > 10  # it keeps following the measurements
    assert states[-1].converged and states[-1].spread <= 0.1
    assert states[-1].value == pytest.approx(HIDDEN, rel=0.05)
    # The ground plane of the frame, in metres: the mounting height, the rig's normal.
    plane = tracker.plane
    assert plane.source == "fit"
    assert plane.height == pytest.approx(HEIGHT, rel=0.05)
    np.testing.assert_allclose(plane.normal, inf.mounting_plane(HEIGHT, 4.0, 2.0).normal, atol=0.01)


def test_fixed_and_none_modes():
    fixed = inf.ScaleTracker("fixed", factor=3.0, withhold=True, freeze=True)
    state = fixed.update()
    assert (state.value, state.metric, state.converged, state.frozen, state.withheld) == (3.0, True, True, True,
                                                                                          False)
    fixed.set_factor(4.0)
    assert fixed.update().value == 4.0 and fixed.plane is None
    none = inf.ScaleTracker("none", withhold=True)
    state = none.update()
    assert (state.value, state.metric, state.frozen, state.withheld) == (1.0, False, False, False)


def test_camera_height_change_restarts(drive_depths):
    depths, K = drive_depths
    tracker = inf.ScaleTracker("camera_height", camera_height=HEIGHT, converge_frames=4, converge_tolerance=0.1,
                               freeze=True)
    for rel in _network(depths[:8], HIDDEN, seed=5):
        tracker.update(rel, K)
    assert tracker.state.frozen
    tracker.set_camera_height(2 * HEIGHT)  # the scale is proportional to the mounting height
    assert not tracker.state.frozen
    states = [tracker.update(rel, K) for rel in _network(depths, HIDDEN, seed=6)]
    assert states[-1].frozen and states[-1].value == pytest.approx(2 * HIDDEN, rel=0.03)


def test_scale_tracker_arguments_are_checked():
    with pytest.raises(ValueError, match="scale_mode 'metres' unknown"):
        inf.ScaleTracker("metres")
    with pytest.raises(ValueError, match="needs camera_height"):
        inf.ScaleTracker("camera_height")
    with pytest.raises(ValueError, match="converge_frames must be at least 2"):
        inf.ScaleTracker("fixed", converge_frames=1)
    with pytest.raises(ValueError, match=r"converge_tolerance must be in \(0, 1\)"):
        inf.ScaleTracker("fixed", converge_tolerance=0.0)
    with pytest.raises(ValueError, match="scale_factor must be positive"):
        inf.ScaleTracker("fixed").set_factor(-1.0)
    with pytest.raises(ValueError, match="camera_height applies to scale_mode 'camera_height'"):
        inf.ScaleTracker("fixed").set_camera_height(1.0)


def test_estimator_reports_the_scale_state_and_the_ground_plane(drive_depths):
    """An oracle backend returns the hidden-scale disparity of the synthetic frames: the estimator withholds its
    results until the scale freezes, then reports the frozen scale and the ground plane in metres."""
    depths, K = drive_depths
    frame = {}

    class Oracle:
        name = "oracle_scale"
        device = torch.device("cpu")
        fp16 = False

        def __init__(self, checkpoint, device, fp16):
            self.config = type("Cfg", (), {"height": 96, "width": 320, "min_depth": 0.1, "max_depth": 100.0})

        def supports_size(self, h, w):
            return (h, w) == (96, 320)

        def __call__(self, x):
            rel = np.where(np.isfinite(frame["depth"]), frame["depth"] / HIDDEN, 100.0)
            return ((1.0 / rel - 0.01) / (10.0 - 0.01))[None, None].astype(np.float32)

    register_backend("oracle_scale", Oracle)
    try:
        est = inf.DepthEstimator(None, backend="oracle_scale", scale_mode="camera_height", camera_height=HEIGHT,
                                 converge_frames=5, converge_tolerance=0.05, freeze_scale=True, withhold=True)
        rgb = np.zeros((96, 320, 3), np.uint8)
        results = []
        for depth in depths[:12]:
            frame["depth"] = depth
            results.append(est.predict(rgb, K))
        withheld = [r.scale_state.withheld for r in results]
        assert withheld[:4] == [True] * 4 and not withheld[-1]
        last = results[-1]
        assert last.scale_state.frozen and last.metric and last.scale == last.scale_state.value
        assert last.scale == pytest.approx(HIDDEN, rel=0.03)
        road = np.isfinite(depths[11]) & (depths[11] < 30)
        assert np.median(last.depth[road] / depths[11][road]) == pytest.approx(1.0, rel=0.03)
        assert last.ground_plane.height == pytest.approx(HEIGHT, rel=0.03)
        np.testing.assert_allclose(last.ground_plane.normal, inf.mounting_plane(HEIGHT, 4.0, 2.0).normal, atol=0.01)
        est.rearm_scale()
        assert not est.scale_tracker.state.frozen
        # Other modes: no ground plane, a constant state.
        fixed = inf.DepthEstimator(None, backend="oracle_scale", scale_mode="fixed", scale_factor=2.0)
        res = fixed.predict(rgb, K)
        assert res.ground_plane is None and res.scale_state.frozen and res.scale == 2.0
        assert fixed.scale_factor == 2.0
    finally:
        BACKENDS.pop("oracle_scale", None)
