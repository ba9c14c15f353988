"""Gated attention multiple-instance learning (Ilse, Tomczak & Welling 2018, "Attention-based Deep
Multiple Instance Learning"), the ADMIL classifier of the PathUp evaluation.

A bag is the (K, D) features of the K tiles of one image. Each instance is embedded
``h_k = ReLU(W h_k)``, weighted by the gated attention
``a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))`` and pooled ``z = sum_k a_k h_k``; a linear
layer maps ``z`` to class logits. Bags of any size are trained in padded mini-batches (padding masked
out of the attention) with class-balanced cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class GatedAttentionMIL(nn.Module):
    """Gated attention pooling over instance features, then a linear classifier."""

    def __init__(
        self, in_dim: int, n_classes: int, hidden: int = 128, attention: int = 64, dropout: float = 0.25
    ):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(hidden, attention)
        self.attention_u = nn.Linear(hidden, attention)
        self.attention_w = nn.Linear(attention, 1)
        self.classifier = nn.Linear(hidden, n_classes)

    def attention(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights (..., K) of embedded instances (..., K, hidden); they sum to one over the
        instances that ``mask`` (..., K) keeps (padding gets zero)."""
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        scores = self.attention_w(gate).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1)

    def forward(
        self, bag: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, in_dim) instances → (logits (n_classes,), attention (K,)); or a padded batch
        (B, K, in_dim) with ``mask`` (B, K) → ((B, n_classes), (B, K))."""
        h = self.embed(bag)
        a = self.attention(h, mask)
        pooled = (a.unsqueeze(-2) @ h).squeeze(-2)
        return self.classifier(pooled), a


def pad_bags(bags: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack bags of different sizes into (B, K_max, D) with a (B, K_max) mask of real instances."""
    k = max(len(b) for b in bags)
    batch = torch.zeros(len(bags), k, bags[0].shape[1])
    mask = torch.zeros(len(bags), k, dtype=torch.bool)
    for i, b in enumerate(bags):
        batch[i, : len(b)] = b
        mask[i, : len(b)] = True
    return batch, mask


@dataclass
class MILSettings:
    """Training of the MIL head: Adam on mini-batches of ``batch_size`` padded bags, ``epochs`` passes
    over the shuffled training bags."""

    epochs: int = 40
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-4
    hidden: int = 128
    attention: int = 64
    dropout: float = 0.25


@dataclass
class MILClassifier:
    """A trained :class:`GatedAttentionMIL` with the instance standardisation of its training bags."""

    model: GatedAttentionMIL
    mean: np.ndarray
    std: np.ndarray

    def _tensor(self, bag: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((bag - self.mean) / self.std).astype(np.float32))

    @torch.inference_mode()
    def predict_proba(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        """(N, n_classes) class probabilities of the bags."""
        self.model.eval()
        return np.stack([torch.softmax(self.model(self._tensor(b))[0], 0).numpy() for b in bags])

    def predict(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        return self.predict_proba(bags).argmax(axis=1)

    @torch.inference_mode()
    def attention(self, bag: np.ndarray) -> np.ndarray:
        """Attention weights of one bag's instances."""
        self.model.eval()
        return self.model(self._tensor(bag))[1].numpy()


def train_mil(
    bags: Sequence[np.ndarray],
    labels: Sequence[int],
    n_classes: int,
    *,
    seed: int = 0,
    settings: MILSettings | None = None,
) -> MILClassifier:
    """Train a gated attention MIL head on (K_i, D) bags; deterministic for a seed on one device.

    Classes are balanced by weighting the loss with inverse class frequencies; padding instances are
    masked out of the attention, so a bag's output does not depend on the batch it is in.
    """
    s = settings or MILSettings()
    if not bags:
        raise ValueError("no training bags")
    if len(bags) != len(labels):
        raise ValueError(f"{len(bags)} bags but {len(labels)} labels")
    instances = np.concatenate(bags)
    mean = instances.mean(axis=0)
    std = instances.std(axis=0) + 1e-6
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # initial weights and dropout masks
    try:
        model = GatedAttentionMIL(instances.shape[1], n_classes, s.hidden, s.attention, s.dropout)
        clf = MILClassifier(model, mean, std)
        tensors = [clf._tensor(b) for b in bags]
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        counts = torch.bincount(y, minlength=n_classes).float()
        weights = torch.where(
            counts > 0, len(y) / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts)
        )
        optimiser = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        model.train()
        for _ in range(s.epochs):
            order = torch.randperm(len(tensors), generator=generator)
            for start in range(0, len(order), s.batch_size):
                chosen = order[start : start + s.batch_size]
                batch, mask = pad_bags([tensors[i] for i in chosen.tolist()])
                logits, _ = model(batch, mask)
                loss = nn.functional.cross_entropy(logits, y[chosen], weight=weights)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        torch.random.set_rng_state(torch_state)
    model.eval()
    return clf
