"""dna_depth_core.camera: the one camera model, against OpenCV's resampling, hand-made geometry and CameraInfo
messages of every flavour (plain objects with ROS 2 or ROS 1 field names, rosbags messages)."""
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from dna_depth_core import camera

K_KITTI = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])


def _project(K, X):
    X = np.asarray(X, np.float64)
    return (K @ X)[:2] / X[2]


# ----------------------------------------------------------------------------------------------------------------
# Normalised <-> pixel, resize, crop, flip
# ----------------------------------------------------------------------------------------------------------------
def test_normalised_form_is_corner_based_and_round_trips():
    Kn = camera.normalise_K(K_KITTI, (1242, 375))
    assert Kn[0, 0] == pytest.approx(721.5377 / 1242) and Kn[1, 1] == pytest.approx(721.5377 / 375)
    assert Kn[0, 2] == pytest.approx((609.5593 + 0.5) / 1242) and Kn[1, 2] == pytest.approx((172.854 + 0.5) / 375)
    np.testing.assert_allclose(camera.pixel_K(Kn, (1242, 375)), K_KITTI, rtol=0, atol=1e-12)


def test_kitti_default_puts_the_principal_point_at_the_image_centre():
    for w, h in ((640, 192), (1024, 320), (80, 24)):
        K = camera.pixel_K(camera.KITTI_K_NORMALISED, (w, h))
        np.testing.assert_allclose(K, [[0.58 * w, 0, (w - 1) / 2], [0, 1.92 * h, (h - 1) / 2], [0, 0, 1]])


def test_resize_matches_opencv_resampling():
    # A ramp I(u) = u resized by OpenCV holds, at each destination pixel, the source coordinate it sampled. A point
    # that K puts on source pixel u must land, with the resized K, where that value equals u.
    src_w, src_h, dst_w, dst_h = 1242, 375, 224, 64
    ramp_u = np.tile(np.arange(src_w, dtype=np.float32), (src_h, 1))
    ramp_v = np.tile(np.arange(src_h, dtype=np.float32)[:, None], (1, src_w))
    su = cv2.resize(ramp_u, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR)
    sv = cv2.resize(ramp_v, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR)
    K2 = camera.resize_K(K_KITTI, (src_w, src_h), (dst_w, dst_h))
    for X in ([-3.0, 1.0, 9.0], [2.0, -0.5, 20.0], [0.1, 0.6, 4.0]):
        u, v = _project(K_KITTI, X)
        u2, v2 = _project(K2, X)
        j0, i0 = int(np.floor(u2)), int(np.floor(v2))
        fu, fv = u2 - j0, v2 - i0
        sampled_u = su[i0, j0] * (1 - fu) + su[i0, j0 + 1] * fu
        sampled_v = sv[i0, j0] * (1 - fv) + sv[i0 + 1, j0] * fv
        assert sampled_u == pytest.approx(u, abs=1e-2)
        assert sampled_v == pytest.approx(v, abs=1e-2)


def test_resize_by_an_integer_factor_maps_pixel_blocks():
    # Shrinking 4x: destination pixel j is the centre of source pixels 4j .. 4j+3, i.e. u = 4j + 1.5.
    K2 = camera.resize_K(K_KITTI, (1240, 372), (310, 93))
    X = np.array([1.3, -0.4, 6.0])
    u, v = _project(K_KITTI, X)
    j, i = _project(K2, X)
    np.testing.assert_allclose([4 * j + 1.5, 4 * i + 1.5], [u, v], atol=1e-9)


def test_crop_box_and_crop():
    assert camera.centre_crop_box(1600, 375, 224 / 64) == (144, 0, 1312, 375)  # too wide: crop the width
    assert camera.centre_crop_box(1242, 375, 224 / 64) == (0, 10, 1242, 355)  # too tall: crop the height
    assert camera.centre_crop_box(224, 64, 224 / 64) == (0, 0, 224, 64)
    x0, y0, w, h = camera.centre_crop_box(640, 480, 224 / 64)
    assert (x0, w) == (0, 640) and h == round(640 / 3.5) and y0 == (480 - h) // 2
    Kc = camera.crop_K(K_KITTI, 10, 20)
    X = np.array([1.0, 0.5, 7.0])
    np.testing.assert_allclose(_project(Kc, X), _project(K_KITTI, X) - [10, 20])
    # network_K = crop then resize
    box = (10, 20, 620, 186)
    np.testing.assert_allclose(camera.network_K(K_KITTI, box, (320, 96)),
                               camera.resize_K(Kc, (620, 186), (320, 96)), rtol=0, atol=1e-12)


