"""What the machine has and can do fast: which device to run on, free memory, native bfloat16.

bf16 autocast roughly halves the cost of a training step where the hardware has
bf16 arithmetic (CUDA GPUs from Ampere on; x86 CPUs with AVX512-BF16 or AMX, e.g.
AMD Zen 4 or Intel Sapphire Rapids), and makes it slower where bf16 is emulated. So
the `amp` setting means "bf16 autocast where it is native", decided here.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from cxrssl.errors import ConfigError

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a native bf16 instruction set."""
    flags = next((line.split(":", 1)[-1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in CPU_BF16_FLAGS)


# oneDNN instruction sets without bf16: ONEDNN_MAX_CPU_ISA set to one of these makes a
# bf16 CPU compute like an older one (how the demo's AVX2 figure is reproduced).
ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def isa_limit() -> str | None:
    """The instruction-set limit set for oneDNN (ONEDNN_MAX_CPU_ISA), if any."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() or None


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    if isa_limit() in ISA_WITHOUT_BF16:
        return False
    try:
        return cpuinfo_has_bf16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False  # not Linux: assume emulation, the safe choice


def cpu_description(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> str:
    """One line for benchmark output: the CPU model, the cores torch uses, and the flags that decide its speed."""
    try:
        cpuinfo = cpuinfo_path.read_text()
    except OSError:
        return f"CPU: unknown (no {cpuinfo_path}); torch threads {torch.get_num_threads()}"
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "unknown")
    flags = set(next((line.split(":", 1)[-1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    shown = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ("avx2", "avx512f", *CPU_BF16_FLAGS))
    limits = [f"{name}={os.environ[name]}" for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(name)]
    limited = f"; limited by {' '.join(limits)}" if limits else ""
    return f"CPU: {model}; torch threads {torch.get_num_threads()}; {shown}{limited}"


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def available_memory_bytes(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Memory this process can still get: Linux's MemAvailable, or less under a container's
    cgroup v2 limit (Docker, Kubernetes), which /proc/meminfo does not show. None if unknown."""
    free = []
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, min(free)) if free else None


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: the GPU when one is visible (hide it with CUDA_VISIBLE_DEVICES=""), else the CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")
