#!/usr/bin/env bash
# Build the double-click app: dist/TailorLM/ (one folder, no Python needed to run it).
# Usage: bash packaging/build.sh        (from a checkout; uses .venv, adds PyInstaller to it)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
python -m pip install -q -e . "pyinstaller>=6.10"
rm -rf build/pyinstaller dist/TailorLM
python -m PyInstaller --noconfirm --clean --log-level WARN --workpath build/pyinstaller --distpath dist \
  packaging/tailorlm.spec
du -sh dist/TailorLM
echo "built: dist/TailorLM/TailorLM (window) and dist/TailorLM/tailorlm (command line)"
# Prove it: the window comes up and the bundle's CLI advises and chats, with no venv on PATH.
python -m pytest -q -s tests/packaging
