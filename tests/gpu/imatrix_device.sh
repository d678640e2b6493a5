#!/bin/bash
# The importance-matrix proof (tests/gpu/imatrix_proof.py) on the GPU machine, as one detached
# pipeline: the Python packages the machine lacks, llama.cpp with CUDA (.gpu/build.sh) plus
# llama-imatrix, then two models of real shapes measured beside llama.cpp's tools. From the project
# root, .gpu/ beside it:
#     bash tests/gpu/imatrix_device.sh [WAIT_S]
# The first call copies the tree to /opt/w/repo and starts the pipeline; every call waits up to
# WAIT_S seconds (default 540), then copies what is there to $OUT.
W=/opt/w; M=$W/models; O=$W/out; R=$W/repo
PY=python3

. "$(dirname "$0")/device_lib.sh"

pipeline() {
  cd $R
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc; free -g
  python_env $R
  build_llama_cpp
  (cd $W/llama.cpp && cmake --build build -j"$(nproc)" --target llama-imatrix > build/imatrix.log 2>&1) \
    || { tail -20 $W/llama.cpp/build/imatrix.log; finish; }
  echo "$(date +%T) llama-imatrix built"
  $PY tests/gpu/imatrix_proof.py $M $O/imatrix-proof.json $W/llama.cpp/build/bin
  echo "$(date +%T) pipeline end"
  finish
}

if [ "${1:-}" = "--pipeline" ]; then pipeline; fi

mkdir -p $M $O
if [ ! -f $O/started ]; then  # later calls re-lay the working tree: the pipeline runs from a copy
  rm -rf $R && mkdir -p $R && cp -r app tests resources pyproject.toml .gpu $R/
fi
run_detached $R/tests/gpu/imatrix_device.sh "${1:-540}" imatrix-proof.json
