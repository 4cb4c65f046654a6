"""AlignerNet and its ablations: map MLLM hidden states (space S) to U-Net conditions (space T).

Every kind has an M (S -> T, the only part kept for generation) and, except the linear one, an N
(T -> S) whose reconstruction loss keeps M from collapsing (shared/PAPER.md, Table 2).

The layers are torchscale's, as the official AlignerNet builds them (xichenpan/Kosmos-G,
unilm/models/aligner.py, from `EncoderDecoderConfig()` defaults in
torchscale/torchscale/architecture/config.py): pre-norm with sub-LN, GELU, dropout 0, no
embedding scale, a final LayerNorm per stack. Stack order: Encoder(Linear + learned positions) ->
M decoder (77 queries) -> N decoder (queries sliced from a bank) -> Encoder -> Linear. Module and
parameter names inside the stacks are torchscale's, so models.aligner_official maps an official
checkpoint onto these modules by prefix alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.aligner_config import ALIGNER_KINDS, AlignerConfig

# torchscale's PositionalEmbedding indexes its table from 2, fairseq's convention
# (torchscale/torchscale/component/embedding.py), whatever the padding.
POSITION_OFFSET = 2

# The parameters torchscale's sub-LN initialisation rescales, matched by substring on the name
# as torchscale/torchscale/architecture/{encoder,decoder}.py do (weights and biases alike).
_SUBLN_SCALED = ("fc1", "fc2", "out_proj", "v_proj")


class MultiheadAttention(nn.Module):
    """torchscale's attention (component/multihead_attention.py) on scaled_dot_product_attention.

    Sub-LN puts a LayerNorm (`inner_attn_ln`) on the heads' output before out_proj, in
    self-attention only; cross-attention has none.
    """

    def __init__(self, width: int, heads: int, self_attention: bool) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.heads = heads
        # nn.Linear's own init: torchscale's MultiheadAttention defines a xavier
        # reset_parameters but nothing calls it (Encoder/Decoder re-initialise only with
        # bert_init, off), so the official weights start as these do, before the sub-LN scale.
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)
        self.inner_attn_ln = nn.LayerNorm(width) if self_attention else None

    def forward(self, query: Tensor, key: Tensor, key_padding: Tensor | None = None) -> Tensor:
        """query (B, L_q, width), key = value (B, L_k, width); key_padding (B, L_k), True = pad."""
        batch, length, width = query.shape
        q = self._heads(self.q_proj(query))
        k, v = self._heads(self.k_proj(key)), self._heads(self.v_proj(key))
        # A boolean mask says where to attend; broadcast over heads and queries.
        mask = None if key_padding is None else ~key_padding[:, None, None, :]
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        attn = attn.transpose(1, 2).reshape(batch, length, width)
        if self.inner_attn_ln is not None:
            attn = self.inner_attn_ln(attn)
        return self.out_proj(attn)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, L, width) -> (B, heads, L, width / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class FeedForwardNetwork(nn.Module):
    """fc1 -> GELU (in fp32) -> ffn_layernorm (sub-LN) -> fc2 -> dropout
    (torchscale/torchscale/component/feedforward_network.py)."""

    def __init__(self, width: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, ffn)
        self.fc2 = nn.Linear(ffn, width)
        self.ffn_layernorm = nn.LayerNorm(ffn)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.fc1(x)
        hidden = F.gelu(hidden.float()).type_as(hidden)
        return self.dropout(self.fc2(self.ffn_layernorm(hidden)))


class EncoderLayer(nn.Module):
    """torchscale's pre-norm EncoderLayer: self-attention, then the feed-forward network."""

    def __init__(self, width: int, ffn: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(width, heads, self_attention=True)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.ffn = FeedForwardNetwork(width, ffn, dropout)
        self.final_layer_norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, padding: Tensor | None) -> Tensor:
        normed = self.self_attn_layer_norm(x)
        x = x + self.dropout(self.self_attn(normed, normed, padding))
        return x + self.ffn(self.final_layer_norm(x))


