"""KITTI raw data: calibration and split files, image paths, and the training dataset.

Layout (KITTI raw, also written by :mod:`dna_depth_core.data.synthetic`)::

    DATA/DATE/calib_cam_to_cam.txt, DATA/DATE/calib_velo_to_cam.txt
    DATA/DATE/DATE_drive_XXXX_sync/image_02/data/%010d.png     (left colour camera; image_03 = right)

Split files (monodepth2 format) hold one ``folder frame side`` a line, e.g.
``2011_09_26/2011_09_26_drive_0022_sync 473 r``; side ``l`` is ``image_02``, ``r`` is ``image_03``.

Images reach the network through :mod:`dna_depth_core.preprocess` (the one rule) and intrinsics follow
:mod:`dna_depth_core.camera` (the one camera model): kept normalised per camera and turned into pixels at each
scale with ``camera.pixel_K``. From the calibration, ``P_rect_02``/``P_rect_03`` (their left 3x3) are read at
the original image size; KITTI's calibration is 1-based (the ``- 1`` of the standard velodyne exporter), so the
principal point is first moved to the project's 0-based convention (``cx0 = cx - 1``, ``cy0 = cy - 1``).
"""
from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dna_depth_core.camera import KITTI_K_NORMALISED, flip_K, normalise_K, pixel_K
from dna_depth_core.data.augment import sample_color_jitter
from dna_depth_core.preprocess import fit_image, load_image, to_chw

SIDE_TO_CAM = {"l": 2, "r": 3}
IMAGE_EXTENSIONS = (".png", ".jpg")

# Standard split lists (monodepth2's public repository; the lists are not shipped with this project).
DEFAULT_SPLITS_URL = "https://raw.githubusercontent.com/nianticlabs/monodepth2/master/splits"
SPLIT_FILES = ("eigen_zhou/train_files.txt", "eigen_zhou/val_files.txt", "eigen/test_files.txt")


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------


def read_calib_file(path) -> dict[str, np.ndarray]:
    """A KITTI calibration file (``KEY: numbers`` a line) as ``{key: float64 1-D array}``.

    Entries whose values are not all numbers (``calib_time``) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    out: dict[str, np.ndarray] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{path}:{n}: expected 'KEY: values', got {line!r}")
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], np.float64)
        except ValueError:
            continue  # calib_time and other text entries
    return out


@dataclass(frozen=True)
class SplitEntry:
    """One split line: ``folder`` (``DATE/DATE_drive_XXXX_sync``), ``frame_index``, ``side`` (``l`` or ``r``)."""

    folder: str
    frame_index: int
    side: str = "l"

    @property
    def cam(self) -> int:
        """KITTI camera number: 2 for ``l``, 3 for ``r``."""
        return SIDE_TO_CAM[self.side]

    @property
    def date(self) -> str:
        """The date folder holding the calibration (first path component of ``folder``)."""
        return Path(self.folder).parts[0]

    @property
    def line(self) -> str:
        return f"{self.folder} {self.frame_index} {self.side}"


def parse_split_line(line: str) -> SplitEntry:
    """Parse ``folder frame side`` (side defaults to ``l`` when absent)."""
    if isinstance(line, SplitEntry):
        return line
    fields = str(line).split()
    if len(fields) not in (2, 3):
        raise ValueError(f"split line must be 'folder frame side', got {line!r}")
    side = fields[2] if len(fields) == 3 else "l"
    if side not in SIDE_TO_CAM:
        raise ValueError(f"split line {line!r}: side must be 'l' or 'r', got {side!r}")
    try:
        frame = int(fields[1])
    except ValueError:
        raise ValueError(f"split line {line!r}: frame index {fields[1]!r} is not an integer") from None
    return SplitEntry(fields[0], frame, side)


def read_split_file(path) -> list[str]:
    """Lines of a split file (stripped, blank lines dropped), each checked with :func:`parse_split_line`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    for ln in lines:
        parse_split_line(ln)
    return lines


def image_path(data_path, folder: str, frame_index: int, side: str = "l") -> Path:
    """``DATA/folder/image_0X/data/%010d.png`` (or ``.jpg`` when only that exists)."""
    if side not in SIDE_TO_CAM:
        raise ValueError(f"side must be 'l' or 'r', got {side!r}")
    base = Path(data_path) / folder / f"image_0{SIDE_TO_CAM[side]}" / "data" / f"{int(frame_index):010d}"
    for ext in IMAGE_EXTENSIONS:
        p = base.with_suffix(ext)
        if p.is_file():
            return p
    return base.with_suffix(IMAGE_EXTENSIONS[0])


