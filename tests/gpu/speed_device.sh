#!/bin/bash
# The GPU speed proof (tests/gpu/speed_proof.py) on the GPU machine, as one detached pipeline:
# install the Python packages the machine lacks, build llama.cpp with CUDA (.gpu/build.sh), write
# models with real shapes, quantize them, measure. Run from the project root, .gpu/ beside it:
#     bash tests/gpu/speed_device.sh [WAIT_S]
# The first call copies the tree to /opt/w/repo (a later call re-lays the working tree) and starts
# the pipeline; every call waits up to WAIT_S seconds (default 540), then copies what is there to $OUT.
W=/opt/w; M=$W/models; O=$W/out; R=$W/repo
PY=python3
Q=$W/llama.cpp/build/bin/llama-quantize
declare -A QUANTS=([gemma-3-1b-it]="Q4_K_M Q8_0" [qwen2.5-1.5b-instruct]="Q4_K_M Q8_0"
                   [llama-3.2-3b-instruct]="Q4_K_M Q6_K Q8_0" [llama-3.1-8b-instruct]="Q4_K_M Q8_0")
ORDER="gemma-3-1b-it qwen2.5-1.5b-instruct llama-3.2-3b-instruct llama-3.1-8b-instruct"
ONLY=""
if [ -n "${QUICK:-}" ]; then  # the two shapes issue 15 names: the sampler on 262k and 152k vocabularies
  ORDER="gemma-3-1b-it qwen2.5-1.5b-instruct"
  QUANTS=([gemma-3-1b-it]="Q4_K_M" [qwen2.5-1.5b-instruct]="Q4_K_M")
  ONLY="--only gemma-3-1b-it:Q4_K_M qwen2.5-1.5b-instruct:Q4_K_M"
fi

. "$(dirname "$0")/device_lib.sh"

quantize_all() {  # in ORDER, each model's levels as soon as its F16 file is written; then the F16 goes (disk)
  for mid in $ORDER; do
    while [ ! -f $M/$mid-F16.gguf ]; do sleep 2; done
    for q in ${QUANTS[$mid]}; do
      dst=$M/$mid-$q.gguf
      $Q $M/$mid-F16.gguf "$dst.part" $q "$(nproc)" > $O/quant-$mid-$q.log 2>&1 && mv "$dst.part" "$dst"
      rm -f "$dst.planned"; echo "$(date +%T) quantized $mid $q"
    done
    rm -f $M/$mid-F16.gguf
  done
}

pipeline() {
  cd $R
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  df -h /opt | cat; nproc; free -g
  python_env $R
  for mid in $ORDER; do for q in ${QUANTS[$mid]}; do touch $M/$mid-$q.gguf.planned; done; done
  $PY tests/gpu/gpu_proof.py write $M --model-ids $ORDER > $O/write.log 2>&1 &
  build_llama_cpp
  quantize_all > $O/quantize.log 2>&1 &
  $PY tests/gpu/speed_proof.py run --models $M --out $O/gpu-speed.json --bench $W/llama.cpp/build/bin/llama-bench $ONLY
  cat $O/quantize.log $O/write.log
  echo "$(date +%T) pipeline end"
  finish
}

if [ "${1:-}" = "--pipeline" ]; then pipeline; fi

mkdir -p $M $O
if [ ! -f $O/started ]; then  # later calls re-lay the working tree: the pipeline runs from a copy
  rm -rf $R && mkdir -p $R && cp -r app tests resources pyproject.toml .gpu $R/
fi
export QUICK="${QUICK:-}"
run_detached $R/tests/gpu/speed_device.sh "${1:-540}" gpu-speed.json
