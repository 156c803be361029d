"""Training data straight from ROS bags: dna_depth_core.data.rosbag (frames, pairing, dataset, extract, write,
info) and its commands. Damaged bags: test_rosbag_damage.py.

Bags are written in tmp dirs: one from the real kitti_tiny frames of ../shared (CameraInfo from P_rect_02 of its
calibration, 10 Hz header stamps from its timestamps.txt), and small synthetic drives. Nothing is committed.
"""
from __future__ import annotations

import argparse
from datetime import datetime

import numpy as np
import pytest
import torch

from conftest import require_shared
from dna_depth_core.data import rosbag as rb
from dna_depth_core.data.kitti import KittiDataset, load_image, read_calib_file

DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
H, W = 96, 320  # training size


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


def _kitti_frames():
    root = require_shared("data/kitti_tiny")
    img_dir = root / DRIVE / "image_02" / "data"
    files = sorted(img_dir.glob("*.png"))
    stamps = []
    for line in (root / DRIVE / "image_02" / "timestamps.txt").read_text().splitlines()[: len(files)]:
        day, frac = line.strip().split(".")
        sec = datetime.strptime(day, "%Y-%m-%d %H:%M:%S").timestamp()
        stamps.append(int(sec) * 1_000_000_000 + int(frac[:9].ljust(9, "0")))
    P = read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")["P_rect_02"].reshape(3, 4)
    K = P[:, :3].copy()
    K[0, 2] -= 1.0  # KITTI calibration is 1-based; ROS CameraInfo is 0-based (the project's convention)
    K[1, 2] -= 1.0
    return root, files, stamps, K


def write_kitti_bag(path, order=None, storage="mcap"):
    """The kitti_tiny frames as a bag: CompressedImage png + CameraInfo, 10 Hz stamps (``order``: frame list)."""
    root, files, stamps, K = _kitti_frames()
    order = list(range(len(files))) if order is None else order
    with rb.ImageBagWriter(path, storage=storage, compressed="png") as w:
        for k, i in enumerate(order):
            t = stamps[0] + k * 100_000_000 if order != list(range(len(files))) else stamps[i]
            w.write(t, load_image(files[i]), K)
    return root, K


@pytest.fixture(scope="module")
def kitti_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("kbag") / "kitti_tiny_bag"
    root, K = write_kitti_bag(path)
    return path, root, K


@pytest.fixture(scope="module")
def synth_bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("sbag")
    out = {}
    for storage in ("mcap", "sqlite3"):
        out[storage] = d / f"synth_{storage}"
        rb.write_synthetic_bag(out[storage], 16, seed=2, width=96, height=32, fps=30.0, storage=storage, ss=1)
    return out


# ------------------------------------------------------------------------------------------------------------
# kitti_tiny bag: triplets, intrinsics, equality with the KITTI folder
# ------------------------------------------------------------------------------------------------------------
def test_kitti_bag_triplets_and_intrinsics_match_kitti_dataset(kitti_bag):
    path, root, K = kitti_bag
    info = rb.bag_info([path])[0]
    topics = {d["topic"]: d for d in info["topics"]}
    img = topics[rb.DEFAULT_IMAGE_TOPIC]
    assert img["count"] == 7 and img["encodings"] == ["compressed:png"] and 9.0 < img["rate_hz"] < 10.5
    assert topics[rb.DEFAULT_CAMERA_INFO_TOPIC]["sizes"] == [(1242, 375)]
    assert topics[rb.DEFAULT_CAMERA_INFO_TOPIC]["K_source"] == "P"

    ds = rb.BagDataset([path], H, W, num_scales=2, is_train=False, val_fraction=0.0)
    assert ds.bags[0].original_size == (1242, 375)
    # 7 frames 0.1 s apart: targets 1..5 with their direct neighbours
    assert [s.target for s in ds.samples] == [1, 2, 3, 4, 5]
    assert all(s.frames == {0: s.target, -1: s.target - 1, 1: s.target + 1} for s in ds.samples)

    # normalised intrinsics in camera.py's convention (origin at the image corner: cx_n = (cx + 0.5) / W), the
    # values of KITTI's P_rect_02 (1-based: cx0 = cx - 1), written out by hand
    P = read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")["P_rect_02"].reshape(3, 4)
    expect = np.array([[P[0, 0] / 1242, 0, (P[0, 2] - 1 + 0.5) / 1242],
                       [0, P[1, 1] / 375, (P[1, 2] - 1 + 0.5) / 375], [0, 0, 1]])
    np.testing.assert_allclose(ds.bags[0].K_norm, expect, rtol=1e-12)
    np.testing.assert_allclose(ds.normalised_K(ds.entries[0], (W, H)), expect, rtol=1e-12)
    # focal lengths per scale (the principal point's scaling is the base class's, tested with it)
    item = ds[0]
    for s in (0, 1):
        w, h = W >> s, H >> s
        assert float(item["K"][s][0, 0]) == pytest.approx(P[0, 0] * w / 1242, rel=1e-6)
        assert float(item["K"][s][1, 1]) == pytest.approx(P[1, 1] * h / 375, rel=1e-6)
        np.testing.assert_allclose(item["inv_K"][s].numpy() @ item["K"][s].numpy(), np.eye(3), atol=1e-5)

    # the same frames as the KITTI folder reader gives (same resize rule)
    kd = KittiDataset(root, [f"{DRIVE} 1 l"], H, W, num_scales=2, is_train=False, use_calib=True)
    ref = kd[0]
    for fid in (0, -1, 1):
        assert item["color"][fid].shape == (3, H, W)
        assert torch.equal(item["color"][fid], ref["color"][fid])

    # augmentations come from KittiDataset: a flip moves cx to W - 1 - cx
    aug = rb.BagDataset([path], H, W, num_scales=1, is_train=True, val_fraction=0.0, seed=0)
    flipped = [aug[i] for i in range(len(aug)) if bool(aug[i]["do_flip"])]
    assert flipped, "seeded draws give at least one flip among 5 samples"
    assert abs(float(flipped[0]["K"][0][0, 2]) - (W - 1 - float(item["K"][0][0, 2]))) < 1e-3


