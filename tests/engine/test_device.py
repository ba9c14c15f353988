"""engine.device: autocast only when a dtype is given; the "auto" dtype (bfloat16 only on a CPU that
computes it in hardware)."""

from pathlib import Path

import pytest
import torch

from napari_pathup.engine import device as device_module
from napari_pathup.engine.device import autocast, cpu_computes_bfloat16, select_dtype
from napari_pathup.errors import SettingsError


def test_autocast_uses_the_dtype_and_does_nothing_without_one():
    a = torch.ones(4, 4)
    with autocast(torch.device("cpu"), None):
        assert (a @ a).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


def test_bfloat16_needs_the_cpu_flag_and_onednn(tmp_path, monkeypatch):
    check = cpu_computes_bfloat16.__wrapped__  # the uncached function
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert check(_cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert check(_cpuinfo(tmp_path, "amx_bf16 amx_tile"))
    # AVX-512 without its BF16 extension computes bfloat16 in software; no cpuinfo file (macOS, Windows): no
    assert not check(_cpuinfo(tmp_path, "avx512f avx512bw avx512vl"))
    assert not check(tmp_path / "missing")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert not check(_cpuinfo(tmp_path, "avx512_bf16"))


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_only_on_a_cpu_that_computes_it(monkeypatch, native):
    monkeypatch.setattr(device_module, "cpu_computes_bfloat16", lambda: native)
    assert select_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)
    assert select_dtype("auto") == select_dtype("auto", torch.device("cpu"))
    for other in ("cuda", "mps"):  # half precision there is not measured: full precision
        assert select_dtype("auto", torch.device(other)) == torch.float32
    assert select_dtype("float16", torch.device("cpu")) == torch.float16  # a named dtype is kept


def test_unknown_dtype_names_the_choices():
    with pytest.raises(SettingsError, match=r"'float64'.*auto, float32, float16, bfloat16"):
        select_dtype("float64")


def test_denoisers_are_channels_last_only_on_the_cpu_in_float32():
    from napari_pathup.engine.device import denoiser_memory_format

    assert denoiser_memory_format(torch.device("cpu"), torch.float32) == torch.channels_last
    for device, dtype in (("cpu", torch.bfloat16), ("cpu", torch.float16), ("cuda", torch.float32),
                          ("mps", torch.float32)):  # fmt: skip
        assert denoiser_memory_format(torch.device(device), dtype) == torch.contiguous_format


@pytest.mark.parametrize("native", [True, False])
def test_the_dtype_reason_says_why(monkeypatch, native):
    from napari_pathup.engine.device import dtype_reason

    monkeypatch.setattr(device_module, "cpu_computes_bfloat16", lambda: native)
    cpu = dtype_reason("auto", torch.device("cpu"))
    assert ("computes bfloat16 in hardware" in cpu) is native
    assert ("no bfloat16 instructions" in cpu) is not native
    assert dtype_reason("float32", torch.device("cpu")) == "as asked (--dtype)"
    assert "not measured on cuda" in dtype_reason("auto", torch.device("cuda"))