def normalised_intrinsics(calib, cam: int, image_size) -> np.ndarray:
    """Normalised (3, 3) intrinsics (:func:`dna_depth_core.camera.normalise_K`) of camera ``cam`` from
    ``calib_cam_to_cam.txt`` (path or parsed dict); ``image_size`` = (width, height) of the original images.

    ``P_rect_0{cam}``'s principal point is moved from KITTI's 1-based to the project's 0-based pixels first.
    """
    c2c = calib if isinstance(calib, dict) else read_calib_file(calib)
    key = f"P_rect_0{cam}"
    if key not in c2c:
        raise ValueError(f"calibration has no {key}")
    P = np.asarray(c2c[key], np.float64).reshape(3, 4)
    K = P[:, :3].copy()
    K[0, 2] -= 1.0
    K[1, 2] -= 1.0
    return normalise_K(K, image_size)


# ----------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------


class KittiDataset(Dataset):
    """Monocular training/validation samples from KITTI raw (or a synthetic drive in the same layout).

    Args:
        data_path: the KITTI raw root (holding the date folders).
        split_lines: split lines (``folder frame side``), :class:`SplitEntry` objects, or a split file path.
        height, width: network input size (images reach it through :func:`dna_depth_core.preprocess.fit_image`).
        frame_ids: temporal offsets to load, 0 (the target) first by convention, e.g. (0, -1, 1).
        num_scales: number of intrinsics scales (scale s is width // 2**s by height // 2**s).
        is_train: draw the augmentations (colour jitter p=0.5, horizontal flip p=0.5).
        use_calib: intrinsics from ``DATE/calib_cam_to_cam.txt`` (``P_rect_02``/``03``, normalised by the
            original image size) when that file exists; else (or when False) KITTI's default normalised K (``camera.KITTI_K_NORMALISED``).
        seed: when given, sample ``i`` in epoch ``e`` (see :meth:`set_epoch`) draws its augmentations from
            ``default_rng((seed, e, i))``: reproducible and independent of DataLoader workers. When None, every
            call draws fresh randomness.

    Item (a dict; ``torch.utils.data.default_collate`` batches it, adding a leading batch dimension):

    - ``"color"``: ``{fid: (3, H, W) float32 in [0, 1]}`` for each frame id: the (flipped if ``do_flip``)
      images, not colour-jittered: for the photometric loss.
    - ``"color_aug"``: ``{fid: (3, H, W)}``: the same images with the sample's colour jitter (one jitter for all
      frames): the network inputs. Equal to ``"color"`` when no jitter was drawn.
    - ``"K"``, ``"inv_K"``: ``{s: (3, 3) float32}`` pixel intrinsics at scale s = 0..num_scales-1 and their
      inverses (``camera.pixel_K`` of the normalised K); when flipped, ``cx = W_s - 1 - cx`` at each scale.
    - ``"do_flip"``, ``"do_color_aug"``: bool tensors, the augmentations drawn.
    - ``"index"`` (int), ``"folder"`` (str), ``"frame_index"`` (int), ``"side"`` (str): where the sample is from.

    A missing or unreadable image raises ``FileNotFoundError`` naming the file and the split line (splits should
    not list frames without both neighbours).
    """

    def __init__(
        self,
        data_path,
        split_lines,
        height: int,
        width: int,
        frame_ids: Sequence[int] = (0, -1, 1),
        num_scales: int = 4,
        is_train: bool = False,
        use_calib: bool = True,
        seed: int | None = None,
    ):
        super().__init__()
        self.data_path = Path(data_path)
        if isinstance(split_lines, (str, Path)):
            split_lines = read_split_file(split_lines)
        self.entries = [parse_split_line(ln) for ln in split_lines]
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"height and width must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self.frame_ids = tuple(int(f) for f in frame_ids)
        if 0 not in self.frame_ids:
            raise ValueError(f"frame_ids must contain 0 (the target frame), got {self.frame_ids}")
        if len(set(self.frame_ids)) != len(self.frame_ids):
            raise ValueError(f"frame_ids must be distinct, got {self.frame_ids}")
        if num_scales < 1 or self.width >> (num_scales - 1) < 1 or self.height >> (num_scales - 1) < 1:
            raise ValueError(f"num_scales={num_scales} does not fit {width}x{height}")
        self.num_scales = int(num_scales)
        self.is_train = bool(is_train)
        self.use_calib = bool(use_calib)
        self.seed = seed
        self.epoch = 0
        self._k_cache: dict = {}

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch mixed into the augmentation seed (only matters when ``seed`` is set)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng(np.random.SeedSequence([int(self.seed), self.epoch, int(index)]))

    def normalised_K(self, entry: SplitEntry, original_size) -> np.ndarray:
        """Normalised intrinsics for ``entry`` (calibration when available and enabled, else KITTI's default)."""
        if not self.use_calib:
            return KITTI_K_NORMALISED.copy()
        key = (entry.date, entry.cam, tuple(original_size))
        if key not in self._k_cache:
            calib = self.data_path / entry.date / "calib_cam_to_cam.txt"
            if calib.is_file():
                self._k_cache[key] = normalised_intrinsics(calib, entry.cam, original_size)
            else:
                self._k_cache[key] = KITTI_K_NORMALISED.copy()
        return self._k_cache[key].copy()

    def load_frame(self, entry: SplitEntry, fid: int) -> np.ndarray:
        path = image_path(self.data_path, entry.folder, entry.frame_index + fid, entry.side)
        try:
            return load_image(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image missing or unreadable: {path} (frame offset {fid:+d} of split line '{entry.line}')"
            ) from None

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} samples")
        entry = self.entries[index]
        rng = self._rng(index)
        do_flip = self.is_train and rng.random() < 0.5
        do_jitter = self.is_train and rng.random() < 0.5
        jitter = sample_color_jitter(rng) if do_jitter else None

        original_size = None
        frames = []
        for fid in self.frame_ids:
            img = self.load_frame(entry, fid)
            h0, w0 = img.shape[:2]
            if fid == 0:
                original_size = (w0, h0)
            img, _ = fit_image(img, (self.width, self.height))
            if do_flip:
                img = img[:, ::-1]
            frames.append(torch.from_numpy(to_chw(img)))
        color = torch.stack(frames)  # (F, 3, H, W)
        color_aug = jitter(color) if jitter is not None else color

        K_norm = self.normalised_K(entry, original_size)
        Ks, inv_Ks = {}, {}
        for s in range(self.num_scales):
            w_s, h_s = self.width // (2**s), self.height // (2**s)
            K = pixel_K(K_norm, (w_s, h_s))
            if do_flip:
                K = flip_K(K, w_s)
            Ks[s] = torch.from_numpy(K.astype(np.float32))
            inv_Ks[s] = torch.from_numpy(np.linalg.inv(K).astype(np.float32))

        return {
            "color": {fid: color[i] for i, fid in enumerate(self.frame_ids)},
            "color_aug": {fid: color_aug[i] for i, fid in enumerate(self.frame_ids)},
            "K": Ks,
            "inv_K": inv_Ks,
            "do_flip": torch.tensor(do_flip),
            "do_color_aug": torch.tensor(do_jitter),
            "index": index,
            "folder": entry.folder,
            "frame_index": entry.frame_index,
            "side": entry.side,
        }


