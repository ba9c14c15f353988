"""Settings and the resolved run plan: every rule about a run's settings, checked before any work starts.

:class:`SynthesisSettings` is what a user asks for (``None`` = the model's default, else the
library's). :meth:`SynthesisSettings.check` applies the rules that need no model (types, ranges,
finiteness); :meth:`SynthesisSettings.resolve` fills the defaults from a model and applies the
rules that need one, and returns a frozen :class:`RunPlan`: the resolved settings, each stage's
sampling and patch grid, and the work and memory counts. The plan is the single source for the
engine (:func:`~napari_pathup.engine.pipeline.synthesize`), the estimate (``pathup info``), the
widgets' counts, the seam measure and the metadata written with every output.

``resolve`` takes a loaded model or a :class:`~napari_pathup.models.spec.ModelSpec` read from the
model's config files, so the CLI, the widgets and the library refuse bad settings before any weights
load. :data:`SETTINGS` is the one table of settings (field, command-line flag,
help); the CLI builds its sampling flags from it and every message names both. Importing this
module loads neither torch nor diffusers, so ``pathup --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from napari_pathup.engine.grid import PatchGrid, default_overlap, default_patch_size
from napari_pathup.errors import RunTooLargeError, SettingsError
from napari_pathup.formatting import format_bytes
from napari_pathup.models.spec import ModelInfo

#: the blend weights w (implemented in ``engine.weights``): MultiDiffusion's uniform, Mixture of
#: Diffusers' gaussian, cosine feather ramps
WEIGHT_MODES: tuple[str, ...] = ("uniform", "gaussian", "cosine")
#: the model's dtype for a run (``--dtype``): "auto" (``engine.device.auto_dtype``) or a torch dtype
DTYPE_CHOICES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")

#: how the reference meets the output's field: PathUp's "stretch" (the reference is the whole field,
#: resized to it) or "outpaint" (the reference 1:1 in the field's centre, the rest drawn around it;
#: ``engine.outpaint``)
REFERENCE_FITS: tuple[str, ...] = ("stretch", "outpaint")
#: what guidance steers away from: "cfg", the unconditional output (classifier-free guidance), or
#: "auto", the output of the model's weak denoiser under the same class (autoguidance, Karras et al.
#: 2024, "Guiding a diffusion model with a bad version of itself"; models with ``weak_denoiser/``)
GUIDANCE_MODES: tuple[str, ...] = ("cfg", "auto")
#: where "outpaint" starts stage 1 around the reference: the reference mirrored into the rest of the
#: field, noised to this strength (0.9 keeps a few per cent of it: its colours and coarse density, not
#: its layout, so no mirror shows). From pure noise (1.0) the default model drew pink, soft tissue
OUTPAINT_FILL_STRENGTH = 0.9

#: library defaults of the settings a model's ``pathup.json`` may override under "defaults"
DEFAULTS: dict[str, Any] = {
    "steps": 30,
    "strength": 0.6,
    "upscale_strength": 0.45,
    "guidance": 3.0,
    "guidance_interval": (0.0, 1.0),
    "guidance_mode": "cfg",
    "weights": "cosine",
    "scheduler": None,
    "reference_fit": "stretch",
}

#: outputs up to this many pixels are assembled in memory; larger ones in a temporary zarr on disk
IN_MEMORY_PIXELS = 4096 * 4096
#: runs above this many denoiser patch evaluations are refused unless confirmed (``allow_large``);
#: about 230 times the default 2048 x 2048 run of the shipped model, a 16k x 16k image
WORK_BUDGET = 500_000
#: the engine offsets the seed for its jitter generator; torch seeds must stay below 2**64
MAX_SEED = 2**63 - 1_000_004
#: appended to a settings error whose value came from the model's pathup.json, not from the user
FROM_MODEL = ", as the model's pathup.json defaults set it"
#: hard limits that keep planning itself cheap (a 1,000,000 px side is a 3 TB image)
MAX_SIDE = 1_000_000
MAX_STEPS = 10_000


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: a :class:`SynthesisSettings` field and how users reach it."""

    field: str
    flag: str | None  # the command-line flag, None where the CLI does not expose it
    help: str
    metavar: str | None = None


