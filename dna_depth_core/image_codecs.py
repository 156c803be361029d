"""OpenCV's image decoders, with what their libraries print captured instead of written to the terminal.

libjpeg(-turbo) and libpng, inside OpenCV, report damaged images by printing straight to the process's standard
error (file descriptor 2), one line per image and unthrottled: ``Corrupt JPEG data: premature end of data
segment``, ``libpng error: IDAT: invalid stored block lengths``, ... OpenCV has no switch for them:
``cv2.setLogLevel`` governs OpenCV's own log only, and no ``IMREAD_*`` flag silences them; only decoding can find
damage inside JPEG's entropy-coded data, so no check of the stream beforehand can avoid them either. Hence
:func:`decode_bytes` and :func:`read_file` point descriptor 2 at a private in-memory file for the length of the
OpenCV call and return the lines the libraries wrote, for the caller to judge (:func:`damage`) and report:
``ros_images`` and ``preprocess.load_image`` raise an error naming the damage when libjpeg says part of the image
is missing or corrupt, and log the other messages about an image they keep through :func:`report` (the
``dna_depth_core.image_codecs`` logger, WARNING, at most one line per kind of message a minute).

JPEG has no checksum: damage inside its entropy-coded data often decodes without a word from libjpeg (in
``benchmarks/decoder_noise.py``, about half of randomly damaged frames), so a decoder can reject what libjpeg
reports and no more. PNG chunks carry CRCs: libpng refuses damaged image data, and OpenCV returns no image.

Anything else written to descriptor 2 during a call (another thread's log line) lands in the same file; lines that
are not a codec's are written on to the real standard error right after the call, so nothing is lost. One call
redirects at a time (a lock); a process without a descriptor 2 decodes without capturing.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# What libpng, libjpeg(-turbo) and OpenCV's image-codec code print (message texts of their default handlers).
_CODEC_LINE = re.compile(
    r"^(libpng (warning|error): "
    r"|Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|Inconsistent progression sequence"
    r"|Unknown Adobe color transform|Warning: unknown JFIF revision|Invalid JPEG file structure"
    r"|Unsupported marker type|Bogus |Not a JPEG file|JPEG datastream contains no image|Application transferred"
    r"|Huffman table 0x|Quantization table 0x|Unsupported JPEG process|Invalid component ID"
    r"|\[ ?(WARN|ERROR|INFO)[^\]]*\] .*(imgcodecs|loadsave|grfmt|bitstrm|exif))")
# The codec messages that mean the decoded pixels are not the image's: the rest of a JPEG is missing or its
# entropy-coded data is damaged (libjpeg then fills in grey or garbage). "extraneous bytes before marker 0xd9"
# only says that bytes before the end-of-image marker were skipped: many USB cameras write them and the image is
# intact (damaged data can cause it too, so it is reported, throttled, but the image is kept).
_DAMAGE = re.compile(r"^(Corrupt JPEG data: (?!\d+ extraneous bytes before marker 0xd9)|Premature end of JPEG file)")
#: Seconds between two log lines about the same kind of decoder message (the ones held back are counted).
REPORT_INTERVAL_S = 60.0

_lock = threading.Lock()
_sink: list[Any] = [None, -1]  # [file object, pid that opened it]


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _sink[0], _sink[1] = None, -1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _sink_fd() -> int:
    """The descriptor of this process's capture file (created on first use)."""
    if _sink[0] is None or _sink[1] != os.getpid():
        try:
            _sink[0] = os.fdopen(os.memfd_create("dna_depth_codec_messages"), "w+b")
        except (AttributeError, OSError):  # no memfd on this system
            _sink[0] = tempfile.TemporaryFile()
        _sink[1] = os.getpid()
    return _sink[0].fileno()


def _drain(sink: int) -> str:
    """What was written to the capture file since the last drain (the file is emptied)."""
    size = os.fstat(sink).st_size
    if not size:
        return ""
    text = os.pread(sink, size, 0).decode("utf-8", "replace")
    os.ftruncate(sink, 0)
    os.lseek(sink, 0, os.SEEK_SET)
    return text


def captured_call(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[str]]:
    """``fn(*args)`` with descriptor 2 redirected; returns ``(result, codec messages)``: the lines that look like
    a codec's; the other lines are written on to the real stderr. An exception of ``fn`` propagates, after the
    captured lines are dealt with."""
    with _lock:
        try:
            sink = _sink_fd()
            saved = os.dup(2)
        except OSError:  # no standard error at all (nothing to protect), or no file to capture into
            return fn(*args), []
        try:
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()  # what Python buffered before the call goes out first
            except (OSError, ValueError):
                pass
            os.dup2(sink, 2)
            try:
                result, error = fn(*args), None
            except Exception as exc:  # noqa: BLE001 - re-raised below, once descriptor 2 is back
                result, error = None, exc
            finally:
                os.dup2(saved, 2)
                text = _drain(sink)
        finally:
            os.close(saved)
    messages, foreign = [], []
    for line in text.splitlines():
        if _CODEC_LINE.match(line):
            messages.append(line.strip())
        elif line.strip():
            foreign.append(line)
    if foreign:
        try:
            os.write(2, ("\n".join(foreign) + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    if error is not None:
        raise error
    return result, messages


def decode_bytes(buf: np.ndarray, flags: int) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode(buf, flags)`` and the messages its codec printed (in order).

    Args:
        buf: the encoded image, a 1-D uint8 array.
        flags: ``cv2.IMREAD_*``.
    Returns:
        ``(image or None, messages)``: OpenCV's result (BGR, None when it cannot decode) and the codec's lines.
    Raises:
        cv2.error: OpenCV refused the data (e.g. an image larger than its pixel limit).
    """
    return captured_call(cv2.imdecode, buf, flags)


def read_file(path: str, flags: int) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imread(path, flags)`` and the messages its codec printed; as :func:`decode_bytes`."""
    return captured_call(cv2.imread, path, flags)


def damage(messages: list[str]) -> str | None:
    """The first message that says the decoded pixels are damaged (a cut or corrupt JPEG), lower-cased at its
    start; None when there is none (the other messages are notes about an intact image)."""
    for m in messages:
        if _DAMAGE.match(m):
            return m[0].lower() + m[1:]
    return None


_reported: dict[str, tuple[float, int]] = {}  # message kind -> (time of its last log line, lines held back since)
_report_lock = threading.Lock()


def report(what: str, messages: list[str], now: float | None = None) -> int:
    """Log a decoder's ``messages`` about ``what`` (an image it kept) on the ``dna_depth_core.image_codecs``
    logger at WARNING level, throttled: each kind of message (its text with the numbers taken out) at most once
    per :data:`REPORT_INTERVAL_S` seconds, saying how many were held back. ``now``: a ``time.monotonic()``
    reading (tests). Returns the number of lines logged."""
    now = time.monotonic() if now is None else now
    logged = 0
    for m in messages:
        kind = re.sub(r"\d+|0x[0-9a-f]+", "N", m)
        with _report_lock:
            last, held = _reported.get(kind, (None, 0))
            if last is not None and now - last < REPORT_INTERVAL_S:
                _reported[kind] = (last, held + 1)
                continue
            _reported[kind] = (now, 0)
        extra = f" ({held} similar message(s) held back in the last {REPORT_INTERVAL_S:g} s)" if held else ""
        logger.warning("%s: %s%s", what, m, extra)
        logged += 1
    return logged


__all__ = ["REPORT_INTERVAL_S", "captured_call", "damage", "decode_bytes", "read_file", "report"]
