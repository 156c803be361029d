"""Random number generators of a training run: seeding, per-item seeding, and RNG state as JSON.

What a run draws must depend on the seed and on where it is, never on how it got there (number of loader workers,
resumed or not). Three tools give that:

- :func:`mix_seed` turns a tuple of integers (seed, purpose tag, epoch, index, rank, ...) into one 63-bit seed;
- :func:`seeded_rngs` seeds the global python / numpy / torch CPU RNGs for the length of a ``with`` block and
  restores their states afterwards (per-item augmentation, validation);
- :func:`capture_rng_state` / :func:`restore_rng_state` save and restore the global RNGs (python, numpy, torch CPU
  and CUDA) as JSON-able data, written into every checkpoint.
"""
from __future__ import annotations

import base64
import contextlib
import random
import warnings
from typing import Any, Iterator, Mapping

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A seed in ``[0, 2**63)`` from integers, through numpy's SeedSequence: different tuples give unrelated
    seeds, and the same tuple always the same one."""
    return int(np.random.SeedSequence([int(p) % (2 ** 63) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's legacy global and torch's CPU (and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Seed python, numpy (legacy global) and torch CPU RNGs with ``seed``; restore their states afterwards."""
    py, np_state, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(th)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng_state() -> dict[str, Any]:
    """python, numpy, torch CPU (and CUDA when initialised) RNG states as JSON-able data: ``{"python": [version,
    internal state, gauss], "numpy": {...}, "torch_cpu": base64 bytes, "torch_cuda": [base64 bytes per device]}``."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch_cpu": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the global RNGs to what :func:`capture_rng_state` returned. CUDA states are restored only when the
    machine has as many devices as when they were captured (a warning says otherwise)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(_unb64(state["torch_cpu"]))
    cuda = state.get("torch_cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([_unb64(s) for s in cuda])
        else:
            warnings.warn(f"resume: checkpoint holds {len(cuda)} CUDA RNG states, this machine has "
                          f"{torch.cuda.device_count()} devices; CUDA RNGs not restored", RuntimeWarning)