#: every setting, in the order ``--help`` lists them (``--size`` sets height and width)
#: the sampling settings, as the CLI's sampling flags and the widget's fields set them (size, class and
#: seed are set per command)
SAMPLING_FIELDS = (
    "steps",
    "strength",
    "upscale_strength",
    "guidance",
    "guidance_interval",
    "guidance_mode",
    "patch_size",
    "overlap",
    "weights",
    "sigma",
    "jitter",
    "batch_size",
    "scheduler",
    "reference_size",
    "reference_fit",
)

SETTINGS: tuple[Setting, ...] = (
    Setting("height", "--size", "output height in pixels, a multiple of the autoencoder factor"),
    Setting("width", "--size", "output width in pixels, a multiple of the autoencoder factor"),
    Setting("steps", "--steps", "scheduler steps of the full schedule, at least 1", "N"),
    Setting("strength", "--strength", "stage-1 img2img strength t_i in (0, 1]", "T"),
    Setting("upscale_strength", "--upscale-strength", "stage-2 noise strength in (0, 1]", "T"),
    Setting(
        "guidance",
        "--guidance",
        "guidance scale, >= 0 (1 = none; 0 = the unconditional output, or with autoguidance the weak "
        "denoiser's)",
        "G",
    ),
    Setting(
        "guidance_interval",
        "--guidance-interval",
        "noise levels t/T where guidance applies, LOW,HIGH with 0 <= LOW < HIGH <= 1; the other steps "
        "use the class-conditional output alone, at half the work",
        "LOW,HIGH",
    ),
    Setting(
        "guidance_mode",
        "--guidance-mode",
        "what guidance steers away from: cfg, the unconditional output (classifier-free); auto, the "
        "model's weak denoiser under the same class (autoguidance; models with weak_denoiser/)",
    ),
    Setting("patch_size", "--patch", "latent patch size p", "P"),
    Setting("overlap", "--overlap", "latent patch overlap o, 0 <= o < p", "O"),
    Setting("weights", "--weights", "blend weights w: " + ", ".join(WEIGHT_MODES)),
    Setting("sigma", "--sigma", "gaussian weights: sigma relative to the patch, > 0", "S"),
    Setting("jitter", "--jitter", "shift the patch grid every step (seeded)"),
    Setting("batch_size", "--batch-size", "patches per denoiser call, at least 1", "N"),
    Setting(
        "scheduler", "--sampler", "diffusers scheduler: ddim, ddpm, euler, euler-a, dpm++, unipc, ...", "NAME"
    ),
    Setting(
        "reference_size",
        "--reference-size",
        "stage-1 size (shorter side), a multiple of the autoencoder factor",
        "N",
    ),
    Setting(
        "reference_fit",
        "--reference-fit",
        "stretch: the reference is the output's whole field (PathUp); outpaint: the reference 1:1 in "
        "the centre, the tissue around it drawn in its context",
    ),
    Setting("seed", "--seed", f"random seed, 0 <= seed <= {MAX_SEED}", "N"),
    Setting("class_name", "--class", "tissue class (see `pathup info`)", "CLASS"),
    Setting("decode_tile", None, "latent tile side of the tiled encode and decode"),
    Setting("decode_overlap", None, "latent overlap of those tiles"),
)
_FLAGS = {s.field: s.flag for s in SETTINGS}


def setting_name(field: str) -> str:
    """``upscale_strength (--upscale-strength)``: the field and the flag, for messages."""
    flag = _FLAGS.get(field)
    return f"{field} ({flag})" if flag else field


def _fail(field: str, rule: str, value: Any) -> SettingsError:
    return SettingsError(f"{setting_name(field)} must be {rule}, got {value!r}")


