"""One training phase run to its last iteration: seeded, with a progress bar, evaluations, checkpoints
and resumption from the last checkpoint.

A phase (:class:`Phase`) owns its model, optimizer, EMA weights (``diffusers.training_utils.EMAModel``)
and random generators, and says how to compute one batch loss. Everything random is drawn from
the phase's own NumPy and torch generators, whose states are checkpointed with the weights, so on
the CPU a resumed run continues bit for bit like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.training_utils import EMAModel

from napari_pathup.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


@dataclass
class Phase:
    """A model being trained; subclasses implement :meth:`loss` (and :meth:`evaluate`)."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMAModel
    numpy_rng: np.random.Generator
    torch_rng: torch.Generator
    lr: float
    warmup: int = 0
    warmup_start: int = 0  # the iteration the warm-up counts from (a warm start's first one)
    grad_clip: float = 1.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    iteration: int = 0

    def loss(self) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        """Figures measured with the EMA weights (not used for training)."""
        return {}

    def train_step(self) -> float:
        """One optimisation step on :meth:`loss`; returns the loss (a GAN phase overrides this)."""
        loss = self.loss()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.name}: loss became {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.ema.step(self.model.parameters())
        return float(loss.detach())

    def learning_rate(self, iteration: int) -> float:
        """Linear warm-up from ``warmup_start``, then constant (so a run can be extended with --resume
        and more iterations)."""
        if not self.warmup:
            return self.lr
        return self.lr * min(1.0, (iteration - self.warmup_start) / self.warmup)

    def warm_start(self, iteration: int) -> None:
        """Continue weights trained ``iteration`` steps (their EMA) with a fresh optimizer: warm the
        learning rate up again from here, since Adam's first steps without moment estimates are
        large, and let the EMA average at the decay it had reached, since its starting point is
        already an average (a fresh EMA warms up from decay 0 and follows the jolted weights)."""
        self.warmup_start = iteration
        self.ema.optimization_step = iteration

    def with_ema_weights(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` with the EMA weights swapped into the model, then put the trained ones back."""
        params = list(self.model.parameters())
        self.ema.store(params)
        self.ema.copy_to(params)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return fn()
        finally:
            self.ema.restore(params)
            self.model.train(was_training)


def update(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    frozen: torch.nn.Module | Sequence[torch.nn.Module],
    clipped: torch.nn.Module | None = None,
    grad_clip: float = 0.0,
) -> None:
    """One optimizer step on ``loss`` for one of the networks that share ``optimizer`` (a GAN): the
    ``frozen`` network's (or networks') gradients are dropped, so Adam skips them; ``clipped``'s are
    clipped first."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for network in [frozen] if isinstance(frozen, torch.nn.Module) else frozen:
        for p in network.parameters():
            p.grad = None
    if clipped is not None and grad_clip:
        torch.nn.utils.clip_grad_norm_(clipped.parameters(), grad_clip)
    optimizer.step()


def seeded_generators(seed: int, stream: int, start: int = 0) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy and torch generators of one training phase: ``stream`` tells the phases apart (1
    autoencoder, 2 denoiser, 3 decoder GAN, 4 fine-tune, 5 denoiser GAN), so each draws its own
    sequence from one seed. ``start``: the iteration a warm start continues from, so that it draws new
    batches and noise instead of replaying those the continued run began with (0: a run's own)."""
    if not start:
        return np.random.default_rng([seed, stream]), torch.Generator().manual_seed(seed * 1000 + stream)
    numpy_rng = np.random.default_rng([seed, stream, start])
    torch_seed = int(np.random.default_rng([seed, stream, start, 1]).integers(2**62))
    return numpy_rng, torch.Generator().manual_seed(torch_seed)


def make_ema(model: torch.nn.Module, decay: float = 0.999) -> EMAModel:
    """EMA with warm-up (decay ramps as 1 - (1 + step)^-3/4, capped at ``decay``)."""
    return EMAModel(model.parameters(), decay=decay, use_ema_warmup=True, power=3 / 4, foreach=True)


@dataclass
class LoopResult:
    iteration: int
    seconds: float
    metrics: dict[str, float]


def run_phase(
    phase: Phase,
    iterations: int,
    folder: Path,
    checkpoint_every: int = 500,
    eval_every: int = 250,
    resume: bool = False,
    progress: bool = True,
    extra_state: dict[str, Any] | None = None,
    initial: int = 0,
    write: bool = True,
) -> LoopResult:
    """Train ``phase`` up to ``iterations``, checkpointing into ``folder`` (resumed from its latest one;
    without a checkpoint, counting from ``initial``: a warm start from weights trained that long).

    ``write=False`` for every process but the main one of a multi-process run: they hold the same
    weights and resume from the main process's checkpoints, and write no log or checkpoint."""
    from tqdm import tqdm

    start = initial
    metrics: dict[str, float] = {}
    if resume and (path := latest_checkpoint(folder)) is not None:
        state = load_checkpoint(
            path, phase.model, phase.ema, phase.optimizer, phase.numpy_rng, phase.torch_rng
        )
        start, metrics = int(state["iteration"]), dict(state.get("metrics", {}))
    if write:
        folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.jsonl"
    phase.model.train()
    smoothed = math.nan
    t0 = time.perf_counter()
    bar = tqdm(
        total=iterations, initial=start, desc=phase.name, unit="it", dynamic_ncols=True, disable=not progress
    )
    try:
        for iteration in range(start + 1, iterations + 1):
            phase.iteration = iteration
            for group in phase.optimizer.param_groups:  # a group may run at a multiple of the rate
                group["lr"] = phase.learning_rate(iteration) * group.get("lr_scale", 1.0)
            try:
                value = phase.train_step()
            except FloatingPointError as exc:
                raise FloatingPointError(f"{exc} at iteration {iteration}") from exc
            smoothed = value if math.isnan(smoothed) else 0.98 * smoothed + 0.02 * value
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.4f}", **{k: f"{v:.3g}" for k, v in metrics.items()})
            is_last = iteration == iterations
            if eval_every and (iteration % eval_every == 0 or is_last):
                metrics = phase.evaluate()
                bar.set_postfix(loss=f"{smoothed:.4f}", **{k: f"{v:.3g}" for k, v in metrics.items()})
            if write and ((checkpoint_every and iteration % checkpoint_every == 0) or is_last):
                elapsed = time.perf_counter() - t0
                record = {
                    "iteration": iteration,
                    "loss": smoothed,
                    "lr": phase.learning_rate(iteration),  # the warm-up and any cool-down, as run
                    **metrics,
                    "seconds": round(elapsed, 1),
                    "it_per_s": round((iteration - start) / max(elapsed, 1e-9), 4),
                }
                with open(log, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                save_checkpoint(
                    folder,
                    iteration,
                    phase.model,
                    phase.ema,
                    phase.optimizer,
                    phase.numpy_rng,
                    phase.torch_rng,
                    extra={"metrics": metrics, **(extra_state or {})},
                )
    finally:
        bar.close()
    return LoopResult(max(start, iterations), time.perf_counter() - t0, metrics)
