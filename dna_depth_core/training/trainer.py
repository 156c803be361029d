"""The self-supervised training loop: one process (CPU or CUDA) or one rank of a ``torchrun`` job.

One training step (Monodepth2 protocol, docs/training.md "One step")::

    batch  = color / color_aug by frame id (0 target, then sources), K          training.datasets item layout
    disps  = DepthNet(color_aug[0])                           4 sigmoid disparities, scale 0 first
    poses  = PoseNet(color_aug[-1], color_aug[0]) -> inverted  T_source_target of the -1 frame (temporal order)
             PoseNet(color_aug[0],  color_aug[+1])             T_source_target of the +1 frame
             (or the dataset's ground-truth poses with pose_gt)
    losses = SelfSupervisedLoss(color[0], {s: color[s]}, disps, poses, K)   warps every source into the target
                                                                            at every scale (un-augmented images)
    step   = backward, optional gradient clipping, Adam; a non-finite loss or gradient skips the step

Both pose pairs go through the pose network in one batched call. Under ``amp`` (CUDA only) the networks run in
fp16 autocast with a GradScaler; on the CPU, ``precision`` bf16 (or auto on a CPU with native bf16,
:func:`choose_precision`) runs them in bf16 autocast (no scaler: bf16 has fp32's range). The loss is always
computed in fp32.

``init_from`` starts the networks from a checkpoint's weights (training.networks.init_from_checkpoint) with a fresh
optimizer, schedule and step count; ``freeze_encoder`` keeps the depth encoder fixed (no gradient, its BatchNorm
in eval mode, so its weights and statistics stay bit-identical). A resume restores everything from its checkpoint
and ignores ``init_from``.

The rest of a run lives beside this module: the data (training.datasets), the networks (training.networks), the
ranks (training.distributed), checkpoints and resume (training.state), the RNGs (training.rng) and the logs
(training.runlog).

Determinism and exact resume: the sample order of an epoch is a function of (seed, epoch, rank) only; each item's
augmentation is drawn from RNGs seeded by (seed, epoch, index), so the data a step sees does not depend on the
number of loader workers or on where a run was resumed. The global RNGs of every rank are saved in each
checkpoint and restored on resume; validation runs under a forked RNG so it never changes the training stream.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dna_depth_core.geometry import pose_vec_to_mat
from dna_depth_core.losses import SelfSupervisedLoss
from dna_depth_core.training.config import TrainConfig
from dna_depth_core.training.datasets import (EpochSampler, SeededItems, batch_frame, batch_intrinsics,
                                              build_dataset, ground_truth_poses)
from dna_depth_core.training.distributed import broadcast_buffers, setup_distributed, wrap_networks
from dna_depth_core.machine import CpuIsa, cpu_isa
from dna_depth_core.training.networks import build_depth_net, build_pose_net, init_from_checkpoint
from dna_depth_core.training.rng import mix_seed, seed_everything, seeded_rngs
from dna_depth_core.training.runlog import RunLog
from dna_depth_core.training.state import (CHECKPOINTS, LATEST, EpochLRSchedule, load_checkpoint_folder,
                                           restore_rank_rng, save_checkpoint_folder)

# Loss entries averaged into the rows of the run log.
LOGGED = ("loss", "automask_fraction", "translation_norm")
LOGGED_PREFIXES = ("photometric/", "smoothness/")


class NonFiniteLossError(RuntimeError):
    """Training aborted: the loss (or the gradient) was NaN/inf in ``max_nonfinite`` consecutive steps."""


def choose_precision(precision: str, device: torch.device, amp: bool, isa: CpuIsa | None = None) -> tuple[str, str]:
    """The arithmetic of the training forward pass: ``(name, why)``, name one of ``"fp32"``, ``"bf16"`` (CPU bf16
    autocast) or ``"fp16-amp"`` (CUDA autocast + GradScaler, from ``amp``; ``precision`` applies to CPUs only).
    ``precision: auto`` picks bf16 on a CPU with native bf16 (``machine.CpuIsa.native_bf16``: avx512_bf16 or
    amx_bf16), fp32 otherwise; ``isa`` is the CPU's (default: this machine's, ``machine.cpu_isa``)."""
    if device.type == "cuda":
        return ("fp16-amp", "CUDA with amp: true") if amp else ("fp32", "CUDA with amp: false")
    if precision == "fp32":
        return "fp32", "precision: fp32"
    if precision == "bf16":
        return "bf16", "precision: bf16"
    isa = cpu_isa() if isa is None else isa
    if isa.native_bf16:
        return "bf16", f"precision: auto and the CPU has native bf16 ({isa.name})"
    return "fp32", f"precision: auto and the CPU ({isa.name}) has no avx512_bf16 or amx_bf16 (bf16 would be emulated)"


def to_device(obj, device: torch.device):
    """Tensors in nested dicts/lists/tuples moved to ``device`` (non-blocking); other values as they are."""
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


class Trainer:
    """Builds data, networks, optimizer and logs from a :class:`TrainConfig`; :meth:`fit` trains.

    ``resume``: a checkpoint (see :func:`training.state.resolve_checkpoint`) to continue from exactly.
    ``train_set``/``val_set``: datasets to use instead of ``build_dataset(cfg)`` (e.g. in tests or from Python).

    ``depth_net``/``pose_net`` are the networks; ``depth_model``/``pose_model`` what the step calls (the same
    modules, or their DistributedDataParallel wrappers under several ranks). ``pose_net`` is None with
    ``pose_gt``.
    """

    def __init__(self, cfg: TrainConfig, resume: str | None = None, train_set: Dataset | None = None,
                 val_set: Dataset | None = None):
        self.cfg = cfg
        self.env = env = setup_distributed(cfg)
        if cfg.batch_size % env.world_size:
            raise ValueError(f"batch_size: the global batch {cfg.batch_size} does not split evenly over "
                             f"{env.world_size} ranks")
        self.per_rank_batch = cfg.batch_size // env.world_size
        self.out_dir = os.path.abspath(cfg.out_dir)
        self.device = env.device
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        self.precision, self.precision_reason = choose_precision(cfg.precision, self.device, cfg.amp)

        # identical initial weights on every rank (DDP broadcasts rank 0's anyway)
        seed_everything(cfg.seed)
        self.train_set = train_set if train_set is not None else build_dataset(cfg, "train")
        self.val_set = val_set
        if self.val_set is None and cfg.val_split and cfg.validate:
            self.val_set = build_dataset(cfg, "val")
        self.sampler = EpochSampler(len(self.train_set), shuffle=True, seed=cfg.seed, rank=env.rank,
                                    world_size=env.world_size, drop_last=True)
        self.steps_per_epoch = len(self.sampler.base) // self.per_rank_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set has {len(self.train_set)} items, too few for one batch of "
                             f"{cfg.batch_size} (over {env.world_size} ranks)")

        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.depth_net = build_depth_net(cfg).to(self.device, memory_format=self.memory_format)
        self.pose_net = (None if cfg.pose_gt else
                         build_pose_net(cfg).to(self.device, memory_format=self.memory_format))
        self.init_info = None
        if cfg.init_from and resume is None:  # a resume restores every weight from its own checkpoint
            self.init_info = init_from_checkpoint(self.depth_net, self.pose_net, cfg.init_from)
        if cfg.freeze_encoder:
            self.depth_net.encoder.requires_grad_(False)
        params: list = [p for p in self.depth_net.parameters() if p.requires_grad]
        if self.pose_net is not None:
            if cfg.pose_lr_scale != 1.0:  # two groups; the schedule keeps each group's lr_scale
                params = [{"params": params, "lr_scale": 1.0},
                          {"params": list(self.pose_net.parameters()), "lr_scale": float(cfg.pose_lr_scale)}]
            else:
                params += list(self.pose_net.parameters())
        self.depth_model, self.pose_model = wrap_networks(env, cfg, self.depth_net, self.pose_net)

        self.optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, betas=tuple(cfg.adam_betas),
                                          weight_decay=cfg.weight_decay)
        self.schedule = EpochLRSchedule(self.optimizer, cfg.learning_rate, cfg.lr_decay_epochs, cfg.lr_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = SelfSupervisedLoss(min_depth=cfg.min_depth, max_depth=cfg.max_depth,
                                          smoothness_weight=cfg.smoothness_weight, ssim_weight=cfg.ssim_weight,
                                          automask=cfg.automask)
        self.epoch = 0
        self.step = 0             # batches processed (a skipped non-finite step counts)
        self.step_in_epoch = 0
        self.nonfinite_streak = 0
        self.skipped_total = 0
        self.last_saved_step: int | None = None
        self.last_checkpoint: str | None = None

        # per-rank RNG streams for dropout etc.; a resume replaces them with the saved ones
        seed_everything(mix_seed(cfg.seed, 104729, env.rank))
        self.resumed_from = None
        if resume is not None:
            self.load(resume)

    # -- one step: batch -> depth -> poses -> warps and losses -> optimizer step ----------------------------
    def forward(self, batch: Mapping) -> tuple[dict, dict[int, torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """Networks and loss for one batch (already on the device).

        Returns ``(loss dict, poses, disps, translations)``: the loss's outputs (``SelfSupervisedLoss``), the
        ``{source id: T_source_target (B, 4, 4)}`` used for the warps, the ``num_scales`` fp32 disparities
        (scale 0 first), and the pose network's translations ``(len(sources) * B, 3)`` (None with ``pose_gt``)."""
        cfg = self.cfg
        sources = cfg.frame_ids[1:]
        x = batch_frame(batch, "color_aug", 0).contiguous(memory_format=self.memory_format)
        if self.use_amp:
            amp = torch.autocast("cuda", dtype=torch.float16)
        elif self.precision == "bf16":
            amp = torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            amp = contextlib.nullcontext()
        with amp:
            disps = self.depth_model(x)[: cfg.num_scales]
            pose_out = self.predict_poses(batch, x) if self.pose_model is not None else None
        disps = [d.float() for d in disps]
        if pose_out is None:
            poses, translations = ground_truth_poses(batch, cfg.frame_ids), None
        else:
            axisangle, translations = pose_out[0].float(), pose_out[1].float()
            poses = {f: pose_vec_to_mat(aa, t, invert=f < 0)
                     for f, aa, t in zip(sources, axisangle.chunk(len(sources)), translations.chunk(len(sources)))}
        target = batch_frame(batch, "color", 0).float()
        source_images = {f: batch_frame(batch, "color", f).float() for f in sources}
        out = self.loss_fn(target, source_images, disps, poses, batch_intrinsics(batch))
        return out, poses, disps, translations

    def predict_poses(self, batch: Mapping, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pose network on every (source, target) pair in temporal order, all pairs in one call: returns
        ``(axisangle, translation)``, each ``(len(sources) * B, 3)``, source by source. ``x`` is the target
        ``color_aug[0]`` in the training memory format. During ``pose_warmup_steps`` the pose network is frozen:
        no gradient, so no update (it runs outside DDP then)."""
        firsts, seconds = [], []
        for f in self.cfg.frame_ids[1:]:
            a, b = (batch_frame(batch, "color_aug", f), x) if f < 0 else (x, batch_frame(batch, "color_aug", f))
            firsts.append(a)
            seconds.append(b)
        pair = (torch.cat(firsts).contiguous(memory_format=self.memory_format),
                torch.cat(seconds).contiguous(memory_format=self.memory_format))
        if self.step < self.cfg.pose_warmup_steps:
            with torch.no_grad():
                return self.pose_net(*pair)
        return self.pose_model(*pair)

    def train_step(self, batch: Mapping) -> dict[str, Any]:
        """Forward, backward and optimizer step for one batch; a non-finite loss or gradient skips the step."""
        batch = to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        out, poses, disps, translations = self.forward(batch)
        loss = out["loss"]
        finite = self.env.all_agree(bool(torch.isfinite(loss).item()))
        if not finite:
            if self.env.distributed:  # every rank must run a backward pass for DDP's reducer
                dummy = sum(d.sum() for d in disps) * 0.0
                if translations is not None:
                    dummy = dummy + translations.sum() * 0.0
                dummy.backward()
                self.optimizer.zero_grad(set_to_none=True)
            return self._skip(out, "loss")
        if self.use_amp:
            self.scaler.scale(loss).backward()
            if self.cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                self._clip()
            self.scaler.step(self.optimizer)  # skips itself on inf/NaN gradients (normal while the scale settles)
            self.scaler.update()
        else:
            loss.backward()
            norm = self._clip()
            if not math.isfinite(norm):
                self.optimizer.zero_grad(set_to_none=True)
                return self._skip(out, "gradient")
            self.optimizer.step()
        self.nonfinite_streak = 0
        out["translation_norm"] = (translations.detach().norm(dim=1).mean() if translations is not None else
                                   torch.stack([p[:, :3, 3].norm(dim=1).mean() for p in poses.values()]).mean())
        out["skipped"] = False
        out["disp0"] = disps[0].detach()
        out["target"] = batch_frame(batch, "color", 0)
        return out

    def _clip(self) -> float:
        """Clip the gradient norm to ``grad_clip`` (when set); returns the total norm before clipping."""
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.cfg.grad_clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))

    def _skip(self, out: dict, what: str) -> dict:
        self.nonfinite_streak += 1
        self.skipped_total += 1
        msg = (f"non-finite {what} at step {self.step + 1} (epoch {self.epoch}): step skipped "
               f"({self.nonfinite_streak} in a row, limit max_nonfinite={self.cfg.max_nonfinite})")
        if self.env.is_main:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        if self.nonfinite_streak >= self.cfg.max_nonfinite:
            last = f"; last checkpoint: {self.last_checkpoint}" if self.last_checkpoint else ""
            raise NonFiniteLossError(
                f"training aborted at step {self.step + 1} (epoch {self.epoch}): the {what} was NaN/inf in "
                f"{self.nonfinite_streak} consecutive steps (max_nonfinite={self.cfg.max_nonfinite}). Check the "
                f"data for broken images, lower learning_rate, or set amp: false{last}")
        return {"skipped": True, "loss": out["loss"].detach()}

    # -- validation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Mean validation loss (and photometric/0) over ``val_set``; None when there is no validation set."""
        if self.val_set is None:
            return None
        cfg, env = self.cfg, self.env
        sampler = EpochSampler(len(self.val_set), shuffle=False, seed=cfg.seed, rank=env.rank,
                               world_size=env.world_size, drop_last=False)
        loader = DataLoader(SeededItems(self.val_set, cfg.seed), batch_size=self.per_rank_batch, sampler=sampler,
                            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed))
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        self._set_train_mode(False)
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), seeded_rngs(mix_seed(cfg.seed, 31, self.epoch)):
                for i, batch in enumerate(loader):
                    if cfg.val_max_batches is not None and i >= cfg.val_max_batches:
                        break
                    out, _, _, _ = self.forward(to_device(batch, self.device))
                    if torch.isfinite(out["loss"]):
                        n = batch_frame(batch, "color", 0).shape[0]
                        totals += torch.tensor([out["loss"].item() * n, out["photometric/0"].item() * n, n],
                                               dtype=torch.float64, device=self.device)
        finally:
            self._set_train_mode(True)
        if env.distributed:
            dist.all_reduce(totals)
        n = max(totals[2].item(), 1.0)
        return {"loss": totals[0].item() / n, "photometric/0": totals[1].item() / n}

    def _set_train_mode(self, mode: bool) -> None:
        """Both networks in training (or eval) mode; a frozen encoder stays in eval mode (its BatchNorm keeps
        its running statistics)."""
        self.depth_model.train(mode)
        if self.pose_model is not None:
            self.pose_model.train(mode)
        if self.cfg.freeze_encoder:
            self.depth_net.encoder.eval()

    # -- the loop -----------------------------------------------------------------------------------------
    def loader(self, epoch: int, skip_batches: int) -> DataLoader:
        """The training batches of ``epoch`` for this rank, from batch ``skip_batches`` on."""
        cfg = self.cfg
        self.sampler.set_epoch(epoch, skip=skip_batches * self.per_rank_batch)
        gen = torch.Generator()
        gen.manual_seed(mix_seed(cfg.seed, 5381, epoch, self.env.rank))
        return DataLoader(SeededItems(self.train_set, cfg.seed), batch_size=self.per_rank_batch,
                          sampler=self.sampler, num_workers=cfg.num_workers, drop_last=True,
                          pin_memory=self.device.type == "cuda", generator=gen)

    def total_steps(self) -> int:
        total = self.cfg.num_epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps is not None else total

    def _say(self, msg: str) -> None:
        if self.env.is_main:
            tqdm.write(msg, file=sys.stderr)

    def _open_log(self) -> RunLog | None:
        """Rank 0: the run folder's config.yaml and its :class:`RunLog` from the current step and epoch."""
        if not self.env.is_main:
            return None
        os.makedirs(self.out_dir, exist_ok=True)
        self.cfg.to_yaml(os.path.join(self.out_dir, "config.yaml"))
        if self.resumed_from is None and os.path.isfile(os.path.join(self.out_dir, CHECKPOINTS, LATEST)):
            warnings.warn(f"{self.out_dir} holds checkpoints of an earlier run; this run starts from scratch and "
                          f"replaces its logs (resume instead to continue it)", RuntimeWarning)
        return RunLog(self.out_dir, self.cfg.tensorboard, start_step=self.step, start_epoch=self.epoch)

    def fit(self) -> dict[str, Any]:
        """Train until ``num_epochs`` (or ``max_steps``); returns a summary (final step, epoch, losses, ...)."""
        cfg, env = self.cfg, self.env
        log = self._open_log()
        total = self.total_steps()
        self._say(f"precision {self.precision} ({self.precision_reason})")
        if self.resumed_from is not None and cfg.init_from:
            self._say(f"resumed from {self.resumed_from}: init_from ({cfg.init_from}) is not used")
        elif self.init_info is not None:
            self._say(f"init_from {self.init_info['path']}: depth network loaded; {self.init_info['pose_note']}")
        if cfg.freeze_encoder:
            self._say("freeze_encoder: the depth encoder is fixed")
        bar = tqdm(total=total, initial=min(self.step, total), disable=not (cfg.progress and env.is_main),
                   unit="step", dynamic_ncols=True, file=sys.stderr)
        self._set_train_mode(True)
        acc: dict[str, float] = {}
        n_acc, t_log, steps_since = 0, time.perf_counter(), 0
        first_losses, last_loss, val = [], None, None
        t_start = time.perf_counter()
        try:
            while self.epoch < cfg.num_epochs and self.step < total:
                lr = self.schedule.set_epoch(self.epoch)
                if self.step_in_epoch < self.steps_per_epoch:
                    for batch in self.loader(self.epoch, self.step_in_epoch):
                        out = self.train_step(batch)
                        self.step += 1
                        self.step_in_epoch += 1
                        steps_since += 1
                        loss_v = float(out["loss"].detach())
                        if not out["skipped"]:
                            last_loss = loss_v
                            if len(first_losses) < 10:
                                first_losses.append(loss_v)
                            for k, v in out.items():
                                if k.startswith(LOGGED_PREFIXES) or k in LOGGED:
                                    acc[k] = acc.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                            n_acc += 1
                        now = time.perf_counter()
                        ips = steps_since * cfg.batch_size / max(now - t_log, 1e-9)
                        bar.update(1)
                        bar.set_postfix_str(f"ep {self.epoch} loss {loss_v:.4f} {ips:.1f} img/s", refresh=False)
                        if log is not None and (self.step % cfg.log_every == 0 or self.step == total):
                            row = {k: v / max(n_acc, 1) for k, v in acc.items()}
                            row.update(step=self.step, epoch=self.epoch, lr=lr, images_per_s=ips,
                                       skipped=self.skipped_total, time_s=now - t_start)
                            log.train_row(row)
                            log.scalars(self.step, row)
                            acc, n_acc, t_log, steps_since = {}, 0, now, 0
                        if (log is not None and cfg.image_every and self.step % cfg.image_every == 0
                                and not out["skipped"]):
                            automask = out.get("automask")
                            log.images(self.step, out["target"][0], out["disp0"][0],
                                       automask[0] if automask is not None else None)
                        if cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                            self.save()
                        if self.step >= total:
                            break
                if self.step_in_epoch >= self.steps_per_epoch:  # the epoch is complete
                    val = self.validate() if cfg.validate else None
                    if val is not None and log is not None:
                        log.val_row({"step": self.step, "epoch": self.epoch, **val})
                        log.scalars(self.step, val, prefix="val/")
                        self._say(f"epoch {self.epoch}: val loss {val['loss']:.4f}")
                    self.epoch += 1
                    self.step_in_epoch = 0
                    if cfg.save_every_epochs and self.epoch % cfg.save_every_epochs == 0:
                        self.save()
            if self.last_saved_step != self.step:
                self.save()
        finally:
            bar.close()
            if log is not None:
                log.close()
        self._say(f"done: step {self.step}, epoch {self.epoch}; checkpoint {self.last_checkpoint}")
        return {"step": self.step, "epoch": self.epoch, "first_losses": first_losses, "last_loss": last_loss,
                "precision": self.precision, "precision_reason": self.precision_reason,
                "val": val, "checkpoint": self.last_checkpoint, "skipped": self.skipped_total,
                "seconds": time.perf_counter() - t_start}

    # -- checkpoints --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The JSON-able loop state a checkpoint holds besides weights, optimizer and RNGs."""
        return {"epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
                "steps_per_epoch": self.steps_per_epoch, "nonfinite_streak": self.nonfinite_streak,
                "skipped_total": self.skipped_total, "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict()}

    def save(self) -> str:
        """Write ``OUT/checkpoints/step_XXXXXXXX`` (all ranks take part) and point ``latest`` at it."""
        broadcast_buffers(self.env, (self.depth_net, self.pose_net))
        final = save_checkpoint_folder(self.env, self.out_dir, self.cfg, self.depth_net, self.pose_net,
                                       self.optimizer, self.state_dict())
        self.last_saved_step = self.step
        self.last_checkpoint = final
        return final

    def load(self, path: str) -> None:
        """Restore weights, optimizer, schedule, scaler, counters and this rank's RNG states from a checkpoint."""
        ckpt, state = load_checkpoint_folder(path, self.depth_net, self.pose_net, self.optimizer)
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler") and self.use_amp:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        if int(state["world_size"]) != self.env.world_size or int(state["steps_per_epoch"]) != self.steps_per_epoch:
            warnings.warn(f"resume: checkpoint was written by {state['world_size']} rank(s) with "
                          f"{state['steps_per_epoch']} steps/epoch, now {self.env.world_size} and "
                          f"{self.steps_per_epoch}: the run continues, but not bit-exactly", RuntimeWarning)
            self.step_in_epoch = min(self.step_in_epoch, self.steps_per_epoch)
        restore_rank_rng(ckpt, self.env.rank)
        self.resumed_from = ckpt
        self.last_saved_step = self.step
        self.last_checkpoint = ckpt

    def close(self) -> None:
        """Leave the process group (if this trainer joined it)."""
        self.env.close()


def train(cfg: TrainConfig, resume: str | None = None, train_set: Dataset | None = None,
          val_set: Dataset | None = None) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it (``torchrun`` ranks all call this)."""
    trainer = Trainer(cfg, resume=resume, train_set=train_set, val_set=val_set)
    try:
        return trainer.fit()
    finally:
        trainer.close()
