"""Networks: registry, output contract, parameter counts (paper), and the authors' function (reference vectors)."""
import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core.models.dna_decoder import DNADecoder
from dna_depth_core.models.layers import ChannelAttention, SeparableConv
from dna_depth_core.models.pose import PoseNet
from dna_depth_core.io.official import load_official_depth, load_official_pose
from dna_depth_core.profiling import count_parameters

from conftest import require_shared


def test_registry_lists_the_four_models():
    assert set(dna_depth_core.list_models()) >= {"dna_b0", "dna_b1", "dna_lite0", "monodepth2_r18"}
    with pytest.raises(ValueError, match="unknown model 'dna_b7'"):
        dna_depth_core.build_model("dna_b7")


@pytest.mark.parametrize("name", ["dna_b0", "dna_lite0", "monodepth2_r18"])
def test_output_contract(name):
    net = dna_depth_core.build_model(name).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 96))
    assert [tuple(o.shape) for o in out] == [(2, 1, 64, 96), (2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12)]
    for o in out:
        assert torch.all((o > 0) & (o < 1)), "disparities are sigmoids"


@pytest.mark.parametrize("shape, msg", [((1, 3, 60, 96), "multiples of 32"), ((1, 1, 64, 96), r"\(B, 3, H, W\)"),
                                        ((3, 64, 96), r"\(B, 3, H, W\)")])
def test_bad_input_shapes_name_the_problem(shape, msg):
    net = dna_depth_core.build_model("dna_lite0")
    with pytest.raises(ValueError, match=msg):
        net(torch.rand(*shape))


def test_integer_input_is_rejected():
    net = dna_depth_core.build_model("dna_lite0")
    with pytest.raises(ValueError, match="float"):
        net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_parameter_counts_match_the_paper():
    b0, b1 = dna_depth_core.build_model("dna_b0"), dna_depth_core.build_model("dna_b1")
    # Decoder: exact count of the authors' decoder. Whole networks: paper 4.15 M and 6.66 M (within 0.5 %);
    # the authors' model has exactly 4,149,952 and 6,655,588.
    assert count_parameters(b0.decoder) == 554_564
    assert count_parameters(b0) == 4_149_952
    assert count_parameters(b1) == 6_655_588
    assert abs(count_parameters(b0) / 4.15e6 - 1) < 0.005
    assert abs(count_parameters(b1) / 6.66e6 - 1) < 0.005
    # Monodepth2 R18: encoder 11,176,512 + decoder 3,152,724 (the paper's 14.84 M adds the unused 513,000 fc).
    md2 = dna_depth_core.build_model("monodepth2_r18")
    assert count_parameters(md2.decoder) == 3_152_724
    assert count_parameters(md2) + 513_000 == 14_842_236


def test_pose_network_shapes_and_scale():
    pose = PoseNet().eval()
    a, b = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        aa, t = pose(a, b)
    assert aa.shape == (2, 3) and t.shape == (2, 3)
    # Pose decoder: 1x1 to 256, two 3x3 at 256, 1x1 to 6 (the authors' has 12 outputs, of which 6 are used).
    assert count_parameters(pose.decoder) == 1_314_572 - (256 * 6 + 6)
    # ResNet-18 with a 6-channel stem: the authors' 11,698,920 includes the unused 513,000 fc.
    assert count_parameters(pose.encoder) + 513_000 == 11_698_920
    # The x0.01 output scale: outputs equal 0.01 x the raw 1x1 conv mean.
    with torch.no_grad():
        x = (torch.cat([a, b], 1) - pose.mean) / pose.std
        f = pose.encoder.forward_features(x)
        d = pose.decoder
        raw = d.out(torch.relu(d.conv2(torch.relu(d.conv1(torch.relu(d.squeeze(f))))))).mean(dim=(2, 3))
    assert torch.allclose(torch.cat([aa, t], 1), 0.01 * raw, atol=1e-7)


def test_separable_conv_tf_same_padding():
    # Stride 2 on an even size pads only bottom/right: output pixel (0, 0) sees input rows/cols 0..2 with no
    # zero padding, so a depthwise all-ones kernel on an all-ones image gives 9 there, and 4 at the last pixel
    # (2 rows x 2 cols inside the image).
    conv = SeparableConv(1, 1, stride=2)
    with torch.no_grad():
        conv.depthwise.weight.fill_(1.0)
        conv.pointwise.weight.fill_(1.0)
        conv.pointwise.bias.zero_()
        y = conv(torch.ones(1, 1, 8, 8))
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0].item() == 9.0 and y[0, 0, -1, -1].item() == 4.0


def test_channel_attention_is_squeeze_excitation():
    att = ChannelAttention(32)
    assert att.fc1.weight.shape == (2, 32) and att.fc2.weight.shape == (32, 2)
    with torch.no_grad():
        att.fc1.weight.zero_()
        x = torch.rand(1, 32, 5, 7)
        # Zero first layer -> sigmoid(0) = 0.5 on every channel.
        assert torch.allclose(att(x), 0.5 * x)


def test_decoder_rejects_wrong_feature_channels():
    dec = DNADecoder([16, 24, 40, 112, 320])
    feats = [torch.rand(1, c, 64 // 2 ** (i + 1), 64 // 2 ** (i + 1)) for i, c in enumerate([16, 24, 40, 112, 320])]
    feats[2] = torch.rand(1, 41, 8, 8)
    with pytest.raises(ValueError, match=r"features\[2\]"):
        dec(feats)


def test_reproduces_the_authors_reference_outputs():
    """The definition of faithful: the authors' official-format weights + their input -> their outputs, 1e-4."""
    ref = require_shared("reference/official_b0")
    expected = np.load(ref / "expected.npz")
    net = load_official_depth(str(ref), "dna_b0")
    assert net.config.normalization == "none"
    x = torch.from_numpy(expected["input"])
    with torch.no_grad():
        feats = net.encoder(x)
        disps = net(x)
    for i, f in enumerate(feats):
        np.testing.assert_allclose(f.numpy(), expected[f"feature{i}"], atol=1e-4, rtol=0)
    for i, d in enumerate(disps):
        np.testing.assert_allclose(d.numpy(), expected[f"disp{i}"], atol=1e-4, rtol=0)
    assert load_official_pose(str(ref)) is None  # this folder ships no pose files


def test_lukemelas_key_mapping_covers_b1_layout():
    """Every encoder key of the authors' B1 file (from the key listing) maps onto our timm B1 encoder."""
    import json

    keys = json.loads(require_shared("reference/official_checkpoint_keys.json").read_text())
    net = dna_depth_core.build_model("dna_b1")
    state = {k: torch.zeros(v) for k, v in keys["b1/encoder.pth"].items() if k.startswith("model.")}
    net.encoder.load_lukemelas_or_timm(state)  # raises on any missing key or shape mismatch
