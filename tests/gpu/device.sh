#!/bin/bash
# The GPU proof on the GPU machine (tests/gpu/README.md), as one detached pipeline: install the
# Python packages the machine lacks, build llama.cpp with CUDA (.gpu/build.sh), write and quantize
# models with real shapes, run tests/gpu/gpu_proof.py. Run from the project root, .gpu/ beside it:
#     bash tests/gpu/device.sh [WAIT_S]
# The first call starts the pipeline; every call waits up to WAIT_S seconds (default 540) for it to
# finish, then copies what it has so far to $OUT. The machine keeps nothing: call again while warm.
W=/opt/w; M=$W/models; O=$W/out; R=$(pwd)
PY=python3
B8=llama-3.1-8b-instruct; B3=llama-3.2-3b-instruct
Q=$W/llama.cpp/build/bin/llama-quantize

. "$(dirname "$0")/device_lib.sh"

quant() {  # MODEL_ID QUANT: from the F16 file; the .planned marker tells gpu_proof.py to wait
  local dst=$M/$1-$2.gguf
  [ -f "$dst" ] || { $Q $M/$1-F16.gguf "$dst.part" $2 "$(nproc)" > $O/quant-$1-$2.log 2>&1 && mv "$dst.part" "$dst"; }
  rm -f "$dst.planned"
  echo "$(date +%T) quantized $1 $2: $(ls -la "$dst" 2>&1 | awk '{print $5}')"
}

pipeline() {
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
  df -h /opt /tmp | cat; nproc; free -g
  python_env $R  # 1. the packages the torch venv lacks
  # 2. F16 models with real shapes while llama.cpp builds
  for q in Q4_K_M Q8_0; do touch $M/$B8-$q.gguf.planned; done
  for q in Q4_K_M Q8_0; do touch $M/$B3-$q.gguf.planned; done
  $PY tests/gpu/gpu_proof.py write $M --model-ids $B3 $B8 > $O/write.log 2>&1 &
  writer=$!
  build_llama_cpp
  wait $writer || { echo "WRITE FAILED"; cat $O/write.log; finish; }
  cat $O/write.log; df -h /opt | cat
  # 3. Quantize: the 3B model now, the 8B one in the background while the 3B cases run
  # (F16 files stay: other levels the advisor recommends are quantized from them on demand)
  quant $B3 Q4_K_M; quant $B3 Q8_0
  ( quant $B8 Q4_K_M; quant $B8 Q8_0 ) &
  # 4. The proof
  $PY tests/gpu/gpu_proof.py run --models $M --out $O/h100.json --quantize $Q --bench $W/llama.cpp/build/bin/llama-bench \
    --model-ids $B3 $B8 ${PROOF_ARGS:-}
  $PY tests/gpu/gpu_proof.py report $O/h100.json --markdown > $O/table.md
  echo "$(date +%T) pipeline end"
  finish
}

if [ "${1:-}" = "--pipeline" ]; then pipeline; fi

mkdir -p $M
run_detached tests/gpu/device.sh "${1:-540}" h100.json table.md
