"""The denoisers' weight layout on the CPU in float32: channels_last (NHWC, what the engine uses there)
against contiguous (NCHW), per network call and for the README job.

Run: ``python benchmarks/bench_memory_format.py [--model DIR] [--rounds 5] [--job-rounds 3]``.
Part 1 times the shipped model's networks (denoiser, weak denoiser, autoencoder decode and encode)
one call at a time in float32 with torch's default threads, both layouts alternating round after round,
and gives the median milliseconds, their ratio and the largest difference between the two outputs.
Part 2 (``--job-rounds``, 0 to skip) times the README job (``bench_readme_job``) in cold processes,
alternating the engine as it is with the engine forced to contiguous weights
(``engine.device.denoiser_memory_format`` replaced in a wrapper executable). On a CPU that computes
bfloat16 the job runs in bfloat16 (``--dtype auto``) and this layout does not apply: the script says
which dtype the job runs in, and how far apart the two variants' images are. ``--half`` first times one
guided denoiser call in each of float32, bfloat16 and float16 as ``PathupModel.to`` casts the model
(the engine's layout for each): what ``--dtype`` costs on this CPU. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from _quality import psnr
from bench_readme_job import README_JOB, timed_run
from napari_pathup.engine.device import auto_dtype
from napari_pathup.io import read_image
from napari_pathup.models.default import default_model_path
from napari_pathup.models.load import load_model

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

#: a wrapper ``pathup`` whose engine lays the denoisers out contiguously whatever the device and dtype
CONTIGUOUS_PATHUP = """#!{python}
import sys
import torch
import napari_pathup.engine.device as device
device.denoiser_memory_format = lambda *args: torch.contiguous_format
from napari_pathup.cli import main
sys.exit(main())
"""


def median_ms(call: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """Median milliseconds of ``repeats`` calls after two warm-up calls, and the last output."""
    with torch.inference_mode():
        out = call()
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = call()
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), out


def denoiser_call(unet: Any, batch: int) -> Callable[[], torch.Tensor]:
    """One call of ``unet`` on a seeded batch at timestep 500 (class 0 where it is class-conditioned)."""
    side = int(unet.config.sample_size)
    x = torch.randn(batch, unet.config.in_channels, side, side, generator=torch.Generator().manual_seed(0))
    x = x.to(unet.dtype)
    t = torch.full((batch,), 500)
    labels = {"class_labels": torch.zeros(batch, dtype=torch.long)} if unet.config.num_class_embeds else {}
    return lambda: unet(x, t, **labels).sample


def network_calls(model_dir: Path) -> list[tuple[str, torch.nn.Module, Callable[[], torch.Tensor]]]:
    """(name, module, call) for each network of the model, at the sizes the README job runs them."""
    model = load_model(model_dir)
    calls: list[tuple[str, torch.nn.Module, Callable[[], torch.Tensor]]] = []
    for name in ("denoiser", "weak_denoiser"):
        unet = model.modules.get(name)
        if unet is None:
            continue
        unet = unet.float().eval()
        for batch in (8, 16):  # a patch batch, and the same guided (conditional + unconditional)
            calls.append((f"{name}, batch {batch}", unet, denoiser_call(unet, batch)))
    vae = model.modules["autoencoder"].float().eval()
    z = torch.randn(1, model.latent_channels, 64, 64, generator=torch.Generator().manual_seed(1))
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(2)) * 2 - 1
    calls.append(("autoencoder decode, 512 px", vae, lambda: vae.decode(z).sample))
    calls.append(("autoencoder encode, 512 px", vae, lambda: vae.encode(image).latents))
    return calls


def gflop(call: Callable[[], torch.Tensor]) -> float:
    """Floating-point operations of one call, in billions (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops() / 1e9


def matmul_gflops(side: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * side**3 * repeats / (time.perf_counter() - start) / 1e9


def part_networks(model_dir: Path, rounds: int, repeats: int) -> None:
    rows = []
    for label, module, call in network_calls(model_dir):
        times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
        outputs: dict[str, torch.Tensor] = {}
        for _ in range(rounds):
            for name, layout in LAYOUTS.items():
                module.to(memory_format=layout)
                ms, outputs[name] = median_ms(call, repeats)
                times[name].append(ms)
        module.to(memory_format=torch.contiguous_format)
        a, b = (statistics.median(times[n]) for n in LAYOUTS)
        diff = float((outputs["contiguous"] - outputs["channels_last"]).abs().max())
        flops = gflop(call)
        rate = f"{flops / a * 1000:.0f} / {flops / b * 1000:.0f}"
        rows.append((label, f"{flops:.2f}", f"{a:.1f}", f"{b:.1f}", f"{b / a:.3f}", rate, f"{diff:.1e}"))
        print(f"{label}: {a:.1f} / {b:.1f} ms", flush=True)
    print()
    print(
        f"Per call, float32, {torch.get_num_threads()} torch threads; "
        f"medians of {rounds} rounds x {repeats} calls"
    )
    head = [
        "network call",
        "GFLOP",
        "contiguous ms",
        "channels_last ms",
        "ratio",
        "GFLOP/s (c / cl)",
        "max |diff|",
    ]
    print(markdown_table(head, rows))
    print(f"A 2048x2048 float32 matrix product runs at {matmul_gflops():.0f} GFLOP/s here.")


def part_half(model_dir: Path) -> None:
    """One guided denoiser call (batch 16) per dtype, after two warm-up calls: half precision on a CPU
    without bfloat16 instructions is computed in software."""
    seconds: list[tuple[str, float]] = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        unet = load_model(model_dir).to("cpu", dtype).modules["denoiser"]
        ms, _ = median_ms(denoiser_call(unet, 16), repeats=1)
        seconds.append((str(dtype).removeprefix("torch."), ms / 1000))
        print(f"{dtype}: {ms / 1000:.2f} s", flush=True)
    first = seconds[0][1]
    rows = [(name, f"{s:.2f}", f"{s / first:.0f}x") for name, s in seconds]
    print(f"\nOne guided denoiser call (batch 16); auto dtype here: {auto_dtype(torch.device('cpu'))}")
    print(markdown_table(["dtype", "seconds", "ratio to float32"], rows))


def part_job(pathup: str, rounds: int) -> None:
    dtype = auto_dtype(torch.device("cpu"))
    print(f"\nREADME job: pathup {' '.join(README_JOB)} --out OUT; --dtype auto runs {dtype} on this CPU")
    if dtype != torch.float32:
        print("(bfloat16: the engine keeps contiguous weights there; both variants run the same code)")
    seconds: dict[str, list[float]] = {"engine (channels_last)": [], "contiguous": []}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = Path(tmp) / "pathup-contiguous"
        wrapper.write_text(CONTIGUOUS_PATHUP.format(python=sys.executable))
        wrapper.chmod(0o755)
        executables = {"engine (channels_last)": pathup, "contiguous": str(wrapper)}
        for round_ in range(1, rounds + 1):
            for name, executable in executables.items():
                load = os.getloadavg()[0]
                s = timed_run(executable, [], Path(tmp) / f"{name.split()[0]}.ome.zarr")
                seconds[name].append(s)
                rows.append((round_, name, f"{s:.1f}", f"{load:.1f}"))
                print(f"round {round_} {name}: {s:.1f} s (load before {load:.1f})", flush=True)
        images = [read_image(Path(tmp) / f"{name.split()[0]}.ome.zarr") for name in executables]
    levels = np.abs(images[0].astype(np.int16) - images[1].astype(np.int16))
    share = 100 * float((levels > 0).mean())
    print()
    print(markdown_table(["round", "variant", "wall s", "load before"], rows))
    print(
        f"\nThe two images (last round): PSNR {psnr([images[0]], [images[1]]):.1f} dB; "
        f"at most {int(levels.max())} grey levels apart, {share:.2f} % of the values moved"
    )
    first = statistics.median(seconds["contiguous"])
    print()
    print(
        markdown_table(
            ["variant", "median s", "ratio to contiguous"],
            [
                (n, f"{statistics.median(v):.1f}", f"{statistics.median(v) / first:.3f}")
                for n, v in seconds.items()
            ],
        )
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", type=Path, default=default_model_path(), help="PathUp model folder (the shipped one)"
    )
    p.add_argument(
        "--half", action="store_true", help="first time one call per dtype (slow without bfloat16)"
    )
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of part 1 (0: skip)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per round and layout")
    p.add_argument("--job-rounds", type=int, default=3, help="alternating README jobs per variant (0: skip)")
    p.add_argument(
        "--pathup", default=str(Path(sys.executable).with_name("pathup")), help="the pathup executable"
    )
    args = p.parse_args(argv)
    print(machine_info())
    if args.half:
        part_half(args.model)
    if args.rounds:
        part_networks(args.model, args.rounds, args.repeats)
    if args.job_rounds:
        part_job(args.pathup, args.job_rounds)


if __name__ == "__main__":
    main()
