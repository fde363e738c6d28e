#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the CPU build of torch and the package installed.
# Needs only Python 3; safe to run again (it reinstalls the package only when setup.py changed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLPRETRAIN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    # Install torch before anything that depends on it, so pip takes the CPU build instead of a CUDA one.
    "${PIP[@]}" install "torch==2.13.0"
fi
STAMP="$VENV/.vlpretrain-installed"
WANT="$(sha256sum setup.py | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! "$VENV/bin/python" -c "import vlpretrain" 2>/dev/null; then
    "${PIP[@]}" install -e ".[dev,video]"
    echo "$WANT" > "$STAMP"
fi
