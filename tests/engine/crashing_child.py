"""A child that dies the way llama.cpp does on a failed CUDA call: ggml logs the error to stderr,
then aborts. ``python -m tests.engine.crashing_child``; it waits for one line on stdin first, so
the test can say what the child is doing before it dies."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    sys.stdin.readline()
    # ggml-cuda.cu, CUDA_CHECK_GEN: the lines it writes before GGML_ABORT
    sys.stderr.write(
        "ggml_cuda_compute_forward: MUL_MAT failed\nCUDA error: out of memory\n  current device: 0\n"
    )
    sys.stderr.flush()
    os.abort()
