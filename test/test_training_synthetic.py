"""The short CI version of the synthetic recipe (docs/synthetic_recipe.md): a few training steps on a tiny
synthetic drive with the recipe's pose settings, asserting that the loss falls and that the pose network learns
which way the camera moves.

The translation prior is switched off here (``pose_translation_bias: [0, 0, 0]``): the pose network starts at
no motion, so the forward direction (negative t_z for the pair (i, i+1), see evaluation.evaluate_pose) has to be
learned from the photometric loss; a wrong sign convention anywhere in the warp would drive it the other way.
"""
from __future__ import annotations

import csv

import pytest
import torch

from dna_depth_core.training.config import TrainConfig

H, W = 64, 192


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from dna_depth_core.data.synthetic import render_drive

    return render_drive(tmp_path_factory.mktemp("synth_recipe"), 14, seed=3, width=W, height=H, ss=1,
                        progress=False)


@torch.no_grad()
def drive_loss(trainer) -> float:
    """The training loss over all samples of the drive (eval mode, no augmentation): a noise-free measure."""
    from torch.utils.data import default_collate

    trainer.depth_net.eval()
    trainer.pose_net.eval()
    try:
        items = [trainer.train_set[i] for i in range(len(trainer.train_set))]
        out, _, _, _ = trainer.forward(default_collate(items))
    finally:
        trainer.depth_net.train()
        trainer.pose_net.train()
    return float(out["loss"])


def test_recipe_short_run_loss_falls_and_translation_points_forward(drive, tmp_path):
    from dna_depth_core.evaluation import evaluate_pose
    from dna_depth_core.training.trainer import Trainer

    cfg = TrainConfig(
        model="dna_lite0", pretrained=None, height=H, width=W, data_path=str(drive.root),
        split=str(drive.split_file), depth_head_bias=-5.0,
        pose_model="small", pose_pretrained=None, pose_output_scale=1.0, pose_head_weight_scale=0.1,
        pose_translation_bias=[0.0, 0.0, 0.0], pose_lr_scale=5.0, learning_rate=5e-4,
        batch_size=2, num_workers=0, augment=False, max_steps=32, num_epochs=100, lr_decay_epochs=[1000],
        progress=False, tensorboard=False, log_every=1, image_every=0, save_every_epochs=0, validate=False,
        out_dir=str(tmp_path / "run"), seed=0, cpu_threads=1)
    trainer = Trainer(cfg)
    loss_before = drive_loss(trainer)
    before = evaluate_pose(trainer.pose_net, drive.root, drive.split_lines, H, W, return_arrays=True)
    assert abs(before["t_pred"][:, 2].mean()) < 0.05  # starts at (about) no motion
    summary = trainer.fit()
    assert summary["skipped"] == 0
    with open(tmp_path / "run" / "train_log.csv") as f:
        assert len(list(csv.DictReader(f))) == cfg.max_steps
    loss_after = drive_loss(trainer)
    after = evaluate_pose(trainer.pose_net, drive.root, drive.split_lines, H, W, return_arrays=True)
    print(f"loss on the drive {loss_before:.4f} -> {loss_after:.4f}; t_z {before['t_pred'][:, 2].mean():+.3f} -> "
          f"{after['t_pred'][:, 2].mean():+.3f}, cos {after['cos_mean']:.3f}, corr {after['pearson_speed']:.3f}")
    assert loss_after < 0.95 * loss_before
    assert after["t_pred"][:, 2].mean() < -0.005, after["t_pred"]      # forward: negative z
    assert after["cos_mean"] > 0.3, after                            # points along the true motion
