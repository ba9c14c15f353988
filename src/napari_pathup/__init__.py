"""napari-pathup: large multi-class H&E synthesis with latent diffusion (PathUp).

The core packages (``engine``, ``models``, ``io``, ``metrics``) import neither Qt nor napari;
the napari widgets and the ``pathup`` command line are thin layers over them.
"""

from napari_pathup._triton_guard import block_triton_if_llvm_loaded

__version__ = "0.1.0.dev0"

block_triton_if_llvm_loaded()  # before any module imports torch: see _triton_guard
