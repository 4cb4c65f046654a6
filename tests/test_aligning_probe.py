"""The mini world's aligning probes (experiments/mini/aligning_probe.py) on tensors whose answers
are known, without the world: the slow tests in test_mini_learning.py and bench.mini_aligning read
the figures these functions compute."""

from __future__ import annotations

import pytest
import torch

from experiments.mini.aligning_probe import (
    EncodedCaptions,
    RidgeMap,
    heldout_mse,
    one_word_swapped,
    relative_change,
    token_embedded,
    whitened,
)

CAPTIONS, POSITIONS, SOURCE, TARGET_LEN, TARGET = 400, 5, 6, 3, 4


def encoded(seed: int, source_mixing: torch.Tensor | None = None) -> EncodedCaptions:
    """Random captions of 2 to 5 tokens whose targets are one fixed linear map of their states."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, POSITIONS + 1, (CAPTIONS,), generator=generator)
    mask = torch.arange(POSITIONS)[None, :] < lengths[:, None]
    states = torch.randn(CAPTIONS, POSITIONS, SOURCE, generator=generator)
    if source_mixing is not None:
        states = states @ source_mixing
    states = states * mask[..., None]
    token_ids = torch.randint(1, 9, (CAPTIONS, POSITIONS), generator=generator) * mask
    fixed = torch.Generator().manual_seed(99)
    mapping = torch.randn(POSITIONS * SOURCE, TARGET_LEN * TARGET, generator=fixed)
    targets = (states.flatten(1) @ mapping).view(CAPTIONS, TARGET_LEN, TARGET)
    return EncodedCaptions(states, mask, token_ids, targets)


def test_a_ridge_map_recovers_a_linear_map_on_captions_it_never_saw() -> None:
    train, heldout = encoded(0), encoded(1)
    assert heldout_mse(RidgeMap.fit(train, strength=1e-6)(heldout), heldout) < 1e-6
    # Strong ridge shrinks toward the mean, so the same map fits visibly worse.
    assert heldout_mse(RidgeMap.fit(train, strength=1e6)(heldout), heldout) > 1.0


def test_whitening_gives_every_direction_unit_variance_and_keeps_padding_zero() -> None:
    mixing = torch.diag(torch.tensor([10.0, 3.0, 1.0, 0.3, 0.1, 0.05])) @ torch.linalg.qr(
        torch.randn(SOURCE, SOURCE, generator=torch.Generator().manual_seed(5))
    )[0]
    train = encoded(0, mixing)
    tokens = whitened(train, train).states[train.mask]
    assert torch.allclose(torch.cov(tokens.T), torch.eye(SOURCE), atol=1e-3)
    other = encoded(1, mixing)
    assert whitened(other, train).states[~other.mask].abs().max() == 0


def test_a_token_embedding_names_each_token_id_by_one_vector() -> None:
    captions = encoded(0)
    states = token_embedded(captions, width=7, seed=0).states
    first = captions.token_ids == captions.token_ids[0, 0]
    assert torch.equal(states[first], states[0, 0].expand(int(first.sum()), -1))
    assert states[~captions.mask].abs().max() == 0
    assert not torch.equal(states, token_embedded(captions, width=7, seed=1).states)


def test_one_word_swapped_changes_the_first_named_word_and_skips_captions_naming_none() -> None:
    captions = ["a small red circle, left of a red square", "a white background", "a large blue cross"]
    originals, swapped = one_word_swapped(captions, ["red", "blue", "green"], seed=0)
    assert originals == [captions[0], captions[2]]
    for before, after in zip(originals, swapped):
        changed = [(old, new) for old, new in zip(before.split(), after.split()) if old != new]
        assert len(changed) == 1 and changed[0][0].strip(",") in ("red", "blue")
        assert changed[0][1].strip(",") in ("red", "blue", "green") and changed[0][1] != changed[0][0]
    # "redder" is not the word "red".
    assert one_word_swapped(["a redder circle"], ["red", "blue"], seed=0) == ([], [])


def test_relative_change_is_the_move_over_the_spread() -> None:
    before = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert relative_change(before, before) == 0
    assert relative_change(before, before + torch.tensor([0.0, 0.5])) == pytest.approx(0.5)
