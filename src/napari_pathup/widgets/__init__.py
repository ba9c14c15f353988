"""napari dock widgets: thin Qt layers over the engine, one module per widget."""

from napari_pathup.widgets._triton_guard import block_triton_if_llvm_loaded

block_triton_if_llvm_loaded()  # before any widget imports torch: see _triton_guard
