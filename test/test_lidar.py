"""Depth against a robot's LiDAR: quaternions and the point projection (geometry), static transforms and
PointCloud2 (data.rosbag.tf, data.rosbag.pointcloud), pairing by time (data.rosbag.lidar), the synthetic bag's
LiDAR and /tf_static (data.rosbag.write, data.synthetic.lidar), the scoring (evaluation.lidar) and
`dna-depth evaluate --bag` with its errors.

Reference values are computed here by hand: rotations of 90 and 180 degrees, pixels of points placed on known rays,
the exact synthetic depth at the pixels the scan was sampled from, and the metrics of a constant prediction.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import dna_depth_core
from dna_depth_core.cli import main as cli_main
from dna_depth_core.data import rosbag as rb
from dna_depth_core.data.rosbag.read import typestore
from dna_depth_core.data.synthetic import bag_extrinsics, depth_to_scan, synthetic_intrinsics
from dna_depth_core.evaluation.lidar import (bin_ranges, parse_bins, parse_metric_scale, score_lidar)
from dna_depth_core.geometry import (invert_pose, matrix_to_quaternion, points_to_depth, quaternion_to_matrix)
from dna_depth_core.io.checkpoint import save_checkpoint

W, H, N = 192, 64, 5  # the synthetic bag: 5 frames of 192x64 at 10 Hz, LiDAR 5 ms after each image
S45 = np.sqrt(0.5)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("lidar_bags")
    out = {"full": d / "full", "no_tf": d / "no_tf", "no_lidar": d / "no_lidar"}
    out["info"] = rb.write_synthetic_bag(out["full"], N, seed=4, width=W, height=H, ss=1)
    rb.write_synthetic_bag(out["no_tf"], 2, seed=4, width=W, height=H, ss=1, tf_static=False, storage="sqlite3")
    rb.write_synthetic_bag(out["no_lidar"], 2, seed=4, width=W, height=H, ss=1, lidar_topic=None, tf_static=False)
    for name in ("full", "no_tf"):  # each bag's exact depth, by image stamp
        out[f"exact_{name}"] = rb.read_bag_frames(out[name], depth_topic=rb.DEFAULT_DEPTH_TOPIC).depth
    return out


@pytest.fixture(scope="module")
def constant_ckpt(tmp_path_factory):
    """A network whose full-resolution disparity is the constant sigmoid(-2) (last conv zeroed, bias -2)."""
    net = dna_depth_core.build_model("dna_lite0", height=H, width=W)
    with torch.no_grad():
        head = net.decoder.heads[0].conv.pointwise
        head.weight.zero_()
        head.bias.fill_(-2.0)
    path = tmp_path_factory.mktemp("w") / "const.safetensors"
    save_checkpoint(net, str(path))
    return path


CONST_DEPTH = 1.0 / (0.01 + (10.0 - 0.01) / (1 + np.exp(2.0)))  # disp_to_depth(sigmoid(-2)), min 0.1, max 100


# ------------------------------------------------------------------------------------------------------------
# geometry: quaternions, poses, points -> sparse depth
# ------------------------------------------------------------------------------------------------------------
def test_quaternions_of_known_rotations():
    rz90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, S45, S45]), rz90, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix([1, 0, 0, 0]), np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    # base_link <- optical frame: optical z = base x, optical x = -base y, optical y = -base z
    opt = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    np.testing.assert_allclose(quaternion_to_matrix([-0.5, 0.5, -0.5, 0.5]), opt, atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion(opt), [-0.5, 0.5, -0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(matrix_to_quaternion(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0], atol=1e-12)
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(20, 4)):
        q /= np.linalg.norm(q)
        R = quaternion_to_matrix(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix([0, 0, 0, 1.005]), np.eye(3), atol=1e-12)  # normalised
    with pytest.raises(ValueError, match="norm"):
        quaternion_to_matrix([0, 0, 0, 1.2])
    with pytest.raises(ValueError, match="4 finite numbers"):
        quaternion_to_matrix([0, 0, 1])


def test_invert_pose_numpy_matches_torch_and_inverse():
    T = np.eye(4)
    q = np.array([0.1, -0.3, 0.2, 0.9])
    T[:3, :3], T[:3, 3] = quaternion_to_matrix(q / np.linalg.norm(q)), [1.0, -2.0, 0.5]
    inv = invert_pose(T)
    np.testing.assert_allclose(inv @ T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(inv, invert_pose(torch.from_numpy(T)[None])[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(invert_pose(np.stack([T, inv])), np.stack([inv, T]), atol=1e-12)
    with pytest.raises(ValueError, match="4, 4"):
        invert_pose(np.eye(3))


def test_points_to_depth_pixel_rounding_nearest_return_and_drops():
    # fx = fy = 10, cx = 2, cy = 1 on a 5 x 3 image: a point (x, y, z) projects to u = 10 x / z + 2, v = 10 y / z + 1
    K = np.array([[10.0, 0.0, 2.0], [0.0, 10.0, 1.0], [0.0, 0.0, 1.0]])

    def at(u, v, z):  # the camera point that projects to (u, v) at depth z
        return [(u - 2.0) * z / 10.0, (v - 1.0) * z / 10.0, z]

    pts = np.array([  # at z = 10 the edge cases are exact in floating point
        at(0.0, 0.0, 4.0),     # pixel (0, 0)
        at(-0.5, 1.49, 10.0),  # u = -0.5 is the left edge of pixel 0 (kept); v = 1.49 -> row 1
        at(-0.51, 2.0, 5.0),   # just off the left edge: dropped
        at(4.49, 2.49, 6.0),   # the last pixel (4, 2)
        at(4.5, 0.0, 10.0),    # u = W - 0.5: off the image
        at(2.0, 2.5, 10.0),    # v = H - 0.5: off the image
        at(1.5, 0.7, 10.0),    # u = 1.5 lands on pixel 2 (pixel i covers [i - 0.5, i + 0.5)), v = 0.7 on row 1
        at(2.2, 1.2, 3.0),     # pixel (2, 1) again, nearer: wins
        at(2.0, 1.0, 9.0),     # and a farther one there
        [0.1, 0.1, -2.0],      # behind the camera (would project inside the image)
        [np.nan, 0.0, 3.0],    # no return
    ])
    for order in (np.arange(len(pts)), np.arange(len(pts))[::-1]):
        counts = {}
        d = points_to_depth(pts[order], K, 3, 5, counts=counts)
        assert d.shape == (3, 5) and d.dtype == np.float32
        want = np.zeros((3, 5), np.float32)
        want[0, 0], want[1, 0], want[2, 4], want[1, 2] = 4.0, 10.0, 6.0, 3.0
        np.testing.assert_allclose(d, want, rtol=1e-6)
        assert counts == {"points": 11, "in_front": 9, "on_image": 6, "pixels": 4}
    # a (3, 4) P = K [R | t] applies the transform first: the same points expressed 1 m to the left and rotated
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = quaternion_to_matrix([0, 0, S45, S45]), [1.0, 0.0, 0.0]  # camera <- other frame
    inner = pts[[0, 3, 7, 8, 9]]  # no point on a pixel edge (the transform rounds)
    other = (inner - T[:3, 3]) @ T[:3, :3]  # the points in the other frame
    np.testing.assert_allclose(points_to_depth(other, K @ T[:3], 3, 5), points_to_depth(inner, K, 3, 5), rtol=1e-6)
    assert np.count_nonzero(points_to_depth(inner, K, 3, 5)) == 3
    with pytest.raises(ValueError, match="points"):
        points_to_depth(np.zeros((4, 2)), K, 3, 5)
    with pytest.raises(ValueError, match="P must"):
        points_to_depth(pts, np.eye(4), 3, 5)


# ------------------------------------------------------------------------------------------------------------
# static transforms
# ------------------------------------------------------------------------------------------------------------
def _rig_tree():
    """base_link -> camera_link (1 m ahead, 2 m up) -> camera_optical (axes permuted); base_link -> lidar (0.5 m
    ahead, 2.5 m up, yawed 90 degrees: its x axis points to base_link's +y)."""
    tree = rb.TransformTree("test tree")
    tree.add("base_link", "camera_link", rb.tf.rigid([1.0, 0.0, 2.0], np.eye(3)))
    tree.add("camera_link", "camera_optical", rb.tf.rigid([0, 0, 0], quaternion_to_matrix([-0.5, 0.5, -0.5, 0.5])))
    tree.add("/base_link", "/lidar", rb.tf.rigid([0.5, 0.0, 2.5], quaternion_to_matrix([0, 0, S45, S45])))
    return tree


def test_transform_tree_chains_through_base_link():
    tree = _rig_tree()
    assert tree.frames() == ["base_link", "camera_link", "camera_optical", "lidar"]  # leading '/' dropped
    assert tree.chain("camera_optical", "lidar") == ["camera_optical", "camera_link", "base_link", "lidar"]
    T = tree.lookup("camera_optical", "/lidar")
    # lidar (1, 0, 0) -> base (0.5, 1, 2.5) -> camera_link (-0.5, 1, 0.5) -> optical (x = -y, y = -z, z = x)
    np.testing.assert_allclose(T @ [1.0, 0.0, 0.0, 1.0], [-1.0, -0.5, -0.5, 1.0], atol=1e-12)
    np.testing.assert_allclose(T @ [0.0, 0.0, 0.0, 1.0], [0.0, -0.5, -0.5, 1.0], atol=1e-12)  # the lidar's origin
    np.testing.assert_allclose(tree.lookup("lidar", "camera_optical"), np.linalg.inv(T), atol=1e-12)
    np.testing.assert_allclose(tree.lookup("lidar", "lidar"), np.eye(4))
    # a later transform for the same child replaces the earlier one
    tree.add("base_link", "lidar", rb.tf.rigid([0.5, 0.0, 3.5], quaternion_to_matrix([0, 0, S45, S45])))
    np.testing.assert_allclose(tree.lookup("camera_optical", "lidar") @ [0, 0, 0, 1.0], [0.0, -1.5, -0.5, 1.0],
                               atol=1e-12)


def test_transform_tree_errors_name_the_frames():
    tree = _rig_tree()
    with pytest.raises(ValueError, match=r"frame 'velodyne' is not in it \(frames: base_link, camera_link, "
                                         r"camera_optical, lidar\)"):
        tree.lookup("camera_optical", "velodyne")
    tree.add("odom", "gps", np.eye(4))
    with pytest.raises(ValueError, match=r"not connected \(its trees: \{base_link, camera_link, camera_optical, "
                                         r"lidar\}; \{gps, odom\}\)"):
        tree.lookup("camera_optical", "gps")
    tree.add("gps", "odom", np.eye(4))
    with pytest.raises(ValueError, match="loop"):
        tree.lookup("camera_optical", "odom")
    with pytest.raises(ValueError, match="empty frame id"):
        tree.add("", "x", np.eye(4))


def test_tf_message_round_trip_and_yaml(tmp_path):
    ts = typestore()
    T_bc, T_bl = bag_extrinsics()
    msg = rb.tf_message(ts, [("base_link", "camera_optical_frame", T_bc), ("base_link", "lidar", T_bl)], 123)
    msg = ts.deserialize_cdr(ts.serialize_cdr(msg, rb.TF_MESSAGE_TYPE), rb.TF_MESSAGE_TYPE)
    tree = rb.TransformTree("msg")
    tree.add_message(msg)
    want = np.linalg.inv(T_bc) @ T_bl
    np.testing.assert_allclose(tree.lookup("camera_optical_frame", "lidar"), want, atol=1e-12)

    doc = {"transforms": [
        {"parent": "base_link", "child": "camera_optical_frame", "translation": T_bc[:3, 3].tolist(),
         "rotation": [-0.5, 0.5, -0.5, 0.5]},
        {"parent": "base_link", "child": "lidar", "translation": T_bl[:3, 3].tolist(),
         "rotation": T_bl[:3, :3].round(6).tolist()},  # a matrix, rounded as a calibration tool prints it
    ]}
    good = tmp_path / "extrinsics.yaml"
    good.write_text(yaml.safe_dump(doc))
    np.testing.assert_allclose(rb.transforms_from_yaml(good).lookup("camera_optical_frame", "lidar"), want,
                               atol=2e-6)

    def bad(text, match):
        f = tmp_path / "bad.yaml"
        f.write_text(text)
        with pytest.raises(ValueError, match=match):
            rb.transforms_from_yaml(f)

    bad("frames: []\n", "non-empty list 'transforms'")
    bad("transforms:\n  - {parent: a, child: b, rotation: [0, 0, 0, 1]}\n", r"transforms\[0\] has no translation")
    bad("transforms:\n  - {parent: a, child: b, translation: [0, 0], rotation: [0, 0, 0, 1]}\n",
        r"transforms\[0\].translation must be 3 finite numbers")
    bad("transforms:\n  - {parent: a, child: b, translation: [0, 0, 0], rotation: [0, 0, 0, 2]}\n",
        r"transforms\[0\].rotation: .*norm 2")
    bad("transforms:\n  - {parent: a, child: b, translation: [0, 0, 0], rotation: [[1, 0, 0], [0, 1, 0], [0, 0, 2]]}"
        "\n", "not a rotation matrix")
    bad("transforms:\n  - {parent: a, child: b, translation: [0, 0, 0], rotation: [0, 0, 1]}\n",
        "quaternion .* or a 3x3 matrix")
    bad("transforms: [\n", "not YAML")
    with pytest.raises(FileNotFoundError, match="extrinsics file not found"):
        rb.transforms_from_yaml(tmp_path / "none.yaml")


# ------------------------------------------------------------------------------------------------------------
# PointCloud2
# ------------------------------------------------------------------------------------------------------------
class _Field:
    def __init__(self, name, offset, datatype, count=1):
        self.name, self.offset, self.datatype, self.count = name, offset, datatype, count


class _Cloud:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_cloud_xyz_reads_other_layouts():
    ts = typestore()
    pts = np.array([[1.0, 2.0, 3.0, 0.5], [4.0, 5.0, 6.0, 0.25]], np.float32)
    header = ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=1, nanosec=5),
                                             frame_id="lidar")
    msg = rb.cloud_msg(ts, header, pts)
    msg = ts.deserialize_cdr(ts.serialize_cdr(msg, rb.POINTCLOUD2_TYPE), rb.POINTCLOUD2_TYPE)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity"] and msg.point_step == 16
    np.testing.assert_array_equal(rb.cloud_xyz(msg), pts[:, :3])

    # organised 2 x 3, big-endian float64 after an 8-byte ring field, 40-byte points, rows padded to 128 bytes;
    # one NaN return and one (0, 0, 0) "no return" point
    xyz = np.arange(18, dtype=np.float64).reshape(2, 3, 3) + 1.0
    xyz[0, 1] = np.nan
    xyz[1, 2] = 0.0
    rows = np.zeros((2, 128), np.uint8)
    for r in range(2):
        for c in range(3):
            rows[r, 40 * c + 8: 40 * c + 32] = np.frombuffer(xyz[r, c].astype(">f8").tobytes(), np.uint8)
    fields = [_Field("ring", 0, 6), _Field("x", 8, 8), _Field("y", 16, 8), _Field("z", 24, 8)]
    big = _Cloud(fields=fields, is_bigendian=True, height=2, width=3, point_step=40, row_step=128,
                 data=rows.reshape(-1)[:-8])  # the last row's padding is not sent
    got = rb.cloud_xyz(big)
    np.testing.assert_array_equal(got, xyz.reshape(-1, 3)[[0, 2, 3, 4]])
    assert rb.cloud_xyz(big, drop_invalid=False).shape == (6, 3)

    with pytest.raises(ValueError, match="no field z"):
        rb.cloud_xyz(_Cloud(fields=fields[:3], is_bigendian=False, height=1, width=0, point_step=40, row_step=0,
                            data=b""))
    with pytest.raises(ValueError, match="datatype 6"):
        rb.cloud_xyz(_Cloud(fields=[_Field("x", 0, 6), _Field("y", 4, 7), _Field("z", 8, 7)], is_bigendian=False,
                            height=1, width=1, point_step=12, row_step=12, data=bytes(12)))
    with pytest.raises(ValueError, match="need 248"):
        rb.cloud_xyz(_Cloud(fields=fields, is_bigendian=True, height=2, width=3, point_step=40, row_step=128,
                            data=rows.reshape(-1)[:200]))


