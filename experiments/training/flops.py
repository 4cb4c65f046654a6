"""FLOP counts of the stage-2 and E2E steps, and the peak rates MFU is measured against.

Counts are matmul FLOPs (2 per multiply-add) of the shapes the hardware actually runs, padding
included; layer norms, softmax and activations are left out, as in the usual MFU accounting
(PaLM, appendix B). Transformers are counted analytically; the U-Net and VAE, a zoo of convolutions,
by torch's FLOP counter on shapes alone (meta tensors, no weights, no arithmetic). A trained part
costs 3x its forward (backward is about twice the forward); a frozen part costs its forward
once, or twice when gradient flows back through it to a trained part (the U-Net in E2E: its
backward computes input gradients, no weight gradients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from experiments.config import AlignerConfig, RunConfig, TrainConfig

TRAIN_FACTOR = 3  # forward + backward
THROUGH_FACTOR = 2  # a frozen part gradient passes through: forward + input gradients


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
    per_layer = attention(tokens, tokens, stack.width) + feed_forward(tokens, stack.width, stack.ffn)
    return stack.layers * per_layer


def query_decoder(stack: Stack, queries: int, memory: int) -> int:
    """Learned queries: self-attention, cross-attention to `memory` tokens, feed-forward."""
    per_layer = (
        attention(queries, queries, stack.width) + attention(queries, memory, stack.width)
        + feed_forward(queries, stack.width, stack.ffn)
    )
    return stack.layers * per_layer


def _projection(tokens: int, d_in: int, d_out: int) -> int:
    return 0 if d_in == d_out else linear(tokens, d_in, d_out)  # models.aligner uses Identity then


def m_forward(cfg: AlignerConfig, source_dim: int, target_dim: int, target_len: int, source_len: int) -> int:
    """One sample through M alone: what generation and the diffusion-loss recipes run."""
    if cfg.kind == "linear":
        return linear(source_len, source_dim, target_dim)
    stack = Stack(cfg.layers, cfg.width, cfg.ffn)
    total = linear(source_len, source_dim, cfg.width) + query_decoder(stack, target_len, source_len)
    total += _projection(target_len, cfg.width, target_dim)
    if cfg.kind == "aligner":
        total += encoder(stack, source_len)
    return total


def aligner_forward(
    cfg: AlignerConfig, source_dim: int, target_dim: int, target_len: int, source_len: int
) -> int:
    """One sample through M and N (models.aligner), source padded to `source_len` tokens."""
    total = m_forward(cfg, source_dim, target_dim, target_len, source_len)
    if cfg.kind == "linear":
        return total  # no N
    stack = Stack(cfg.layers, cfg.width, cfg.ffn)
    total += _projection(target_len, target_dim, cfg.width) + query_decoder(stack, source_len, target_len)
    total += linear(source_len, cfg.width, source_dim)
    if cfg.kind == "aligner":
        total += encoder(stack, source_len)
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


@dataclass(frozen=True)
class DecoderCost:
    """Forward FLOPs of one image through the frozen SD decoder's parts a training step runs."""

    unet: int  # one denoising prediction at the latent size, conditioned on target_len x T
    vae_encoder: int  # one training image to its latent


def decoder_cost(unet_class: type[Any], unet_config: Any, vae_class: type[Any], vae_config: Any,
                 resolution: int, target_len: int) -> DecoderCost:
    """Counted on meta tensors: the U-Net and VAE rebuilt from their configs (diffusers' classes and
    `.config`s) without weights, so even SD v1.5's cost nothing to count."""
    with torch.device("meta"):
        unet, vae = unet_class.from_config(unet_config), vae_class.from_config(vae_config)
        downsampling = 2 ** (len(vae.config.block_out_channels) - 1)
        latent = resolution // downsampling
        image = torch.empty(1, vae.config.in_channels, resolution, resolution)
        noisy = torch.empty(1, unet.config.in_channels, latent, latent)
        condition = torch.empty(1, target_len, unet.config.cross_attention_dim)
        timestep = torch.zeros(1, dtype=torch.long)
    with FlopCounterMode(display=False) as counted:
        unet(noisy, timestep, encoder_hidden_states=condition)
    unet_flops = counted.get_total_flops()
    with FlopCounterMode(display=False) as counted:
        vae.encode(image)
    return DecoderCost(unet=unet_flops, vae_encoder=counted.get_total_flops())


def e2e_step(
    cfg: AlignerConfig, *, batch: int, source_len: int, source_dim: int, target_dim: int,
    target_len: int, mllm: Stack, decoder: DecoderCost,
) -> int:
    """An E2E training step: M trained, the frozen MLLM's forward, each image through the VAE
    encoder and, with gradient back to M, the U-Net (the one null-condition row a step adds is
    left out: under a thousandth of a step)."""
    per_sample = TRAIN_FACTOR * m_forward(cfg, source_dim, target_dim, target_len, source_len)
    per_sample += encoder(mllm, source_len) + THROUGH_FACTOR * decoder.unet + decoder.vae_encoder
    return batch * per_sample


@dataclass(frozen=True)
class ModelSizes:
    """The sizes of the models around the aligner that a step's FLOPs depend on."""

    source_dim: int  # the MLLM's width
    target_dim: int  # the U-Net's condition width (CLIP text's)
    target_len: int  # the condition's length, 77
    mllm: Stack  # the MLLM's text model
    clip: Stack  # the CLIP text encoder, stage 2's target
    decoder: DecoderCost | None = None  # the recipes that train through the U-Net


def longest_source(train: TrainConfig) -> int:
    """The source length a large batch pads to: <s>, the longest caption the SentencePiece filter
    keeps, and </s> where it is appended. A rank's micro-batch of a hundred captions is padded to
    its longest, near this cap, so compute counted at it is at most a little over."""
    return 1 + train.max_caption_sp_tokens + int(train.append_eos)


def nominal_step_flops(config: RunConfig, sizes: ModelSizes) -> int:
    """One training step of an align or e2e run, its global batch padded to `longest_source`:
    what `compute/train_flops` is logged from and Table 2's E2E steps are matched with. A stage-2
    run with the encoder cache counts its encoders as free, as `align_step` does."""
    shapes = dict(
        batch=config.train.batch_size, source_len=longest_source(config.train), source_dim=sizes.source_dim,
        target_dim=sizes.target_dim, target_len=sizes.target_len,
    )
    if config.recipe == "e2e":
        if sizes.decoder is None:
            raise ValueError("an e2e step's FLOPs need the decoder's cost (ModelSizes.decoder)")
        return e2e_step(config.aligner, **shapes, mllm=sizes.mllm, decoder=sizes.decoder)
    if config.recipe == "align":
        encoded = not config.train.cache_encoder_outputs
        return align_step(config.aligner, **shapes, mllm=sizes.mllm if encoded else None,
                          clip=sizes.clip if encoded else None)
    raise ValueError(f"no FLOP count for a step of the {config.recipe} recipe")


def matched_steps(reference_steps: int, reference_step_flops: int, step_flops: int) -> int:
    """The steps that give a run of `step_flops` per step the training compute of the reference
    run (Table 2's E2E rows against the 12-layer AlignerNet: paper, section 4.3, "under the same
    GPU days"), to the nearest step."""
    return max(1, round(reference_steps * reference_step_flops / step_flops))


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
