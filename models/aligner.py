"""AlignerNet and its ablations: map MLLM hidden states (space S) to U-Net conditions (space T).

Every kind has an M (S -> T, the only part kept for generation) and, except the linear one, an N
(T -> S) whose reconstruction loss keeps M from collapsing (shared/PAPER.md, Table 2). The stack
order follows the official code (unilm/models/aligner.py): Encoder(Linear + learned positions) ->
M decoder (77 queries) -> N decoder (queries sliced from a bank) -> Encoder -> Linear. Layers are
pre-norm, GELU, dropout 0, non-causal, as in its torchscale configuration.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ALIGNER_KINDS = ("aligner", "decoder_only", "linear")


class _Encoder(nn.Module):
    """Learned absolute positions + a pre-norm Transformer encoder with a final LayerNorm."""

    def __init__(self, layers: int, width: int, ffn: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.positions = nn.Embedding(max_len, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # Nested tensors are unavailable with norm_first anyway; asking for them only warns.
        self.stack = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        """x: (B, L, width); padding: (B, L) bool, True = pad (PyTorch's convention)."""
        positions = self.positions(torch.arange(x.shape[1], device=x.device))
        return self.stack(x + positions, src_key_padding_mask=padding)


class _QueryDecoder(nn.Module):
    """Learned queries that cross-attend to a memory (non-causal), pre-norm, final LayerNorm."""

    def __init__(self, queries: int, layers: int, width: int, ffn: int, heads: int, dropout: float) -> None:
        super().__init__()
        # (code) queries start as torch.randn, i.e. unit-variance rows.
        self.queries = nn.Parameter(torch.randn(queries, width))
        layer = nn.TransformerDecoderLayer(
            width, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.stack = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width))

    def forward(self, memory: Tensor, padding: Tensor | None, length: int) -> Tensor:
        """Run the first `length` queries against memory (B, L_m, width) -> (B, length, width)."""
        if length > self.queries.shape[0]:
            raise ValueError(f"{length} queries asked of a bank of {self.queries.shape[0]}")
        queries = self.queries[:length].unsqueeze(0).expand(memory.shape[0], -1, -1)
        return self.stack(queries, memory, memory_key_padding_mask=padding)


def _project(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Identity() if in_dim == out_dim else nn.Linear(in_dim, out_dim)


class Aligner(nn.Module):
    """Common interface. Subclasses put M's modules in `self.m` and N's in `self.n` (or None)."""

    m: nn.Module
    n: nn.Module | None

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
    """The paper's AlignerNet: encoder + query decoder each way."""

    def __init__(
        self, source_dim: int, target_dim: int, target_len: int, layers: int, width: int, ffn: int,
        heads: int, max_source_len: int, dropout: float,
    ) -> None:
        super().__init__(target_len)
        stack = dict(layers=layers, width=width, ffn=ffn, heads=heads, dropout=dropout)
        self.m = nn.ModuleDict(
            {
                "source_in": nn.Linear(source_dim, width),
                "encoder": _Encoder(max_len=max_source_len, **stack),
                "decoder": _QueryDecoder(target_len, **stack),
                "target_out": _project(width, target_dim),
            }
        )
        self.n = nn.ModuleDict(
            {
                "target_in": _project(target_dim, width),
                "decoder": _QueryDecoder(max_source_len, **stack),
                "encoder": _Encoder(max_len=max_source_len, **stack),
                "source_out": nn.Linear(width, source_dim),
            }
        )

    def forward(self, source: Tensor, source_mask: Tensor) -> Tensor:
        padding = ~source_mask.bool()
        hidden = self.m["encoder"](self.m["source_in"](source), padding)
        return self.m["target_out"](self.m["decoder"](hidden, padding, self.target_len))

    def reconstruct(self, condition: Tensor, source_len: int) -> Tensor:
        hidden = self.n["decoder"](self.n["target_in"](condition), None, source_len)
        return self.n["source_out"](self.n["encoder"](hidden))


class DecoderOnlyAligner(Aligner):
    """Table 2's "12-Layers Decoder": queries cross-attend to the projected MLLM output directly."""

    def __init__(
        self, source_dim: int, target_dim: int, target_len: int, layers: int, width: int, ffn: int,
        heads: int, max_source_len: int, dropout: float,
    ) -> None:
        super().__init__(target_len)
        stack = dict(layers=layers, width=width, ffn=ffn, heads=heads, dropout=dropout)
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


def build_aligner(
    kind: str,
    source_dim: int,
    target_dim: int,
    target_len: int = 77,
    layers: int = 12,
    width: int = 768,
    ffn: int = 3072,
    heads: int = 12,
    max_source_len: int = 32768,
    dropout: float = 0.0,
) -> Aligner:
    """One of ALIGNER_KINDS; defaults are the paper's 12-layer AlignerNet (32768 rows: code)."""
    if kind == "linear":
        return LinearAligner(source_dim, target_dim, target_len)
    sizes = dict(
        source_dim=source_dim, target_dim=target_dim, target_len=target_len, layers=layers, width=width,
        ffn=ffn, heads=heads, max_source_len=max_source_len, dropout=dropout,
    )
    if kind == "aligner":
        return AlignerNet(**sizes)
    if kind == "decoder_only":
        return DecoderOnlyAligner(**sizes)
    raise ValueError(f"unknown aligner kind {kind!r}; valid kinds: {', '.join(ALIGNER_KINDS)}")


def alignment_losses(
    aligner: Aligner, source: Tensor, source_mask: Tensor, target: Tensor
) -> dict[str, Tensor]:
    """Stage-2 losses: L_mse = ||t - M(s)||^2 and L_rec = ||s - N(M(s))||^2 over real tokens.

    (code) L_rec is scaled by target_len / l_s, l_s being the padded source length, as the
    official implementation does (the paper gives no reason).
    """
    condition = aligner(source, source_mask)
    mse_loss = F.mse_loss(condition.float(), target.float())
    reconstruction = aligner.reconstruct(condition, source.shape[1])
    if reconstruction is None:
        rec_loss = torch.zeros((), device=source.device)
    else:
        per_token = (reconstruction.float() - source.float()).pow(2).mean(-1)
        real = source_mask.bool()
        rec_loss = per_token[real].mean() * (condition.shape[1] / source.shape[1])
    return {"mse_loss": mse_loss, "rec_loss": rec_loss, "condition": condition}
