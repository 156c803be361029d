"""The run log (rank 0 only): ``OUT/train_log.csv``, ``OUT/val_log.csv`` and TensorBoard scalars and images.

A run's logs describe that run alone, whether it starts fresh or resumes. When a :class:`RunLog` opens a run
folder that already holds logs, it keeps only what happened before the point the run starts from:

- ``train_log.csv``: the rows up to the start step (a fresh run starts at step 0: no rows are kept);
- ``val_log.csv``: the rows of the epochs before the start epoch (an epoch's row is written when the epoch ends,
  before its checkpoint, so a checkpoint of epoch ``E`` follows the rows of epochs ``< E``);
- TensorBoard: ``purge_step`` = the start step, so TensorBoard hides the events of the old run from there on.
"""
from __future__ import annotations

import csv
import os
import warnings
from typing import Callable, Mapping, Sequence

import torch

from dna_depth_core.io.atomic import atomic_write
from dna_depth_core.visualize import colorize

TRAIN_COLUMNS = ["step", "epoch", "loss", "lr", "images_per_s", "automask_fraction", "translation_norm",
                 "photometric/0", "photometric/1", "photometric/2", "photometric/3",
                 "smoothness/0", "smoothness/1", "smoothness/2", "smoothness/3", "skipped", "time_s"]
VAL_COLUMNS = ["step", "epoch", "loss", "photometric/0"]


class RunLog:
    """CSV rows and TensorBoard scalars/images of a run that starts at ``start_step`` in ``start_epoch`` (0 and 0
    for a fresh run; a checkpoint's step and epoch when resuming)."""

    def __init__(self, out_dir: str, tensorboard: bool, start_step: int = 0, start_epoch: int = 0):
        self.csv_path = os.path.join(out_dir, "train_log.csv")
        self.val_path = os.path.join(out_dir, "val_log.csv")
        keep_rows(self.csv_path, lambda row: int(row["step"]) <= start_step)
        keep_rows(self.val_path, lambda row: int(row["epoch"]) < start_epoch)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional dependency: tensorboard
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install tensorboard); TensorBoard logs disabled",
                              RuntimeWarning)
            else:
                self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard"), purge_step=start_step)

    def train_row(self, values: Mapping) -> None:
        """Append a row to ``train_log.csv`` (columns :data:`TRAIN_COLUMNS`, missing values empty)."""
        _append_row(self.csv_path, TRAIN_COLUMNS, values)

    def val_row(self, values: Mapping) -> None:
        """Append a row to ``val_log.csv`` (columns :data:`VAL_COLUMNS`)."""
        _append_row(self.val_path, VAL_COLUMNS, values)

    def scalars(self, step: int, values: Mapping, prefix: str = "train/") -> None:
        """TensorBoard scalars ``prefix + name`` of the numeric ``values`` (not step/epoch)."""
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(prefix + k, v, step)

    def images(self, step: int, target: torch.Tensor, disp: torch.Tensor, automask: torch.Tensor | None) -> None:
        """TensorBoard images of one sample: ``target`` ``(3, H, W)`` in [0, 1], ``disp`` ``(1, H, W)``
        (colourised), ``automask`` ``(1, H, W)`` or None."""
        if self.writer is None:
            return
        self.writer.add_image("images/target", target.detach().float().clamp(0, 1).cpu(), step)
        self.writer.add_image("images/disparity", colorize(disp.detach().float().cpu().numpy()[0]), step,
                              dataformats="HWC")
        if automask is not None:
            self.writer.add_image("images/automask", automask.detach().float().cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _append_row(path: str, columns: Sequence[str], values: Mapping) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(columns)
        w.writerow([_fmt(values.get(c, "")) for c in columns])


def keep_rows(path: str, keep: Callable[[dict], bool]) -> None:
    """Rewrite the CSV file ``path`` (atomically) with its header and the rows for which ``keep(row)`` is true
    (``row``: a dict by column name); a row that ``keep`` cannot read (a missing or non-numeric value) is
    dropped. When no row is kept the file is removed (the next row writes a fresh header). No file: nothing to
    do."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header = rows[0]
    kept = [header]
    for r in rows[1:]:
        try:
            if keep(dict(zip(header, r))):
                kept.append(r)
        except (KeyError, ValueError):
            continue
    if len(kept) == 1:
        os.remove(path)
    elif len(kept) != len(rows):
        atomic_write(path, lambda tmp: _write_rows(tmp, kept))


def _write_rows(path: str, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