# ------------------------------------------------------------------------------------------------------------
# pairing by time
# ------------------------------------------------------------------------------------------------------------
def test_match_stamps_nearest_within_tolerance():
    ms = 1_000_000
    images = np.array([0, 100, 150, 200, 330]) * ms
    clouds = np.array([260, 5, 95, 205]) * ms  # any order
    idx, dt = rb.match_stamps(images, clouds, 0.05)
    # 0 -> 5 (cloud 1); 100 -> 95 (cloud 2); 150: 95 and 205 are 55 ms away: none; 200 -> 205; 330 -> 260 (70 ms)
    assert idx.tolist() == [1, 2, -1, 3, -1]
    np.testing.assert_allclose(dt, [0.005, -0.005, -0.055, 0.005, -0.07])
    idx, _ = rb.match_stamps([150 * ms], [100 * ms, 200 * ms], 0.1)  # a tie: the earlier cloud
    assert idx.tolist() == [0]
    assert rb.match_stamps(images, [], 1.0)[0].tolist() == [-1] * 5
    with pytest.raises(ValueError, match="tolerance"):
        rb.match_stamps(images, clouds, -1)


# ------------------------------------------------------------------------------------------------------------
# the synthetic bag's LiDAR, and scoring against exact depth
# ------------------------------------------------------------------------------------------------------------
def test_synthetic_bag_has_a_lidar_and_tf_static(bags):
    topics = {t: (m, n) for t, m, n in rb.bag_topics(bags["full"])}
    assert topics["/lidar/points"] == (rb.POINTCLOUD2_TYPE, N)
    assert topics["/tf_static"] == (rb.TF_MESSAGE_TYPE, 1)
    msgs = list(rb.iter_bag(bags["full"], ["/tf_static", "/lidar/points"]))
    tf = [m for m in msgs if m.topic == "/tf_static"][0].msg
    assert [(t.header.frame_id, t.child_frame_id) for t in tf.transforms] == [
        ("base_link", "camera_optical_frame"), ("base_link", "lidar")]
    cam = tf.transforms[0].transform
    assert [cam.translation.x, cam.translation.y, cam.translation.z] == pytest.approx([1.30, 0.0, 1.65])
    assert [cam.rotation.x, cam.rotation.y, cam.rotation.z, cam.rotation.w] == pytest.approx([-0.5, 0.5, -0.5, 0.5])
    clouds = [m for m in msgs if m.topic == "/lidar/points"]
    assert all(m.msg.header.frame_id == "lidar" for m in clouds)
    stamps = [m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec for m in clouds]
    assert np.diff(stamps).tolist() == [100_000_000] * (N - 1)
    assert stamps[0] == 1_700_000_000_000_000_000 + 5_000_000
    assert sum(m.msg.width for m in clouds) == bags["info"]["lidar_points"]
    # the LiDAR sits 27 cm behind and above the camera: in the camera's optical frame its origin is at
    # (right 2 cm -> x = -0.02, up 27 cm -> y = -0.27, behind 27 cm -> z = -0.27)
    np.testing.assert_allclose(bags["info"]["T_camera_lidar"][:3, 3], [-0.02, -0.27, -0.27], atol=1e-12)


