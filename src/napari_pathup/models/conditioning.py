"""Class → conditioning: label embeddings for PathUp models, text prompts for Stable Diffusion.

Classifier-free guidance needs an unconditional input; ``class_name=None`` gives it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_PROMPT_TEMPLATE = "a {scale} magnification H&E stained histopathology image of {class_name} tissue"
DEFAULT_SCALE_WORDS: dict[str, str] = {"overview": "low", "native": "high"}


def class_label(class_index: int | None, scale_index: int, n_classes: int) -> int:
    """The embedding index of (class, scale); each scale has its own null label, ``n_classes``.

    Layout ``scale-major-with-null``: ``scale_index * (n_classes + 1) + class_index``.
    """
    index = n_classes if class_index is None else class_index
    return scale_index * (n_classes + 1) + index


class ClassConditioner:
    """Label indices for a UNet with a class embedding (``num_class_embeds``)."""

    def __init__(self, classes: Sequence[str], scales: Sequence[str], device: torch.device | str = "cpu"):
        self.classes = list(classes)
        self.scales = list(scales)
        self.device = device

    def __call__(self, class_name: str | None, scale: str) -> torch.Tensor:
        if scale not in self.scales:
            raise ValueError(f"unknown scale {scale!r}; the model knows {', '.join(self.scales)}")
        if class_name is not None and class_name not in self.classes:
            raise ValueError(f"unknown class {class_name!r}; expected one of {', '.join(self.classes)}")
        index = None if class_name is None else self.classes.index(class_name)
        label = class_label(index, self.scales.index(scale), len(self.classes))
        return torch.tensor([label], dtype=torch.long, device=self.device)


class TextConditioner:
    """Prompt embeddings from a CLIP text encoder, cached per (class, scale)."""

    def __init__(
        self,
        tokenizer,
        text_encoder: torch.nn.Module,
        template: str = DEFAULT_PROMPT_TEMPLATE,
        scale_words: dict[str, str] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.template = template
        self.scale_words = dict(DEFAULT_SCALE_WORDS if scale_words is None else scale_words)
        self._cache: dict[tuple[str | None, str, torch.device, torch.dtype], torch.Tensor] = {}

    def prompt(self, class_name: str | None, scale: str) -> str:
        if class_name is None:
            return ""
        word = self.scale_words.get(scale, scale)
        return self.template.format(class_name=class_name.replace("_", " "), scale=word)

    @torch.inference_mode()
    def __call__(self, class_name: str | None, scale: str) -> torch.Tensor:
        param = next(self.text_encoder.parameters())
        key = (class_name, scale, param.device, param.dtype)
        if key not in self._cache:
            tokens = self.tokenizer(
                self.prompt(class_name, scale),
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            ids = tokens.input_ids.to(param.device)
            self._cache[key] = self.text_encoder(ids)[0]
        return self._cache[key]
