"""Throttled logging: each kind of problem at most once per period, with a count of the messages held back; and
Python ``warnings`` (e.g. a backend's "fp16 requested on the CPU: ignored") through the same logger."""
from __future__ import annotations

import collections
import threading
import time
import warnings

__all__ = ["ThrottledLogger", "WarningsToLogger"]


class ThrottledLogger:
    """Logs each kind of problem (a ``key``) at most once per ``period`` seconds through ``logger`` (an rclpy
    logger or anything with ``error``, ``warning`` and ``info``), with a count of the ones held back."""

    def __init__(self, logger, period: float):
        self._logger = logger
        self._period = float(period)
        self._last: dict[str, float] = {}
        self._held: collections.Counter = collections.Counter()
        self._once: set[str] = set()
        self._lock = threading.Lock()

    @property
    def period(self) -> float:
        return self._period

    @period.setter
    def period(self, seconds: float) -> None:
        self._period = float(seconds)

    def log(self, level: str, key: str, message: str) -> bool:
        """Log ``message`` at ``level`` ('error', 'warning', else info) unless ``key`` was logged less than a period
        ago; returns whether it was logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._held[key] += 1
                return False
            held, self._held[key] = self._held[key], 0
            self._last[key] = now
        if held:
            message += f" ({held} similar message(s) suppressed in the last {self._period:g} s)"
        self._emit(level, message)
        return True

    def once(self, level: str, key: str, message: str) -> bool:
        """Log ``message`` the first time ``key`` is seen, never again; returns whether it was logged."""
        with self._lock:
            if key in self._once:
                return False
            self._once.add(key)
        self._emit(level, message)
        return True

    def _emit(self, level: str, message: str) -> None:
        # One call site per severity: rclpy's logger refuses a call site whose severity changes.
        if level == "error":
            self._logger.error(message)
        elif level == "warning":
            self._logger.warning(message)
        else:
            self._logger.info(message)


class WarningsToLogger:
    """While installed, Python warnings are logged through ``tlog`` (level warning, throttled per category and
    text) instead of printed to stderr. The warnings filters still decide which warnings are shown.

    :meth:`install` replaces ``warnings.showwarning`` for the whole process; :meth:`uninstall` puts back what was
    there, unless another hook replaced this one since (then it is left alone).
    """

    def __init__(self, tlog: ThrottledLogger):
        self._tlog = tlog
        self._previous = None

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        self._tlog.log("warning", f"warning:{category.__name__}:{message}",
                       f"{category.__name__}: {message} ({filename}:{lineno})")

    def install(self) -> "WarningsToLogger":
        if self._previous is None:
            self._previous = warnings.showwarning
            warnings.showwarning = self._show
        return self

    def uninstall(self) -> None:
        if self._previous is not None and warnings.showwarning == self._show:
            warnings.showwarning = self._previous
        self._previous = None
