"""AlignerNet and its ablations: shapes, masking, trainability, and the paper's size."""

from __future__ import annotations

import pytest
import torch

from models.aligner import ALIGNER_KINDS, alignment_losses, build_aligner

SOURCE_DIM, TARGET_DIM, TARGET_LEN = 24, 16, 7
SMALL = dict(target_len=TARGET_LEN, layers=2, width=32, ffn=64, heads=4, max_source_len=64)


def small_aligner(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_aligner(kind, SOURCE_DIM, TARGET_DIM, **SMALL).eval()


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source = torch.randn(3, 9, SOURCE_DIM, generator=generator)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    return source, mask


@pytest.mark.parametrize("kind", ALIGNER_KINDS)
def test_condition_and_reconstruction_shapes(kind: str) -> None:
    aligner = small_aligner(kind)
    source, mask = padded_batch()
    condition = aligner(source, mask)
    assert condition.shape == (3, TARGET_LEN, TARGET_DIM)
    reconstruction = aligner.reconstruct(condition, source.shape[1])
    if kind == "linear":
        assert reconstruction is None
    else:
        assert reconstruction.shape == source.shape


def test_width_equal_to_target_needs_no_output_projection() -> None:
    aligner = build_aligner("aligner", SOURCE_DIM, 32, **SMALL)
    assert isinstance(aligner.m["target_out"], torch.nn.Identity)
    source, mask = padded_batch()
    assert aligner(source, mask).shape == (3, TARGET_LEN, 32)


def test_linear_pads_short_and_truncates_long_sources() -> None:
    aligner = small_aligner("linear")
    short = aligner(torch.randn(2, 3, SOURCE_DIM), torch.ones(2, 3, dtype=torch.bool))
    assert short.shape == (2, TARGET_LEN, TARGET_DIM)
    assert torch.all(short[:, 3:] == 0)
    long = aligner(torch.randn(2, 20, SOURCE_DIM), torch.ones(2, 20, dtype=torch.bool))
    assert long.shape == (2, TARGET_LEN, TARGET_DIM)


@pytest.mark.parametrize("kind", ALIGNER_KINDS)
def test_padded_positions_do_not_reach_the_condition(kind: str) -> None:
    aligner = small_aligner(kind)
    source, mask = padded_batch()
    garbage = source.clone()
    garbage[~mask] = 100.0 * torch.randn(int((~mask).sum()), SOURCE_DIM)
    target = torch.randn(3, TARGET_LEN, TARGET_DIM)
    with torch.no_grad():
        clean = alignment_losses(aligner, source, mask, target)
        noisy = alignment_losses(aligner, garbage, mask, target)
        # Not vacuous: a change to a real token does move the condition.
        edited = source.clone()
        edited[1, 0] += 1.0
        moved = aligner(edited, mask)
    torch.testing.assert_close(noisy["condition"], clean["condition"])
    torch.testing.assert_close(noisy["rec_loss"], clean["rec_loss"])
    assert not torch.allclose(moved[1], clean["condition"][1])


@pytest.mark.parametrize("kind", ALIGNER_KINDS)
def test_alignment_losses_fall_when_fitting_a_fixed_target(kind: str) -> None:
    aligner = small_aligner(kind).train()
    source, mask = padded_batch(seed=1)
    target = torch.randn(3, TARGET_LEN, TARGET_DIM, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.AdamW(aligner.parameters(), lr=3e-3)

    def total() -> dict[str, torch.Tensor]:
        losses = alignment_losses(aligner, source, mask, target)
        losses["total"] = losses["mse_loss"] + losses["rec_loss"]
        return losses

    first = {k: v.item() for k, v in total().items() if k != "condition"}
    for _ in range(50):
        optimizer.zero_grad()
        total()["total"].backward()
        optimizer.step()
    last = {k: v.item() for k, v in total().items() if k != "condition"}
    assert last["mse_loss"] < 0.5 * first["mse_loss"]
    if kind == "linear":
        assert last["rec_loss"] == 0.0
    else:
        assert last["rec_loss"] < 0.5 * first["rec_loss"]


def test_reconstruction_loss_is_scaled_by_target_over_source_length() -> None:
    aligner = small_aligner("aligner")
    source, mask = padded_batch()
    with torch.no_grad():
        losses = alignment_losses(aligner, source, mask, torch.zeros(3, TARGET_LEN, TARGET_DIM))
        reconstruction = aligner.reconstruct(losses["condition"], source.shape[1])
    unscaled = (reconstruction - source).pow(2).mean(-1)[mask].mean()
    torch.testing.assert_close(losses["rec_loss"], unscaled * TARGET_LEN / source.shape[1])


def test_unknown_kind_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'transformer_xl'.*aligner, decoder_only, linear"):
        build_aligner("transformer_xl", SOURCE_DIM, TARGET_DIM)


def test_full_size_aligner_matches_the_papers_225m(record_property) -> None:
    """Paper: "about 225M parameters". That is M, the part kept for generation (2048 -> 768)."""
    with torch.device("meta"):
        aligner = build_aligner("aligner", 2048, 768)
    m_count = sum(p.numel() for p in aligner.generation_parameters())
    total = sum(p.numel() for p in aligner.parameters())
    record_property("aligner_m_parameters", m_count)
    record_property("aligner_m_plus_n_parameters", total)
    print(f"12-layer AlignerNet: M {m_count / 1e6:.2f}M, M+N {total / 1e6:.2f}M parameters")
    assert abs(m_count - 225e6) / 225e6 < 0.05
    assert total - m_count > m_count  # N mirrors M's stacks and adds a 32768-row query bank
