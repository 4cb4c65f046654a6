"""Analytic FLOP counts of the stage-2 step, and the peak rates MFU is measured against.

Counts are matmul FLOPs (2 per multiply-add) of the shapes the hardware actually runs, padding
included; layer norms, softmax and activations are left out, as in the usual MFU accounting
(PaLM, appendix B). A trained part costs 3x its forward (backward is about twice the forward);
a frozen part costs its forward once.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import AlignerConfig

TRAIN_FACTOR = 3  # forward + backward


@dataclass(frozen=True)
class Stack:
    """The sizes of a pre-norm Transformer stack (encoder, decoder-only LM alike)."""

    layers: int
    width: int
    ffn: int


def linear(tokens: int, d_in: int, d_out: int) -> int:
    return 2 * tokens * d_in * d_out


def attention(queries: int, keys: int, width: int) -> int:
    """Q, K, V and output projections plus the two (queries x keys) products; heads only split
    the width, so they do not change the count."""
    projections = linear(queries, width, 2 * width) + linear(keys, width, 2 * width)
    return projections + 2 * (2 * queries * keys * width)


def feed_forward(tokens: int, width: int, hidden: int) -> int:
    return linear(tokens, width, hidden) + linear(tokens, hidden, width)


def encoder(stack: Stack, tokens: int) -> int:
    """Self-attention layers; also a decoder-only LM's forward (the causal mask saves no work in
    the dense kernels the count describes)."""
    return stack.layers * (attention(tokens, tokens, stack.width) + feed_forward(tokens, stack.width, stack.ffn))


def query_decoder(stack: Stack, queries: int, memory: int) -> int:
    """Learned queries: self-attention, cross-attention to `memory` tokens, feed-forward."""
    per_layer = (
        attention(queries, queries, stack.width) + attention(queries, memory, stack.width)
        + feed_forward(queries, stack.width, stack.ffn)
    )
    return stack.layers * per_layer


def _projection(tokens: int, d_in: int, d_out: int) -> int:
    return 0 if d_in == d_out else linear(tokens, d_in, d_out)  # models.aligner uses Identity then


def aligner_forward(
    cfg: AlignerConfig, source_dim: int, target_dim: int, target_len: int, source_len: int
) -> int:
    """One sample through M and N (models.aligner), source padded to `source_len` tokens."""
    if cfg.kind == "linear":
        return linear(source_len, source_dim, target_dim)
    stack = Stack(cfg.layers, cfg.width, cfg.ffn)
    m_in = linear(source_len, source_dim, cfg.width)
    m_out = _projection(target_len, cfg.width, target_dim)
    n_in = _projection(target_len, target_dim, cfg.width)
    n_out = linear(source_len, cfg.width, source_dim)
    m_decoder = query_decoder(stack, target_len, source_len)
    n_decoder = query_decoder(stack, source_len, target_len)
    total = m_in + m_decoder + m_out + n_in + n_decoder + n_out
    if cfg.kind == "aligner":
        total += 2 * encoder(stack, source_len)  # M's and N's encoders
    return total


def align_step(
    cfg: AlignerConfig, *, batch: int, source_len: int, source_dim: int, target_dim: int,
    target_len: int, mllm: Stack | None, clip: Stack | None,
) -> int:
    """A stage-2 training step: the aligner trained, plus the frozen encoders' forwards (pass
    None for an encoder whose outputs came from the cache)."""
    per_sample = TRAIN_FACTOR * aligner_forward(cfg, source_dim, target_dim, target_len, source_len)
    if mllm is not None:
        per_sample += encoder(mllm, source_len)
    if clip is not None:
        per_sample += encoder(clip, target_len)
    return batch * per_sample


# Dense peak FLOP/s by GPU and by the precision the loop autocasts to ("no" = fp32 without
# TF32, torch's default), from NVIDIA's data sheets. More specific names come first.
_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "no": 51e12}),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "no": 67e12}),
    ("H200", {"bf16": 989e12, "fp16": 989e12, "no": 67e12}),
    ("A100", {"bf16": 312e12, "fp16": 312e12, "no": 19.5e12}),
    ("V100", {"fp16": 125e12, "no": 15.7e12}),
)


def peak_flops(device_name: str, precision: str) -> float | None:
    """None for a device (or a precision on it) with no known peak: then no MFU is logged."""
    for marker, peaks in _PEAKS:
        if marker in device_name:
            return peaks.get(precision)
    return None
