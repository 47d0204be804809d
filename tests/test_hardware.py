import pytest
import torch

from cxrssl.errors import ConfigError
from cxrssl.hardware import cpuinfo_has_bf16, native_bf16, resolve_device

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
