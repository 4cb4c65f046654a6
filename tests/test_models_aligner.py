"""AlignerNet and its ablations: shapes, masking, trainability, and the paper's size."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from models.aligner import ALIGNER_KINDS, alignment_losses, build_aligner
from models.aligner_config import AlignerConfig

SOURCE_DIM, TARGET_DIM, TARGET_LEN = 24, 16, 7
SMALL = AlignerConfig(layers=2, width=32, ffn=64, heads=4, max_source_len=64)


def small_aligner(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_aligner(replace(SMALL, kind=kind), SOURCE_DIM, TARGET_DIM, TARGET_LEN).eval()


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
    aligner = build_aligner(SMALL, SOURCE_DIM, 32, TARGET_LEN)
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
        clean = alignment_losses(aligner, source, mask, target, rec_mask_padding=True)
        noisy = alignment_losses(aligner, garbage, mask, target, rec_mask_padding=True)
        noisy_official = alignment_losses(aligner, garbage, mask, target)
        # Not vacuous: a change to a real token does move the condition.
        edited = source.clone()
        edited[1, 0] += 1.0
        moved = aligner(edited, mask)
    torch.testing.assert_close(noisy["condition"], clean["condition"])
    torch.testing.assert_close(noisy["rec_loss"], clean["rec_loss"])
    assert not torch.allclose(moved[1], clean["condition"][1])
    if kind != "linear":
        # (code) by default L_rec also asks N to rebuild the padding, garbage included.
        assert noisy_official["rec_loss"] > 10 * noisy["rec_loss"]


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


@pytest.mark.parametrize("kind", ["aligner", "decoder_only"])
def test_reconstruction_loss_is_scaled_by_target_over_source_length(kind: str) -> None:
    aligner = small_aligner(kind)
    source, mask = padded_batch()
    target = torch.zeros(3, TARGET_LEN, TARGET_DIM)
    with torch.no_grad():
        official = alignment_losses(aligner, source, mask, target)
        masked = alignment_losses(aligner, source, mask, target, rec_mask_padding=True)
        reconstruction = aligner.reconstruct(official["condition"], source.shape[1])
    squared = (reconstruction - source).pow(2).mean(-1)
    scale = TARGET_LEN / source.shape[1]
    torch.testing.assert_close(official["rec_loss"], squared.mean() * scale)
    torch.testing.assert_close(masked["rec_loss"], squared[mask].mean() * scale)
    assert not torch.allclose(official["rec_loss"], masked["rec_loss"])


def test_unknown_kind_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'transformer_xl'.*aligner, decoder_only, linear"):
        build_aligner(AlignerConfig(kind="transformer_xl"), SOURCE_DIM, TARGET_DIM)


def test_full_size_aligner_has_the_official_parameter_counts(record_property) -> None:
    """Paper: "about 225M parameters". That is M, the part kept for generation (2048 -> 768);
    torchscale's sub-LN structure gives the official code's exact counts (shared/PAPER.md)."""
    counts = {}
    for layers in (12, 24):
        with torch.device("meta"):
            aligner = build_aligner(AlignerConfig(layers=layers), 2048, 768)
        counts[layers] = (
            sum(p.numel() for p in aligner.generation_parameters()),
            sum(p.numel() for p in aligner.n.parameters()),
        )
        assert sum(p.numel() for p in aligner.parameters()) == sum(counts[layers])
    record_property("aligner_m_parameters", counts[12][0])
    record_property("aligner_m_plus_n_parameters", sum(counts[12]))
    print(f"12-layer AlignerNet: M {counts[12][0]:,}, N {counts[12][1]:,}; 24-layer M+N {sum(counts[24]):,}")
    assert counts[12] == (225_461_760, 250_569_728)
    assert sum(counts[12]) == 476_031_488
    assert sum(counts[24]) == 873_351_680


def test_layers_are_pre_norm_with_sub_layernorms() -> None:
    """torchscale's sub-LN: a LayerNorm on the heads' output in self-attention only, one after
    the activation in every feed-forward network, and a final LayerNorm per stack."""
    aligner = small_aligner("aligner")
    for stack in (aligner.m["encoder"], aligner.m["decoder"], aligner.n["decoder"], aligner.n["encoder"]):
        assert isinstance(stack.layer_norm, torch.nn.LayerNorm)
        for layer in stack.layers:
            assert isinstance(layer.self_attn.inner_attn_ln, torch.nn.LayerNorm)
            assert layer.ffn.ffn_layernorm.normalized_shape == (SMALL.ffn,)
            if hasattr(layer, "encoder_attn"):
                assert layer.encoder_attn.inner_attn_ln is None
    decoder_only = small_aligner("decoder_only")
    assert set(decoder_only.m) == {"source_in", "decoder", "target_out"}
    assert not any("embed_positions" in name for name, _ in decoder_only.named_parameters())


@pytest.mark.parametrize("layers", [2, 12])
def test_sub_layernorm_init_scales_each_stack(layers: int) -> None:
    """fc1, fc2, out_proj and v_proj start scaled up from nn.Linear's init by the stack's
    sub-LN factor (torchscale architecture/{encoder,decoder}.py); q_proj and k_proj, and the
    decoders' cross-attention, are not. The spread of a layer's v_proj over its q_proj (same
    shape and init) estimates the factor."""
    torch.manual_seed(0)
    config = AlignerConfig(layers=layers, width=64, ffn=128, heads=4, max_source_len=16)
    aligner = build_aligner(config, SOURCE_DIM, TARGET_DIM, TARGET_LEN)
    scales = {
        "m.encoder": math.sqrt(math.log(3 * layers) * math.log(2 * layers) / 3),
        "m.decoder": math.sqrt(math.log(3 * layers)),
        "n.decoder": math.sqrt(math.log(3 * layers)),
        "n.encoder": math.sqrt(math.log(2 * layers)),
    }

    def spread(stack: torch.nn.ModuleList, attention: str, proj: str) -> float:
        weights = [getattr(getattr(layer, attention), proj).weight.detach().flatten() for layer in stack]
        return torch.cat(weights).std().item()

    for path, scale in scales.items():
        part, name = path.split(".")
        stack = getattr(aligner, part)[name].layers
        v_over_q = spread(stack, "self_attn", "v_proj") / spread(stack, "self_attn", "q_proj")
        out_over_k = spread(stack, "self_attn", "out_proj") / spread(stack, "self_attn", "k_proj")
        assert v_over_q == pytest.approx(scale, rel=0.05) and out_over_k == pytest.approx(scale, rel=0.05)
        if name == "decoder":
            cross = spread(stack, "encoder_attn", "v_proj") / spread(stack, "encoder_attn", "q_proj")
            assert cross == pytest.approx(1.0, rel=0.05)
        fc1 = torch.cat([layer.ffn.fc1.weight.detach().flatten() for layer in stack]).std().item()
        # nn.Linear's kaiming_uniform(a=sqrt(5)) has std 1/sqrt(3 fan_in).
        assert fc1 == pytest.approx(scale / math.sqrt(3 * 64), rel=0.05)


def test_positions_are_read_from_row_two() -> None:
    """(code) torchscale's PositionalEmbedding starts at 2 (fairseq): rows 0 and 1 are never read."""
    aligner = small_aligner("aligner")
    source, mask = padded_batch()
    with torch.no_grad():
        before = aligner(source, mask)
        aligner.m["encoder"].embed_positions.weight[:2] += 5.0
        unchanged = aligner(source, mask)
        aligner.m["encoder"].embed_positions.weight[2] += 5.0
        changed = aligner(source, mask)
    torch.testing.assert_close(unchanged, before)
    assert not torch.allclose(changed, before)
    limit = SMALL.max_source_len - 2
    with pytest.raises(ValueError, match=f"exceed the {limit} learned positions"):
        aligner(torch.randn(1, limit + 1, SOURCE_DIM), torch.ones(1, limit + 1, dtype=torch.bool))


@pytest.mark.parametrize("kind", ["aligner", "decoder_only"])
def test_attention_runs_on_scaled_dot_product_attention(kind: str, monkeypatch) -> None:
    """So that GPUs get the fused kernels; the key padding mask goes along as a bool mask."""
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        calls.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    aligner = small_aligner(kind)
    source, mask = padded_batch()
    alignment_losses(aligner, source, mask, torch.zeros(3, TARGET_LEN, TARGET_DIM))
    # Per layer: encoders one attention, decoders two; AlignerNet has two of each stack.
    assert len(calls) == (6 if kind == "aligner" else 4) * SMALL.layers
    masked = [m for m in calls if m is not None]
    # M's encoder self-attention and M's cross-attention see the padding; nothing else does.
    assert len(masked) == (2 if kind == "aligner" else 1) * SMALL.layers
    assert all(m.dtype == torch.bool and m.shape == (3, 1, 1, source.shape[1]) for m in masked)
    assert all(torch.equal(m[:, 0, 0], mask) for m in masked)
