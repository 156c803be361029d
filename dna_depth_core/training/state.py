"""Training state on disk: checkpoint folders, the ``latest`` pointer, optimizer state, the lr schedule, resume.

Checkpoint layout (``OUT/checkpoints/step_XXXXXXXX/``, written into a temporary folder and renamed into place,
then ``OUT/checkpoints/latest`` is rewritten atomically)::

    model.safetensors      depth (+ pose) weights, dna_depth_core.io.checkpoint format: `dna-depth predict` reads it
    optimizer.safetensors  the optimizer's state tensors, keys "state.<param index>.<name>"
    trainer_state.json     format, epoch, step, step_in_epoch, steps_per_epoch, optimizer param groups and scalar
                           state, lr schedule, GradScaler, non-finite counters, world size, the TrainConfig
    rng_rank<R>.json       python / numpy / torch CPU / CUDA RNG states of rank R (training.rng)

Nothing is pickled: safetensors and JSON only. An interrupted save never leaves ``latest`` pointing at a partial
checkpoint: each file goes through a temporary file and ``os.replace``, the folder is renamed into place, and
``latest`` is rewritten last.
"""
from __future__ import annotations

import binascii
import contextlib
import json
import math
import os
import shutil
import time
import warnings
from typing import Any, Mapping

import torch
import torch.nn as nn
from safetensors.torch import save_file

from dna_depth_core.io.checkpoint import config_from_metadata, read_checkpoint, save_checkpoint
from dna_depth_core.io.atomic import atomic_write, write_text
from dna_depth_core.io.errors import one_line, unreadable
from dna_depth_core.io.safetensors_file import read_safetensors
from dna_depth_core.training.config import TrainConfig, load_config
from dna_depth_core.training.distributed import DistEnv
from dna_depth_core.training.rng import capture_rng_state, restore_rng_state

STATE_FORMAT = "dna-depth-train/1"
CHECKPOINTS = "checkpoints"
LATEST = "latest"


# ================================================================================================================
# Optimizer state <-> safetensors + JSON, and the lr schedule
# ================================================================================================================
def split_optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors for safetensors, keyed ``state.<param index>.<name>``; the JSON-able
    rest: ``{"param_groups": [...], "scalar_state": {index: {name: value}}}``)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalar_state": scalars}


