"""The benchmark's worker process: one measurement (:func:`dna_depth_core.benchmark.tasks.measure`) in a fresh Python
process, so that one backend's allocations, thread pools and caches cannot help or hurt the next, and so that peak
memory is the process's own.

    python -m dna_depth_core.benchmark.worker TASK_JSON

The harness starts it; it prints the result as one JSON line after the marker
:data:`~dna_depth_core.benchmark.tasks.RESULT_MARKER` on stdout (anything the libraries print comes before it; the
harness reads it back with :func:`~dna_depth_core.benchmark.tasks.parse_result`). A failed measurement is reported
as ``{"model", "backend", "error"}`` with exit status 0, so the harness carries on; bad arguments exit with
status 2.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from dna_depth_core.benchmark.tasks import RESULT_MARKER, measure


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure` the task as an isolated worker; an exception becomes ``{"model", "backend", "error"}``."""
    try:
        return measure(dict(task, isolated=True))
    except Exception as exc:  # noqa: BLE001 - report, the harness carries on with the other measurements
        return {"model": task.get("model"), "backend": task.get("backend"), "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m dna_depth_core.benchmark.worker TASK_JSON (started by `dna-depth bench`)",
              file=sys.stderr)
        return 2
    try:
        task = json.loads(argv[0])
    except json.JSONDecodeError as exc:
        print(f"dna_depth_core.benchmark.worker: TASK_JSON is not JSON ({exc})", file=sys.stderr)
        return 2
    if not isinstance(task, dict):
        print("dna_depth_core.benchmark.worker: TASK_JSON must be a JSON object", file=sys.stderr)
        return 2
    result = run_task(task)
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
