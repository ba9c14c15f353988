"""``python -m napari_pathup`` runs the ``pathup`` command line."""

import sys

from napari_pathup.cli import main

sys.exit(main())
