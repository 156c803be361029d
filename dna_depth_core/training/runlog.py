"""The run log (rank 0 only): ``OUT/train_log.csv``, ``OUT/val_log.csv`` and TensorBoard scalars and images.

A resumed run drops the rows of an earlier run that lie beyond the step it resumes from (TensorBoard:
``purge_step``).
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
    """CSV rows and TensorBoard scalars/images; ``resume_step``: the step a resumed run starts from (None for a
    fresh run)."""

    def __init__(self, out_dir: str, tensorboard: bool, resume_step: int | None = None):
        self.csv_path = os.path.join(out_dir, "train_log.csv")
        self.val_path = os.path.join(out_dir, "val_log.csv")
        if resume_step is not None:
            for p in (self.csv_path, self.val_path):
                keep_rows(p, lambda row: int(row["step"]) <= resume_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional dependency: tensorboard
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install tensorboard); TensorBoard logs disabled",
                              RuntimeWarning)
            else:
                self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard"), purge_step=resume_step)

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
    dropped. No file: nothing to do."""
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
    if len(kept) != len(rows):
        atomic_write(path, lambda tmp: _write_rows(tmp, kept))


def _write_rows(path: str, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
