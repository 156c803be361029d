"""`dna-depth evaluate` end to end on a synthetic drive, checked against metrics computed here by hand."""
import json

import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core.io.checkpoint import save_checkpoint
from dna_depth_core.cli import main as cli_main
from dna_depth_core.data.synthetic import render_drive
from dna_depth_core.evaluation import parse_scaling


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    info = render_drive(root, frames=5, seed=3, width=192, height=64, progress=False)
    gt = root / "gt.npz"
    assert cli_main(["export-gt", "--data-path", str(root), "--split", str(info.split_file), "--out", str(gt)]) == 0
    return root, info, gt


@pytest.fixture(scope="module")
def constant_ckpt(tmp_path_factory):
    """A real network whose last bias makes its full-resolution disparity (nearly) constant: weights of the final
    pointwise conv zeroed, bias b -> sigmoid(b) everywhere, so the depth is one known value."""
    net = dna_depth_core.build_model("dna_lite0", height=64, width=192)
    with torch.no_grad():
        head = net.decoder.heads[0].conv.pointwise
        head.weight.zero_()
        head.bias.fill_(-2.0)
    path = tmp_path_factory.mktemp("w") / "const.safetensors"
    save_checkpoint(net, str(path))
    return path


def _by_hand(gt_maps, pred_value, scale):
    rows = []
    for g in gt_maps:
        h, w = g.shape
        crop = np.zeros_like(g, bool)
        crop[int(0.40810811 * h): int(0.99189189 * h), int(0.03594771 * w): int(0.96405229 * w)] = True
        v = g[crop & (g > 1e-3) & (g < 80)].astype(np.float64)
        p = np.full_like(v, pred_value)
        p = np.clip(p * (np.median(v) / pred_value if scale == "median" else scale), 1e-3, 80)
        r = np.maximum(v / p, p / v)
        rows.append({"abs_rel": np.mean(np.abs(v - p) / v), "rmse": np.sqrt(np.mean((v - p) ** 2)),
                     "a1": np.mean(r < 1.25)})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


@pytest.mark.parametrize("scaling", ["median", "fixed:0.5"])
def test_evaluate_constant_prediction_matches_hand_computation(drive, constant_ckpt, capsys, scaling):
    root, info, gt = drive
    assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--data-path", str(root), "--split",
                     str(info.split_file), "--gt", str(gt), "--scaling", scaling, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "frames"}
    assert r["frames"] == 3
    const_depth = 1.0 / (0.01 + (10.0 - 0.01) / (1 + np.exp(2.0)))  # disp_to_depth(sigmoid(-2))
    gts = [np.load(root / "gt.npz")[f"depth_{i:05d}"] for i in range(3)]
    want = _by_hand(gts, const_depth, "median" if scaling == "median" else 0.5)
    for k, v in want.items():
        assert r[k] == pytest.approx(v, rel=2e-3, abs=1e-4), k


def test_evaluate_prints_the_papers_table_layout(drive, constant_ckpt, capsys):
    root, info, gt = drive
    assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--data-path", str(root), "--split",
                     str(info.split_file), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3"
    assert len(out[-1].split(" | ")) == 7


def test_bad_scaling_and_mismatched_gt(drive, constant_ckpt, tmp_path, capsys):
    root, info, gt = drive
    with pytest.raises(ValueError, match="fixed scale"):
        parse_scaling("fixed:-1")
    short = tmp_path / "short.txt"
    short.write_text(info.split_file.read_text().splitlines()[0] + "\n")
    assert cli_main(["evaluate", "--weights", str(constant_ckpt), "--data-path", str(root), "--split", str(short),
                     "--gt", str(gt)]) == 2
    assert "the split has 1 frames but the ground truth has 3" in capsys.readouterr().err
