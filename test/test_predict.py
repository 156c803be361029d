"""`dna-depth predict`: outputs per image, unreadable files skipped, the rest processed."""
import cv2
import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core.io.checkpoint import save_checkpoint
from dna_depth_core.cli import main as cli_main
from dna_depth_core.geometry import disp_to_depth


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    net = dna_depth_core.build_model("dna_lite0", height=64, width=96).eval()
    path = tmp_path_factory.mktemp("w") / "m.safetensors"
    save_checkpoint(net, str(path))
    return path


def _write_images(folder, n=3):
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    paths = []
    for i in range(n):
        img = (rng.random((50 + 10 * i, 120, 3)) * 255).astype(np.uint8)
        p = folder / ("sub" if i == 2 else ".") / f"img{i}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def test_predict_folder_with_a_bad_file(tmp_path, ckpt, capsys):
    src = tmp_path / "in"
    paths = _write_images(src)
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    assert cli_main(["predict", "--weights", str(ckpt), "--input", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "unreadable" in err
    net = dna_depth_core.load_checkpoint(str(ckpt))
    for p in paths:
        rel = p.parent.relative_to(src)
        depth = np.load(out / rel / f"{p.stem}_depth.npy")
        img = cv2.imread(str(p))
        assert depth.dtype == np.float32 and depth.shape == img.shape[:2]
        # Built here by hand: the input rule (per axis, INTER_AREA where it shrinks, bilinear where it grows; these
        # images shrink in width 120 -> 96 and grow in height), the network, the bilinear upsampling of the
        # full-resolution disparity to the image's size, disp_to_depth.
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h0 = rgb.shape[0]
        if h0 > 64:  # both axes shrink: one area resize
            small = cv2.resize(rgb, (96, 64), interpolation=cv2.INTER_AREA)
        else:  # width shrinks, height grows: one axis after the other
            small = cv2.resize(cv2.resize(rgb, (96, h0), interpolation=cv2.INTER_AREA), (96, 64),
                               interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            disp = net(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0)[0][0, 0].numpy()
        disp = cv2.resize(disp, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(depth, disp_to_depth(disp, 0.1, 100.0)[1], rtol=1e-4)
        png = cv2.imread(str(out / rel / f"{p.stem}_disp.png"))
        assert png.shape == img.shape


def test_predict_scale_and_single_file(tmp_path, ckpt):
    src = tmp_path / "in"
    p = _write_images(src, 1)[0]
    assert cli_main(["predict", "--weights", str(ckpt), "--input", str(p), "--out", str(tmp_path / "a")]) == 0
    assert cli_main(["predict", "--weights", str(ckpt), "--input", str(p), "--out", str(tmp_path / "b"),
                     "--scale", "2.5"]) == 0
    a, b = np.load(tmp_path / "a" / "img0_depth.npy"), np.load(tmp_path / "b" / "img0_depth.npy")
    np.testing.assert_allclose(b, 2.5 * a, rtol=1e-6)


def test_predict_missing_input_and_weights(tmp_path, ckpt, capsys):
    assert cli_main(["predict", "--weights", str(ckpt), "--input", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "input not found" in capsys.readouterr().err
    assert cli_main(["predict", "--weights", str(tmp_path / "w.safetensors"), "--input", str(tmp_path),
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "w.safetensors" in err


def test_predict_on_real_kitti_frame_with_official_weights(tmp_path):
    from conftest import require_shared

    ref = require_shared("reference/official_b0")
    frame = require_shared("data/kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000000.png")
    w = tmp_path / "b0.safetensors"
    assert cli_main(["convert-official", str(ref), "--model", "dna_b0", "--out", str(w)]) == 0
    assert cli_main(["predict", "--weights", str(w), "--input", str(frame), "--out", str(tmp_path / "o")]) == 0
    depth = np.load(tmp_path / "o" / "0000000000_depth.npy")
    assert depth.shape == (375, 1242)
    assert np.all(np.isfinite(depth)) and depth.min() >= 0.1 - 1e-4 and depth.max() <= 100 + 1e-3
