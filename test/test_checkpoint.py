"""Checkpoint files: round trip, metadata, the official converter, and clear errors for bad files."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dna_depth_core
from dna_depth_core.io import checkpoint as checkpoint_io
from dna_depth_core.io.checkpoint import checkpoint_metadata, load_pose_network, read_checkpoint, save_checkpoint
from dna_depth_core.cli import main as cli_main
from dna_depth_core.models.pose import PoseNet

from conftest import require_shared


@pytest.fixture(scope="module")
def lite_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    net = dna_depth_core.build_model("dna_lite0", height=64, width=96).eval()
    path = tmp_path_factory.mktemp("ckpt") / "lite.safetensors"
    save_checkpoint(net, str(path), provenance={"source": "test"}, training_config={"lr": 1e-4})
    return net, path


def test_round_trip_same_function_and_metadata(lite_ckpt):
    net, path = lite_ckpt
    loaded = dna_depth_core.load_checkpoint(str(path))
    assert not loaded.training
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x)):
            assert torch.equal(a, b)
    meta = checkpoint_metadata(str(path))
    assert meta["model"] == "dna_lite0"
    assert meta["input_size"] == "64x96"
    assert meta["normalization"] == "inception"
    assert meta["depth_range"] == "0.1,100.0"
    assert meta["provenance"] == {"source": "test"}
    assert meta["training_config"] == {"lr": 1e-4}


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        dna_depth_core.load_checkpoint(str(tmp_path / "nope.safetensors"))


def test_truncated_file_is_named(lite_ckpt, tmp_path):
    _, path = lite_ckpt
    data = path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        dna_depth_core.load_checkpoint(str(bad))


def test_garbage_file_is_named(tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + b"\0" * 64)
    with pytest.raises(ValueError, match="corrupt safetensors header"):
        dna_depth_core.load_checkpoint(str(bad))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty or truncated"):
        dna_depth_core.load_checkpoint(str(empty))


def test_pth_is_refused_without_unpickling(tmp_path):
    p = tmp_path / "model.pth"
    p.write_bytes(b"whatever")
    with pytest.raises(ValueError, match="convert-official"):
        dna_depth_core.load_checkpoint(str(p))


def test_foreign_safetensors_is_not_a_dna_depth_checkpoint(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(ValueError, match="not a dna-depth checkpoint"):
        dna_depth_core.load_checkpoint(str(p))


def test_missing_tensors_and_wrong_model(lite_ckpt, tmp_path):
    from safetensors.torch import save_file

    _, path = lite_ckpt
    tensors, meta = read_checkpoint(str(path))
    dropped = dict(tensors)
    dropped.pop(sorted(dropped)[0])
    p = tmp_path / "missing.safetensors"
    save_file(dropped, str(p), metadata=meta)
    with pytest.raises(ValueError, match="1 tensors missing"):
        dna_depth_core.load_checkpoint(str(p))
    with pytest.raises(ValueError, match="holds model 'dna_lite0', expected 'dna_b0'"):
        dna_depth_core.load_checkpoint(str(path), expected_model="dna_b0")
    # Metadata claims dna_b0 but the tensors are Lite0's: a shape mismatch names the tensor.
    cfg = json.loads(meta["config"])
    cfg.update(name="dna_b0", encoder="tf_efficientnet_b0", normalization="imagenet")
    p2 = tmp_path / "liar.safetensors"
    save_file(tensors, str(p2), metadata=dict(meta, config=json.dumps(cfg)))
    with pytest.raises(ValueError, match="64 tensors missing for the depth network"):
        dna_depth_core.load_checkpoint(str(p2))


def test_save_is_atomic_on_failure(lite_ckpt, tmp_path, monkeypatch):
    net, path = lite_ckpt
    target = tmp_path / "keep.safetensors"
    shutil.copy(path, target)
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_io, "save_file", boom)  # the safetensors writer io.checkpoint calls
    with pytest.raises(OSError):
        save_checkpoint(net, str(target))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def test_convert_official_cli_reproduces_reference(tmp_path):
    ref = require_shared("reference/official_b0")
    out = tmp_path / "b0.safetensors"
    assert cli_main(["convert-official", str(ref), "--model", "dna_b0", "--out", str(out)]) == 0
    meta = checkpoint_metadata(str(out))
    assert meta["normalization"] == "none" and meta["model"] == "dna_b0" and meta["input_size"] == "192x640"
    assert "official" in meta["provenance"]["source"]
    net = dna_depth_core.load_checkpoint(str(out))
    expected = np.load(ref / "expected.npz")
    with torch.no_grad():
        disps = net(torch.from_numpy(expected["input"]))
    for i, d in enumerate(disps):
        np.testing.assert_allclose(d.numpy(), expected[f"disp{i}"], atol=1e-4, rtol=0)


def test_convert_official_wrong_model_is_named(tmp_path):
    ref = require_shared("reference/official_b0")
    code = cli_main(["convert-official", str(ref), "--model", "dna_b1", "--out", str(tmp_path / "x.safetensors")])
    assert code == 2 and not (tmp_path / "x.safetensors").exists()


def test_convert_official_corrupt_file_is_named(tmp_path, capsys):
    ref = require_shared("reference/official_b0")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ref / "encoder.pth", src / "encoder.pth")
    (src / "depth.pth").write_bytes((ref / "depth.pth").read_bytes()[:1000])
    code = cli_main(["convert-official", str(src), "--model", "dna_b0", "--out", str(tmp_path / "x.safetensors")])
    assert code == 2
    assert "depth.pth" in capsys.readouterr().err


def _official_pose_decoder(feature, state):
    """The authors' pose decoder written out functionally from their file's tensors (12 outputs, first 6 used)."""
    x = F.relu(F.conv2d(feature, state["net.0.weight"], state["net.0.bias"]))
    x = F.relu(F.conv2d(x, state["net.1.weight"], state["net.1.bias"], padding=1))
    x = F.relu(F.conv2d(x, state["net.2.weight"], state["net.2.bias"], padding=1))
    x = F.conv2d(x, state["net.3.weight"], state["net.3.bias"]).mean(dim=(2, 3)) * 0.01
    return x.view(-1, 2, 6)[:, 0]


def test_convert_official_with_pose_files(tmp_path):
    """A folder with pose_encoder.pth and pose.pth (shapes from the authors' key listing) converts, and the pose
    network computes the authors' first transform."""
    keys = json.loads(require_shared("reference/official_checkpoint_keys.json").read_text())
    ref = require_shared("reference/official_b0")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ref / "encoder.pth", src)
    shutil.copy(ref / "depth.pth", src)
    g = torch.Generator().manual_seed(0)

    def fake(shape, key):
        if key.endswith("num_batches_tracked"):
            return torch.tensor(0)
        if key.endswith("running_var"):
            return torch.rand(shape, generator=g) + 0.5
        return torch.randn(shape, generator=g) * 0.05

    pose_enc = {k: fake(v, k) for k, v in keys["pose_encoder.pth"].items()}
    pose_dec = {k: fake(v, k) for k, v in keys["pose.pth"].items()}
    torch.save(pose_enc, src / "pose_encoder.pth")
    torch.save(pose_dec, src / "pose.pth")
    out = tmp_path / "with_pose.safetensors"
    assert cli_main(["convert-official", str(src), "--model", "dna_b0", "--out", str(out)]) == 0
    pose = load_pose_network(str(out))
    assert isinstance(pose, PoseNet)
    a, b = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        aa, t = pose(a, b)
        feat = pose.encoder.forward_features((torch.cat([a, b], 1) - pose.mean) / pose.std)
        want = _official_pose_decoder(feat, pose_dec)
    torch.testing.assert_close(torch.cat([aa, t], 1), want, atol=1e-6, rtol=1e-5)
    # The encoder weights are the file's (fc dropped).
    assert torch.equal(pose.encoder.conv1.weight, pose_enc["encoder.conv1.weight"])


