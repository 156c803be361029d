"""Atomic file writes: a crash (even ``kill -9``) leaves either the old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from typing import Callable


def current_umask() -> int:
    """The process's umask, read from /proc/self/status where it is available (setting the umask to read it back,
    the portable way, briefly changes it for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write_fn: Callable[[str], None]) -> None:
    """Write ``path`` through ``write_fn(tmp_path)``: the data goes to a temporary file beside ``path``, is flushed
    to disk (fsync), given the mode a plainly created file would have (0666 minus the umask; the temporary file
    starts at 0600) and renamed into place (``os.replace`` is atomic on POSIX). The temporary file is removed when
    ``write_fn`` raises. Parent folders are created."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=os.path.dirname(path))
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
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


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)
