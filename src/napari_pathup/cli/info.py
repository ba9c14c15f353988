"""``pathup info``: what a model knows, and what a run of a given size costs."""

from __future__ import annotations

import argparse

from napari_pathup.cli._common import (
    add_model_arguments,
    add_sampling_arguments,
    add_size_argument,
    check_model_folder,
    load_for_run,
    read_spec,
    sampling_settings,
)
from napari_pathup.formatting import format_bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="show a model's classes and scales, and estimate time and memory of a run",
        description="Show the model's classes, scales and parameters, and estimate time and peak memory of a "
        "run of --size on --device (measured by a short calibration). Takes the same sampling flags as "
        "`pathup synthesize`, so the estimate is that of the run those flags describe.",
    )
    add_model_arguments(p)
    add_size_argument(p)
    p.add_argument("--class", dest="class_name", help="class to estimate with (default: the first)")
    add_sampling_arguments(p)
    p.add_argument("--no-calibrate", action="store_true", help="only count the work; measure nothing")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from napari_pathup.engine.plan import WORK_BUDGET, SynthesisSettings

    SynthesisSettings(args.class_name or "any", **sampling_settings(args)).check()  # no torch yet
    check_model_folder(args.model, args.allow_download, args.class_name)  # no torch yet either

    from napari_pathup.engine.device import dtype_reason
    from napari_pathup.engine.estimate import estimate
    from napari_pathup.models.load import model_hash

    spec = read_spec(args)  # settings are checked against the configs before the weights load
    class_name = args.class_name or (spec.classes[0] if spec.classes else "tumour")
    plan = SynthesisSettings(class_name, **sampling_settings(args)).resolve(spec)
    model = load_for_run(args)
    print(f"model       {model.path}")
    print(f"hash        {model_hash(model.path)} (what every image made with it records)")
    print(f"kind        {model.kind}")
    print(f"classes     {', '.join(model.classes) if model.classes else '(any text; prompt-conditioned)'}")
    print(f"scales      {', '.join(model.scales)}")
    for name, count in model.parameter_count().items():
        print(f"parameters  {name}: {count / 1e6:.2f} M")
    print(
        f"latent      {model.latent_channels} channels, 1/{model.vae_scale_factor} scale, "
        f"native patch {model.native_size} (patches: multiples of {model.patch_multiple})"
    )
    print(f"scheduler   {type(model.scheduler).__name__}")
    print(f"dtype       {str(model.dtype).removeprefix('torch.')} ({dtype_reason(args.dtype, model.device)})")
    print(f"defaults    {_settings_text(spec.metadata.get('defaults', {}))}")
    for name, values in spec.metadata.get("class_defaults", {}).items():
        print(f"            {name}: {_settings_text(values)}")
    result = estimate(model, plan, calibrate=not args.no_calibrate)
    print(f"\nrun of {class_name}, {plan.width}x{plan.height} px (WxH) on {result.device}:")
    print(
        "stage  latent      patch  overlap  patches/step  steps  guided  denoiser calls  patch evals  tiles"
    )
    for number, st in enumerate(result.stages, start=1):
        print(
            f"{number:<6} {st.latent_shape[1]}x{st.latent_shape[0]:<8} {st.patch_size:<6} {st.overlap:<8} "
            f"{st.patches_per_step:<13} {st.steps:<6} {st.guided_steps:<7} {st.denoiser_calls:<15} "
            f"{st.patch_evaluations:<12} "
            f"{st.decode_tiles}"
        )
    over = (
        " (above the work budget: synthesize needs --allow-large-run)"
        if plan.patch_evaluations > WORK_BUDGET
        else ""
    )
    print(f"patch evaluations      {plan.patch_evaluations}{over}")
    if result.seconds is not None:
        print(f"estimated time         {result.seconds:.1f} s (the run: a measured calibration, scaled)")
        print(f"estimated peak memory  {format_bytes(result.peak_memory_bytes)}")
    return 0


def _settings_text(values: dict[str, object]) -> str:
    """A model's synthesis defaults as one line, e.g. "steps 20, upscale strength 0.9"."""
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in values.items()) or "(the library's)"