# ----------------------------------------------------------------------------------------------------------
# Split lists
# ----------------------------------------------------------------------------------------------------------


def _check_split_text(text: str, where: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{where}: empty split file")
    for ln in lines[:50]:
        try:
            parse_split_line(ln)
        except ValueError as exc:
            raise ValueError(f"{where}: not a split file ({exc})") from None


def fetch_splits(source: str | None = None, out_dir="splits", timeout: float = 30.0) -> list[Path]:
    """Copy the standard split lists (``SPLIT_FILES``) into ``out_dir``, keeping their sub-folders.

    ``source`` is a local folder holding ``eigen_zhou/train_files.txt`` etc. (its ``LICENSE*`` files are copied
    too), or a base URL (http, https, file) under which the same relative paths are downloaded; default
    :data:`DEFAULT_SPLITS_URL` (monodepth2's public repository). Offline, raises ``RuntimeError`` saying so.
    Returns the written paths.
    """
    source = DEFAULT_SPLITS_URL if source is None else str(source)
    out_dir = Path(out_dir)
    written: list[Path] = []
    is_url = source.split("://", 1)[0].lower() in ("http", "https", "file") and "://" in source
    if not is_url:
        src = Path(source)
        if not src.is_dir():
            raise FileNotFoundError(f"split source is neither a folder nor a URL: {source}")
        for rel in SPLIT_FILES:
            if not (src / rel).is_file():
                raise FileNotFoundError(f"split file missing in {src}: {rel}")
        for rel in SPLIT_FILES:
            _check_split_text((src / rel).read_text(), str(src / rel))
            dst = out_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst)
            written.append(dst)
        for lic in sorted(src.glob("LICENSE*")):
            if lic.is_file():
                out_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lic, out_dir / lic.name)
                written.append(out_dir / lic.name)
        return written
    base = source.rstrip("/")
    texts = {}
    for rel in SPLIT_FILES:
        url = f"{base}/{rel}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                texts[rel] = resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RuntimeError(
                f"could not download {url} ({reason}): no network access? Copy the split files from a local "
                "folder instead with --from DIR (a folder holding eigen_zhou/ and eigen/)"
            ) from None
        _check_split_text(texts[rel], url)
    for rel, text in texts.items():
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
        written.append(dst)
    return written