class DecoderLayer(nn.Module):
    """torchscale's pre-norm DecoderLayer with is_encoder_decoder=True and causal_mask=False:
    self-attention over the queries, cross-attention to a memory, feed-forward network."""

    def __init__(self, width: int, ffn: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(width, heads, self_attention=True)
        self.self_attn_layer_norm = nn.LayerNorm(width)
        self.encoder_attn = MultiheadAttention(width, heads, self_attention=False)
        self.encoder_attn_layer_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.ffn = FeedForwardNetwork(width, ffn, dropout)
        self.final_layer_norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, memory: Tensor, memory_padding: Tensor | None) -> Tensor:
        normed = self.self_attn_layer_norm(x)
        x = x + self.dropout(self.self_attn(normed, normed))
        x = x + self.dropout(self.encoder_attn(self.encoder_attn_layer_norm(x), memory, memory_padding))
        return x + self.ffn(self.final_layer_norm(x))


def _scale_subln(layers: nn.ModuleList, scale: float, skip: str | None = None) -> None:
    """Sub-LN init: multiply fc1, fc2, out_proj and v_proj (weights and biases) by `scale`,
    leaving out parameters whose name holds `skip` (the decoders' encoder_attn)."""
    with torch.no_grad():
        for name, param in layers.named_parameters():
            if skip is not None and skip in name:
                continue
            if any(part in name for part in _SUBLN_SCALED):
                param.mul_(scale)


class _Encoder(nn.Module):
    """torchscale's Encoder after its token embedding: learned positions, layers, final LayerNorm.

    `subln_scale` is the encoder's sub-LN factor: sqrt(log(3L) * log(2L) / 3) for the input
    encoder (is_encoder_decoder=True), sqrt(log(2L)) for the output one (architecture/encoder.py).
    """

    def __init__(
        self, layers: int, width: int, ffn: int, heads: int, max_len: int, dropout: float, subln_scale: float
    ) -> None:
        super().__init__()
        # nn.Embedding's N(0, 1) init and no padding_idx, as PositionalEmbedding(32768, 768).
        self.embed_positions = nn.Embedding(max_len, width)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(width, ffn, heads, dropout) for _ in range(layers))
        self.layer_norm = nn.LayerNorm(width)
        _scale_subln(self.layers, subln_scale)

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        """x: (B, L, width), already embedded; padding: (B, L) bool, True = pad."""
        length = x.shape[1]
        rows = self.embed_positions.num_embeddings
        if length + POSITION_OFFSET > rows:
            raise ValueError(f"{length} tokens exceed the {rows - POSITION_OFFSET} learned positions")
        positions = torch.arange(POSITION_OFFSET, length + POSITION_OFFSET, device=x.device)
        x = self.dropout(x + self.embed_positions(positions))
        if padding is not None:
            # torchscale zeroes padded inputs (after the positions), so what the padding holds
            # never reaches a real token, even through the padded rows' own outputs.
            x = x * (~padding).unsqueeze(-1).to(x.dtype)
        for layer in self.layers:
            x = layer(x, padding)
        return self.layer_norm(x)


class _QueryDecoder(nn.Module):
    """Learned queries through torchscale's Decoder (is_encoder_decoder=True, causal_mask=False),
    with its final LayerNorm; sub-LN factor sqrt(log(3L)), encoder_attn left out
    (architecture/decoder.py)."""

    def __init__(self, queries: int, layers: int, width: int, ffn: int, heads: int, dropout: float) -> None:
        super().__init__()
        # (code) torch.randn: unit-variance rows (unilm/models/aligner.py).
        self.queries = nn.Parameter(torch.randn(queries, width))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(DecoderLayer(width, ffn, heads, dropout) for _ in range(layers))
        self.layer_norm = nn.LayerNorm(width)
        _scale_subln(self.layers, math.sqrt(math.log(3 * layers)), skip="encoder_attn")

    def forward(self, memory: Tensor, padding: Tensor | None, length: int) -> Tensor:
        """Run the first `length` queries against memory (B, L_m, width) -> (B, length, width)."""
        if length > self.queries.shape[0]:
            raise ValueError(f"{length} queries asked of a bank of {self.queries.shape[0]}")
        x = self.dropout(self.queries[:length].unsqueeze(0).expand(memory.shape[0], -1, -1))
        for layer in self.layers:
            x = layer(x, memory, padding)
        return self.layer_norm(x)


