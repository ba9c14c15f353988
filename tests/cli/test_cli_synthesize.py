"""`pathup synthesize` and `pathup info` on a tiny random-weight model: formats, safety, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from helpers import synthesize_argv
from napari_pathup.cli import main
from napari_pathup.engine.device import select_dtype
from napari_pathup.io import read_attrs, read_image
from napari_pathup.io.ome_zarr import ome_zarr_level_shapes

SHARED_TUMOUR = "tumour_stardist.jpg"


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tif", ".tif", ".png"])
def test_every_output_format_holds_the_same_image_and_its_provenance(
    pathup_model_dir, reference_file, tmp_path, suffix, capsys
):
    out = tmp_path / f"synthetic{suffix}"
    assert main(synthesize_argv(pathup_model_dir, reference_file, out, "--seed", "5", size="192x128")) == 0
    image = read_image(out)
    assert image.shape == (128, 192, 3) and image.dtype == np.uint8
    attrs = read_attrs(out)
    assert attrs["seed"] == 5 and attrs["class"] == "tumour"
    assert attrs["settings"]["patch_size"] == 16 and attrs["settings"]["width"] == 192
    assert attrs["model"]["hash"].startswith("sha256:")
    assert attrs["reference"]["sha256"].startswith("sha256:")
    if suffix == ".png":  # `pathup info` names the model by the hash its images record
        capsys.readouterr()
        assert main(["info", "--model", str(pathup_model_dir), "--no-calibrate", "--device", "cpu"]) == 0
        (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("hash")]
        assert line.split()[1] == attrs["model"]["hash"]
    reference_png = tmp_path / "again.png"
    assert (
        main(synthesize_argv(pathup_model_dir, reference_file, reference_png, "--seed", "5", size="192x128"))
        == 0
    )
    np.testing.assert_array_equal(read_image(reference_png), image)  # deterministic, lossless everywhere


def test_ome_zarr_output_is_multiscale(pathup_model_dir, reference_file, tmp_path, capsys):
    out = tmp_path / "big.ome.zarr"
    assert (
        main(
            synthesize_argv(
                pathup_model_dir, reference_file, out, "--size", "1024x512", "--patch", "8", size="192x128"
            )
        )
        == 0
    )
    assert ome_zarr_level_shapes(out) == [(512, 1024), (256, 512)]
    # the 500x300 reference fills a 1024x512 output: the user is told it is enlarged
    assert "reference.png (500x300 px) is enlarged 2.0x across and 1.7x down" in capsys.readouterr().err


def test_reference_fit_outpaint_places_the_reference_1_to_1(
    pathup_model_dir, reference_file, tmp_path, capsys
):
    out = tmp_path / "outpainted.png"
    argv = synthesize_argv(
        pathup_model_dir, reference_file, out, "--reference-fit", "outpaint", size="1024x512"
    )
    assert main(argv) == 0
    assert read_attrs(out)["settings"]["reference_fit"] == "outpaint"
    err = capsys.readouterr().err
    assert "reference.png (500x300 px) is placed 1:1 in the centre of the 1024x512 output" in err
    assert "enlarged" not in err
    with pytest.raises(SystemExit):
        main([*argv, "--reference-fit", "tile"])
    assert (
        "--reference-fit: invalid choice: 'tile' (choose from 'stretch', 'outpaint')"
        in capsys.readouterr().err
    )


def test_large_outputs_are_assembled_on_disk(pathup_model_dir, reference_file, tmp_path, monkeypatch):
    import napari_pathup.engine.plan as plan

    in_memory = tmp_path / "memory.png"
    assert main(synthesize_argv(pathup_model_dir, reference_file, in_memory, size="192x128")) == 0
    monkeypatch.setattr(plan, "IN_MEMORY_PIXELS", 1000)
    on_disk = tmp_path / "disk.png"
    assert main(synthesize_argv(pathup_model_dir, reference_file, on_disk, size="192x128")) == 0
    np.testing.assert_array_equal(read_image(on_disk), read_image(in_memory))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pathup-work-")]


def test_existing_output_is_kept_without_overwrite(pathup_model_dir, reference_file, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert main(synthesize_argv(pathup_model_dir, reference_file, out, size="192x128")) == 2
    assert out.read_bytes() == b"precious"
    assert "--overwrite" in capsys.readouterr().err
    assert main(synthesize_argv(pathup_model_dir, reference_file, out, "--overwrite", size="192x128")) == 0
    assert read_image(out).shape == (128, 192, 3)


def test_interrupted_run_leaves_nothing_behind(pathup_model_dir, reference_file, tmp_path, monkeypatch):
    import napari_pathup.engine.pipeline as pipeline

    real = pipeline.decode_tiled

    def interrupted(*a, **k):
        yield from real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "decode_tiled", interrupted)
    out = tmp_path / "out.ome.zarr"
    assert main(synthesize_argv(pathup_model_dir, reference_file, out, size="192x128")) == 130
    assert list(tmp_path.iterdir()) == [reference_file.parent]  # nothing beside the input folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--out", "x.jpg"], "unsupported output extension"),
        (["--class", "lymphoma"], "unknown class 'lymphoma'"),
        (["--reference", "missing.png"], "missing.png"),
        (["--patch", "64"], "(the output's latent side)"),
        (["--overlap", "16"], "overlap"),
        (["--model", "nowhere"], "does not exist"),
        (["--device", "cuda:3"], "cuda"),
        (["--dtype", "float8"], None),
    ],
)
def test_bad_input_exits_with_a_clear_message(
    pathup_model_dir, reference_file, tmp_path, capsys, change, message
):
    argv = synthesize_argv(pathup_model_dir, reference_file, tmp_path / "out.png", size="192x128")
    flag = change[0]
    if flag in argv:
        argv[argv.index(flag) + 1] = change[1]
    else:
        argv += change
    if message is None:  # argparse rejects it
        with pytest.raises(SystemExit):
            main(argv)
        return
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pathup synthesize: error:" in err and message in err
    assert not (tmp_path / "out.png").exists()


def test_info_lists_classes_and_estimates(pathup_model_dir, capsys):
    assert main(["info", "--model", str(pathup_model_dir), "--size", "256", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "tumour, stroma, normal" in out and "overview, native" in out
    assert "estimated time" in out and "estimated peak memory" in out
    (dtype,) = [line for line in out.splitlines() if line.startswith("dtype")]
    assert dtype.split()[1] == str(select_dtype("auto", torch.device("cpu"))).removeprefix("torch.")
    assert "(auto: this CPU" in dtype  # and why


def test_info_shows_the_defaults_of_each_class_and_plans_with_them(pathup_model_dir, tmp_path, capsys):
    """A model whose class samples with its own defaults ("class_defaults") says so, and the run it
    estimates for that class uses them: a user sees why one class costs more than another."""
    model = tmp_path / "model"
    shutil.copytree(pathup_model_dir, model)
    meta = json.loads((model / "pathup.json").read_text())
    meta["defaults"] = {"steps": 10, "strength": 0.6, "upscale_strength": 0.5}
    meta["class_defaults"] = {"stroma": {"upscale_strength": 1.0}}
    (model / "pathup.json").write_text(json.dumps(meta))
    stage_2_steps = {}
    for class_name in ("tumour", "stroma"):
        argv = ["info", "--model", str(model), "--size", "256", "--class", class_name, "--no-calibrate"]
        assert main([*argv, "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        assert "defaults    steps 10, strength 0.6, upscale strength 0.5" in out
        assert "            stroma: upscale strength 1.0" in out
        assert f"run of {class_name}, 256x256 px" in out
        stage_2_steps[class_name] = int(
            next(line for line in out.splitlines() if line.startswith("2 ")).split()[5]
        )
    assert stage_2_steps == {"tumour": 5, "stroma": 10}


def test_info_counts_the_guided_steps_of_a_guidance_interval(pathup_model_dir, capsys):
    """The table says how many steps run guidance (a doubled batch), and the evaluations follow."""
    argv = ["info", "--model", str(pathup_model_dir), "--size", "256", "--class", "tumour", "--no-calibrate"]
    rows = {}
    for interval in ("0,1", "0,0.5"):
        assert main([*argv, "--steps", "10", "--upscale-strength", "1", "--guidance-interval", interval]) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("2 "))
        rows[interval] = [int(v) for v in line.split()[3:9]]  # overlap, patches, steps, guided, calls, evals
    _, patches, steps, guided, _, evaluations = rows["0,1"]
    assert guided == steps == 10 and evaluations == 2 * steps * patches
    _, patches, steps, guided, _, evaluations = rows["0,0.5"]
    assert 0 < guided < steps and evaluations == (steps + guided) * patches


def test_without_a_default_model_the_error_says_what_to_do(reference_file, tmp_path, capsys, monkeypatch):
    import napari_pathup.models.default as default

    monkeypatch.setattr(default, "default_model_path", lambda: None)
    argv = [
        a
        for a in synthesize_argv("x", reference_file, tmp_path / "o.png", size="192x128")
        if a not in ("--model", "x")
    ]
    assert main(argv) == 2
    assert "--model" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".ome.zarr", ".ome.tif", ".tif"])
def test_region_of_a_slide_is_the_reference_and_the_output_keeps_its_pixel_size(
    pathup_model_dir, tmp_path, suffix
):
    """The output's µm/px is where other tools look for it: OME-Zarr's scale, TIFF's resolution tags."""
    from pathlib import Path

    from napari_pathup.io.slide import open_slide

    svs = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"
    out = tmp_path / f"roi{suffix}"
    assert (
        main(
            synthesize_argv(
                pathup_model_dir, svs, out, "--region", "100,2000,640,512", "--level", "0", size="192x128"
            )
        )
        == 0
    )
    attrs = read_attrs(out)
    assert attrs["reference_region"] == {"x": 100, "y": 2000, "width": 640, "height": 512, "level": 0}
    assert attrs["pixel_size_um"] == pytest.approx(0.499)
    assert open_slide(out).mpp == pytest.approx(0.499)