def test_flip_mirrors_pixels():
    K = np.array([[100.0, 0, 30], [0, 100, 20], [0, 0, 1]])
    Kf = camera.flip_K(K, 64)
    assert Kf[0, 2] == 33 and K[0, 2] == 30  # a copy
    X = np.array([0.4, 0.1, 2.0])
    Xm = X * [-1, 1, 1]  # the mirrored world point
    np.testing.assert_allclose(_project(Kf, Xm)[0], 63 - _project(K, X)[0])
    Kt = torch.tensor(K)[None].expand(3, 3, 3)
    assert torch.equal(camera.flip_K(Kt, 64)[:, 0, 2], torch.full((3,), 33.0, dtype=torch.float64))


def test_bad_matrices_are_named():
    with pytest.raises(ValueError, match="shape"):
        camera.as_K(np.eye(4))
    with pytest.raises(ValueError, match="fx, fy > 0"):
        camera.as_K(np.diag([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="size"):
        camera.normalise_K(K_KITTI, (0, 375))


# ----------------------------------------------------------------------------------------------------------------
# Plausibility
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("K,key", [
    (np.diag([1e-30, 1e-30, 1.0]), "intrinsics.fx"),
    (np.diag([1e30, 1e30, 1.0]), "intrinsics.fx"),
    (np.array([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]]), "intrinsics.fx"),  # a normalised matrix
    (K_KITTI.T, "intrinsics.layout"),  # transposed
    (np.array([[700.0, 0, -54520], [0, 700, 180], [0, 0, 1]]), "intrinsics.cx"),
    (np.array([[700.0, 0, 620], [0, 7000, 180], [0, 0, 1]]), "intrinsics.aspect"),
    (np.array([[700.0, 0, math.inf], [0, 700, 180], [0, 0, 1]]), "intrinsics.cx"),
])
def test_implausible_intrinsics_are_named(K, key):
    problems = camera.intrinsics_problems(K, (1242, 375))
    assert key in [p.key for p in problems], problems
    with pytest.raises(camera.CameraInfoError) as err:
        camera.check_intrinsics(K, (1242, 375))
    assert err.value.problems == problems


def test_infinite_principal_point_is_named_as_such():
    K = np.array([[721.5, 0, math.inf], [0, 721.5, 172.0], [0, 0, 1]])
    (p,) = camera.intrinsics_problems(K, (1242, 375))
    assert p.key == "intrinsics.cx" and "cx is inf" in p.message


def test_plausible_intrinsics_pass():
    assert camera.intrinsics_problems(K_KITTI, (1242, 375)) == []
    assert camera.intrinsics_problems(camera.pixel_K(camera.KITTI_K_NORMALISED, (640, 192)), (640, 192)) == []
    assert camera.intrinsics_problems(K_KITTI) == []  # no size: size-free checks only


# ----------------------------------------------------------------------------------------------------------------
# CameraInfo
# ----------------------------------------------------------------------------------------------------------------
def _info(K=None, P=None, w=1242, h=375, upper=False, d=(0.0,) * 5, roi=(0, 0, 0, 0), binning=(0, 0)):
    k = np.zeros(9) if K is None else np.asarray(K, np.float64).reshape(-1)
    p = np.zeros(12) if P is None else np.asarray(P, np.float64).reshape(-1)
    fields = {"K": k, "P": p, "D": np.asarray(d, np.float64)} if upper else {"k": k, "p": p, "d": np.asarray(d)}
    x, y, rw, rh = roi
    return SimpleNamespace(width=w, height=h, binning_x=binning[0], binning_y=binning[1],
                           roi=SimpleNamespace(x_offset=x, y_offset=y, width=rw, height=rh, do_rectify=False),
                           **fields)


P_KITTI = np.hstack([K_KITTI, [[44.85], [0.2164], [0.00274]]])  # P_rect_02 of kitti_tiny


@pytest.mark.parametrize("upper", [False, True])
def test_camera_info_prefers_P_and_reads_ros1_names(upper):
    K_raw = np.array([[700.0, 0, 600], [0, 705, 180], [0, 0, 1]])
    got = camera.camera_info_intrinsics(_info(K_raw, P_KITTI, upper=upper))
    np.testing.assert_array_equal(got.K, K_KITTI)
    assert got.size == (1242, 375) and got.source == "P"
    np.testing.assert_array_equal(camera.camera_info_intrinsics(_info(K_raw, P_KITTI, upper=upper), "K").K, K_raw)
    assert camera.camera_info_intrinsics(_info(K_raw, upper=upper)).source == "K"  # P unset


def test_camera_info_from_rosbags_messages():
    from rosbags.typesys import Stores, get_typestore

    T = get_typestore(Stores.ROS2_HUMBLE).types
    msg = T["sensor_msgs/msg/CameraInfo"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"),
        height=375, width=1242, distortion_model="plumb_bob", d=np.zeros(5), k=K_KITTI.reshape(-1),
        r=np.eye(3).reshape(-1), p=P_KITTI.reshape(-1), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    got = camera.camera_info_intrinsics(msg)
    np.testing.assert_array_equal(got.K, K_KITTI)
    assert got.size == (1242, 375)


def test_roi_then_binning_follow_the_pixels():
    # In a 2x-binned ROI starting at (x0, y0), binned pixel j covers full pixels x0 + 2j and x0 + 2j + 1.
    K_raw = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    got = camera.camera_info_intrinsics(_info(K_raw, w=640, h=480, roi=(100, 60, 320, 240), binning=(2, 2)))
    assert got.size == (160, 120)
    X = np.array([0.3, -0.2, 2.0])
    u, v = _project(K_raw, X)
    j, i = _project(got.K, X)
    np.testing.assert_allclose([100 + 2 * j + 0.5, 60 + 2 * i + 0.5], [u, v], atol=1e-9)


def test_intrinsics_follow_an_image_of_another_size():
    got = camera.camera_info_intrinsics(_info(K_KITTI))
    np.testing.assert_allclose(got.at((621, 187.5)), camera.resize_K(K_KITTI, (1242, 375), (621, 187.5)))
    np.testing.assert_array_equal(got.at((1242, 375)), K_KITTI)


@pytest.mark.parametrize("make,key,text", [
    (lambda: _info(K_KITTI, P_KITTI / 721.5377), "camera_info.K_P", "disagree"),  # a normalised P
    (lambda: _info(np.diag([1e-30, 1e-30, 1.0])), "camera_info.fx", "implausible"),
    (lambda: _info(np.diag([1e30, 1e30, 1.0])), "camera_info.fx", "implausible"),
    (lambda: _info(K_KITTI.T), "camera_info.layout", "transposed"),
    (lambda: _info(K_KITTI, roi=(1200, 0, 100, 100)), "camera_info.roi", "outside"),
    (lambda: _info(K_KITTI, binning=(100000, 1)), "camera_info.binning", "out of range"),
    (lambda: _info(K_KITTI, d=(0.1, math.nan, 0, 0, 0)), "camera_info.D", "non-finite"),
    (lambda: _info(np.zeros((3, 3)), np.zeros((3, 4))), "camera_info.K", "no valid intrinsics"),
])
def test_implausible_camera_info_names_the_field(make, key, text):
    with pytest.raises(camera.CameraInfoError) as err:
        camera.camera_info_intrinsics(make())
    keys = [p.key for p in err.value.problems]
    assert key in keys, err.value.problems
    assert text in next(p.message for p in err.value.problems if p.key == key)


def test_camera_info_without_fields_is_named():
    with pytest.raises(camera.CameraInfoError, match="no field 'k'"):
        camera.camera_info_intrinsics(SimpleNamespace(width=1, height=1))
    with pytest.raises(ValueError, match="intrinsics source 'X'"):
        camera.camera_info_intrinsics(_info(K_KITTI), "X")
