#!/usr/bin/env bash
# Idempotent project set-up: a project-local virtual environment in .venv with pinned versions.
# Quick when already done: it re-installs only when what the install reads changed: the pins
# (scripts/dev/requirements-pinned.txt), setup.py, setup.cfg and package.xml (their contents are hashed into
# .venv/.setup-stamp). The install is editable, so edits to the Python sources need no re-install.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(cat scripts/dev/requirements-pinned.txt setup.py setup.cfg package.xml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "[setup] creating/updating $VENV (first run installs torch from local disk; a few minutes)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r scripts/dev/requirements-pinned.txt
# Editable install, no dependency resolution beyond the pins above.
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
echo "$want" > "$STAMP"
echo "[setup] done"
