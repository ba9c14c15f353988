"""napari-pathup: large multi-class H&E synthesis with latent diffusion (PathUp).

The core packages (``engine``, ``models``, ``io``, ``metrics``) import neither Qt nor napari;
the napari widgets and the ``pathup`` command line are thin layers over them.
"""

__version__ = "0.1.0.dev0"