@pytest.mark.parametrize("kind", ["resnet18", "small", "lite0"])
def test_pose_network_round_trip_for_each_kind(tmp_path, kind):
    from dna_depth_core.models.pose import build_pose_model, set_output_scales

    torch.manual_seed(1)
    net = dna_depth_core.build_model("dna_lite0", height=64, width=96)
    pose = build_pose_model(kind).eval()
    set_output_scales(pose, 1.0, 0.01)  # a trained recipe's scales must come back with the weights
    path = tmp_path / "with_pose.safetensors"
    save_checkpoint(net, str(path), pose_net=pose)
    assert checkpoint_metadata(str(path))["pose_model"] == kind
    loaded = load_pose_network(str(path))
    assert loaded.kind == kind
    assert (loaded.decoder.output_scale, loaded.decoder.rotation_scale) == (1.0, 0.01)
    a, b = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for x, y in zip(pose(a, b), loaded(a, b)):
            assert torch.equal(x, y)
    depth_only = tmp_path / "depth_only.safetensors"
    save_checkpoint(net, str(depth_only))
    assert load_pose_network(str(depth_only)) is None



def test_files_get_the_mode_of_a_plainly_created_file(lite_ckpt, tmp_path):
    """Atomic writes go through a 0600 temporary file; the result has 0666 minus the umask, like open(..., "w")."""
    import os

    from dna_depth_core.io.atomic import write_text

    net, _ = lite_ckpt
    old = os.umask(0o027)
    try:
        save_checkpoint(net, str(tmp_path / "m.safetensors"))
        write_text(tmp_path / "t.txt", "x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.safetensors").st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "t.txt").st_mode & 0o777 == 0o640