def join_optimizer_state(tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`split_optimizer_state`: an ``optimizer.load_state_dict`` argument."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in rest.get("scalar_state", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


class EpochLRSchedule:
    """Step decay by epoch: ``lr = learning_rate * lr_decay ** (number of lr_decay_epochs <= epoch)``; each
    parameter group gets that x its ``lr_scale`` (default 1).

    The paper's schedule is ``lr_decay_epochs = [35]``, ``lr_decay = 0.1`` (x0.1 for the last 5 of 40 epochs).
    State is plain JSON (``state_dict``/``load_state_dict``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, milestones, gamma: float):
        self.optimizer, self.base_lr = optimizer, float(base_lr)
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** sum(1 for m in self.milestones if epoch >= m)

    def set_epoch(self, epoch: int) -> float:
        """Set every group's lr for ``epoch``; returns the base lr of that epoch."""
        self.epoch = epoch
        lr = self.lr_at(epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"type": "epoch_step", "base_lr": self.base_lr, "milestones": self.milestones, "gamma": self.gamma,
                "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base_lr, self.gamma = float(state["base_lr"]), float(state["gamma"])
        self.milestones = [int(m) for m in state["milestones"]]
        self.epoch = int(state["epoch"])


# ================================================================================================================
# Files and folders
# ================================================================================================================
def write_json(path: str, data: Any) -> None:
    """Atomically write ``data`` as indented JSON with sorted keys."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True))


def read_json(path: str) -> Any:
    """A checkpoint's JSON file; FileNotFoundError / ValueError naming the file when it is missing, unreadable or
    corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file missing: {path}") from None
    except OSError as exc:
        raise unreadable("checkpoint file", path, exc) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON (not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON ({one_line(exc.msg)} at line {exc.lineno} column {exc.colno})") \
            from None
    except RecursionError:
        raise ValueError(f"{path}: corrupt JSON (nested too deeply)") from None


#: The fields of ``torch.amp.GradScaler.state_dict()`` (empty when the scaler is disabled).
_SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _bad_state(path: str, what: str) -> ValueError:
    return ValueError(f"resume: {path}: {what}")


def _is_count(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_trainer_state(state: Any, path: str) -> dict[str, Any]:
    """``state`` (the contents of ``trainer_state.json`` at ``path``) when it has every field resume reads, with
    the right types; ValueError naming the file and the first field that does not fit otherwise."""
    if not isinstance(state, dict):
        raise _bad_state(path, f"expected a JSON object, found a {type(state).__name__}")
    if state.get("format") != STATE_FORMAT:
        raise _bad_state(path, f"unknown trainer state format {one_line(repr(state.get('format')), 60)} (expected "
                               f"{STATE_FORMAT!r})")
    for key, minimum in (("epoch", 0), ("step", 0), ("step_in_epoch", 0), ("steps_per_epoch", 0),
                         ("world_size", 1)):
        if not _is_count(state.get(key), minimum):
            raise _bad_state(path, f"'{key}' is {one_line(repr(state.get(key)), 60)}, expected an integer >= "
                                   f"{minimum}")
    for key in ("nonfinite_streak", "skipped_total"):
        if key in state and not _is_count(state[key]):
            raise _bad_state(path, f"'{key}' is {one_line(repr(state[key]), 60)}, expected an integer >= 0")
    schedule = state.get("schedule")
    if not (isinstance(schedule, dict) and _is_number(schedule.get("base_lr")) and _is_number(schedule.get("gamma"))
            and _is_count(schedule.get("epoch")) and isinstance(schedule.get("milestones"), list)
            and all(_is_count(m) for m in schedule["milestones"])):
        raise _bad_state(path, f"'schedule' is {one_line(repr(schedule), 120)}, expected base_lr, gamma (numbers), "
                               f"milestones (a list of integers) and epoch")
    scaler = state.get("scaler")
    if not (scaler is None or scaler == {} or (isinstance(scaler, dict) and set(scaler) == set(_SCALER_KEYS)
                                              and all(_is_number(v) for v in scaler.values()))):
        raise _bad_state(path, f"'scaler' is {one_line(repr(scaler), 120)}, expected {{}} or the numbers "
                               f"{', '.join(_SCALER_KEYS)}")
    optimizer = state.get("optimizer")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    scalars = optimizer.get("scalar_state", {}) if isinstance(optimizer, dict) else None
    if not (isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                             and all(_is_count(i) for i in g["params"]) for g in groups)
            and isinstance(scalars, dict) and all(isinstance(v, dict) for v in scalars.values())):
        raise _bad_state(path, "'optimizer' is not {\"param_groups\": [{\"params\": [indices], ...}], "
                               "\"scalar_state\": {...}}")
    if not isinstance(state.get("config"), dict):
        raise _bad_state(path, f"'config' is {one_line(repr(state.get('config')), 60)}, expected the training "
                               f"config as an object")
    return state


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint at ``step``: ``step_XXXXXXXX``."""
    return f"step_{step:08d}"


def resolve_checkpoint(path: str) -> str:
    """The checkpoint folder that ``path`` names: a run folder (OUT), its ``checkpoints/`` folder (both follow
    ``latest``), a checkpoint folder, a file inside one (e.g. its ``model.safetensors``) or a ``latest`` file."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"resume: not found: {path}")
    if os.path.isfile(path):
        if os.path.basename(path) == LATEST:
            return _follow_latest(os.path.dirname(path))
        path = os.path.dirname(path)
    if os.path.isfile(os.path.join(path, "trainer_state.json")):
        return path
    for root in (path, os.path.join(path, CHECKPOINTS)):
        if os.path.isfile(os.path.join(root, LATEST)):
            return _follow_latest(root)
    raise ValueError(f"resume: {path} is not a training checkpoint (expected a run folder with "
                     f"{CHECKPOINTS}/{LATEST}, a checkpoint folder with trainer_state.json, or a file in one)")


def _follow_latest(ckpt_root: str) -> str:
    latest = os.path.join(ckpt_root, LATEST)
    try:
        with open(latest, "rb") as f:
            name = f.read(4096).decode("utf-8").strip()
    except OSError as exc:
        raise unreadable("resume:", latest, exc) from exc
    except UnicodeDecodeError:
        raise ValueError(f"resume: {latest} is corrupt (not a checkpoint folder name)") from None
    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", "..") or "\0" in name:
        raise ValueError(f"resume: {latest} is corrupt (holds {one_line(repr(name), 80)}, not a checkpoint folder "
                         f"name)")
    target = os.path.join(ckpt_root, name)
    if not name or not os.path.isfile(os.path.join(target, "trainer_state.json")):
        raise ValueError(f"resume: {os.path.join(ckpt_root, LATEST)} points at '{name}', which is not a complete "
                         f"checkpoint")
    return target


def run_folder(path: str) -> str:
    """The run folder (OUT) that the checkpoint ``path`` names belongs to: ``OUT/checkpoints/step_X`` -> ``OUT``."""
    return os.path.dirname(os.path.dirname(resolve_checkpoint(path)))


def config_from_checkpoint(path: str) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with."""
    state_path = os.path.join(resolve_checkpoint(path), "trainer_state.json")
    state = check_trainer_state(read_json(state_path), state_path)
    try:
        return load_config(base=state["config"])
    except ValueError as exc:
        raise _bad_state(state_path, f"its training config does not load: {one_line(str(exc))}") from None


def prune_checkpoints(root: str, keep: str, n: int) -> None:
    """Keep the newest ``n`` checkpoints under ``root`` (``keep`` always among them); ``n <= 0`` keeps all."""
    if n <= 0:
        return
    names = sorted(d for d in os.listdir(root) if d.startswith("step_") and d != keep)
    for d in names[: max(len(names) - (n - 1), 0)]:
        shutil.rmtree(os.path.join(root, d), ignore_errors=True)


# ================================================================================================================
# Save and resume
# ================================================================================================================
def save_checkpoint_folder(env: DistEnv, out_dir: str, cfg: TrainConfig, depth_net: nn.Module,
                           pose_net: nn.Module | None, optimizer: torch.optim.Optimizer,
                           trainer_state: Mapping[str, Any]) -> str:
    """Write ``OUT/checkpoints/step_<trainer_state["step"]>`` and point ``latest`` at it; returns its path.

    Every rank calls this (each writes its RNG state; barriers keep them in step); rank 0 writes the rest.
    ``trainer_state``: the JSON-able counters, schedule and scaler (``epoch``, ``step``, ``step_in_epoch``,
    ``steps_per_epoch``, ``nonfinite_streak``, ``skipped_total``, ``schedule``, ``scaler``). An existing folder
    of the same step is replaced; older checkpoints beyond ``cfg.keep_checkpoints`` are removed."""
    root = os.path.join(out_dir, CHECKPOINTS)
    name = checkpoint_name(int(trainer_state["step"]))
    final, tmp = os.path.join(root, name), os.path.join(root, f".tmp-{name}")
    if env.is_main:
        os.makedirs(root, exist_ok=True)
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
    env.barrier()
    write_json(os.path.join(tmp, f"rng_rank{env.rank}.json"), capture_rng_state())
    env.barrier()
    if env.is_main:
        provenance = {"source": "dna-depth train", "step": trainer_state["step"], "epoch": trainer_state["epoch"],
                      "pose_model": None if cfg.pose_gt else cfg.pose_model}
        save_checkpoint(depth_net, os.path.join(tmp, "model.safetensors"), pose_net=pose_net,
                        provenance=provenance, training_config=cfg.to_dict())
        tensors, rest = split_optimizer_state(optimizer)
        atomic_write(os.path.join(tmp, "optimizer.safetensors"),
                     lambda p: save_file(tensors, p, metadata={"format": STATE_FORMAT}))
        state = {"format": STATE_FORMAT, **trainer_state, "world_size": env.world_size, "optimizer": rest,
                 "config": cfg.to_dict(), "time": time.time()}
        write_json(os.path.join(tmp, "trainer_state.json"), state)
        _fsync_dir(tmp)
        old = None
        if os.path.exists(final):
            old = os.path.join(root, f".old-{name}-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(root)
        write_text(os.path.join(root, LATEST), name + "\n")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        prune_checkpoints(root, keep=name, n=cfg.keep_checkpoints)
    env.barrier()
    return final


def _load_prefixed(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, where: str) -> None:
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"resume: {where}: the {prefix[:-1]} weights do not fit the configured network "
                         f"({str(exc).splitlines()[0]})") from exc


def _optimizer_state(tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any],
                     optimizer: torch.optim.Optimizer, path: str) -> dict[str, Any]:
    """The ``optimizer.load_state_dict`` argument that ``tensors`` (``optimizer.safetensors`` at ``path``) and
    ``rest`` (checked by :func:`check_trainer_state`) describe, checked against ``optimizer``: as many groups and
    parameters, state tensors shaped as their parameters, group settings of the same kinds."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for key, value in tensors.items():
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isascii() or not parts[1].isdigit():
            raise ValueError(f"resume: {path}: tensor '{one_line(key, 80)}' is not named state.<index>.<name>")
        idx = int(parts[1])
        if idx >= len(params):
            raise ValueError(f"resume: {path}: state for parameter {idx}, but the optimizer has {len(params)}")
        if value.dim() > 0 and tuple(value.shape) != tuple(params[idx].shape):
            raise ValueError(f"resume: {path}: '{key}' has shape {tuple(value.shape)}, its parameter "
                             f"{tuple(params[idx].shape)} (state of another model?)")
    for idx in rest.get("scalar_state", {}):
        if not (idx.isascii() and idx.isdigit() and int(idx) < len(params)):
            raise ValueError(f"resume: {path}: scalar state for parameter {one_line(repr(idx), 40)}, but the "
                             f"optimizer has {len(params)}")
    groups = rest["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(f"resume: {path}: {len(groups)} optimizer parameter groups, this model has "
                         f"{len(optimizer.param_groups)}")
    for i, (saved, own) in enumerate(zip(groups, optimizer.param_groups)):
        for key, value in saved.items():
            mine = own.get(key)
            if key == "params" or key not in own or mine is None:
                continue
            if isinstance(mine, bool):
                ok = isinstance(value, bool)
            elif isinstance(mine, (int, float)):
                ok = _is_number(value)
            elif isinstance(mine, (tuple, list)):
                ok = isinstance(value, list) and len(value) == len(mine) and all(_is_number(v) for v in value)
            else:
                ok = type(value) is type(mine)
            if not ok:
                raise ValueError(f"resume: {path}: optimizer group {i} '{one_line(key, 40)}' is "
                                 f"{one_line(repr(value), 60)}, expected a value like {one_line(repr(mine), 40)}")
    return join_optimizer_state(tensors, rest)


def load_checkpoint_folder(path: str, depth_net: nn.Module, pose_net: nn.Module | None,
                           optimizer: torch.optim.Optimizer) -> tuple[str, dict[str, Any]]:
    """Load the weights and the optimizer state of the checkpoint that ``path`` names (see
    :func:`resolve_checkpoint`); returns ``(checkpoint folder, trainer_state.json contents)`` for the caller to
    restore the counters, schedule and scaler, then :func:`restore_rank_rng` last.

    Raises:
        FileNotFoundError: the checkpoint or one of its files is missing.
        ValueError: naming the file and the problem: a corrupt or malformed ``trainer_state.json``,
            ``model.safetensors`` or ``optimizer.safetensors``; another model; no pose network where one is
            configured; weights or optimizer state that do not fit.
    """
    ckpt = resolve_checkpoint(path)
    state_path = os.path.join(ckpt, "trainer_state.json")
    state = check_trainer_state(read_json(state_path), state_path)
    model_path = os.path.join(ckpt, "model.safetensors")
    tensors, meta = read_checkpoint(model_path)
    held = config_from_metadata(meta, model_path).name
    if held != depth_net.config.name:
        raise ValueError(f"resume: {ckpt} holds model '{held}', the config asks for '{depth_net.config.name}'")
    opt_path = os.path.join(ckpt, "optimizer.safetensors")
    opt_tensors, _ = read_safetensors(opt_path, "optimizer state")
    opt_state = _optimizer_state(opt_tensors, state["optimizer"], optimizer, opt_path)
    _load_prefixed(depth_net, tensors, "depth.", ckpt)
    if pose_net is not None:
        if not any(k.startswith("pose.") for k in tensors):
            raise ValueError(f"resume: {ckpt} has no pose network (trained with pose_gt?)")
        _load_prefixed(pose_net, tensors, "pose.", ckpt)
    try:
        optimizer.load_state_dict(opt_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"resume: {ckpt}: optimizer state does not fit this model ({one_line(exc)})") from None
    return ckpt, state


def restore_rank_rng(ckpt: str, rank: int) -> None:
    """Restore this rank's global RNGs from ``ckpt/rng_rank<rank>.json``; without that file warn and keep the
    current (seeded) RNGs."""
    rng_path = os.path.join(ckpt, f"rng_rank{rank}.json")
    if os.path.exists(rng_path):
        state = read_json(rng_path)
        try:
            restore_rng_state(state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, binascii.Error) as exc:
            raise ValueError(f"resume: {rng_path}: not the RNG state this version writes ({one_line(exc)})") \
                from None
    else:
        warnings.warn(f"resume: {ckpt} has no RNG state for rank {rank}; reseeding", RuntimeWarning)
