#!/bin/bash
# The expert-offload proof (tests/gpu/moe_proof.py) on the GPU machine, as one detached pipeline:
# the Python packages the machine lacks, llama.cpp with CUDA (.gpu/build.sh), Qwen3-30B-A3B shapes
# written as Q8_0 and requantized to Q4_K_M, then every placement measured. From the project root,
# .gpu/ beside it:
#     bash tests/gpu/moe_device.sh [WAIT_S]
# The first call copies the tree to /opt/w/repo (a later call re-lays the working tree) and starts
# the pipeline; every call waits up to WAIT_S seconds (default 540), then copies what is there to $OUT.
W=/opt/w; M=$W/models; O=$W/out; R=$W/repo
PY=python3
MID=qwen3-30b-a3b

. "$(dirname "$0")/device_lib.sh"

pipeline() {
  cd $R
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  df -h /opt | cat; nproc; free -g
  python_env $R
  $PY tests/gpu/moe_proof.py write $M > $O/write.log 2>&1 &
  build_llama_cpp
  wait
  cat $O/write.log
  if [ ! -f $M/$MID-Q4_K_M.gguf ]; then
    $W/llama.cpp/build/bin/llama-quantize --allow-requantize $M/$MID-Q8_0.gguf $M/$MID-Q4_K_M.part Q4_K_M "$(nproc)" \
      > $O/quantize.log 2>&1 && mv $M/$MID-Q4_K_M.part $M/$MID-Q4_K_M.gguf
    tail -3 $O/quantize.log; echo "$(date +%T) quantized"
    rm -f $M/$MID-Q8_0.gguf
  fi
  $PY tests/gpu/moe_proof.py run --models $M --out $O/moe-proof.json --bench $W/llama.cpp/build/bin/llama-bench
  echo "$(date +%T) pipeline end"
  finish
}

if [ "${1:-}" = "--pipeline" ]; then pipeline; fi

mkdir -p $M $O
if [ ! -f $O/started ]; then  # later calls re-lay the working tree: the pipeline runs from a copy
  rm -rf $R && mkdir -p $R && cp -r app tests resources pyproject.toml .gpu $R/
fi
run_detached $R/tests/gpu/moe_device.sh "${1:-540}" moe-proof.json