def test_a_roi_of_a_slide_scanned_in_two_regions_is_read_from_the_region_asked_for(
    pathup_model_dir, tmp_path, capsys
):
    """``--scan-region 2 --region ...``: the RoI in the second region's own pixels (the default is the
    largest region); the output records which region; a region the slide lacks is refused, naming it."""
    from helpers import leica_scn, rgb
    from napari_pathup.io.slide import read_reference_roi
    from napari_pathup.models.load import read_model_spec

    first, second = rgb(256, 384, seed=1), rgb(320, 256, seed=2)
    slide = leica_scn(tmp_path / "two.scn", rgb(64, 160), first, more=[(second, (1_500_000, 300_000))])
    spec = read_model_spec(pathup_model_dir)
    roi = read_reference_roi(slide, "0,64,256,256", 0, None, spec, scan_region=2)
    np.testing.assert_array_equal(np.asarray(roi.image), second[64:320, 0:256])
    assert not any("scanned regions" in note for note in roi.notes)
    # without --scan-region: the largest region, and a note that says so and how to read another
    roi = read_reference_roi(slide, "0,0,256,256", 0, None, spec)
    np.testing.assert_array_equal(np.asarray(roi.image), first[0:256, 0:256])
    (note,) = [note for note in roi.notes if "scanned regions" in note]
    assert "two.scn holds 2 scanned regions; the reference is read from region 1, the largest" in note
    assert "--scan-region N" in note
    out = tmp_path / "out" / "roi.ome.zarr"
    out.parent.mkdir()
    argv = synthesize_argv(pathup_model_dir, slide, out, "--region", "0,64,256,256", size="192x128")
    assert main([*argv, "--scan-region", "2"]) == 0
    attrs = read_attrs(out)
    assert attrs["reference_region"] == {
        "x": 0,
        "y": 64,
        "width": 256,
        "height": 256,
        "level": 0,
        "scan_region": 2,
    }
    assert attrs["pixel_size_um"] == pytest.approx(0.5)
    capsys.readouterr()
    refused = synthesize_argv(pathup_model_dir, slide, tmp_path / "out" / "x.ome.zarr", size="192x128")
    assert main([*refused, "--scan-region", "3"]) == 2
    assert (
        "two.scn: scanned region 3 asked for; the slide has 2 scanned regions (1-2)"
        in capsys.readouterr().err
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["roi.ome.zarr"]


def test_a_roi_of_a_z_stack_ndpi_is_read_from_the_nominal_plane_and_says_so(
    pathup_model_dir, tmp_path, capsys
):
    """A Hamamatsu NDPI scanned at three focal planes as the reference: the RoI is read from the plane at
    the nominal focus, at the slide's µm/px, and a note on stderr says which plane of how many."""
    from helpers import DEMO, hamamatsu_ndpi
    from napari_pathup.io import read_image

    field = read_image(DEMO / "stroma" / "hgsc_stroma.jpg")
    main_plane, above, below = field[:256, :384], field[256:512, :384], field[512:768, :384]
    slide = hamamatsu_ndpi(
        tmp_path / "stack.ndpi", main_plane, field[::20, ::20], planes=[(above, -1500), (below, 1500)]
    )
    out = tmp_path / "roi.ome.zarr"
    argv = synthesize_argv(pathup_model_dir, slide, out, "--region", "0,0,256,256", size="192x128")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        "stack.ndpi: scanned at 3 focal planes (Z -1500 to 1500 nm from the nominal focus); the plane at "
        "Z 0 nm is read, as OpenSlide does" in err
    )
    attrs = read_attrs(out)
    assert attrs["pixel_size_um"] == pytest.approx(0.5)
    assert attrs["reference_region"] == {"x": 0, "y": 0, "width": 256, "height": 256, "level": 0}


