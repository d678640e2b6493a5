"""llama.cpp's own command-line tools (llama-bench, llama-quantize, llama-imatrix), built once from
the sources in the installed llama-cpp-python's sdist — the same llama.cpp, the same compiler
flags (a native build, as pip's) — into ~/.cache/tailorlm-bench. The tests compare TailorLM with
them and the benchmarks time them side by side.

``python -m tests.llama_tools llama-quantize llama-imatrix`` builds ahead of time (scripts/test.sh
does, so that no test needs the network); a test that finds a tool missing skips, unless
``TAILORLM_REQUIRE_LLAMA_TOOLS=1`` (CI) makes the absence a failure.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CACHE = Path.home() / ".cache" / "tailorlm-bench"
REQUIRE_ENV = "TAILORLM_REQUIRE_LLAMA_TOOLS"


def source_dir() -> Path:
    return CACHE / f"llama.cpp-{importlib.metadata.version('llama-cpp-python')}"


def tool_path(name: str) -> Path:
    return source_dir() / "build" / "bin" / name


def _cmake() -> str:
    beside = Path(sys.executable).with_name("cmake")  # PyPI's cmake in this environment, else the system's
    return str(beside) if beside.exists() else "cmake"


def build_tools(*names: str) -> dict[str, Path]:
    """Build the named targets (downloading the sdist the first time); returns their paths."""
    version = importlib.metadata.version("llama-cpp-python")
    src = source_dir()
    build = src / "build"
    missing = [n for n in names if not tool_path(n).exists()]
    if not missing:
        return {n: tool_path(n) for n in names}
    if not (src / "CMakeLists.txt").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "llama-cpp-python",
                            f"llama-cpp-python=={version}", "-d", tmp], check=True)  # fmt: skip
            sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                tar.extractall(tmp, filter="data")
            vendored = next(Path(tmp).glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"
            subprocess.run(["cp", "-r", str(vendored), str(src)], check=True)
    if not (build / "CMakeCache.txt").exists():
        subprocess.run([_cmake(), "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"], check=True, capture_output=True)  # fmt: skip
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        [_cmake(), "--build", str(build), "-j", jobs, "--target", *missing], check=True, capture_output=True
    )
    return {n: tool_path(n) for n in names}


def require_tool(name: str) -> Path:
    """The tool's path for a test: skipped when it is not built, failed when CI requires it."""
    import pytest

    path = tool_path(name)
    if path.exists():
        return path
    message = f"{name} is not built: run `python -m tests.llama_tools {name}`"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


if __name__ == "__main__":
    for tool, built in build_tools(*(sys.argv[1:] or ["llama-quantize", "llama-imatrix"])).items():
        print(f"{tool}: {built}")
