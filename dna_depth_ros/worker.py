"""The latest-frame worker: a one-slot mailbox, a thread that processes what it holds, and the frame counters.

The subscription callback hands every message to :meth:`FrameWorker.offer` (cheap: count, maybe skip, store).
The worker thread takes the newest message and calls the processing function; a message replaced in the
mailbox before the thread took it is dropped and counted. Counters are :class:`NodeStats`.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Callable

from dna_depth_core.ros_images import ConversionError

from dna_depth_ros.throttle import ThrottledLogger

__all__ = ["FrameWorker", "LatestSlot", "NodeStats", "reason"]


class LatestSlot:
    """A one-item mailbox: :meth:`put` replaces what is there (and says so), :meth:`take` waits for an item."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item) -> bool:
        """Store ``item``; return True when it replaced an item nobody had taken (that item is dropped)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float):
        """The stored item (removing it), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclasses.dataclass
class NodeStats:
    """Frame counters. ``received = processed + dropped + skipped_no_subscribers + rejected + failed + pending``
    where ``pending`` is the frame (at most one) in the mailbox or being processed."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    skipped_no_subscribers: int = 0
    rejected: int = 0
    failed: int = 0
    rejected_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def reason(exc: Exception) -> str:
    """A short category for an error message: the text before its first colon or semicolon."""
    text = str(exc)
    for sep in (":", ";"):
        text = text.split(sep, 1)[0]
    return text.strip()[:60] or type(exc).__name__


class FrameWorker:
    """A daemon thread that runs ``process(msg, t_received)`` on the newest offered message.

    ``wanted()`` says whether any output has a subscriber: while it is false, frames are counted as skipped before
    any work. A :class:`ConversionError` or ``ValueError`` from ``process`` rejects the frame (counted by its
    :func:`reason`), any other exception fails it; both are logged through ``tlog`` and the thread keeps serving.
    """

    def __init__(self, process: Callable[[Any, float], None], wanted: Callable[[], bool], tlog: ThrottledLogger,
                 name: str = "dna_depth_worker"):
        self._process = process
        self._wanted = wanted
        self._tlog = tlog
        self._name = name
        self.stats = NodeStats()
        self.last_received: float | None = None  # time.monotonic() of the last offered message
        self._lock = threading.Lock()
        self._slot = LatestSlot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again after :meth:`stop`: the counters go on)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._slot = LatestSlot()
        self._thread = threading.Thread(target=self._run, args=(self._slot,), name=self._name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def snapshot(self) -> NodeStats:
        """A copy of the counters, taken under the lock."""
        with self._lock:
            return dataclasses.replace(self.stats, rejected_reasons=collections.Counter(self.stats.rejected_reasons))

    def offer(self, msg) -> None:
        """Count ``msg`` and store it for the thread (replacing, and counting as dropped, a waiting one)."""
        with self._lock:
            self.stats.received += 1
            self.last_received = time.monotonic()
            if not self._wanted():
                self.stats.skipped_no_subscribers += 1
                return
        if self._slot.put((msg, time.perf_counter())):
            with self._lock:
                self.stats.dropped += 1

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (waits for the frame in progress)."""
        self._stop.set()
        self._slot.close()
        thread = self._thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout)

    def _run(self, slot: LatestSlot) -> None:
        while not self._stop.is_set():
            item = slot.take(timeout=0.1)
            if item is None:
                continue
            msg, t_recv = item
            try:
                if not self._wanted():
                    with self._lock:
                        self.stats.skipped_no_subscribers += 1
                    continue
                self._process(msg, t_recv)
                with self._lock:
                    self.stats.processed += 1
            except (ConversionError, ValueError) as exc:
                why = reason(exc)
                with self._lock:
                    self.stats.rejected += 1
                    self.stats.rejected_reasons[why] += 1
                self._tlog.log("error", "rejected:" + why, f"dropping frame: {exc}")
            except Exception as exc:  # keep serving whatever happens to one frame
                with self._lock:
                    self.stats.failed += 1
                self._tlog.log("error", "failed:" + type(exc).__name__,
                               f"frame failed: {type(exc).__name__}: {exc}")
