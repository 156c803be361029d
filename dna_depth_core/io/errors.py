"""Error text for the loaders: every problem with a file is reported in one line that names the file.

Libraries the loaders call (protobuf, onnxruntime, torch's unpickler, safetensors) word their errors in several
lines; :func:`one_line` folds such a text into one line so that the CLI's ``dna-depth COMMAND: error: ...`` and the
node's FATAL line stay one line each.
"""
from __future__ import annotations

import os

#: The longest library message kept inside one of our messages (characters); the rest is cut with "...".
MAX_DETAIL = 300


def one_line(text: object, limit: int = MAX_DETAIL) -> str:
    """``text`` (a string or an exception) with every run of whitespace (newlines included) folded into one
    space, cut to ``limit`` characters (``...`` marks a cut). An exception reads ``TypeName: message``."""
    if isinstance(text, BaseException):
        message = " ".join(str(text).split())
        text = f"{type(text).__name__}: {message}" if message else type(text).__name__
    folded = " ".join(str(text).split())
    return folded if len(folded) <= limit else folded[: max(limit - 3, 0)] + "..."


def unreadable(what: str, path: str | os.PathLike, exc: OSError) -> ValueError:
    """The ValueError for a file that exists but cannot be opened or read (permissions, a folder, I/O error)."""
    reason = exc.strerror or one_line(exc)
    return ValueError(f"{what} {os.fspath(path)}: cannot be read ({reason})")


__all__ = ["MAX_DETAIL", "one_line", "unreadable"]
