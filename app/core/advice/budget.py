"""What a plan may use: this machine's free RAM and VRAM (and the workers' memory, which
:mod:`app.core.advice.pooling` adds), its bandwidths and its speed calibration."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.units import GIB, MIB

# Keep this much RAM free beyond what is "available" now, for the OS and apps the user opens
# while chatting (browsers grow); configurable per call.
DEFAULT_RAM_RESERVE_BYTES = 1 * GIB
# VRAM kept free per GPU beyond our estimate (which already counts the CUDA context): driver
# growth, other apps' surfaces. llama.cpp's own --fit keeps 1024 MiB but counts no context.
DEFAULT_VRAM_RESERVE_BYTES = 512 * MIB


@dataclass(frozen=True)
class GpuBudget:
    name: str
    free_bytes: int  # what we may use: free VRAM minus the reserve
    bandwidth_bytes_s: float
    backend: str = "cuda"
    unified: bool = False  # Apple: VRAM is RAM
    host_link_bytes_s: float | None = None  # the bus to the host (PCIe), when the driver says
    endpoint: str = ""  # a worker's device (backend "rpc"): where it is and the link to it
    rtt_s: float = 0.0
    link_bytes_s: float = 0.0


@dataclass(frozen=True)
class Budget:
    """What the plan may use. Build it from a MachineProfile with :func:`budget_from_profile`."""

    ram_bytes: int  # available RAM minus the reserve
    ram_bandwidth_bytes_s: float
    gpus: tuple[GpuBudget, ...] = ()
    can_offload: bool = True
    cpu_isa: tuple[str, ...] = ("AVX2",)
    notes: tuple[str, ...] = ()
    cpu_threads: int | None = None  # the threads llama.cpp runs: the physical cores
    # This machine's speed calibration, factor per speed term (speed_calibration.py); () = none
    speed_calibration: tuple[tuple[str, float], ...] = ()

    @property
    def workers_only(self) -> bool:
        """Every "GPU" of the plan is a worker's device (``tailorlm worker``): no GPU of this machine."""
        return bool(self.gpus) and all(g.backend == "rpc" for g in self.gpus)


def budget_from_profile(
    profile: object,
    *,
    ram_reserve_bytes: int = DEFAULT_RAM_RESERVE_BYTES,
    vram_reserve_bytes: int = DEFAULT_VRAM_RESERVE_BYTES,
) -> Budget:
    """A Budget from an :class:`app.core.machine.hardware.MachineProfile` (plans against *free* VRAM)."""
    p = profile
    gpus = []
    for g in getattr(p, "gpus", ()):
        free = g.vram_free_bytes if g.vram_free_bytes is not None else g.vram_total_bytes
        gpus.append(
            GpuBudget(
                name=g.name,
                free_bytes=max(0, int(free or 0) - vram_reserve_bytes),
                bandwidth_bytes_s=float(g.bandwidth_bytes_s or 300e9),  # unknown card: a modest laptop GPU
                backend=_backend(g),
                unified=bool(getattr(g, "unified_memory", False)),
                host_link_bytes_s=getattr(g, "host_link_bytes_s", None),
            )
        )
    offload = getattr(p, "offload", None)
    overrides = tuple(getattr(p, "overrides", ()))
    can = bool(getattr(offload, "supported", False)) or any("vram" in o for o in overrides)
    return Budget(
        ram_bytes=max(0, int(p.ram_available_bytes) - ram_reserve_bytes),  # type: ignore[attr-defined]
        ram_bandwidth_bytes_s=float(getattr(p, "ram_bandwidth_bytes_s", None) or 20e9),
        gpus=tuple(gpus),
        can_offload=can and bool(gpus),
        cpu_isa=tuple(getattr(getattr(p, "cpu", None), "isa", ()) or ()),
        cpu_threads=getattr(getattr(p, "cpu", None), "physical_cores", None),
    )


def _backend(gpu: object) -> str:
    backend = getattr(gpu, "backend", None)
    if backend:
        return str(backend)
    vendor = str(getattr(gpu, "vendor", "nvidia"))
    return {"nvidia": "cuda", "amd": "rocm", "apple": "metal"}.get(vendor, "vulkan")
