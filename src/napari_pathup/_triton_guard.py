"""Keep Triton out of a napari process whose OpenGL driver has already loaded LLVM.

napari opens its OpenGL canvas before a plugin's widget is imported. On Linux, Mesa's drivers
(llvmpipe under Xvfb or in a VM, radeonsi on AMD GPUs) load ``libLLVM``; importing torch's
compiler stack afterwards (diffusers imports ``torch._dynamo``, which imports ``triton``) loads
Triton's own LLVM into the same process, and the process dies with a segmentation fault. The
engine never needs Triton (it does not use ``torch.compile``), so in exactly that situation
importing ``napari_pathup`` (the package, before any of its modules imports torch) makes
``import triton`` fail cleanly: torch then treats Triton as not installed. Elsewhere (the CLI, a
script, a process with no OpenGL driver loaded) it changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path


def block_triton_if_llvm_loaded(maps: str | Path = "/proc/self/maps") -> bool:
    """Mark ``triton`` as unavailable when ``libLLVM`` is mapped and Triton is not loaded yet.

    Returns whether it did. Does nothing off Linux, when Triton is already imported (then the
    order was safe), or when the process maps no LLVM.
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return False
    try:
        mapped = Path(maps).read_text()
    except OSError:
        return False
    if "libLLVM" not in mapped:
        return False
    # ``import triton`` now raises ImportError; find_spec returns None
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True
