"""The models' public initialisation and registries: the pose-network registry (one list for the config, the
trainer and checkpoints), the disparity-head bias of both depth decoders, the pose output initialisation, and the
encoders' weight-file helpers."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from dna_depth_core.models import pose as pose_models
from dna_depth_core.models.encoders import pypi_weights_path, read_state_dict
from dna_depth_core.models.pose import PoseNetBase, build_pose_model, list_pose_models, register_pose_model
from dna_depth_core.models.registry import build_model
from dna_depth_core.training.config import TrainConfig

H, W = 64, 96


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


def test_pose_registry_builds_every_name_as_its_checkpoint_kind():
    assert list_pose_models() == ["lite0", "resnet18", "small"]
    for name in list_pose_models():
        net = build_pose_model(name, pretrained=None, output_scale=0.5)
        assert isinstance(net, PoseNetBase) and net.kind == name  # checkpoints rebuild the network by kind
        aa, t = net(torch.rand(2, 3, H, W), torch.rand(2, 3, H, W))
        assert aa.shape == t.shape == (2, 3)
        assert net.decoder.output_scale == 0.5
    with pytest.raises(ValueError, match="pose_model: unknown 'resnet50'; available: lite0, resnet18, small"):
        build_pose_model("resnet50")
    with pytest.raises(ValueError, match="small pose network has no pretrained weights"):
        build_pose_model("small", pretrained="/some/weights.pth")


def test_config_accepts_exactly_the_registered_pose_networks(monkeypatch):
    with pytest.raises(ValueError, match="pose_model: must be one of lite0, resnet18, small"):
        TrainConfig(pose_model="tiny")
    # registered once, a new network is a valid config value: there is no second list to update
    monkeypatch.setitem(pose_models._POSE_REGISTRY, "tiny", pose_models.small)
    assert TrainConfig(pose_model="tiny").pose_model == "tiny"
    assert "tiny" in list_pose_models()


def test_register_pose_model_uses_the_function_name(monkeypatch):
    monkeypatch.setattr(pose_models, "_POSE_REGISTRY", dict(pose_models._POSE_REGISTRY))

    @register_pose_model
    def small_wide(pretrained=None, output_scale=0.01):
        return pose_models.SmallPoseNet(output_scale=output_scale, channels=(32, 32, 64, 64, 128, 128))

    net = build_pose_model("small_wide", output_scale=0.25)
    assert net.encoder[0].out_channels == 32 and net.decoder.output_scale == 0.25


@pytest.mark.parametrize("name", ["dna_lite0", "monodepth2_r18"])
def test_disparity_bias_starts_every_scale_at_its_sigmoid(name):
    torch.manual_seed(0)
    net = build_model(name, pretrained=None, height=H, width=W).eval()
    net.set_disparity_bias(-3.0)
    # with the heads' last (1-channel) convolutions zeroed, each disparity is sigmoid(bias) everywhere
    last = [m for m in net.decoder.heads.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1]
    assert len(last) == 4
    with torch.no_grad():
        for conv in last:
            conv.weight.zero_()
        disps = net(torch.rand(1, 3, H, W))
    want = 1.0 / (1.0 + math.exp(3.0))  # 0.0474259
    assert len(disps) == 4
    for d in disps:
        torch.testing.assert_close(d, torch.full_like(d, want), atol=1e-7, rtol=0)


def test_pose_output_initialisation():
    torch.manual_seed(0)
    net = build_pose_model("small", output_scale=0.01)
    w0 = net.decoder.out.weight.detach().clone()
    net.scale_output_weights(0.5)
    assert torch.equal(net.decoder.out.weight, w0 * 0.5)
    net.set_output_scales(0.1, 0.01)
    net.set_translation_bias([0.2, -0.1, -0.8])
    net.scale_output_weights(0.0)
    with torch.no_grad():
        aa, t = net(torch.rand(3, 3, H, W), torch.rand(3, 3, H, W))
    torch.testing.assert_close(t, torch.tensor([[0.2, -0.1, -0.8]] * 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(aa, net.decoder.out.bias[:3].detach().expand(3, 3) * 0.01, atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="expected 3 numbers"):
        net.set_translation_bias([0.0, 1.0])


def test_read_state_dict_reads_safetensors_and_weights_only_pth(tmp_path):
    state = {"a.weight": torch.arange(6.0).view(2, 3), "b.bias": torch.tensor([1.5, -2.0])}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {**state, "epoch": 3}}, str(tmp_path / "w.pth"))
    for f in ("w.safetensors", "w.pth"):
        got = read_state_dict(tmp_path / f)
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        read_state_dict(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="resnet18: no PyPI weight package"):
        pypi_weights_path("resnet18")
