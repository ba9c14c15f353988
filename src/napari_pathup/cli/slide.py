"""``pathup slide``: a slide's scanned regions, pyramid levels and pixel sizes, read from its headers, so
that ``pathup synthesize``'s ``--scan-region``, ``--region``, ``--level`` and ``--mpp`` can be chosen
without opening napari. No pixel is decoded and no torch is imported."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "slide",
        help="list a slide's scanned regions, pyramid levels and pixel sizes",
        description="List a slide's scanned regions (a Leica SCN may hold several), and for each its "
        "pyramid levels with their sizes and µm/px, read from the file's headers: what `pathup "
        "synthesize --reference SLIDE` takes as --scan-region, --region (level-0 pixels of the region), "
        "--level and --mpp; its associated images (label, macro, thumbnail); and for an image napari-pathup "
        "made, how it was made and the `pathup synthesize` command that makes it again.",
    )
    p.add_argument(
        "slide", metavar="SLIDE", help="SVS, SCN, NDPI, (pyramidal, OME-)TIFF, OME-Zarr, PNG or JPEG"
    )
    p.add_argument(
        "--associated",
        metavar="NAME",
        help="write the slide's associated image NAME (label, macro or thumbnail, as listed) to --out "
        "instead of listing (a label may carry patient identifiers)",
    )
    p.add_argument(
        "--out", metavar="FILE", help="with --associated: a .png, .tif, .ome.tif or .ome.zarr to write"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from napari_pathup.io.associated import associated_images
    from napari_pathup.io.slide import open_slide_regions

    path = Path(args.slide).expanduser()
    if args.associated is not None or args.out is not None:
        return _write_associated(args, path)
    regions = open_slide_regions(path, max_pixels=None)  # headers only: nothing is decoded
    print(f"slide       {path}")
    associated = associated_images(path)
    if associated:
        listed = ", ".join(f"{image.name} {image.width}x{image.height}" for image in associated)
        print(f"associated  {listed} (--associated NAME --out FILE writes one)")
    if len(regions) > 1:
        print(f"regions     {len(regions)} scanned regions (--scan-region N; without it, the largest)")
    for number, region in enumerate(regions, start=1):
        if len(regions) > 1:
            y, x = region.offset_um
            print(f"\nregion {number}    {region.name}, at x {x:g} µm, y {y:g} µm on the glass")
        mpp = "none recorded (so --mpp cannot choose a level)" if region.mpp is None else ""
        print(f"pixel size  {mpp or f'{region.mpp:g} µm/px at level 0'}")
        for note in region.notes:
            print(f"note        {note}")
        print("level  width x height     downsample  µm/px")
        for level, (array, downsample) in enumerate(zip(region.levels, region.downsamples, strict=True)):
            height, width = int(array.shape[0]), int(array.shape[1])
            size = region.level_mpp(level)
            shown = "-" if size is None else f"{size:.4g}"
            print(f"{level:<6} {f'{width}x{height}':<18} {downsample:<11.4g} {shown}")
    _print_run_record(path)
    return 0


def _print_run_record(path: Path) -> None:
    """For an image napari-pathup made: how (class, seed, model, reference) and the command that makes
    it again, from the attributes its file records."""
    import shlex

    from napari_pathup.io.atomic import split_suffixes
    from napari_pathup.io.images import read_attrs
    from napari_pathup.provenance import is_run_record, synthesize_command

    attrs = read_attrs(path)
    if not is_run_record(attrs):
        return
    settings, model, reference = attrs["settings"], attrs.get("model", {}), attrs.get("reference", {})
    print(
        f"\nmade by     {attrs['generator']}: class {settings['class_name']}, seed {settings['seed']}, "
        f"on {attrs.get('device', '?')} in {attrs.get('dtype', '?')} (torch {attrs.get('torch', '?')})"
    )
    print(f"model       {model.get('path', '?')} ({model.get('hash', 'no hash recorded')})")
    if reference.get("path"):
        print(f"reference   {reference['path']} ({reference.get('sha256') or 'a folder'})")
    stem, suffix = split_suffixes(path.name)
    argv, notes = synthesize_command(attrs, out=f"{stem}-again{suffix or '.ome.zarr'}")
    print(f"again       {shlex.join(['pathup', *argv])}")
    for note in notes:
        print(f"note        {note}")


def _write_associated(args: argparse.Namespace, path: Path) -> int:
    """Write the associated image ``--associated`` of ``path`` to ``--out`` (atomically)."""
    from napari_pathup.errors import InputError
    from napari_pathup.io.associated import read_associated_image
    from napari_pathup.io.atomic import check_output
    from napari_pathup.io.writers import output_format, write_image

    if args.associated is None or args.out is None:
        raise InputError("--associated NAME and --out FILE go together: name the image and where to write it")
    output_format(args.out)
    out = check_output(args.out, args.overwrite, probe=True)
    image = read_associated_image(path, args.associated)
    attrs = {"associated_image": args.associated, "source": str(path)}
    written = write_image(out, image, attrs=attrs, overwrite=args.overwrite)
    print(f"wrote {args.associated} image of {path.name} ({image.shape[1]}x{image.shape[0]}) to {written}")
    return 0