def test_camera_info_P_first_then_K_on_request(tmp_path):
    """The bag path reads CameraInfo with camera.py's rule: P (the rectified camera) when valid, K on request."""
    K = np.array([[100.0, 0, 47.5], [0, 100.0, 15.5], [0, 0, 1]])
    P = np.array([[95.0, 0, 46.0, 0], [0, 96.0, 16.0, 0], [0, 0, 1, 0]])
    path = tmp_path / "kp_bag"
    rgb = np.random.default_rng(0).integers(0, 256, (32, 96, 3), dtype=np.uint8)
    with rb.ImageBagWriter(path, storage="sqlite3") as w:
        for i in range(3):
            w.write(10**12 + i * 10**8, np.roll(rgb, 5 * i, axis=1), K, P=P)
    fr = rb.read_bag_frames(path)
    assert fr.intrinsics.source == "P"
    np.testing.assert_allclose(fr.K_norm, [[95 / 96, 0, 46.5 / 96], [0, 96 / 32, 16.5 / 32], [0, 0, 1]], rtol=1e-12)
    fr_k = rb.read_bag_frames(path, intrinsics_source="K")
    assert fr_k.intrinsics.source == "K"
    np.testing.assert_allclose(fr_k.K_norm, [[100 / 96, 0, 48 / 96], [0, 100 / 32, 16 / 32], [0, 0, 1]], rtol=1e-12)
    ds = rb.BagDataset([path], 16, 48, num_scales=1, val_fraction=0.0, static_threshold=0.0,
                       intrinsics_source="K")
    assert float(ds[0]["K"][0][0, 0]) == pytest.approx(50.0) and float(ds[0]["K"][0][1, 1]) == pytest.approx(50.0)
    assert "(from P)" in rb.format_bag_info(rb.bag_info([path]))


