"""Throttled logging: each kind of problem at most once per period, with a count of the messages held back."""
from __future__ import annotations

import collections
import threading
import time

__all__ = ["ThrottledLogger"]


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
