"""The accuracy guard (dna_depth_core.benchmark.guard) and `dna-depth guard`: data sets with ground truth, an exact
path passes with zero deltas, a different network fails, the verdict is recorded in the model file where `auto`
reads it (dna_lite0 at 64x96)."""
import json

import pytest
import torch

import dna_depth_core
from dna_depth_core import machine
from dna_depth_core.backends import guard_verdict
from dna_depth_core.benchmark.guard import (
    A1_TOL,
    ABS_REL_TOL,
    default_path,
    kitti_guard_data,
    model_metadata,
    run_guard,
    split_path,
    synthetic_guard_data,
    write_guard_record,
)
from dna_depth_core.cli import main as cli_main
from dna_depth_core.export import export_onnx
from conftest import require_shared

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

H, W = 64, 96


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread, monkeypatch):
    monkeypatch.setattr(machine, "usable_cpus", lambda: 1)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Two dna_lite0 networks with image-dependent decoders (different seeds) and their fp32 exports. The second
    network's disparity head is scaled up 30x: random decoders give near-constant depth, which median scaling makes
    score alike; a sharply structured disparity is a different depth map that the guard must reject."""
    d = tmp_path_factory.mktemp("guard")
    out = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = dna_depth_core.build_model("dna_lite0", height=H, width=W).eval()
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # a different decoder per seed (conftest's draw is seeded 0)
            for name, m in net.decoder.named_modules():
                if isinstance(m, torch.nn.Conv2d) and (seed == 1 or not name.startswith("heads")):
                    m.weight.normal_(0.0, (1.0 / m.weight[0].numel()) ** 0.5, generator=gen)
                    if name.startswith("heads"):
                        m.weight.mul_(30.0)
        dna_depth_core.save_checkpoint(net, str(d / f"net{seed}.safetensors"))
        export_onnx(net, d / f"net{seed}.onnx")
        out[seed] = d / f"net{seed}"
    return out


@pytest.fixture(scope="module")
def drive():
    return synthetic_guard_data(4, seed=1, width=2 * W, height=2 * H, every=3)


def test_data_sets_carry_their_ground_truth(drive):
    assert drive.name == "synthetic_seed1" and len(drive.images) == len(drive.gts) == 4 and not drive.crop
    assert drive.images[0].shape == (2 * H, 2 * W, 3) and drive.gts[0].shape == (2 * H, 2 * W)
    assert (drive.gts[0] == 0).any() and (drive.gts[0] > 0).mean() > 0.5  # sky has no depth, the rest exact
    root = require_shared("data/kitti_tiny")
    kitti = kitti_guard_data(root)
    assert kitti.name == "kitti_tiny" and len(kitti.images) == 7 and kitti.crop
    assert kitti.images[0].shape == (375, 1242, 3) and kitti.gts[0].shape == (375, 1242)
    assert 0.02 < (kitti.gts[0] > 0).mean() < 0.1  # projected LiDAR: a few percent of the pixels
    with pytest.raises(FileNotFoundError, match="no KITTI frames"):
        kitti_guard_data(root / "2011_09_26")


def test_an_exact_path_passes_and_another_network_fails(nets, drive, tmp_path):
    fp32 = str(nets[0]) + ".onnx"
    # openvino fp32 against onnxruntime fp32: the same function to 1e-4, so the metrics agree to rounding.
    record = run_guard(fp32, [drive], path="openvino:fp32", reference=fp32)
    d = record["datasets"]["synthetic_seed1"]
    assert record["passed"] and d["passed"] and d["frames"] == 4
    assert abs(d["d_abs_rel"]) < 1e-4 and abs(d["d_a1"]) < 1e-3 and d["mean_rel_disp_diff"] < 1e-4
    assert record["tolerance"] == {"abs_rel": ABS_REL_TOL, "a1": A1_TOL} and record["isa"] == machine.cpu_isa().name
    assert record["backend_reason"].startswith("backend openvino fp32")
    # Another network as the "reduced" path: not the same depth, the guard fails.
    other = run_guard(str(nets[1]) + ".onnx", [drive], path="onnxruntime:fp32", reference=fp32)
    od = other["datasets"]["synthetic_seed1"]
    assert not other["passed"] and (abs(od["d_abs_rel"]) > ABS_REL_TOL or abs(od["d_a1"]) > A1_TOL)
    assert od["mean_rel_disp_diff"] > 0.01


def test_records_are_written_where_auto_reads_them(nets, drive, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(open(str(nets[0]) + ".onnx", "rb").read())
    with pytest.raises(ValueError, match="an fp32 model; name the reduced path"):
        default_path(str(path))
    record = run_guard(str(path), [drive], path="openvino:fp32", reference=str(path))
    write_guard_record(str(path), {**record, "path": "openvino:bf16"})
    write_guard_record(str(path), {**record, "path": "onnxruntime:int8", "passed": False})
    meta = model_metadata(str(path))
    assert guard_verdict(meta, "openvino:bf16") is True and guard_verdict(meta, "onnxruntime:int8") is False
    assert guard_verdict(meta, "openvino:int8") is None
    assert json.loads(meta["guard"])["openvino:bf16"]["datasets"]["synthetic_seed1"]["frames"] == 4
    with pytest.raises(ValueError, match="expected BACKEND:PRECISION"):
        split_path("openvino")
    with pytest.raises(ValueError, match="no data set given"):
        run_guard(str(path), [], path="openvino:fp32")


def test_guard_command(nets, tmp_path, capsys):
    path = tmp_path / "c.onnx"
    path.write_bytes(open(str(nets[0]) + ".onnx", "rb").read())
    argv = ["guard", str(path), "--path", "openvino:fp32", "--synthetic", "3", "--synthetic-size", f"{2 * W}x{2 * H}"]
    assert cli_main([*argv, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["passed"] and r["path"] == "openvino:fp32" and guard_verdict(model_metadata(str(path)),
                                                                          "openvino:fp32") is True
    other = ["guard", str(nets[1]) + ".onnx", "--path", "onnxruntime:fp32", "--reference", str(path), "--synthetic",
             "3", "--synthetic-size", f"{2 * W}x{2 * H}", "--no-record"]
    assert cli_main(other) == 1  # fails the guard: exit status 1, file untouched
    out = capsys.readouterr().out
    assert "FAILED: auto will not offer it" in out and "not recorded" in out
    assert "guard" not in model_metadata(str(nets[1]) + ".onnx")
    assert cli_main(["guard", str(path), "--path", "openvino:fp32"]) == 2
    assert "give the frames to guard on" in capsys.readouterr().err