def write_ros1_bag(path, root_files_stamps_K):
    """The kitti_tiny frames as a ROS 1 bag (rosbags' rosbag1 writer, Noetic message definitions): Image rgb8 +
    CameraInfo (ROS 1 field names D, K, R, P)."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    _, files, stamps, K = root_files_stamps_K
    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types
    with Writer(path) as w:
        c_img = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        c_info = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        for seq, (f, t) in enumerate(zip(files, stamps)):
            rgb = load_image(f)
            h, w_ = rgb.shape[:2]
            header = T["std_msgs/msg/Header"](seq=seq, stamp=T["builtin_interfaces/msg/Time"](
                sec=t // 1_000_000_000, nanosec=t % 1_000_000_000), frame_id="cam")
            img = T["sensor_msgs/msg/Image"](header=header, height=h, width=w_, encoding="rgb8", is_bigendian=0,
                                             step=3 * w_, data=np.ascontiguousarray(rgb).reshape(-1))
            P = np.zeros((3, 4))
            P[:, :3] = K
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](header=header, height=h, width=w_, distortion_model="plumb_bob",
                                                   D=np.zeros(5), K=K.reshape(-1), R=np.eye(3).reshape(-1),
                                                   P=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)
            w.write(c_img, t, ts.serialize_ros1(img, "sensor_msgs/msg/Image"))
            w.write(c_info, t, ts.serialize_ros1(info, "sensor_msgs/msg/CameraInfo"))


def test_ros1_bag_reads_like_the_ros2_bag(kitti_bag, tmp_path):
    """A ROS 1 bag (no ROS install) gives the same topics, triplets, intrinsics and images as the ROS 2 one."""
    path2, _, K = kitti_bag
    path1 = tmp_path / "kitti_tiny.bag"
    write_ros1_bag(path1, _kitti_frames())
    info = rb.bag_info([path1])[0]
    topics = {d["topic"]: d for d in info["topics"]}
    assert topics["/cam/image_raw"]["count"] == 7 and topics["/cam/image_raw"]["encodings"] == ["rgb8"]
    assert topics["/cam/camera_info"]["sizes"] == [(1242, 375)]
    ds1 = rb.BagDataset([path1], H, W, num_scales=1, is_train=False, val_fraction=0.0,
                        image_topic="/cam/image_raw", camera_info_topic="/cam/camera_info")
    ds2 = rb.BagDataset([path2], H, W, num_scales=1, is_train=False, val_fraction=0.0)
    assert [s.target for s in ds1.samples] == [s.target for s in ds2.samples] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(ds1.bags[0].K_norm, ds2.bags[0].K_norm, rtol=1e-9)
    a, b = ds1[2], ds2[2]
    np.testing.assert_allclose(a["K"][0].numpy(), b["K"][0].numpy(), rtol=1e-6)
    for fid in (0, -1, 1):
        assert torch.equal(a["color"][fid], b["color"][fid])  # rgb8 raw vs lossless png: same pixels


def test_spacing_pairs_by_time_and_split_by_time(kitti_bag, synth_bags):
    path, _, _ = kitti_bag
    ds = rb.BagDataset([path], H, W, num_scales=1, frame_spacing=0.2, val_fraction=0.0)
    assert sorted(s.target for s in ds.samples) == [2, 3, 4]
    assert all(s.frames[-1] == s.target - 2 and s.frames[1] == s.target + 2 for s in ds.samples)

    # a 30 Hz synthetic bag at 0.1 s: neighbours are 3 frames away; the second half (by time) is validation
    stats: dict = {}
    fr = rb.read_bag_frames(synth_bags["mcap"], size=(96, 32))
    parts = rb.make_samples(fr, (0, -1, 1), 0.1, 0.0, 0.5, stats=stats)
    assert all(s.frames == {0: s.target, -1: s.target - 3, 1: s.target + 3} for p in parts.values() for s in p)
    t_split = fr.stamps[0] + 0.5 * (fr.stamps[-1] - fr.stamps[0])
    assert parts["train"] and parts["val"]
    assert all(fr.stamps[max(s.frames.values())] < t_split for s in parts["train"])
    assert all(fr.stamps[min(s.frames.values())] >= t_split for s in parts["val"])
    assert stats["train"] + stats["val"] + stats["straddling"] + stats["static"] == stats["triplets"]


def test_static_frames_are_skipped(tmp_path):
    # frame 3 held for four stamps (the car stopped): targets whose neighbour is the same picture are dropped
    path = tmp_path / "stop_bag"
    write_kitti_bag(path, order=[0, 1, 2, 3, 3, 3, 3, 4, 5, 6], storage="sqlite3")
    fr = rb.read_bag_frames(path, size=(W, H))
    moving = rb.BagDataset([path], H, W, num_scales=1, val_fraction=0.0, static_threshold=0.0)
    assert len(moving) == 8
    ds = rb.BagDataset([path], H, W, num_scales=1, val_fraction=0.0, static_threshold=0.01)
    kept = [s.target for s in ds.samples]
    assert kept == [1, 2, 7, 8]  # 3..6 each have an identical neighbour
    assert ds.stats[0]["static"] == 4
    th = [rb.thumbnail(im) for im in fr.images]
    assert rb.photometric_change(th[1], th[2]) > 0.01 > rb.photometric_change(th[3], th[4])


# ------------------------------------------------------------------------------------------------------------
# calibration override, extract, commands, training
# ------------------------------------------------------------------------------------------------------------
def test_calibration_yaml_overrides_camera_info(kitti_bag, tmp_path):
    path, _, _ = kitti_bag
    calib = tmp_path / "cam.yaml"
    calib.write_text("image_width: 1000\nimage_height: 500\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
                     "  data: [800, 0, 499.5, 0, 800, 249.5, 0, 0, 1]\n")
    with pytest.warns(UserWarning, match="cam.yaml describes 1000x500 images but the images are 1242x375"):
        ds = rb.BagDataset([path], H, W, num_scales=1, val_fraction=0.0, calibration=calib)
    # the calibration's camera, centred: cx_n = (499.5 + 0.5) / 1000
    np.testing.assert_allclose(ds.bags[0].K_norm, [[0.8, 0, 0.5], [0, 1.6, 0.5], [0, 0, 1]], rtol=1e-12)
    assert float(ds[0]["K"][0][0, 0]) == pytest.approx(256.0) and float(ds[0]["K"][0][1, 1]) == pytest.approx(153.6)


def test_extract_writes_a_kitti_folder_that_trains_the_same(kitti_bag, tmp_path):
    path, root, K = kitti_bag
    from dna_depth_core.commands import bag_extract

    p = argparse.ArgumentParser()
    bag_extract.add_arguments(p)
    assert bag_extract.run(p.parse_args([str(path), "--out", str(tmp_path / "cache"), "--val-fraction", "0.4"])) == 0
    lines = (tmp_path / "cache" / "splits" / "train_files.txt").read_text().split("\n")
    lines = [ln for ln in lines if ln]
    # 0.62 s of frames: train targets before 0.37 s, validation after it, the straddling ones dropped
    assert lines == [f"kitti_tiny_bag/kitti_tiny_bag_drive_0001_sync {i} l" for i in (1, 2)]
    val = (tmp_path / "cache" / "splits" / "val_files.txt").read_text().split()
    assert val == ["kitti_tiny_bag/kitti_tiny_bag_drive_0001_sync", "5", "l"]
    # the calibration written back is KITTI's own (1-based) P_rect_02 at the recorded size
    calib = read_calib_file(tmp_path / "cache" / "kitti_tiny_bag" / "calib_cam_to_cam.txt")
    kitti = read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")
    np.testing.assert_allclose(calib["P_rect_02"].reshape(3, 4)[:, :3], kitti["P_rect_02"].reshape(3, 4)[:, :3],
                               rtol=1e-12)
    np.testing.assert_array_equal(calib["S_rect_02"], [1242, 375])
    kd = KittiDataset(tmp_path / "cache", lines, H, W, num_scales=2, use_calib=True)
    bd = rb.BagDataset([path], H, W, num_scales=2, val_fraction=0.4)
    ref = KittiDataset(root, [f"{DRIVE} 2 l"], H, W, num_scales=2, use_calib=True)[0]
    assert len(bd) == len(kd) == 2
    a, b = kd[1], bd[1]
    for s in (0, 1):  # the cache trains with the intrinsics of the original KITTI folder
        np.testing.assert_allclose(a["K"][s].numpy(), ref["K"][s].numpy(), rtol=1e-6)
    for fid in (0, -1, 1):
        assert torch.equal(a["color"][fid], b["color"][fid]) and torch.equal(a["color"][fid], ref["color"][fid])


def test_bag_info_and_synth_commands(tmp_path, capsys):
    from dna_depth_core.commands import bag_info, synth

    p = argparse.ArgumentParser()
    synth.add_arguments(p)
    out = tmp_path / "s_bag"
    args = p.parse_args(["--bag", str(out), "--frames", "4", "--width", "64", "--height", "32", "--ss", "1",
                         "--storage", "sqlite3", "--compressed", "jpeg", "--quiet"])
    assert synth.run(args) == 0
    assert list(out.glob("*.db3"))
    p = argparse.ArgumentParser()
    bag_info.add_arguments(p)
    assert bag_info.run(p.parse_args([str(out)])) == 0
    text = capsys.readouterr().out
    assert "/camera/image_raw" in text and "compressed:jpeg" in text and "10.00 Hz" in text
    assert "/camera/camera_info" in text and "64x32" in text


def test_train_from_bag_command(synth_bags, tmp_path):
    from dna_depth_core.commands import train as train_cmd
    from dna_depth_core.training.config import load_config

    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    args = p.parse_args(["--bag", str(synth_bags["mcap"]), str(synth_bags["sqlite3"]), "--image-topic",
                         "/camera/image_raw", "--camera-info-topic", "/camera/camera_info", "--out",
                         str(tmp_path / "run"), "model=dna_lite0", "pretrained=null", "pose_model=small",
                         "height=32", "width=96", "batch_size=2", "num_workers=0", "max_steps=2", "progress=false",
                         "tensorboard=false", "image_every=0", "log_every=1", "val_fraction=0.3",
                         "val_max_batches=1", "static_threshold=0"])
    assert train_cmd.run(args) == 0
    cfg = load_config(str(tmp_path / "run" / "config.yaml"))
    assert cfg.dataset == "bag" and len(cfg.bags) == 2 and cfg.image_topic == "/camera/image_raw"
    assert (cfg.split, cfg.val_split) == ("bag:train", "bag:val")
    assert list((tmp_path / "run").rglob("model.safetensors"))
    with pytest.raises(ValueError, match="bags: dataset: bag needs at least one bag"):
        load_config(None, ["dataset=bag"])
