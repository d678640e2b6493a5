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

finish() { date > $O/done; exit 0; }

pipeline() {
  cd $R
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  df -h /opt | cat; nproc; free -g
  need=""
  for pair in psutil:psutil pynvml:nvidia_ml_py platformdirs:platformdirs gguf:gguf yaml:pyyaml tqdm:tqdm \
              requests:requests certifi:certifi idna:idna urllib3:urllib3 charset_normalizer:charset_normalizer; do
    $PY -c "import ${pair%%:*}" 2>/dev/null || need="$need $(ls .gpu/wheels/${pair##*:}-*.whl)"
  done
  [ -z "$need" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $need
  export PYTHONPATH=$W/py:/tmp/site:$R LLAMA_CPP_LIB_PATH=$W/llama.cpp/build/bin PYTHONUNBUFFERED=1
  $PY tests/gpu/moe_proof.py write $M > $O/write.log 2>&1 &
  while :; do
    out=$(bash .gpu/build.sh 2>&1); echo "$out" | tail -2
    case "$out" in *done=0*) break ;; *done=[1-9]*) echo "BUILD FAILED"; tail -40 $W/llama.cpp/build/bld.log; finish ;; esac
  done
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
if [ ! -f $O/started ]; then
  date > $O/started
  rm -rf $R && mkdir -p $R && cp -r app tests resources pyproject.toml .gpu $R/
  setsid nohup bash $R/tests/gpu/moe_device.sh --pipeline > $O/pipeline.log 2>&1 < /dev/null &
fi
for _ in $(seq 1 $(( ${1:-540} / 5 ))); do [ -f $O/done ] && break; sleep 5; done
echo "done: $(cat $O/done 2>/dev/null || echo no)"
tail -n 40 $O/pipeline.log
if [ -n "${OUT:-}" ]; then
  cp $O/moe-proof.json $O/pipeline.log "$OUT"/ 2>/dev/null
  tar czf "$OUT"/logs.tgz -C $O . 2>/dev/null
fi
