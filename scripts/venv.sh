# Sourced by run.sh, test.sh and packaging/build.sh: make .venv (with a current pip) the first time,
# then activate it. Later runs touch no network: upgrading pip on every start cost seconds.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
. .venv/bin/activate
# llama.cpp's RPC backend (GGML_RPC) lets TailorLM use other machines' memory (`tailorlm worker`,
# `--workers`); llama-cpp-python's build enables it only when asked.
case " ${CMAKE_ARGS:-} " in *GGML_RPC*) ;; *) export CMAKE_ARGS="${CMAKE_ARGS:+$CMAKE_ARGS }-DGGML_RPC=on" ;; esac
