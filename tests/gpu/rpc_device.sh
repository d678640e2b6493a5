#!/bin/bash
# The GPU-worker proof (tests/gpu/rpc_proof.py) on the GPU machine, as one detached pipeline: the
# Python packages the machine lacks, llama.cpp with CUDA and the RPC backend (.gpu/build.sh with
# -DGGML_RPC=ON), Llama-3.2-1B shapes written as F16, then a worker lending CUDA0 to a model process
# without a GPU. From the project root, .gpu/ beside it:
#     bash tests/gpu/rpc_device.sh [WAIT_S]
W=/opt/w; M=$W/models; O=$W/out; R=$W/repo
PY=python3

. "$(dirname "$0")/device_lib.sh"

pipeline() {
  pipeline_start
  python_env $R
  sed -i 's/-DGGML_CUDA=ON /-DGGML_CUDA=ON -DGGML_RPC=ON /' .gpu/build.sh
  $PY tests/gpu/rpc_proof.py write $M > $O/write.log 2>&1 &
  build_llama_cpp
  wait
  cat $O/write.log
  $PY tests/gpu/rpc_proof.py run --models $M --out $O/rpc-proof.json
  echo "$(date +%T) pipeline end"
  finish
}

if [ "${1:-}" = "--pipeline" ]; then pipeline; fi

copy_tree_once
run_detached $R/tests/gpu/rpc_device.sh "${1:-540}" rpc-proof.json
