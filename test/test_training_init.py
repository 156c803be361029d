"""Training from a full checkpoint (init_from, freeze_encoder) and the CPU precision (bf16 autocast).

A short run on a tiny synthetic drive makes the checkpoint; the tests check that a run initialised from it starts
at that checkpoint's loss (not at a fresh network's), that a frozen encoder stays bit-identical, that the pose
network comes along when the file has one, that a resume wins over init_from, the errors for files that do not
fit, and that bf16 autocast training on the CPU follows fp32 within bf16's precision."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from conftest import require_shared
from dna_depth_core.training.config import TrainConfig

H, W = 64, 192


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from dna_depth_core.data.synthetic import render_drive

    root = tmp_path_factory.mktemp("synth")
    return render_drive(root, 12, seed=3, width=W, height=H, ss=1, progress=False)


def tiny_cfg(drive, out_dir, **kw) -> TrainConfig:
    values = dict(model="dna_lite0", pretrained=None, pose_model="small", height=H, width=W,
                  data_path=str(drive.root), split=str(drive.split_file), batch_size=2, num_workers=0,
                  progress=False, tensorboard=False, log_every=1, image_every=0, out_dir=str(out_dir),
                  save_every_epochs=0, validate=False, augment=False, seed=5, precision="fp32")
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(drive, tmp_path_factory):
    """A run of 15 steps at lr 1e-3: ``(trainer, its model.safetensors)``."""
    from dna_depth_core.training.trainer import Trainer

    out = tmp_path_factory.mktemp("trained")
    tr = Trainer(tiny_cfg(drive, out, max_steps=15, learning_rate=1e-3))
    summary = tr.fit()
    return tr, os.path.join(summary["checkpoint"], "model.safetensors")


def batch_loss(tr, batch) -> float:
    """The trainer's loss on ``batch`` with its networks in eval mode (BatchNorm running statistics), no step."""
    from dna_depth_core.training.trainer import to_device

    tr._set_train_mode(False)
    with torch.no_grad():
        loss = float(tr.forward(to_device(batch, tr.device))[0]["loss"])
    tr._set_train_mode(True)
    return loss


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_init_from_starts_at_the_checkpoints_loss(drive, trained, tmp_path):
    """Depth and pose weights are the checkpoint's; on one batch the initialised run's loss equals the trained
    run's and is far below a fresh network's; its first training step's loss is at that level too."""
    from dna_depth_core.training.trainer import Trainer

    a, ckpt = trained
    b = Trainer(tiny_cfg(drive, tmp_path / "b", init_from=ckpt, max_steps=1))
    fresh = Trainer(tiny_cfg(drive, tmp_path / "fresh", max_steps=1))
    assert b.init_info["depth"] and b.init_info["pose"]
    assert states_equal(a.depth_net, b.depth_net) and states_equal(a.pose_net, b.pose_net)
    assert not states_equal(fresh.depth_net, b.depth_net)
    batch = next(iter(b.loader(0, 0)))
    la, lb, lf = batch_loss(a, batch), batch_loss(b, batch), batch_loss(fresh, batch)
    print(f"loss on one batch: trained {la:.5f}, init_from {lb:.5f}, fresh {lf:.5f}")
    assert lb == pytest.approx(la, rel=1e-6)
    assert lb < 0.8 * lf, (lb, lf)
    first_b = b.fit()["first_losses"][0]  # training mode (batch statistics) on the same first batch
    first_fresh = fresh.fit()["first_losses"][0]
    assert first_b < 0.8 * first_fresh, (first_b, first_fresh)
    assert b.step == 1 and b.optimizer.state_dict()["state"][0]["step"] == 1  # fresh optimizer and counters


def test_init_from_a_checkpoint_folder_and_the_command_flag(drive, trained, tmp_path, capsys):
    import argparse

    from dna_depth_core.commands import train as cmd
    from dna_depth_core.io.checkpoint import load_checkpoint

    a, ckpt = trained
    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    args = [f"{k}={v}" for k, v in dict(model="dna_lite0", pretrained="null", pose_model="small", height=H,
                                        width=W, data_path=drive.root, split=drive.split_file, batch_size=2,
                                        num_workers=0, progress="false", tensorboard="false", augment="false",
                                        max_steps=1, learning_rate=1e-12, save_every_epochs=0).items()]
    run = tmp_path / "run"
    # a checkpoint folder (not the file) and the flags of the command
    assert cmd.run(p.parse_args(args + ["--out", str(run), "--init-from", os.path.dirname(ckpt),
                                        "--freeze-encoder"])) == 0
    printed = capsys.readouterr()
    assert "init_from" in printed.err and "pose network (small) loaded" in printed.err
    net = load_checkpoint(str(run / "checkpoints" / "step_00000001" / "model.safetensors"))
    # lr 1e-12: one step barely moves the decoder; the frozen encoder not at all
    enc_a, enc = a.depth_net.encoder.state_dict(), net.encoder.state_dict()
    assert all(torch.equal(enc_a[k], v) for k, v in enc.items())
    dec_a = a.depth_net.decoder.state_dict()
    assert all(torch.allclose(dec_a[k], v, atol=1e-6) for k, v in net.decoder.state_dict().items())


