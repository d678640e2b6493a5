#!/usr/bin/env bash
# Install TailorLM into .venv and start it. Usage: bash scripts/run.sh [tailorlm args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e .
exec python -m app "$@"
