"""Image input and output without Qt or napari: read H&E images of the common formats as (H, W, 3) uint8
RGB, and write results as OME-Zarr, pyramidal TIFF or PNG, always atomically."""

from napari_pathup.io.associated import associated_images, read_associated_image
from napari_pathup.io.atomic import atomic_output, check_output
from napari_pathup.io.images import SUPPORTED_IMAGE_SUFFIXES, image_shape, list_images, read_attrs, read_image
from napari_pathup.io.ome_zarr import (
    ome_zarr_level_shapes,
    read_ome_zarr,
    read_ome_zarr_attrs,
    write_ome_zarr,
)
from napari_pathup.io.tiff import write_tiff
from napari_pathup.io.writers import OUTPUT_FORMATS, output_format, write_image, write_png

__all__ = [
    "OUTPUT_FORMATS",
    "SUPPORTED_IMAGE_SUFFIXES",
    "associated_images",
    "atomic_output",
    "check_output",
    "image_shape",
    "list_images",
    "ome_zarr_level_shapes",
    "output_format",
    "read_associated_image",
    "read_attrs",
    "read_image",
    "read_ome_zarr",
    "read_ome_zarr_attrs",
    "write_image",
    "write_ome_zarr",
    "write_png",
    "write_tiff",
]
