#!/usr/bin/env bash
# Runs the test suite. Tests that start rclpy need DDS confined to loopback: the whole run goes into a network
# namespace that has only `lo` (unshare -n). Where that is not permitted, the run stays on the host network with
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (set by scripts/dev/env.sh); under CI=true a missing namespace is an error.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/dev/env.sh
# Static checks first (seconds): the import contracts of docs/architecture.md, and pyflakes-level errors
# (undefined names, unused imports) that a test might not reach.
echo "[test] import contracts (lint-imports, .importlinter)"
lint-imports --no-cache
echo "[test] ruff (pyflakes rules)"
ruff check --quiet --select F,E9 dna_depth_core dna_depth_ros scripts benchmarks test
if unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec python -m pytest -ra "$@"' -- "$@"
fi
if [ "${CI:-}" = "true" ]; then
  echo "error: cannot create a loopback-only network namespace (unshare -n); refusing to run ROS tests in CI" >&2
  exit 1
fi
echo "warning: unshare -n not permitted; running with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST only" >&2
exec python -m pytest -ra "$@"
