#!/usr/bin/env bash
# Start TailorLM from this checkout: `python -m app` (the window; with arguments, the command line).
# The first run creates .venv and installs TailorLM into it (editable, so edits need no reinstall);
# later runs start at once and reinstall only when pyproject.toml changes (its checksum is kept in
# .venv/tailorlm-installed) or the install is gone. Usage: bash scripts/run.sh [tailorlm args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
stamp=.venv/tailorlm-installed
want=$(cksum < pyproject.toml)
installed=(.venv/lib/python*/site-packages/tailorlm-*.dist-info)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -d "${installed[0]}" ]; then
  echo "TailorLM: installing into .venv (the first time llama-cpp-python compiles llama.cpp: ~4 min on 2 cores)…" >&2
  # setuptools' notices go to the log; it is shown when the install fails.
  if ! python -m pip install -q -e . > .venv/tailorlm-install.log 2>&1; then
    tail -n 40 .venv/tailorlm-install.log >&2
    echo "TailorLM: the install failed (full log: .venv/tailorlm-install.log)." >&2
    exit 1
  fi
  echo "$want" > "$stamp"
  # the sampler's C helper (app/engine/native), built now rather than on the first chat; without a
  # C compiler the sampler does the same work in numpy
  python -m app.engine.native > /dev/null 2>&1 || true
fi
exec python -m app "$@"
