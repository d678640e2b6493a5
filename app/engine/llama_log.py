"""What llama.cpp says in its log about the memory it allocated, parsed once for every caller.

The lines are llama.cpp's own (``load_tensors``, ``llama_kv_cache``, ``sched_reserve``,
``llama_context``); they give sizes to 0.01 MiB, which is what the estimator is compared with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MIB = 1 << 20
# "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB"
_MODEL = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
# "llama_kv_cache:        CPU KV buffer size =    90.00 MiB"
_KV = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
# "llama_kv_cache: size =   12.00 MiB (  4096 cells, ..." — logged in dry runs too
_KV_SIZE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB")
# "sched_reserve:        CPU compute buffer size =    99.38 MiB" (not the "~llama_context" recap)
_COMPUTE = re.compile(r"(\S+) compute buffer size =\s+([\d.]+) MiB")
# "llama_context:        CPU  output buffer size =     0.19 MiB"
_OUTPUT = re.compile(r"(\S+)\s+output buffer size =\s+([\d.]+) MiB")


@dataclass
class Buffers:
    model: dict[str, int] = field(default_factory=dict)  # buffer type ("CPU_Mapped", "CUDA0", …) → bytes
    kv: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: dict[str, int] = field(default_factory=dict)
    kv_size_bytes: int = 0  # what the KV cache needs, known even in a no_alloc dry run
    flash_attn: bool = False

    def flat(self) -> dict[str, int]:
        """``{"model:CPU_Mapped": bytes, "kv:CPU": bytes, …}``."""
        return {f"{kind}:{dev}": n for kind in ("model", "kv", "compute", "output")
                for dev, n in getattr(self, kind).items()}  # fmt: skip


def _add(table: dict[str, int], key: str, mib: str) -> None:
    table[key] = table.get(key, 0) + round(float(mib) * _MIB)


def parse_buffers(log: str) -> Buffers:
    b = Buffers()
    for line in log.splitlines():
        if m := _KV_SIZE.search(line):
            b.kv_size_bytes += round(float(m.group(1)) * _MIB)
        if m := _MODEL.search(line):
            _add(b.model, m.group(1), m.group(2))
        elif m := _KV.search(line):
            _add(b.kv, m.group(1), m.group(2))
        elif "~llama_context" not in line and (m := _COMPUTE.search(line)):
            b.compute[m.group(1)] = round(float(m.group(2)) * _MIB)  # the last reserve wins
        elif m := _OUTPUT.search(line):
            _add(b.output, m.group(1), m.group(2))
        # "auto" resolves at context creation: resolve_fused_ops logs the outcome
        if "Flash Attention enabled" in line or (
            line.startswith("llama_context: flash_attn") and line.rstrip().endswith("enabled")
        ):
            b.flash_attn = True
    return b
