"""CPU detection on this real machine, with fakes only at the /proc/cpuinfo and sysctl boundaries."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from app.core.machine.cpu import detect_cpu

APPLE_SYSCTL = {
    "machdep.cpu.brand_string": "Apple M2 Pro",
    "hw.optional.neon": "1",
    "hw.optional.arm.FEAT_DotProd": "1",
    "hw.optional.arm.FEAT_I8MM": "0",
    "hw.optional.arm.FEAT_BF16": "1",
}


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64", reason="x86 Linux")
def test_isa_follows_proc_cpuinfo_flags() -> None:
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    words = set(flags.split(":", 1)[1].split())
    isa = detect_cpu().isa
    assert ("AVX2" in isa) == ("avx2" in words)
    assert ("AVX512F" in isa) == ("avx512f" in words)
    assert ("AVX512_VNNI" in isa) == ("avx512_vnni" in words)
    assert ("FMA" in isa) == ("fma" in words)


def test_apple_cpu_from_sysctl() -> None:
    cpu = detect_cpu(system="Darwin", sysctl=APPLE_SYSCTL.get)
    assert cpu.model == "Apple M2 Pro" and cpu.isa == ("NEON", "DOTPROD")
    intel = {
        "machdep.cpu.features": "FPU FMA SSE4.2 AVX1.0 F16C",
        "machdep.cpu.leaf7_features": "BMI1 AVX2 BMI2",
    }
    assert detect_cpu(system="Darwin", sysctl=intel.get).isa == ("AVX", "AVX2", "FMA", "F16C")


def test_arm_linux_cpu_features(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm\nCPU part\t: 0xd40\n"
    )
    isa = detect_cpu(system="Linux", cpuinfo_path=tmp_path / "cpuinfo").isa
    assert isa == ("NEON", "DOTPROD", "SVE", "I8MM")