def _int(field: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(field, "a whole number", value)
    value = int(value)
    if value < low or (high is not None and value > high):
        rule = f"at least {low}" if high is None else f"between {low} and {high}"
        raise _fail(field, rule, value)


def _float(field: str, value: Any, rule: str, ok: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _fail(field, f"a finite number ({rule})", value)
    if not ok(float(value)):
        raise _fail(field, rule, value)


def check_defaults(values: Any, where: str) -> dict[str, Any]:
    """``values`` if it is a mapping of settings a model may default (the :class:`SynthesisSettings`
    fields whose own default is ``None``: the ones a run fills from the model); else
    :class:`SettingsError` naming ``where`` and the offending value, since a misspelt key, or one a run
    never takes from the model (``height``, ``seed``), would otherwise change nothing, silently. The
    values' own rules are checked when a run resolves them."""
    settable = sorted(f.name for f in dataclasses.fields(SynthesisSettings) if f.default is None)
    if not isinstance(values, dict) or not set(values) <= set(settable):
        unknown = sorted(set(values) - set(settable)) if isinstance(values, dict) else values
        raise _fail(where, f"a mapping of settings ({', '.join(settable)})", unknown)
    return values


def model_defaults(model: ModelInfo, class_name: str) -> dict[str, Any]:
    """The defaults a run of ``class_name`` starts from: the library's (:data:`DEFAULTS`), then the
    model's (``pathup.json`` "defaults"), then its class's (``"class_defaults": {class: {...}}``), so
    that a model can sample one class with other settings (a higher guidance for a class it draws
    softer). Raises :class:`SettingsError` when "class_defaults" names a class the model lacks, or
    either names a setting that does not exist (a typo would otherwise change nothing, silently)."""
    defaults = check_defaults(model.metadata.get("defaults", {}), 'the model\'s pathup.json "defaults"')
    per_class = check_class_defaults(
        model.metadata.get("class_defaults", {}), model.classes, 'the model\'s pathup.json "class_defaults"'
    )
    return {**DEFAULTS, **defaults, **per_class.get(class_name, {})}


def _model_overlap(defaults: dict[str, Any], patch: int, native: int) -> int:
    """The overlap of a run that sets none: the model's "overlap" default belongs to its default patch
    size ("patch_size", else the denoiser's native size), so a run at another patch size (set by the
    user, or clamped for a small output) overlaps by a quarter of its patch, as without the default."""
    own = defaults.get("overlap")
    if own is None or patch != (defaults.get("patch_size") or native):
        return default_overlap(patch)
    return own


def check_class_defaults(values: Any, classes: Sequence[str], where: str) -> dict[str, dict[str, Any]]:
    """``values`` if it maps names of ``classes`` (any name when ``classes`` is empty) to settings that
    :func:`check_defaults` accepts; else :class:`SettingsError` naming ``where`` and what is wrong."""
    if not isinstance(values, dict):
        raise _fail(where, "a mapping of class name to settings", values)
    for name, settings in values.items():
        if classes and name not in classes:
            raise _fail(where, f"keyed by the model's classes ({', '.join(classes)})", name)
        check_defaults(settings, f"{where}[{name!r}]")
    return values


@dataclass(frozen=True)
class SynthesisSettings:
    """Everything that determines a run's output (with the model and the reference image).

    ``None`` means: the model's default (``pathup.json`` "defaults"), else the library default
    (:data:`DEFAULTS`). Sizes of patches and tiles are in latent pixels; ``height``/``width`` in
    output pixels. :data:`SETTINGS` documents every field and its rule.
    """

    class_name: str
    height: int = 2048
    width: int = 2048
    reference_size: int = 512
    steps: int | None = None
    strength: float | None = None
    upscale_strength: float | None = None
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    guidance_mode: str | None = None
    patch_size: int | None = None
    overlap: int | None = None
    weights: str | None = None
    sigma: float = 0.3
    jitter: bool = False
    batch_size: int = 8
    seed: int = 0
    scheduler: str | None = None
    reference_fit: str | None = None
    decode_tile: int = 64
    decode_overlap: int = 16

    def check(self) -> SynthesisSettings:
        """Apply every rule that needs no model; raises :class:`SettingsError` naming the setting.

        Returns ``self`` so that calls chain. ``None`` fields (model defaults) are checked by
        :meth:`resolve` once they are filled.
        """
        if not isinstance(self.class_name, str) or not self.class_name:
            raise _fail("class_name", "a class name", self.class_name)
        for name in ("height", "width", "reference_size"):
            _int(name, getattr(self, name), 1, MAX_SIDE)
        for name in ("batch_size", "decode_tile"):
            _int(name, getattr(self, name), 1, MAX_SIDE)
        _int("seed", self.seed, 0, MAX_SEED)
        _int("decode_overlap", self.decode_overlap, 0, self.decode_tile - 1)
        if self.steps is not None:
            _int("steps", self.steps, 1, MAX_STEPS)
        if self.patch_size is not None:
            _int("patch_size", self.patch_size, 1)
        if self.overlap is not None:
            _int("overlap", self.overlap, 0)
        if self.patch_size is not None and self.overlap is not None and self.overlap >= self.patch_size:
            raise _fail("overlap", f"smaller than the patch ({self.patch_size})", self.overlap)
        for name in ("strength", "upscale_strength"):
            if getattr(self, name) is not None:
                _float(name, getattr(self, name), "in (0, 1]", lambda v: 0 < v <= 1)
        if self.guidance is not None:
            _float("guidance", self.guidance, ">= 0", lambda v: v >= 0)
        if self.guidance_interval is not None:
            check_interval(self.guidance_interval)
        _float("sigma", self.sigma, "> 0", lambda v: v > 0)
        if self.guidance_mode is not None and self.guidance_mode not in GUIDANCE_MODES:
            raise _fail("guidance_mode", f"one of {', '.join(GUIDANCE_MODES)}", self.guidance_mode)
        if self.weights is not None and self.weights not in WEIGHT_MODES:
            raise _fail("weights", f"one of {', '.join(WEIGHT_MODES)}", self.weights)
        if self.reference_fit is not None and self.reference_fit not in REFERENCE_FITS:
            raise _fail("reference_fit", f"one of {', '.join(REFERENCE_FITS)}", self.reference_fit)
        if not isinstance(self.jitter, bool):
            raise _fail("jitter", "True or False", self.jitter)
        if self.scheduler is not None:
            from napari_pathup.models.schedulers import USABLE_SCHEDULERS

            if not isinstance(self.scheduler, str) or not self.scheduler:
                raise _fail("scheduler", f"a scheduler name ({', '.join(USABLE_SCHEDULERS)})", self.scheduler)
        return self

    def resolve(self, model: ModelInfo) -> RunPlan:
        """Fill every ``None`` from the model and the library, check the result against the model,
        and return the frozen :class:`RunPlan` (settings, per-stage sampling and grids, counts).

        ``model`` is a loaded :class:`~napari_pathup.models.base.PathupModel` or a
        :class:`~napari_pathup.models.spec.ModelSpec` (configs only, no weights). Raises
        :class:`SettingsError` naming the setting, its flag and the allowed values.
        """
        self.check()
        defaults = model_defaults(model, self.class_name)
        filled = {
            k: (defaults[k] if getattr(self, k) is None and k in defaults else getattr(self, k))
            for k in (f.name for f in dataclasses.fields(self))
        }
        for name, low in (("patch_size", 1), ("overlap", 0)):  # the model's, used in arithmetic below
            if getattr(self, name) is None and filled[name] is not None:
                try:
                    _int(name, filled[name], low)
                except SettingsError as exc:
                    raise SettingsError(f"{exc}{FROM_MODEL}") from None
        f, m = model.vae_scale_factor, model.patch_multiple
        smallest = m * f  # one denoiser input of the smallest side, in pixels
        for name in ("height", "width", "reference_size"):
            value = filled[name]
            if value % f or value < smallest:
                raise _fail(
                    name,
                    f"a multiple of {f} (the autoencoder factor) of at least {smallest} "
                    f"(the denoiser's smallest input, {m} latent pixels)",
                    value,
                )
        latent_h, latent_w = filled["height"] // f, filled["width"] // f
        patch = filled["patch_size"]
        if patch is None:
            patch = _floor(default_patch_size(model.native_size, latent_h, latent_w), m)
        elif patch % m or patch > min(latent_h, latent_w):
            largest = _floor(min(latent_h, latent_w), m)
            rule = (
                f"a multiple of {m} (the denoiser's input rule) between {m} and {largest} "
                "(the output's latent side)"
            )
            raise _fail("patch_size", rule, patch)
        filled["patch_size"] = patch
        if self.overlap is None:
            filled["overlap"] = _model_overlap(defaults, patch, model.native_size)
        if filled["overlap"] >= patch:
            rule = f"smaller than the patch ({patch}){self._source('overlap')}"
            raise _fail("overlap", rule, filled["overlap"])
        try:  # a model's JSON list, as a pair
            filled["guidance_interval"] = check_interval(filled["guidance_interval"])
        except SettingsError as exc:
            raise SettingsError(f"{exc}{self._source('guidance_interval')}") from None
        settings = SynthesisSettings(**filled)
        try:
            settings.check()  # the model's defaults obey the same rules
        except SettingsError as exc:  # self.check() passed: a value the model's defaults filled in is wrong
            raise SettingsError(f"{exc}{FROM_MODEL}") from None
        if settings.guidance_mode == "auto" and not model.has_weak_denoiser:
            rule = (
                f"cfg for {model.path}: autoguidance needs a weak denoiser (a weak_denoiser/ folder), "
                f"which this model lacks{self._source('guidance_mode')}"
            )
            raise _fail("guidance_mode", rule, settings.guidance_mode)
        model.check_class(settings.class_name)
        return RunPlan.build(settings, model)

    def _source(self, name: str) -> str:
        """:data:`FROM_MODEL` for a setting this run left to the defaults (the library's are valid, so a
        wrong one is the model's), else nothing: the suffix of an error about the filled-in value."""
        return FROM_MODEL if getattr(self, name) is None else ""

    def stage_one_shape(self) -> tuple[int, int]:
        """Stage 1 works at ``reference_size`` on the shorter side, with the output's aspect ratio."""
        h, w = self.height, self.width
        r = min(self.reference_size, h, w)  # never larger than the output: stage 2 only upscales
        if h == w:
            return r, r
        if h < w:
            return r, max(8, round(r * w / h / 8) * 8)
        return max(8, round(r * h / w / 8) * 8), r

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = frozenset(f.name for f in dataclasses.fields(SynthesisSettings))


def check_interval(value: Any) -> tuple[float, float]:
    """``value`` as a ``(low, high)`` pair of noise levels with 0 <= low < high <= 1 (a list from a
    model's JSON is accepted); else :class:`SettingsError` naming the guidance interval."""
    rule = "a pair of noise levels LOW,HIGH with 0 <= LOW < HIGH <= 1"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise _fail("guidance_interval", rule, value)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise _fail("guidance_interval", rule, value)
    low, high = float(value[0]), float(value[1])
    if not 0 <= low < high <= 1:
        raise _fail("guidance_interval", rule, value)
    return (low, high)


def _floor(value: int, multiple: int) -> int:
    return max(multiple, value - value % multiple)


@dataclass(frozen=True)
class StagePlan:
    """One stage of Algorithm 1 as it will run: its latent, sampling, grid and work counts."""

    number: int
    scale: str  # the conditioning scale: "overview" (stage 1) or "native" (stage 2)
    latent_shape: tuple[int, int]
    pixel_shape: tuple[int, int]
    sampling: Any  # engine.sampler.PatchSampling (imported lazily: the sampler imports torch)
    grid: PatchGrid
    steps: int  # denoising steps actually run (the tail of the schedule that ``strength`` selects)
    tiles: int  # autoencoder tiles of the tiled encode (and of the decode)
    guided_steps: int  # of ``steps``, those that run guidance (a doubled batch): inside its interval
    autoguided: bool = False  # guidance by the weak denoiser: a guided batch is one call of each network

    @property
    def batch_steps(self) -> int:
        """Patch batches denoised over the stage (each one guided or not)."""
        return self.steps * -(-len(self.grid) // self.sampling.batch_size)

    @property
    def guided_calls(self) -> int:
        """Guided batches (a doubled batch, or with autoguidance a batch through both denoisers); the
        other batches run the conditional denoiser alone."""
        return self.guided_steps * -(-len(self.grid) // self.sampling.batch_size)

    @property
    def patches_per_step(self) -> int:
        return len(self.grid)

    @property
    def step_batches(self) -> dict[int, int]:
        """One step's patch batches as {patches in the batch: how many such batches}: full batches
        and the remainder, e.g. {8: 10, 1: 1} for 81 patches in batches of 8."""
        full, rest = divmod(len(self.grid), self.sampling.batch_size)
        return {k: n for k, n in ((self.sampling.batch_size, full), (rest, 1)) if k and n}

    @property
    def denoiser_calls(self) -> int:
        """Network calls: one per batch, two per guided batch with autoguidance (one of each denoiser)."""
        return self.batch_steps + (self.guided_calls if self.autoguided else 0)

    @property
    def patch_evaluations(self) -> int:
        """Patches through the denoiser, doubled by classifier-free guidance where it applies."""
        return (self.steps + self.guided_steps) * len(self.grid)


@dataclass(frozen=True)
class RunPlan:
    """A run resolved against a model: the only object the engine, the estimate and the UIs read.

    ``settings`` are complete (no ``None``) and checked; ``stages`` hold each stage's sampling
    and grid. ``to_dict()`` is what every output records as its settings.
    """

    settings: SynthesisSettings
    stages: tuple[StagePlan, StagePlan]
    scale_factor: int
    latent_channels: int
    native_size: int

    @classmethod
    def build(cls, s: SynthesisSettings, model: ModelInfo) -> RunPlan:
        """The stages of a run of complete, checked settings ``s`` (see :meth:`SynthesisSettings.resolve`)."""
        import torch

        from napari_pathup.engine.sampler import PatchSampling, img2img_timesteps
        from napari_pathup.engine.vae import tile_grid
        from napari_pathup.models.schedulers import run_scheduler

        assert (  # resolve() completes them; this tells the type checker so
            s.steps is not None
            and s.strength is not None
            and s.upscale_strength is not None
            and s.guidance is not None
            and s.guidance_interval is not None
            and s.patch_size is not None
            and s.overlap is not None
            and s.weights is not None
        ), "RunPlan.build takes resolved settings (SynthesisSettings.resolve)"
        f = model.vae_scale_factor
        scheduler = run_scheduler(s.scheduler, model.scheduler)
        h1, w1 = s.stage_one_shape()
        outpaint = s.reference_fit == "outpaint"
        stages = []
        for number, scale, (h, w), strength, strength_field in (
            # outpainting starts stage 1 nearly from noise around the reference, which starts at t_i
            (1, "overview", (h1, w1), OUTPAINT_FILL_STRENGTH if outpaint else s.strength, "strength"),
            (2, "native", (s.height, s.width), s.upscale_strength, "upscale_strength"),
        ):
            latent = (h // f, w // f)
            m = model.patch_multiple
            # stage 1 works on the (smaller) reference latent: the patch is clamped to it
            patch = _floor(min(s.patch_size, *latent), m)
            overlap = min(s.overlap, patch - 1) if patch > 1 else 0
            sampling = PatchSampling(
                steps=s.steps,
                strength=strength,
                guidance=s.guidance,
                patch_size=patch,
                overlap=overlap,
                weights=s.weights,
                sigma=s.sigma,
                batch_size=s.batch_size,
                jitter=s.jitter,
                known_strength=s.strength if outpaint and number == 1 else None,
                guidance_interval=s.guidance_interval,
            )
            grid = PatchGrid(*latent, patch, overlap)
            try:
                if sampling.known_strength is not None:  # the reference's own schedule must exist too
                    img2img_timesteps(scheduler, s.steps, sampling.known_strength, torch.device("cpu"))
                timesteps = img2img_timesteps(scheduler, s.steps, strength, torch.device("cpu"))
            except ValueError as exc:
                given = s.strength if sampling.known_strength is not None else strength
                raise SettingsError(
                    f"{setting_name('steps')} {s.steps} with {setting_name(strength_field)} {given} "
                    f"gives no usable schedule for stage {number}: {exc}"
                ) from exc
            tiles = len(tile_grid(*latent, s.decode_tile, s.decode_overlap))
            guided = sum(sampling.guidance_at(scheduler, t) != 1.0 for t in timesteps)
            steps = len(timesteps)
            auto = s.guidance_mode == "auto"
            stages.append(
                StagePlan(number, scale, latent, (h, w), sampling, grid, steps, tiles, guided, auto)
            )
        return cls(s, (stages[0], stages[1]), f, model.latent_channels, model.native_size)

    # -- what the UIs and the outputs read ------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """The resolved settings read through the plan (``plan.height``, ``plan.patch_size``, ...), as
        ``resolve`` returned them before it returned a plan. Only called for names the plan lacks."""
        if name in _FIELDS:
            return getattr(self.settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings as recorded in every output's metadata."""
        return self.settings.to_dict()

    def with_seed(self, seed: int) -> RunPlan:
        """The same run with another seed (a seed changes no setting, grid or count): how ``pathup
        augment`` gives every item of a class its plan without resolving again. Another class needs
        a plan of its own: a model's "class_defaults" may give it other settings."""
        _int("seed", seed, 0, MAX_SEED)
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, seed=seed))

    # -- checks and budgets ---------------------------------------------------------------------
    @property
    def min_reference_side(self) -> int:
        """The smallest reference side (pixels) that holds one native patch of the model."""
        return self.native_size * self.scale_factor

    def check_reference(self, shape: tuple[int, ...], source: str = "the reference") -> None:
        """Refuse a reference smaller than one native patch (a 1x1 reference gives a blank image)."""
        height, width = int(shape[0]), int(shape[1])
        if min(height, width) < self.min_reference_side:
            raise SettingsError(
                f"{source} is {width}x{height} px; this model needs a reference of at least "
                f"{self.min_reference_side} px on its shorter side (one native patch: "
                f"{self.native_size} latent pixels x {self.scale_factor})"
            )

    def reference_note(self, shape: tuple[int, ...], source: str = "the reference") -> str | None:
        """What the fit does to a reference of ``shape`` when the user should know it, else None.

        ``stretch`` (PathUp treats the reference as the output's field): a note when the reference is
        enlarged more than 1.25x on a side, because its tissue then looks magnified
        (docs/model_experiments.md, "What limits the pictures"). ``outpaint``: a note saying how much of
        the output is drawn around the reference, or that a larger reference is cropped."""
        height, width = int(shape[0]), int(shape[1])
        down, across = self.height / height, self.width / width
        if self.reference_fit == "outpaint":
            if down >= 1 and across >= 1 and height * width >= 0.8 * self.height * self.width:
                return None
            if down < 1 or across < 1:
                return (
                    f"note: {source} ({width}x{height} px) is larger than the {self.width}x{self.height} "
                    "output; its centre is used at 1:1 (--reference-fit stretch fits all of it)"
                )
            share = 1 - height * width / (self.height * self.width)
            return (
                f"note: {source} ({width}x{height} px) is placed 1:1 in the centre of the "
                f"{self.width}x{self.height} output; the other {share:.0%} of the field is drawn around it"
            )
        if max(down, across) <= 1.25:
            return None
        return (
            f"note: {source} ({width}x{height} px) is enlarged {across:.1f}x across and {down:.1f}x down to "
            f"fill the {self.width}x{self.height} output, so its tissue will look magnified; for a 1:1 "
            "image give a reference RoI of the output's size, or --reference-fit outpaint"
        )

    @property
    def in_memory(self) -> bool:
        """True when the output is assembled in memory; else in a temporary zarr beside the output."""
        return self.height * self.width <= IN_MEMORY_PIXELS

    @property
    def patch_evaluations(self) -> int:
        return sum(st.patch_evaluations for st in self.stages)

    @property
    def output_bytes(self) -> int:
        """Uncompressed bytes of the output image (level 0)."""
        return self.height * self.width * 3

    @property
    def memory_bytes(self) -> int:
        """Estimated memory beyond the model itself: latent buffers, one decoded tile row, the image.

        Counts only; ``engine.estimate.estimate`` measures the model's part on the device.
        """
        lat_h, lat_w = self.stages[1].latent_shape
        latents = 6 * self.latent_channels * lat_h * lat_w * 4  # float32 latent, noise, merge (float64)
        row = 2 * 3 * self.settings.decode_tile * self.scale_factor * self.width * 4
        return latents + row + (self.output_bytes if self.in_memory else 0)

    @property
    def disk_bytes(self) -> int:
        """Disk needed beside the output (uncompressed worst case): the temporary sink, then the file."""
        return self.output_bytes * (1 if self.in_memory else 2)

    def check_budget(
        self,
        allow_large: bool = False,
        available_memory: int | None = None,
        free_disk: int | None = None,
    ) -> None:
        """Refuse a run whose work, memory or disk estimate is above the budget, unless ``allow_large``.

        The work budget is :data:`WORK_BUDGET` patch evaluations; memory is compared with
        ``available_memory`` and disk with ``free_disk`` (bytes; None = not checked).
        """
        if allow_large:
            return
        over = []
        if self.patch_evaluations > WORK_BUDGET:
            over.append(f"{self.patch_evaluations:,} denoiser patch evaluations (budget {WORK_BUDGET:,})")
        if available_memory is not None and self.memory_bytes > available_memory:
            over.append(
                f"about {format_bytes(self.memory_bytes)} of memory besides the model "
                f"({format_bytes(available_memory)} available)"
            )
        if free_disk is not None and self.disk_bytes > free_disk:
            need, free = format_bytes(self.disk_bytes), format_bytes(free_disk)
            over.append(f"up to {need} of disk at the output ({free} free)")
        if over:
            raise RunTooLargeError(
                f"a {self.width}x{self.height} px run needs an estimated {' and '.join(over)}; "
                "pass --allow-large-run (allow_large=True) to start it anyway"
            )


def available_memory() -> int:
    """Memory available to a new allocation now (bytes), as the operating system reports it."""
    import psutil

    return int(psutil.virtual_memory().available)
