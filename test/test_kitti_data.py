"""KITTI readers and KittiDataset, on a tiny synthetic drive and on the shared real KITTI sample."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dna_depth_core.data.augment import (
    ColorJitter,
    adjust_hue,
    hsv_to_rgb,
    rgb_to_hsv,
    sample_color_jitter,
)
from dna_depth_core.data.kitti import (
    KittiDataset,
    fetch_splits,
    image_path,
    parse_split_line,
    read_calib_file,
    read_split_file,
)
from dna_depth_core.camera import flip_K
from dna_depth_core.data.synthetic import render_drive

from conftest import require_shared

W, H = 128, 64


def shared_path(*parts) -> Path:
    return require_shared("/".join(parts))


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    return render_drive(tmp_path_factory.mktemp("kitti"), 5, seed=4, width=W, height=H, progress=False)


def _png(path) -> torch.Tensor:
    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def _first(ds: KittiDataset, want_flip: bool, want_jitter: bool, epochs: int = 40) -> dict:
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            if bool(item["do_flip"]) == want_flip and bool(item["do_color_aug"]) == want_jitter:
                return item
    raise AssertionError("no sample with the wanted augmentations")


def test_split_lines_and_paths(tmp_path):
    e = parse_split_line("2011_09_26/2011_09_26_drive_0022_sync 473 r")
    assert (e.folder, e.frame_index, e.side, e.cam, e.date) == ("2011_09_26/2011_09_26_drive_0022_sync", 473, "r", 3,
                                                                "2011_09_26")
    assert parse_split_line("a/b 0000000069 l").frame_index == 69
    for bad in ("only_folder", "a/b x l", "a/b 3 q", "a b c d"):
        with pytest.raises(ValueError):
            parse_split_line(bad)
    p = image_path(tmp_path, "d/d_drive_0001_sync", 12, "r")
    assert p == tmp_path / "d/d_drive_0001_sync/image_03/data/0000000012.png"
    jpg = tmp_path / "d/d_drive_0001_sync/image_02/data/0000000003.jpg"
    jpg.parent.mkdir(parents=True)
    jpg.write_bytes(b"")
    assert image_path(tmp_path, "d/d_drive_0001_sync", 3, "l") == jpg
    split = tmp_path / "s.txt"
    split.write_text("a/b 1 l\n\n a/b 2 r \n")
    assert read_split_file(split) == ["a/b 1 l", "a/b 2 r"]


def test_item_shapes_and_intrinsics(drive):
    ds = KittiDataset(drive.root, drive.split_lines, H, W, frame_ids=(0, -1, 1), num_scales=4, is_train=False)
    assert len(ds) == 3
    item = ds[1]  # frame 2
    assert set(item["color"]) == {0, -1, 1} and set(item["color_aug"]) == {0, -1, 1}
    for fid in (0, -1, 1):
        img = item["color"][fid]
        assert img.shape == (3, H, W) and img.dtype == torch.float32
        # no resize at this size: exactly the PNG (read independently here)
        assert torch.equal(img, _png(drive.drive_dir / "image_02" / "data" / f"{2 + fid:010d}.png"))
        assert torch.equal(item["color_aug"][fid], img)
    for s in range(4):
        w, h = W / 2**s, H / 2**s
        # KITTI's default camera: principal point at the image centre, (w - 1) / 2 in pixel-centre coordinates
        expected = torch.tensor([[0.58 * w, 0, 0.5 * w - 0.5], [0, 1.92 * h, 0.5 * h - 0.5], [0, 0, 1]],
                                dtype=torch.float32)
        assert torch.allclose(item["K"][s], expected, atol=1e-4), s
        assert torch.allclose(item["inv_K"][s] @ item["K"][s], torch.eye(3), atol=1e-5)
    assert item["frame_index"] == 2 and item["side"] == "l" and item["folder"] == drive.folder
    assert not item["do_flip"] and not item["do_color_aug"]


def test_resize_and_default_collate(drive):
    ds = KittiDataset(drive.root, drive.split_file, 32, 64, num_scales=2, is_train=True, seed=0)
    batch = next(iter(DataLoader(ds, batch_size=3, shuffle=False, num_workers=0)))
    assert batch["color"][0].shape == (3, 3, 32, 64)
    assert batch["color_aug"][-1].shape == (3, 3, 32, 64)
    assert batch["K"][1].shape == (3, 3, 3) and batch["inv_K"][0].shape == (3, 3, 3)
    assert batch["K"][0][0, 0, 0].item() == pytest.approx(0.58 * 64, rel=1e-6)
    assert batch["frame_index"].tolist() == [1, 2, 3]
    assert batch["do_flip"].dtype == torch.bool


def test_same_colour_jitter_for_all_frames(drive, tmp_path):
    # a drive whose three frames are the same picture: one jitter per sample must keep them equal
    folder = "2000_01_01/2000_01_01_drive_0009_sync"
    dst = tmp_path / folder / "image_02" / "data"
    dst.mkdir(parents=True)
    for i in range(3):
        shutil.copyfile(drive.drive_dir / "image_02" / "data" / "0000000002.png", dst / f"{i:010d}.png")
    ds = KittiDataset(tmp_path, [f"{folder} 1 l"], H, W, is_train=True, seed=7)
    item = _first(ds, want_flip=False, want_jitter=True)
    aug = item["color_aug"]
    assert torch.equal(aug[-1], aug[0]) and torch.equal(aug[1], aug[0])
    assert (aug[0] - item["color"][0]).abs().mean() > 1e-3  # the jitter did something
    # no calibration file here: KITTI's default normalised K
    assert item["K"][0][0, 0].item() == pytest.approx(0.58 * W, rel=1e-6)


def test_jitter_is_one_transform_applied_to_every_frame():
    rng = np.random.default_rng(3)
    jitter = sample_color_jitter(rng)
    assert 0.8 <= jitter.brightness <= 1.2 and -0.1 <= jitter.hue <= 0.1
    assert sorted(jitter.order) == [0, 1, 2, 3]
    frames = torch.rand(3, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    together = jitter(frames)
    for i in range(3):
        assert torch.allclose(together[i], jitter(frames[i]), atol=1e-6)
    # the pieces, against values known by hand
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    green = adjust_hue(red, 1.0 / 3.0)  # red rotated by 120 degrees is green
    assert torch.allclose(green, torch.stack([torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2, 2)]), atol=1e-6)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(frames)), frames, atol=1e-5)
    assert torch.allclose(ColorJitter(brightness=0.5)(torch.full((3, 1, 1), 0.8)), torch.full((3, 1, 1), 0.4))
    assert torch.equal(ColorJitter()(frames), frames)


def test_flip_flips_all_frames_and_principal_point(drive):
    plain = KittiDataset(drive.root, drive.split_lines, H, W, is_train=False)
    ds = KittiDataset(drive.root, drive.split_lines, H, W, is_train=True, seed=11)
    item = _first(ds, want_flip=True, want_jitter=False)
    ref = plain[int(item["index"])]
    for fid in (0, -1, 1):
        assert torch.equal(item["color"][fid], ref["color"][fid].flip(-1))
        assert torch.equal(item["color_aug"][fid], item["color"][fid])
    for s in range(4):
        w = W // 2**s
        assert item["K"][s][0, 2].item() == pytest.approx(w - 1 - ref["K"][s][0, 2].item())
        assert item["K"][s][0, 0].item() == pytest.approx(ref["K"][s][0, 0].item())
    K = np.array([[100.0, 0, 30], [0, 100, 20], [0, 0, 1]])
    assert flip_K(K, 64)[0, 2] == 33 and K[0, 2] == 30  # a copy
    Kt = torch.tensor(K)[None].expand(2, 3, 3)
    assert torch.equal(flip_K(Kt, 64)[:, 0, 2], torch.tensor([33.0, 33.0], dtype=torch.float64))


def test_seeded_augmentation_is_reproducible(drive):
    a = KittiDataset(drive.root, drive.split_lines, H, W, is_train=True, seed=5)
    b = KittiDataset(drive.root, drive.split_lines, H, W, is_train=True, seed=5)
    flags = []
    for epoch in range(5):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert torch.equal(x["color_aug"][0], y["color_aug"][0]) and torch.equal(x["K"][0], y["K"][0])
            flags.append((bool(x["do_flip"]), bool(x["do_color_aug"])))
    assert len(set(flags)) > 1  # epochs draw different augmentations


def test_missing_neighbour_names_the_file(drive):
    ds = KittiDataset(drive.root, [f"{drive.folder} 4 l"], H, W)  # frame 5 does not exist
    with pytest.raises(FileNotFoundError, match="0000000005.png"):
        ds[0]
    with pytest.raises(ValueError):
        KittiDataset(drive.root, drive.split_lines, H, W, frame_ids=(-1, 1))


def test_fetch_splits_offline_message(tmp_path):
    with pytest.raises(RuntimeError, match="no network"):
        fetch_splits("http://127.0.0.1:9/splits", tmp_path, timeout=5)
    with pytest.raises(FileNotFoundError):
        fetch_splits(str(tmp_path / "nowhere"), tmp_path / "out")


def test_fetch_splits_from_local_copy(tmp_path):
    src = shared_path("data", "splits")
    written = fetch_splits(str(src), tmp_path)
    counts = {rel: len(read_split_file(tmp_path / rel)) for rel in
              ("eigen_zhou/train_files.txt", "eigen_zhou/val_files.txt", "eigen/test_files.txt")}
    assert counts == {"eigen_zhou/train_files.txt": 39810, "eigen_zhou/val_files.txt": 4424,
                      "eigen/test_files.txt": 697}
    assert len(written) >= 3


def test_real_kitti_sample_uses_calibration():
    root = shared_path("data", "kitti_tiny")
    calib = read_calib_file(root / "2011_09_26" / "calib_cam_to_cam.txt")
    assert calib["P_rect_02"][0] == pytest.approx(721.5377)
    assert "calib_time" not in calib
    folder = "2011_09_26/2011_09_26_drive_0023_sync"
    ds = KittiDataset(root, [f"{folder} 1 l", f"{folder} 5 r"], 192, 640, is_train=False)
    left, right = ds[0], ds[1]
    assert left["color"][0].shape == (3, 192, 640) and set(left["color"]) == {0, -1, 1}
    fx_n = left["K"][0][0, 0].item() / 640
    assert fx_n == pytest.approx(721.5377 / 1242, rel=1e-6)
    assert left["K"][0][1, 1].item() / 192 == pytest.approx(721.5377 / 375, rel=1e-6)
    # 1-based calibration -> 0-based pixels, then resized with the half-pixel rule: cx' = (cx + 0.5) s - 0.5
    assert left["K"][0][0, 2].item() == pytest.approx((609.5593 - 1 + 0.5) * 640 / 1242 - 0.5, rel=1e-6)
    assert right["K"][0][0, 0].item() / 640 == pytest.approx(721.5377 / 1242, rel=1e-6)
    assert left["K"][2][0, 0].item() == pytest.approx(721.5377 / 1242 * 160, rel=1e-6)
    no_calib = KittiDataset(root, [f"{folder} 1 l"], 192, 640, use_calib=False)[0]
    assert no_calib["K"][0][0, 0].item() == pytest.approx(0.58 * 640)