def _project(in_dim: int, out_dim: int) -> nn.Module:
    # The official aligner has no projection on the 768-wide CLIP side (width = target dim).
    return nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)


class Aligner(nn.Module):
    """Common interface. Subclasses put M's modules in `self.m` and N's in `self.n` (or None)."""

    m: nn.Module
    n: nn.Module | None
    build_arguments: dict[str, Any]  # the config's fields and the shapes build_aligner built it with

    def __init__(self, target_len: int) -> None:
        super().__init__()
        self.target_len = target_len

    def forward(self, source: Tensor, source_mask: Tensor) -> Tensor:
        """M: source (B, l_s, S) + bool mask (True = real) -> condition (B, target_len, T)."""
        raise NotImplementedError

    def reconstruct(self, condition: Tensor, source_len: int) -> Tensor | None:
        """N: condition (B, target_len, T) -> (B, source_len, S); None for kinds without N."""
        return None

    def generation_parameters(self) -> Iterator[nn.Parameter]:
        """M's parameters: what generation keeps, and what the paper's ~225M counts."""
        return self.m.parameters()


class AlignerNet(Aligner):
    """The paper's AlignerNet: encoder + query decoder each way (unilm/models/aligner.py:
    encoder_proj, encoder_query + encoder = M; decoder_query + decoder, decoder_proj = N)."""

    m: nn.ModuleDict
    n: nn.ModuleDict

    def __init__(
        self, source_dim: int, target_dim: int, target_len: int, layers: int, width: int, ffn: int,
        heads: int, max_source_len: int, dropout: float,
    ) -> None:
        super().__init__(target_len)
        stack: dict[str, Any] = dict(layers=layers, width=width, ffn=ffn, heads=heads, dropout=dropout)
        input_scale = math.sqrt(math.log(3 * layers) * math.log(2 * layers) / 3)
        output_scale = math.sqrt(math.log(2 * layers))
        self.m = nn.ModuleDict(
            {
                "source_in": nn.Linear(source_dim, width),
                "encoder": _Encoder(max_len=max_source_len, subln_scale=input_scale, **stack),
                "decoder": _QueryDecoder(target_len, **stack),
                "target_out": _project(width, target_dim),
            }
        )
        self.n = nn.ModuleDict(
            {
                "target_in": _project(target_dim, width),
                "decoder": _QueryDecoder(max_source_len, **stack),
                "encoder": _Encoder(max_len=max_source_len, subln_scale=output_scale, **stack),
                "source_out": nn.Linear(width, source_dim),
            }
        )

    def forward(self, source: Tensor, source_mask: Tensor) -> Tensor:
        padding = ~source_mask.bool()
        hidden = self.m["encoder"](self.m["source_in"](source), padding)
        return self.m["target_out"](self.m["decoder"](hidden, padding, self.target_len))

    def reconstruct(self, condition: Tensor, source_len: int) -> Tensor:
        # (code) N sees no mask: its queries and encoder run over every position, padding too.
        hidden = self.n["decoder"](self.n["target_in"](condition), None, source_len)
        return self.n["source_out"](self.n["encoder"](hidden))


class DecoderOnlyAligner(Aligner):
    """Table 2's "12-Layers Decoder": AlignerNet without its encoders. There is no official
    one; this keeps AlignerNet's pieces (the same query decoders, input and output Linear) and
    drops the Encoders with their learned positions, so M's queries cross-attend to the
    projected MLLM states directly."""

    m: nn.ModuleDict
    n: nn.ModuleDict

    def __init__(
        self, source_dim: int, target_dim: int, target_len: int, layers: int, width: int, ffn: int,
        heads: int, max_source_len: int, dropout: float,
    ) -> None:
        super().__init__(target_len)
        stack: dict[str, Any] = dict(layers=layers, width=width, ffn=ffn, heads=heads, dropout=dropout)
        self.m = nn.ModuleDict(
            {
                "source_in": nn.Linear(source_dim, width),
                "decoder": _QueryDecoder(target_len, **stack),
                "target_out": _project(width, target_dim),
            }
        )
        self.n = nn.ModuleDict(
            {
                "target_in": _project(target_dim, width),
                "decoder": _QueryDecoder(max_source_len, **stack),
                "source_out": nn.Linear(width, source_dim),
            }
        )

    def forward(self, source: Tensor, source_mask: Tensor) -> Tensor:
        memory = self.m["source_in"](source)
        hidden = self.m["decoder"](memory, ~source_mask.bool(), self.target_len)
        return self.m["target_out"](hidden)

    def reconstruct(self, condition: Tensor, source_len: int) -> Tensor:
        hidden = self.n["decoder"](self.n["target_in"](condition), None, source_len)
        return self.n["source_out"](hidden)


