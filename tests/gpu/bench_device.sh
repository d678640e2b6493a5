#!/bin/bash
# Issue 19 on a GPU: `tailorlm bench` as a user runs it on the GPU machine, as one detached pipeline:
# install the Python packages the machine lacks, build llama.cpp with CUDA (.gpu/build.sh), write
# models with real shapes, quantize them, then bench each (the advisor's plan: every layer on the
# GPU), one of them also with part of its layers on the GPU, and `advise` after the runs (the
# calibrated speeds, the runs beside their plans). Run from the project root, .gpu/ beside it:
#     bash tests/gpu/bench_device.sh [WAIT_S]
# Later calls wait for the pipeline and copy what is there to $OUT (bench-*.json, advise.json).
W=/opt/w; M=$W/models; O=$W/out; R=$W/repo
PY=python3
Q=$W/llama.cpp/build/bin/llama-quantize
ORDER="gemma-3-1b-it llama-3.2-3b-instruct"

. "$(dirname "$0")/device_lib.sh"

pipeline() {
  cd $R
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python_env $R
  export TAILORLM_HOME=$W/home
  $PY tests/gpu/gpu_proof.py write $M --model-ids $ORDER > $O/write.log 2>&1 &
  build_llama_cpp
  wait
  for mid in $ORDER; do
    $Q $M/$mid-F16.gguf $M/$mid-Q4_K_M.gguf Q4_K_M "$(nproc)" > $O/quant-$mid.log 2>&1 && rm -f $M/$mid-F16.gguf
    echo "$(date +%T) quantized $mid"
  done
  $PY -m app.cli hw --json > $O/hw.json 2> $O/hw.err
  for mid in $ORDER; do
    $PY -m app.cli bench $M/$mid-Q4_K_M.gguf --ctx 4096 --json > $O/bench-$mid.json 2> $O/bench-$mid.err
    echo "$(date +%T) bench $mid: $(head -c 300 $O/bench-$mid.json | tr -d '\n')"
  done
  $PY -m app.cli bench $M/llama-3.2-3b-instruct-Q4_K_M.gguf --ctx 4096 --ngl 14 --json > $O/bench-partial.json 2> $O/bench-partial.err
  $PY -m app.cli advise $M/llama-3.2-3b-instruct-Q4_K_M.gguf --ctx 4096 --json > $O/advise.json 2> $O/advise.err
  $PY -m app.cli profiles list --json > $O/profiles.json 2> $O/profiles.err
  echo "$(date +%T) pipeline end"
  finish
}

if [ "${1:-}" = "--pipeline" ]; then pipeline; fi

mkdir -p $M $O
if [ ! -f $O/started ]; then  # later calls re-lay the working tree: the pipeline runs from a copy
  rm -rf $R && mkdir -p $R && cp -r app tests resources pyproject.toml .gpu $R/
fi
run_detached $R/tests/gpu/bench_device.sh "${1:-540}" hw.json bench-gemma-3-1b-it.json \
  bench-llama-3.2-3b-instruct.json bench-partial.json advise.json profiles.json
