"""napari dock widgets: thin Qt layers over the engine, one module per widget."""