def test_packed_checkpoint_reads_as_an_ordinary_one(lite_ckpt, tmp_path):
    """save_packed_checkpoint: encoder weights int8 with a per-output-channel scale (each weight within half a
    quantisation step of the original), the rest fp16; read_checkpoint expands it to fp32 transparently, so
    load_checkpoint gives a network whose depth is close to the original's; the provenance is kept."""
    from safetensors.torch import load_file

    net, path = lite_ckpt
    packed = tmp_path / "packed.safetensors"
    checkpoint_io.save_packed_checkpoint(str(path), str(packed), provenance={"source": "packed test"})
    raw = load_file(str(packed))
    orig, _ = read_checkpoint(str(path))
    quantised = [k[:-2] for k in raw if k.endswith(".q")]
    assert quantised and all(k.startswith("depth.encoder.") for k in quantised)
    assert all(raw[k + ".q"].dtype == torch.int8 and raw[k + ".s"].shape == (orig[k].shape[0],) for k in quantised)
    assert all(v.dtype in (torch.float16, torch.int8, torch.int64) or k.endswith(".s") for k, v in raw.items())
    assert packed.stat().st_size < 0.4 * path.stat().st_size
    tensors, meta = read_checkpoint(str(packed))
    assert tensors.keys() == orig.keys() and "packing" not in meta
    for k in quantised:  # |w - q s| <= s / 2 for each output channel
        step = raw[k + ".s"].view(-1, *([1] * (orig[k].dim() - 1)))
        assert torch.all((tensors[k] - orig[k]).abs() <= step / 2 + 1e-7), k
    assert all(tensors[k].dtype == orig[k].dtype for k in orig)
    assert checkpoint_metadata(str(packed))["provenance"]["source"] == "packed test"
    loaded = dna_depth_core.load_checkpoint(str(packed))
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = net(x)[0], loaded(x)[0]
    assert (a - b).abs().max() < 0.02 * a.abs().max()


def test_unknown_packing_is_named(lite_ckpt, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _, path = lite_ckpt
    tensors, _ = read_checkpoint(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta["packing"] = "zstd/9"
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match="unknown packing 'zstd/9'"):
        read_checkpoint(str(bad))
