"""The analytic FLOP count against a hand count and against torch's own FLOP counter."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from experiments.config import AlignerConfig
from experiments.training import flops
from models import alignment_losses, build_aligner

# One layer per stack, width 4 = target dim (so M's output and N's input are Identity), ffn 8,
# source dim 6, 3 target queries, 5 source tokens.
SMALL = AlignerConfig(layers=1, width=4, ffn=8, heads=2, max_source_len=16)
S, T, TARGET_LEN, SOURCE_LEN = 6, 4, 3, 5


def test_aligner_forward_matches_a_hand_count():
    # 2 x tokens x in x out per matmul; attention: Q+O projections over the queries, K+V over
    # the keys, then QK^T and AV at 2 x queries x keys x width each.
    def attn(q, k):
        return 2 * q * 4 * 8 + 2 * k * 4 * 8 + 2 * 2 * q * k * 4

    ffn = lambda n: 2 * (2 * n * 4 * 8)  # noqa: E731
    m = (2 * 5 * 6 * 4) + (attn(5, 5) + ffn(5)) + (attn(3, 3) + attn(3, 5) + ffn(3))
    n = (attn(5, 5) + attn(5, 3) + ffn(5)) + (attn(5, 5) + ffn(5)) + (2 * 5 * 4 * 6)
    assert m + n == 7936
    assert flops.aligner_forward(SMALL, S, T, TARGET_LEN, SOURCE_LEN) == 7936


def test_aligner_forward_matches_torchs_flop_counter():
    for kind in ("aligner", "decoder_only", "linear"):
        cfg = AlignerConfig(kind=kind, layers=2, width=8, ffn=16, heads=2, max_source_len=16)
        aligner = build_aligner(cfg, source_dim=S, target_dim=12, target_len=TARGET_LEN).train()
        source, target = torch.randn(2, SOURCE_LEN, S), torch.randn(2, TARGET_LEN, 12)
        mask = torch.ones(2, SOURCE_LEN, dtype=torch.bool)
        # The math kernel runs attention as matmuls the counter sees; it has no formula for
        # the fused CPU kernel.
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            alignment_losses(aligner, source, mask, target)
        expected = 2 * flops.aligner_forward(cfg, S, 12, TARGET_LEN, SOURCE_LEN)
        assert counter.get_total_flops() == expected, kind


def test_a_step_is_three_trained_forwards_plus_the_frozen_ones():
    mllm, clip = flops.Stack(2, 8, 16), flops.Stack(1, 4, 8)
    trained = flops.aligner_forward(SMALL, S, T, TARGET_LEN, SOURCE_LEN)
    step = flops.align_step(SMALL, batch=2, source_len=SOURCE_LEN, source_dim=S, target_dim=T,
                            target_len=TARGET_LEN, mllm=mllm, clip=clip)
    assert step == 2 * (3 * trained + flops.encoder(mllm, SOURCE_LEN) + flops.encoder(clip, TARGET_LEN))
    cached = flops.align_step(SMALL, batch=2, source_len=SOURCE_LEN, source_dim=S, target_dim=T,
                              target_len=TARGET_LEN, mllm=None, clip=None)
    assert cached == 2 * 3 * trained


def test_peaks_are_known_for_the_cluster_gpus_only():
    assert flops.peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert flops.peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert flops.peak_flops("Tesla V100-SXM2-32GB", "bf16") is None  # no bf16 on V100
    assert flops.peak_flops("Some Laptop GPU", "bf16") is None
