"""Running a node as a console script: ``depth_node`` and ``depth_lifecycle_node``.

:func:`run` starts rclpy, builds the node, spins until Ctrl-C (SIGINT) or SIGTERM, then destroys the node (it logs
its frame counters) and only then shuts rclpy down, so no log line is written to a dead context ("Failed to
publish log message to rosout: publisher's context is invalid"). A node that cannot start (a parameter of the
wrong type or range, a missing weights file, ...) gives one FATAL line naming the problem and exit code 1, not a
traceback. ``kill -USR1 <pid>`` prints every thread's stack to stderr (faulthandler), for a node that hangs.
"""
from __future__ import annotations

import faulthandler
import signal
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from dna_depth_ros.params import NodeConfigError

__all__ = ["run"]

#: Errors that mean "the node cannot start with these parameters or files": a FATAL line, exit code 1.
START_ERRORS = (NodeConfigError, FileNotFoundError, ValueError, RuntimeError)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(make_node: Callable[[], object], name: str, args=None) -> int:
    """Run ``make_node()`` until interrupted; returns the exit code (0, or 1 when it could not start).

    ``name`` is the logger name of the FATAL line when the node could not be built."""
    # rclpy's own signal handler would shut the context down before the node logs its last lines.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    node = None
    code = 0
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.2)  # returns regularly, so Ctrl-C is handled promptly
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except START_ERRORS as exc:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            if node is not None:
                node.destroy_node()
        finally:
            rclpy.try_shutdown()
    return code