def test_scan_points_sit_on_the_exact_depth(bags):
    """A scan sampled from exact depth projects back (with the rig's own transform) onto the pixels it came from."""
    from dna_depth_core.data.synthetic import synthetic_frames

    rgb, K, depth = synthetic_frames(1, W, H, seed=4, ss=1)[0]
    T = bags["info"]["T_camera_lidar"]
    scan = depth_to_scan(depth, rgb, K, T, np.random.default_rng(0), beams=32, elevation_deg=(10.67, -30.67))
    cam = scan[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    front = cam[:, 2] > 0
    u, v = K[0, 0] * cam[front, 0] / cam[front, 2] + K[0, 2], K[1, 1] * cam[front, 1] / cam[front, 2] + K[1, 2]
    on = (u > -0.5) & (u < W - 0.5) & (v > -0.5) & (v < H - 0.5)
    assert np.abs(u[on] - np.rint(u[on])).max() < 1e-4 and np.abs(v[on] - np.rint(v[on])).max() < 1e-4
    iu, iv = np.rint(u[on]).astype(int), np.rint(v[on]).astype(int)
    np.testing.assert_allclose(cam[front, 2][on], depth[iv, iu], rtol=1e-6)
    # 32 beams from +10.67 to -30.67 deg: rows cy - fy tan(e) inside the image; 80 % of each row's pixels
    fy, cy = K[1, 1], K[1, 2]
    rows = {int(r) for r in np.round(cy - fy * np.tan(np.deg2rad(np.linspace(10.67, -30.67, 32))))
            if 0 <= r < H}
    assert set(iv.tolist()) <= rows and len(set(iv.tolist())) == len(rows)
    assert (~on).sum() + (~front).sum() > 100  # the ring around the car: behind the camera or off the image


def _exact(bags, factor=1.0, bag="full"):
    """A predictor giving the bag's exact depth (times ``factor``) for each frame."""
    def predict(f):
        return bags[f"exact_{bag}"][f.stamp] * np.float32(factor)
    return predict


def test_exact_depth_scores_zero_and_a_scale_error_shows_as_that_scale(bags):
    pairs = rb.pair_lidar(bags["full"], "/lidar/points")
    assert len(pairs) == N and pairs.unmatched == 0 and pairs.images == pairs.clouds == N
    np.testing.assert_allclose(pairs.dt, 0.005)
    (key, (T, chain)), = pairs.transforms.items()
    assert key == ("camera_optical_frame", "lidar") and chain == ["camera_optical_frame", "base_link", "lidar"]
    np.testing.assert_allclose(T, bags["info"]["T_camera_lidar"], atol=1e-12)

    r = score_lidar(pairs, _exact(bags))
    # the scan sits on pixel centres and the projection rounds it back there: what is left is the float32
    # rounding of the stored coordinates (~1e-7 relative)
    assert r["frames"] == N and r["frames_without_points"] == 0
    for row in ("median", "metric"):
        assert r[row]["abs_rel"] < 1e-5 and r[row]["rmse"] < 1e-3 and r[row]["a1"] == 1.0
    assert r["median"]["ratio_median"] == pytest.approx(1.0, abs=1e-5)
    assert sum(b["points"] for b in r["metric"]["bins"]) == r["points"] == sum(p["points"] for p in r["per_frame"])
    assert r["counts"]["pixels"] >= r["points"] > 1000
    # the points scored are exactly the scan's returns on the image (one per pixel: each sampled one pixel)
    assert r["counts"]["on_image"] == r["counts"]["pixels"]

    r = score_lidar(rb.pair_lidar(bags["full"]), _exact(bags, 1.1))
    assert r["median"]["abs_rel"] < 1e-5
    assert r["median"]["ratio_median"] == pytest.approx(1 / 1.1, abs=1e-5) and r["median"]["ratio_std"] < 1e-6
    # metric: 0.1 everywhere, except that predictions are clamped to 80 m as in the protocol (LiDAR depth beyond
    # 72.7 m): by hand from the exact depth at the scan's pixels
    gts = _scan_gt(bags)
    want = np.mean([np.mean(np.abs(np.minimum(1.1 * g, 80.0) - g) / g) for g in gts])
    assert r["metric"]["abs_rel"] == pytest.approx(want, rel=1e-5) and 0.099 < want <= 0.1
    assert r["metric"]["a1"] == 1.0  # 1.1 < 1.25
    assert [b["range"] for b in r["metric"]["bins"]] == [[0.0, 10.0], [10.0, 20.0], [20.0, 40.0], [40.0, 80.0]]
    g = np.concatenate(gts)
    for b in r["metric"]["bins"]:
        sel = g[(g >= b["range"][0]) & (g < b["range"][1])]
        p = np.minimum(1.1 * sel, 80.0)
        assert b["points"] == sel.size > 0
        assert b["abs_rel"] == pytest.approx(np.mean(np.abs(p - sel) / sel), rel=1e-5)
        assert b["rmse"] == pytest.approx(np.sqrt(np.mean((p - sel) ** 2)), rel=1e-5)
        if b["range"][1] <= 40:
            assert b["abs_rel"] == pytest.approx(0.1, abs=1e-6)


def test_extrinsics_yaml_replaces_tf_static(bags, tmp_path):
    T_bc, T_bl = bag_extrinsics()
    doc = {"transforms": [
        {"parent": "base_link", "child": "camera_optical_frame", "translation": T_bc[:3, 3].tolist(),
         "rotation": matrix_to_quaternion(T_bc[:3, :3]).tolist()},
        {"parent": "base_link", "child": "lidar", "translation": T_bl[:3, 3].tolist(),
         "rotation": matrix_to_quaternion(T_bl[:3, :3]).tolist()}]}
    f = tmp_path / "rig.yaml"
    f.write_text(yaml.safe_dump(doc))
    pairs = rb.pair_lidar(bags["no_tf"], extrinsics=f)  # a bag without /tf_static
    assert pairs.transform_source == str(f)
    r = score_lidar(pairs, _exact(bags, bag="no_tf"))
    assert r["frames"] == 2 and r["metric"]["abs_rel"] < 1e-5
    # a direct camera <- lidar transform, named by --camera-frame / --lidar-frame
    T = np.linalg.inv(T_bc) @ T_bl
    doc = {"transforms": [{"parent": "cam", "child": "velo", "translation": T[:3, 3].tolist(),
                           "rotation": T[:3, :3].tolist()}]}
    f.write_text(yaml.safe_dump(doc))
    r = score_lidar(rb.pair_lidar(bags["full"], extrinsics=f, camera_frame="cam", lidar_frame="velo"), _exact(bags))
    assert r["frames"] == N and r["metric"]["abs_rel"] < 1e-5
    # the mount's rotation matters: without it the same scan scores badly
    doc["transforms"][0]["rotation"] = (T[:3, :3] @ np.linalg.inv(bag_extrinsics()[1][:3, :3])).tolist()
    f.write_text(yaml.safe_dump(doc))
    r = score_lidar(rb.pair_lidar(bags["full"], extrinsics=f, camera_frame="cam", lidar_frame="velo"), _exact(bags))
    assert r["metric"]["abs_rel"] > 0.05


def test_a_cloud_shared_by_several_images_and_read_before_them(tmp_path):
    """A 5 Hz LiDAR beside a 10 Hz camera, each scan stamped (and recorded) 5 ms before its image: with a 0.11 s
    tolerance the odd images take the next scan, so one scan serves images read before and after it."""
    from dna_depth_core.data.synthetic import HDL32_ELEVATION, synthetic_drive

    drive = synthetic_drive(4, seed=5)
    T_bc, T_bl = bag_extrinsics()
    T = np.linalg.inv(T_bc) @ T_bl
    start, period, exact = 10**18, 100_000_000, {}
    with rb.ImageBagWriter(tmp_path / "bag", lidar_topic="/scan", tf_static=True) as w:
        w.write_transforms(start - 10**9, [("base_link", "camera_optical_frame", T_bc), ("base_link", "lidar", T_bl)])
        for i in range(4):
            rgb, K, depth = drive.render(i, W, H, ss=1)
            if i % 2 == 0:
                scan = depth_to_scan(depth, rgb, K, T, np.random.default_rng(i), beams=32,
                                     elevation_deg=HDL32_ELEVATION)
                w.write_cloud(start + i * period - 5_000_000, scan, "lidar")
            w.write(start + i * period, rgb, K)
            exact[start + i * period] = depth
    assert rb.match_stamps(start + period * np.arange(4), start + period * np.array([0, 2]) - 5_000_000,
                           0.11)[0].tolist() == [0, 1, 1, 1]
    pairs = rb.pair_lidar(tmp_path / "bag", tolerance=0.11)
    assert pairs.pairs == [(0, 0), (1, 1), (2, 1), (3, 1)]
    np.testing.assert_allclose(pairs.dt, [-0.005, 0.095, -0.005, -0.105])
    r = score_lidar(pairs, lambda f: exact[f.stamp])
    by_index = {p["index"]: p for p in r["per_frame"]}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert by_index[0]["abs_rel_metric"] < 1e-5 and by_index[2]["abs_rel_metric"] < 1e-5
    # frames 1 and 3 are scored against the scan of frame 2, taken about a metre away
    assert by_index[1]["abs_rel_metric"] > 1e-3 and by_index[3]["abs_rel_metric"] > 1e-3


def test_ros1_bag_pairs_like_the_ros2_one(bags, tmp_path):
    from rosbags.convert import convert
    from rosbags.typesys import Stores, get_typestore

    out = tmp_path / "full.bag"
    convert([Path(bags["no_tf"])], out, dst_storage="sqlite3", dst_version=8, compress=None, compress_mode="file",
            default_typestore=get_typestore(Stores.ROS2_HUMBLE), typestore=get_typestore(Stores.ROS1_NOETIC),
            exclude_topics=[], include_topics=[], exclude_msgtypes=[], include_msgtypes=[])
    T_bc, T_bl = bag_extrinsics()
    f = tmp_path / "rig.yaml"
    f.write_text(yaml.safe_dump({"transforms": [{"parent": "/camera_optical_frame", "child": "/lidar",
                                                 "translation": (np.linalg.inv(T_bc) @ T_bl)[:3, 3].tolist(),
                                                 "rotation": (np.linalg.inv(T_bc) @ T_bl)[:3, :3].tolist()}]}))
    r = score_lidar(rb.pair_lidar(out, extrinsics=f), _exact(bags, bag="no_tf"))
    assert r["frames"] == 2 and r["metric"]["abs_rel"] < 1e-5


# ------------------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------------------
def _scan_gt(bags):
    """Per frame of the full bag, the exact depth (in 1e-3..80 m) at the pixels its scan hits: the scan projected
    here with the rig's transform and the synthetic intrinsics (each return was sampled on one pixel centre)."""
    T = bags["info"]["T_camera_lidar"]
    K = synthetic_intrinsics(W, H)
    out = []
    for m in rb.iter_bag(bags["full"], ["/lidar/points"]):
        xyz = rb.cloud_xyz(m.msg) @ T[:3, :3].T + T[:3, 3]
        xyz = xyz[xyz[:, 2] > 0]
        u = np.rint(K[0, 0] * xyz[:, 0] / xyz[:, 2] + K[0, 2]).astype(int)
        v = np.rint(K[1, 1] * xyz[:, 1] / xyz[:, 2] + K[1, 2]).astype(int)
        on = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        stamp = m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec - 5_000_000
        g = bags["exact_full"][stamp][v[on], u[on]].astype(np.float64)
        out.append(g[(g > 1e-3) & (g < 80)])
    return out


def _hand_metrics(bags):
    """AbsRel / RMSE of the constant prediction, median-scaled and as is, averaged over frames (:func:`_scan_gt`)."""
    rows = {"median": [], "metric": []}
    for g in _scan_gt(bags):
        for row, p in (("median", np.median(g)), ("metric", CONST_DEPTH)):
            rows[row].append((np.mean(np.abs(g - p) / g), np.sqrt(np.mean((g - p) ** 2)), g.size))
    return {row: np.mean(np.array(v)[:, :2], axis=0) for row, v in rows.items()}, sum(n for *_, n in rows["median"])


def test_evaluate_bag_command_matches_hand_computation(bags, constant_ckpt, capsys):
    assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--bag", str(bags["full"]), "--lidar-topic",
                     "/lidar/points", "--device", "cpu", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    want, points = _hand_metrics(bags)
    assert r["frames"] == N and r["points"] == points and r["paired"] == N and r["unmatched"] == 0
    for row in ("median", "metric"):
        assert r[row]["abs_rel"] == pytest.approx(want[row][0], rel=1e-5), row
        assert r[row]["rmse"] == pytest.approx(want[row][1], rel=1e-5), row
    assert r["transform"]["chain"] == ["camera_optical_frame", "base_link", "lidar"]
    assert r["transform"]["source"] == "/tf_static"
    assert r["dt"]["median"] == pytest.approx(0.005)
    assert r["metric"]["scale_median"] == 1.0 and r["metric_scale"] == "none"
    assert len(r["per_frame"]) == N and {"index", "stamp", "dt", "points", "ratio"} <= set(r["per_frame"][0])

    # text form, a fixed metric scale, other bins, every second frame
    assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--bag", str(bags["full"]), "--device", "cpu",
                     "--metric-scale", "fixed:2", "--bins", "15", "--every", "2"]) == 0
    text = capsys.readouterr().out
    assert f"5 of {N} camera frames (/camera/image_raw) paired with a /lidar/points cloud within 0.05 s" in text
    assert "one in 2 used: 3" in text and "3 frames scored" in text
    assert "camera <- LiDAR from /tf_static: camera_optical_frame <- base_link <- lidar" in text
    assert "metric (fixed:2)" in text and "(scale median 2.0000)" in text
    assert "0-15 m" in text and "15-80 m" in text and "20-40 m" not in text


