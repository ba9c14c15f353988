"""Gated attention MIL: shapes, attention, and learning a bag problem that instance means cannot solve."""

from __future__ import annotations

import numpy as np
import torch

from napari_pathup.evaluation.mil import GatedAttentionMIL, MILSettings, pad_bags, train_mil


def _bags(n: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """A bag is positive when it holds one 'key' instance among 5-15 background instances: mean pooling
    dilutes it, attention can find it."""
    rng = np.random.default_rng(seed)
    key = np.zeros(16, np.float32)
    key[3] = 4.0
    bags, labels = [], []
    for i in range(n):
        bag = rng.normal(0, 1, (int(rng.integers(5, 16)), 16)).astype(np.float32)
        if i % 2:
            bag[rng.integers(len(bag))] += key
        bags.append(bag)
        labels.append(i % 2)
    return bags, labels


def test_attention_sums_to_one_and_logits_have_the_class_count():
    model = GatedAttentionMIL(8, 3, hidden=16, attention=8)
    logits, attention = model(torch.randn(7, 8))
    assert logits.shape == (3,) and attention.shape == (7,)
    assert torch.allclose(attention.sum(), torch.tensor(1.0))


def test_padding_does_not_change_a_bags_output():
    torch.manual_seed(0)
    model = GatedAttentionMIL(8, 3, hidden=16, attention=8).eval()
    short, long = torch.randn(3, 8), torch.randn(6, 8)
    batch, mask = pad_bags([short, long])
    logits, attention = model(batch, mask)
    alone, _ = model(short)
    assert torch.allclose(logits[0], alone, atol=1e-6)
    assert torch.all(attention[0, 3:] == 0)


def test_learns_a_separable_bag_problem_and_attends_to_the_key_instance():
    bags, labels = _bags(80, 0)
    clf = train_mil(
        bags,
        labels,
        2,
        seed=0,
        settings=MILSettings(epochs=30, lr=2e-3, hidden=32, attention=16, dropout=0.0),
    )
    test_bags, test_labels = _bags(60, 1)
    accuracy = float((clf.predict(test_bags) == np.asarray(test_labels)).mean())
    assert accuracy >= 0.9
    # in positive bags the key instance gets the largest attention most of the time
    hits = [
        int(np.argmax(clf.attention(b)) == int(np.argmax(b[:, 3])))
        for b, y in zip(test_bags, test_labels, strict=True)
        if y
    ]
    assert np.mean(hits) >= 0.8


def test_training_is_deterministic_per_seed_and_leaves_the_global_rng_alone():
    bags, labels = _bags(20, 2)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_mil(bags, labels, 2, seed=5, settings=MILSettings(epochs=2))
    after = torch.rand(1)
    b = train_mil(bags, labels, 2, seed=5, settings=MILSettings(epochs=2))
    assert torch.equal(before, after)
    np.testing.assert_array_equal(a.predict_proba(bags), b.predict_proba(bags))
