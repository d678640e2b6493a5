#!/usr/bin/env bash
# Build the double-click app: dist/TailorLM/ (one folder, no Python needed to run it), then prove it
# with tests/packaging. From a checkout; uses .venv and adds PyInstaller to it (the `bundle` extra).
# Usage: bash packaging/build.sh [--no-test]
#   --no-test: build only (scripts/test.sh in CI, which runs tests/packaging with the other tests)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
mkdir -p build
# setuptools' notices go to the log; it is shown when the install fails.
if ! python -m pip install -q -e ".[bundle]" > build/bundle-install.log 2>&1; then
  tail -n 40 build/bundle-install.log >&2
  exit 1
fi
rm -rf build/pyinstaller dist/TailorLM build/native
# the sampler's C helper, shipped inside the bundle (app/engine/native): users need no C compiler
python -m app.engine.native build build/native > /dev/null
start=$SECONDS
python -m PyInstaller --noconfirm --clean --log-level WARN --workpath build/pyinstaller --distpath dist \
  packaging/tailorlm.spec
echo "built in $((SECONDS - start)) s: dist/TailorLM/TailorLM (window) and dist/TailorLM/tailorlm (command line), $(du -sh dist/TailorLM | cut -f1)"
[ "${1:-}" = --no-test ] && exit 0
# Prove it: the window comes up and the bundle's CLI advises and chats, with no venv on PATH.
python -m pytest -q -s tests/packaging