def test_freeze_encoder_keeps_it_bit_identical(drive, trained, tmp_path):
    """Three steps with a frozen encoder: its weights and BatchNorm statistics are bit-identical, it is not in the
    optimizer, and the decoder and the pose network did train."""
    from dna_depth_core.training.trainer import Trainer

    _, ckpt = trained
    tr = Trainer(tiny_cfg(drive, tmp_path, init_from=ckpt, freeze_encoder=True, max_steps=3, learning_rate=1e-3))
    enc0 = {k: v.clone() for k, v in tr.depth_net.encoder.state_dict().items()}
    dec0 = {k: v.clone() for k, v in tr.depth_net.decoder.state_dict().items()}
    pose0 = {k: v.clone() for k, v in tr.pose_net.state_dict().items()}
    tr.fit()
    enc = tr.depth_net.encoder.state_dict()
    assert any("running_mean" in k for k in enc)
    assert all(torch.equal(v, enc0[k]) for k, v in enc.items())
    assert any(not torch.equal(v, dec0[k]) for k, v in tr.depth_net.decoder.state_dict().items())
    assert any(not torch.equal(v, pose0[k]) for k, v in tr.pose_net.state_dict().items())
    in_optimizer = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in tr.depth_net.encoder.parameters()}
    assert tr.depth_net.training and not tr.depth_net.encoder.training


def test_resume_wins_over_init_from(drive, trained, tmp_path):
    from dna_depth_core.training.trainer import Trainer

    a, ckpt = trained
    other = Trainer(tiny_cfg(drive, tmp_path / "other", max_steps=2, seed=9))
    other.fit()
    resumed = Trainer(tiny_cfg(drive, tmp_path / "other", max_steps=3, seed=9, init_from=ckpt),
                      resume=str(tmp_path / "other"))
    assert resumed.init_info is None and resumed.step == 2
    assert states_equal(resumed.depth_net, other.depth_net) and not states_equal(resumed.depth_net, a.depth_net)


def test_init_from_errors_name_the_problem(drive, trained, tmp_path):
    import dna_depth_core
    from dna_depth_core.io.checkpoint import read_checkpoint
    from dna_depth_core.training.trainer import Trainer

    _, ckpt = trained
    with pytest.raises(FileNotFoundError, match="init_from: checkpoint not found: .*nope.safetensors"):
        Trainer(tiny_cfg(drive, tmp_path, init_from=str(tmp_path / "nope.safetensors")))
    other = tmp_path / "b1.safetensors"
    dna_depth_core.save_checkpoint(dna_depth_core.build_model("dna_b1", height=H, width=W), str(other))
    with pytest.raises(ValueError, match="holds model 'dna_b1', the config asks for 'dna_lite0'"):
        Trainer(tiny_cfg(drive, tmp_path, init_from=str(other)))
    with pytest.raises(ValueError, match="depths 0.1..100.0 m, the config has 0.1..80.0"):
        Trainer(tiny_cfg(drive, tmp_path, init_from=ckpt, max_depth=80.0))
    with pytest.raises(ValueError, match="pose output scales"):
        Trainer(tiny_cfg(drive, tmp_path, init_from=ckpt, pose_rotation_scale=0.1))
    # a tensor of the wrong shape: the message names it
    from safetensors import safe_open

    tensors, _ = read_checkpoint(ckpt)
    with safe_open(ckpt, framework="pt") as f:
        meta = f.metadata()
    key = next(k for k in tensors if k.startswith("depth.decoder.") and k.endswith(".weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, *tensors[key].shape[1:])
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match=f"tensor {key} has shape"):
        Trainer(tiny_cfg(drive, tmp_path, init_from=str(bad)))


def test_init_from_keeps_the_pose_network_when_the_file_has_another_or_none(drive, trained, tmp_path):
    import dna_depth_core
    from dna_depth_core.training.trainer import Trainer

    a, ckpt = trained
    with pytest.warns(RuntimeWarning, match="pose network is 'small', the config's 'lite0'"):
        tr = Trainer(tiny_cfg(drive, tmp_path, init_from=ckpt, pose_model="lite0", pose_pretrained=None))
    assert not tr.init_info["pose"] and states_equal(tr.depth_net, a.depth_net)
    depth_only = tmp_path / "depth_only.safetensors"
    dna_depth_core.save_checkpoint(a.depth_net, str(depth_only))
    tr = Trainer(tiny_cfg(drive, tmp_path, init_from=str(depth_only)))
    assert not tr.init_info["pose"] and "no pose network" in tr.init_info["pose_note"]
    assert states_equal(tr.depth_net, a.depth_net)


def test_init_from_the_authors_converted_weights(drive, tmp_path):
    """`dna-depth convert-official` output: the depth network's weights and its input normalisation (none) come
    from the file; the file has no pose network, so the paper's pose network keeps its initialisation."""
    from dna_depth_core.cli import main as cli_main
    from dna_depth_core.io.checkpoint import load_checkpoint
    from dna_depth_core.training.trainer import Trainer

    ref = require_shared("reference/official_b0")
    out = tmp_path / "official_b0.safetensors"
    assert cli_main(["convert-official", str(ref), "--model", "dna_b0", "--out", str(out)]) == 0
    tr = Trainer(tiny_cfg(drive, tmp_path / "run", model="dna_b0", pose_model="resnet18", pose_pretrained=None,
                          init_from=str(out), max_steps=1))
    want = load_checkpoint(str(out))
    assert tr.depth_net.config.normalization == want.config.normalization == "none"
    sa, sb = tr.depth_net.state_dict(), want.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)
    assert tr.init_info["depth"] and not tr.init_info["pose"]
    assert torch.isfinite(torch.tensor(tr.fit()["last_loss"]))


