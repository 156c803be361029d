"""Atomic file writes: a crash (even ``kill -9``) leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from typing import Callable


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], None]) -> None:
    """Write ``path`` through ``write_fn(tmp_path)``: the data goes to a temporary file beside ``path``, is flushed
    to disk (fsync) and renamed into place (``os.replace`` is atomic on POSIX). The temporary file is removed when
    ``write_fn`` raises. Parent folders are created."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=os.path.dirname(path))
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)
