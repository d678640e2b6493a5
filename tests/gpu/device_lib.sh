# Shared steps of the GPU machine's detached pipelines (device.sh, speed_device.sh, moe_device.sh),
# sourced by them; W (work folder), O (output folder) and PY (python) are set by the caller.

finish() { date > $O/done; exit 0; }

python_env() {  # ROOT: the Python packages the machine lacks, into /tmp/site (never numpy or torch)
  local need="" pair
  for pair in psutil:psutil pynvml:nvidia_ml_py platformdirs:platformdirs gguf:gguf yaml:pyyaml tqdm:tqdm \
              requests:requests certifi:certifi idna:idna urllib3:urllib3 charset_normalizer:charset_normalizer; do
    $PY -c "import ${pair%%:*}" 2>/dev/null || need="$need $(ls .gpu/wheels/${pair##*:}-*.whl)"
  done
  echo "installing:$need"
  [ -z "$need" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $need
  export PYTHONPATH=$W/py:/tmp/site:$1 LLAMA_CPP_LIB_PATH=$W/llama.cpp/build/bin PYTHONUNBUFFERED=1
}

build_llama_cpp() {  # the CUDA build (.gpu/build.sh, detached): wait for it, or stop the pipeline
  local out
  while :; do
    out=$(bash .gpu/build.sh 2>&1); echo "$out" | tail -2
    case "$out" in *done=0*) break ;; *done=[1-9]*) echo "BUILD FAILED"; tail -40 $W/llama.cpp/build/bld.log; finish ;; esac
  done
}

run_detached() {  # SCRIPT WAIT_S FILE...: start SCRIPT --pipeline once, wait, copy FILEs (from $O) to $OUT
  local script=$1 wait_s=$2 f; shift 2
  mkdir -p $O
  if [ ! -f $O/started ]; then
    date > $O/started
    setsid nohup bash "$script" --pipeline > $O/pipeline.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 $(( wait_s / 5 ))); do [ -f $O/done ] && break; sleep 5; done
  echo "done: $(cat $O/done 2>/dev/null || echo no)"
  tail -n 40 $O/pipeline.log
  if [ -n "${OUT:-}" ]; then
    for f in "$@" pipeline.log; do cp "$O/$f" "$OUT"/ 2>/dev/null; done
    tar czf "$OUT"/logs.tgz -C $O . 2>/dev/null
  fi
}

copy_tree_once() {  # the first call copies the tree to $R: later calls re-lay the working tree
  mkdir -p $M $O
  if [ ! -f $O/started ]; then
    rm -rf $R && mkdir -p $R && cp -r app tests resources pyproject.toml .gpu $R/
  fi
}

pipeline_start() {  # into the copy, and say what machine this is
  cd $R
  echo "$(date +%T) pipeline start"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
}