def test_region_outside_the_slide_is_an_error_and_nothing_is_written(pathup_model_dir, tmp_path, capsys):
    from pathlib import Path

    svs = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"
    out = tmp_path / "roi.ome.zarr"
    assert (
        main(synthesize_argv(pathup_model_dir, svs, out, "--region", "2000,0,512,512", size="192x128")) != 0
    )
    assert "not inside the image" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_mpp_reads_the_roi_from_the_nearest_level_and_the_output_gets_its_pixel_size(
    pathup_model_dir, tmp_path
):
    import tifffile

    from helpers import rgb

    image = rgb(1024, 1024, seed=6)
    slide = tmp_path / "slide.ome.tif"
    with tifffile.TiffWriter(slide) as tif:
        md = {"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
        tif.write(image, subifds=1, tile=(128, 128), photometric="rgb", metadata=md)
        tif.write(image[::2, ::2], subfiletype=1, tile=(128, 128), photometric="rgb")
    out = tmp_path / "from_level_1.ome.zarr"
    assert (
        main(
            synthesize_argv(
                pathup_model_dir, slide, out, "--region", "0,0,512,512", "--mpp", "0.5", size="192x128"
            )
        )
        == 0
    )
    attrs = read_attrs(out)
    assert attrs["reference_region"]["level"] == 1 and attrs["pixel_size_um"] == pytest.approx(0.5)
    # a level and a pixel size together are refused by the parser
    with pytest.raises(SystemExit):
        main(
            synthesize_argv(
                pathup_model_dir,
                slide,
                tmp_path / "x.ome.zarr",
                "--level",
                "0",
                "--mpp",
                "0.5",
                size="192x128",
            )
        )


@pytest.mark.parametrize("native", [True, False])
def test_half_precision_in_software_is_warned_of(pathup_model_dir, capsys, monkeypatch, native):
    """On a CPU without bfloat16 instructions, --dtype bfloat16 or float16 runs about 60x slower than
    float32: the command says so before it loads the model (and not for auto, which picks float32)."""
    import napari_pathup.engine.device as device

    monkeypatch.setattr(device, "cpu_computes_bfloat16", lambda: native)
    base = ["info", "--model", str(pathup_model_dir), "--size", "64", "--device", "cpu", "--no-calibrate"]
    for dtype in ("bfloat16", "float16"):
        assert main([*base, "--dtype", dtype]) == 0
        err = capsys.readouterr().err
        assert (f"warning: {dtype} on this CPU is computed in software" in err) is not native, err
    assert main([*base, "--dtype", "auto"]) == 0
    assert "warning" not in capsys.readouterr().err
