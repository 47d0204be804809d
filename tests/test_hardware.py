import pytest
import torch

from cxrssl.errors import ConfigError
from cxrssl.hardware import available_memory_bytes, cpuinfo_has_bf16, native_bf16, resolve_device

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"


def test_bf16_is_native_only_with_avx512_bf16_or_amx():
    assert cpuinfo_has_bf16(ZEN4) and cpuinfo_has_bf16(SAPPHIRE_RAPIDS)
    assert not cpuinfo_has_bf16(SKYLAKE) and not cpuinfo_has_bf16("")


def test_other_devices_are_not_bf16():
    assert native_bf16(torch.device("meta")) is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_without_a_gpu_auto_means_cpu_and_cuda_is_refused_with_the_fix():
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU is visible; use --device cpu"):
        resolve_device("cuda")


def test_free_memory_is_memavailable_or_the_smaller_container_headroom(tmp_path):
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    cgroup.mkdir()
    (proc / "meminfo").write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    assert available_memory_bytes(proc, cgroup) == 20000000 * 1024  # no cgroup files: the host's figure
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("123\n")
    assert available_memory_bytes(proc, cgroup) == 20000000 * 1024  # no limit set
    (cgroup / "memory.max").write_text(f"{8 * 2**30}\n")
    (cgroup / "memory.current").write_text(f"{3 * 2**30}\n")
    assert available_memory_bytes(proc, cgroup) == 5 * 2**30  # the container's limit binds
    assert available_memory_bytes(tmp_path / "none", tmp_path / "none") is None
