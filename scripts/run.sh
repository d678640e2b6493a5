#!/usr/bin/env bash
# Install TailorLM into .venv and start it. Usage: bash scripts/run.sh [tailorlm args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
python -m pip install -q -e .
exec python -m app "$@"