class LinearAligner(Aligner):
    """Table 2's "E2E w/o AlignerNet": one per-token projection, fitted to the U-Net's 77 slots."""

    def __init__(self, source_dim: int, target_dim: int, target_len: int) -> None:
        super().__init__(target_len)
        self.m = nn.Linear(source_dim, target_dim)
        self.n = None

    def forward(self, source: Tensor, source_mask: Tensor) -> Tensor:
        # Padded tokens are zeroed: the U-Net attends to all 77 slots, so they must carry nothing
        # that depends on what the padding happened to contain.
        projected = self.m(source) * source_mask.unsqueeze(-1).to(source.dtype)
        projected = projected[:, : self.target_len]
        return F.pad(projected, (0, 0, 0, self.target_len - projected.shape[1]))


def build_aligner(config: AlignerConfig, source_dim: int, target_dim: int, target_len: int = 77) -> Aligner:
    """`config`'s aligner from the MLLM's width (`source_dim`) to the U-Net's conditions
    (`target_len` x `target_dim`). A source may have at most config.max_source_len - 2 tokens
    (positions start at 2)."""
    sizes: dict[str, Any] = dict(
        source_dim=source_dim, target_dim=target_dim, target_len=target_len, layers=config.layers,
        width=config.width, ffn=config.ffn, heads=config.heads, max_source_len=config.max_source_len,
        dropout=config.dropout,
    )
    aligner: Aligner
    if config.kind == "linear":
        aligner = LinearAligner(source_dim, target_dim, target_len)
    elif config.kind == "aligner":
        aligner = AlignerNet(**sizes)
    elif config.kind == "decoder_only":
        aligner = DecoderOnlyAligner(**sizes)
    else:
        raise ValueError(f"unknown aligner kind {config.kind!r}; valid kinds: {', '.join(ALIGNER_KINDS)}")
    # What a saved model records to build the same aligner again (KosmosGConditioner.save_pretrained).
    aligner.build_arguments = {"kind": config.kind, **sizes}
    return aligner


def rebuilt_aligner(build_arguments: dict[str, Any]) -> Aligner:
    """The aligner an `Aligner.build_arguments` record (a saved conditioner's config.json) describes."""
    shape = {key: build_arguments[key] for key in ("source_dim", "target_dim", "target_len")}
    config = AlignerConfig(**{key: value for key, value in build_arguments.items() if key not in shape})
    return build_aligner(config, **shape)


def alignment_losses(
    aligner: Aligner, source: Tensor, source_mask: Tensor, target: Tensor, *, rec_mask_padding: bool = False
) -> dict[str, Tensor]:
    """Stage-2 losses: L_mse = ||t - M(s)||^2 and L_rec = ||s - N(M(s))||^2.

    (code) L_rec is an MSE over every position, padding included, scaled by target_len / l_s,
    l_s being the padded source length (unilm/models/aligner.py; the paper gives no reason).
    `rec_mask_padding=True` averages it over the real tokens only instead.
    """
    condition = aligner(source, source_mask)
    mse_loss = F.mse_loss(condition.float(), target.float())
    reconstruction = aligner.reconstruct(condition, source.shape[1])
    if reconstruction is None:
        rec_loss = torch.zeros((), device=source.device)
    else:
        scale = condition.shape[1] / source.shape[1]
        if rec_mask_padding:
            per_token = (reconstruction.float() - source.float()).pow(2).mean(-1)
            rec_loss = per_token[source_mask.bool()].mean() * scale
        else:
            rec_loss = F.mse_loss(reconstruction.float(), source.float()) * scale
    return {"mse_loss": mse_loss, "rec_loss": rec_loss, "condition": condition}