def test_evaluate_bag_command_camera_height_scale(bags, constant_ckpt, capsys):
    """The metric row through the node's ground-plane scale: a constant depth map is a wall facing the camera,
    no ground plane is found, and the frame is reported as scored before the first fit (factor 1)."""
    assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--bag", str(bags["full"]), "--device", "cpu",
                     "--metric-scale", "camera_height:1.65", "--every", str(N), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 1 and r["metric_scale"] == "camera_height:1.65"
    assert r["metric"]["frames_not_metric"] == 1 and r["metric"]["scale_median"] == 1.0
    g = _scan_gt(bags)[0]  # the first frame's, with the constant prediction unscaled
    assert r["per_frame"][0]["index"] == 0
    assert r["metric"]["abs_rel"] == pytest.approx(np.mean(np.abs(g - CONST_DEPTH) / g), rel=1e-5)


def test_evaluate_bag_command_errors(bags, constant_ckpt, tmp_path, capsys):
    def fails(args, *fragments):
        assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--device", "cpu", *args]) == 2
        err = capsys.readouterr().err
        for frag in fragments:
            assert frag in err, (frag, err)

    full = str(bags["full"])
    # a bag without the topic, without any LiDAR
    fails(["--bag", full, "--lidar-topic", "/velodyne_points"],
          "no topic /velodyne_points; its PointCloud2 topics: /lidar/points")
    fails(["--bag", str(bags["no_lidar"])], "no sensor_msgs/PointCloud2 topic (topics: /camera/camera_info, "
          "/camera/depth_gt, /camera/image_raw)")
    # without the transform: no /tf_static at all, or not the frames asked for
    fails(["--bag", str(bags["no_tf"])], "has no /tf_static topic for camera <- LiDAR", "extrinsics YAML")
    fails(["--bag", full, "--lidar-frame", "velodyne"],
          "no transform camera_optical_frame <- velodyne in /tf_static of bag",
          "frame 'velodyne' is not in it (frames: base_link, camera_optical_frame, lidar)")
    # no stamp within tolerance: the clouds are 5 ms after the images
    fails(["--bag", full, "--tolerance", "0.001"],
          "no /lidar/points cloud within 0.001 s of any /camera/image_raw frame; the nearest pair is 0.005000 s apart",
          f"{N} images stamped 1700000000.000000 s .. 1700000000.400000 s",
          f"{N} clouds stamped 1700000000.005000 s .. 1700000000.405000 s")
    # a transform that puts every point behind the camera (the LiDAR 1 km behind it)
    f = tmp_path / "behind.yaml"
    f.write_text(yaml.safe_dump({"transforms": [{"parent": "camera_optical_frame", "child": "lidar",
                                                 "translation": [0, 0, -1000], "rotation": [0, 0, 0, 1]}]}))
    fails(["--bag", full, "--extrinsics", str(f)], "no LiDAR point of the 5 paired frames lands in the image",
          "is 'camera_optical_frame' the camera's optical frame")
    # the two forms do not mix
    fails(["--bag", full, "--gt", "gt.npz"], "KITTI-form options (--gt) do not go with --bag")
    fails(["--data-path", "x", "--split", "s", "--gt", "g", "--lidar-topic", "/p"],
          "bag-form options (--lidar-topic) need --bag")
    fails([], "missing --data-path, --split, --gt")
    fails(["--bag", full, "--metric-scale", "camera_height:-1"], "camera_height needs a positive number")
    fails(["--bag", full, "--bins", "20,10"], "increasing")