# ------------------------------------------------------------------------------------------------------------
# precision
# ------------------------------------------------------------------------------------------------------------
def test_choose_precision():
    from dna_depth_core.machine import isa_for_class
    from dna_depth_core.training.trainer import choose_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    avx2, avx512, bf16, amx = (isa_for_class(n) for n in ("avx2", "avx512_vnni", "avx512_bf16", "amx"))
    assert choose_precision("auto", cpu, True, avx2)[0] == "fp32"
    assert "(avx2) has no avx512_bf16 or amx_bf16" in choose_precision("auto", cpu, True, avx2)[1]
    assert choose_precision("auto", cpu, True, avx512)[0] == "fp32"
    assert choose_precision("auto", cpu, True, bf16) == ("bf16", "precision: auto and the CPU has native bf16 "
                                                          "(avx512_bf16)")
    assert choose_precision("auto", cpu, False, amx) == ("bf16", "precision: auto and the CPU has native bf16 (amx)")
    assert choose_precision("fp32", cpu, True, bf16)[0] == "fp32"
    assert choose_precision("bf16", cpu, True, avx2)[0] == "bf16"
    assert choose_precision("bf16", cuda, True, bf16)[0] == "fp16-amp"  # CUDA: amp decides, as before
    assert choose_precision("auto", cuda, False, bf16)[0] == "fp32"
    with pytest.raises(ValueError, match="precision: must be one of auto, fp32, bf16"):
        TrainConfig(precision="fp16")


def test_bf16_autocast_training_follows_fp32(drive, tmp_path):
    """Three steps on the same batches in fp32 and in CPU bf16 autocast: the networks run in bf16 (the disparity
    heads' activations are bf16), the loss stays fp32, and each step's loss is within 1 % of fp32's."""
    from dna_depth_core.training.trainer import Trainer

    losses = {}
    for precision in ("fp32", "bf16"):
        tr = Trainer(tiny_cfg(drive, tmp_path / precision, precision=precision, max_steps=3, learning_rate=1e-3))
        assert tr.precision == precision
        seen = []
        hook = tr.depth_net.decoder.register_forward_hook(lambda m, i, o: seen.append(o[0].dtype))
        summary = tr.fit()
        hook.remove()
        assert summary["precision"] == precision
        assert set(seen) == {torch.bfloat16 if precision == "bf16" else torch.float32}
        losses[precision] = summary["first_losses"]
    print(f"first losses fp32 {losses['fp32']}, bf16 {losses['bf16']}")
    assert len(losses["bf16"]) == 3
    for a, b in zip(losses["fp32"], losses["bf16"]):
        assert b == pytest.approx(a, rel=0.01), (losses["fp32"], losses["bf16"])
    assert losses["fp32"] != losses["bf16"]  # bf16 did change the arithmetic