def test_metric_scale_and_bins_parsing():
    assert parse_metric_scale("none") == {"scale_mode": "none"}
    assert parse_metric_scale("fixed:5.4") == {"scale_mode": "fixed", "scale_factor": 5.4}
    assert parse_metric_scale("camera-height:1.2") == {"scale_mode": "camera_height", "camera_height": 1.2}
    for bad in ("median", "fixed", "fixed:0", "camera_height:x"):
        with pytest.raises(ValueError):
            parse_metric_scale(bad)
    assert parse_bins("10, 20,40") == (10.0, 20.0, 40.0)
    assert bin_ranges((10.0, 20.0, 40.0, 90.0), 1e-3, 80.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0)]
    assert parse_bins("") == () and bin_ranges((), 1e-3, 80.0) == [(0.0, 80.0)]
    for bad in ("a", "0,10", "10,10", "-5"):
        with pytest.raises(ValueError):
            parse_bins(bad)


def test_synth_command_no_lidar(tmp_path, capsys):
    out = tmp_path / "b"
    assert cli_main(["synth", "--bag", str(out), "--frames", "2", "--width", "64", "--height", "32", "--ss", "1",
                     "--quiet"]) == 0
    assert "LiDAR points on /lidar/points" in capsys.readouterr().out
    assert {t for t, _, _ in rb.bag_topics(out)} >= {"/lidar/points", "/tf_static"}
    out2 = tmp_path / "c"
    assert cli_main(["synth", "--bag", str(out2), "--frames", "2", "--width", "64", "--height", "32", "--ss", "1",
                     "--no-lidar", "--quiet"]) == 0
    assert {t for t, _, _ in rb.bag_topics(out2)} == {"/camera/image_raw", "/camera/camera_info", "/camera/depth_gt"}
