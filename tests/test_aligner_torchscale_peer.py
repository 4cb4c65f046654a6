"""models.aligner against torchscale itself: the official AlignerNet rebuilt from PyPI
torchscale==0.3.0 (the `test` extra), weights copied through models.aligner_official.

The official modules are built with unilm/models/aligner.py's constructor arguments
(xichenpan/Kosmos-G) at a small size. Two things differ in 0.3.0 from the vendored copy and are
bridged here: tensors are batch-first (the vendored code is time-first, hence its transposes),
and Decoder has no `causal_mask` argument, so `_decoder` runs its layers the way the vendored
Decoder.forward does with causal_mask=False.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("torchscale", reason="torchscale==0.3.0 (the test extra) is not installed")

from torchscale.architecture.config import EncoderDecoderConfig  # noqa: E402
from torchscale.architecture.decoder import Decoder  # noqa: E402
from torchscale.architecture.encoder import Encoder  # noqa: E402
from torchscale.component.embedding import PositionalEmbedding  # noqa: E402

from models.aligner import alignment_losses, build_aligner  # noqa: E402
from models.aligner_config import AlignerConfig  # noqa: E402
from models.aligner_official import official_state_dict_to_ours  # noqa: E402

SOURCE_DIM, TARGET_LEN = 24, 7


class OfficialAligner(nn.Module):
    """unilm/models/aligner.py's Aligner without its CLIP encoder; 768 -> `width`, 32768 ->
    `max_len`, the module names (hence the state-dict keys) unchanged."""

    def __init__(self, source_dim: int, target_len: int, layers: int, width: int, ffn: int, heads: int,
                 max_len: int) -> None:
        super().__init__()
        cfg = EncoderDecoderConfig(
            checkpoint_activations=False, flash_attention=False,
            encoder_embed_dim=width, encoder_ffn_embed_dim=ffn, encoder_attention_heads=heads,
            encoder_layers=layers, decoder_embed_dim=width, decoder_ffn_embed_dim=ffn,
            decoder_attention_heads=heads, decoder_layers=layers,
        )
        self.encoder_proj = Encoder(
            cfg,
            embed_tokens=nn.Linear(source_dim, width),
            embed_positions=PositionalEmbedding(max_len, width),
            is_encoder_decoder=True,
        )
        self.encoder_query = nn.Parameter(torch.randn(target_len, width))
        self.encoder = Decoder(cfg, is_encoder_decoder=True)
        self.decoder_query = nn.Parameter(torch.randn(max_len, width))
        self.decoder = Decoder(cfg, is_encoder_decoder=True)
        self.decoder_proj = Encoder(
            cfg, embed_positions=PositionalEmbedding(max_len, width),
            output_projection=nn.Linear(width, source_dim),
        )

    def condition(self, source: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder_proj(src_tokens=source, encoder_padding_mask=padding)
        queries = self.encoder_query.unsqueeze(0).expand(source.shape[0], -1, -1)
        return _decoder(self.encoder, queries, encoded["encoder_out"], encoded["encoder_padding_mask"])

    def reconstruct(self, condition: torch.Tensor, source_len: int) -> torch.Tensor:
        queries = self.decoder_query[:source_len].unsqueeze(0).expand(condition.shape[0], -1, -1)
        hidden = _decoder(self.decoder, queries, condition, None)
        return self.decoder_proj(src_tokens=None, token_embeddings=hidden)["encoder_out"]

    def losses(self, source: torch.Tensor, padding: torch.Tensor,
               target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official forward's two losses (its 77 is the target length)."""
        condition = self.condition(source, padding)
        mse_loss = F.mse_loss(condition.float(), target.float(), reduction="mean")
        reconstruction = self.reconstruct(condition, source.shape[1])
        rec_loss = F.mse_loss(reconstruction.float(), source.float(), reduction="mean") * (
            TARGET_LEN / source.shape[1])
        return {"mse_loss": mse_loss, "rec_loss": rec_loss, "condition": condition,
                "reconstruction": reconstruction}


def _decoder(decoder: Decoder, queries: torch.Tensor, memory: torch.Tensor,
             memory_padding: torch.Tensor | None) -> torch.Tensor:
    """The vendored Decoder.forward with token_embeddings=queries and causal_mask=False: no
    positions, embed_scale and dropout on the queries, its layers unmasked, its final LayerNorm
    (torchscale/torchscale/architecture/decoder.py in xichenpan/Kosmos-G)."""
    x = decoder.dropout_module(decoder.embed_scale * queries)
    for layer in decoder.layers:
        x = layer(x, memory, memory_padding, None, self_attn_mask=None)[0]
    return decoder.layer_norm(x)


SMALL = dict(target_len=TARGET_LEN, layers=2, width=32, ffn=64, heads=4)
MAX_LEN = 40


def _config(sizes: dict, max_len: int) -> AlignerConfig:
    """Our config for the official aligner of these keyword arguments."""
    return AlignerConfig(max_source_len=max_len, **{k: v for k, v in sizes.items() if k != "target_len"})


def pair(seed: int = 0):
    """An official aligner and ours holding the same weights."""
    torch.manual_seed(seed)
    official = OfficialAligner(SOURCE_DIM, max_len=MAX_LEN, **SMALL)
    ours = build_aligner(_config(SMALL, MAX_LEN), SOURCE_DIM, SMALL["width"], TARGET_LEN)
    ours.load_state_dict(official_state_dict_to_ours(official.state_dict()))  # strict: every key
    return official, ours


def padded_batch(seed: int = 0):
    """Padding that holds garbage, as the MLLM's states at pad tokens do."""
    generator = torch.Generator().manual_seed(seed)
    source = torch.randn(3, 9, SOURCE_DIM, generator=generator)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 2:] = False
    source[~mask] = 10 * torch.randn(int((~mask).sum()), SOURCE_DIM, generator=generator)
    target = torch.randn(3, TARGET_LEN, SMALL["width"], generator=generator)
    return source, mask, target


def test_same_condition_reconstruction_losses_and_gradients_on_a_padded_batch() -> None:
    official, ours = pair()
    source, mask, target = padded_batch()
    theirs = official.losses(source, ~mask, target)
    mine = alignment_losses(ours, source, mask, target)
    torch.testing.assert_close(mine["condition"], theirs["condition"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.reconstruct(mine["condition"], source.shape[1]), theirs["reconstruction"],
                               atol=1e-5, rtol=1e-4)
    for name in ("mse_loss", "rec_loss"):
        torch.testing.assert_close(mine[name], theirs[name], atol=1e-6, rtol=1e-5)
    # Not vacuous: the padding's garbage does reach the official L_rec.
    masked = alignment_losses(ours, source, mask, target, rec_mask_padding=True)
    assert theirs["rec_loss"] > 2 * masked["rec_loss"]

    (theirs["mse_loss"] + theirs["rec_loss"]).backward()
    (mine["mse_loss"] + mine["rec_loss"]).backward()
    official_grads = official_state_dict_to_ours({k: p.grad for k, p in official.named_parameters()})
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, official_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_same_initialisation_as_torchscale() -> None:
    """Per parameter, the same distribution: the sub-LN scale of each stack, nn.Linear's own
    init for the attention projections (torchscale never calls their xavier reset_parameters),
    unit-normal queries and positions, LayerNorms at one and zero."""
    sizes = dict(target_len=TARGET_LEN, layers=3, width=64, ffn=128, heads=4)
    torch.manual_seed(0)
    official = official_state_dict_to_ours(OfficialAligner(64, max_len=64, **sizes).state_dict())
    torch.manual_seed(1)
    ours = build_aligner(_config(sizes, 64), 64, sizes["width"], TARGET_LEN).state_dict()
    assert official.keys() == ours.keys()
    compared = 0
    for name, mine in ours.items():
        theirs = official[name]
        assert mine.shape == theirs.shape, name
        if "layer_norm" in name or "_ln" in name or "layernorm" in name:
            torch.testing.assert_close(mine, theirs, msg=name)
        elif mine.numel() >= 2048:
            # The stds of two samples of >= 2048 draws agree to about 1%; the sub-LN scales
            # (3 layers: M's encoder 1.15, N's encoder 1.34, the decoders 1.48) and xavier
            # against nn.Linear's init (x1.22 here) differ by 10% or more.
            assert mine.std() / theirs.std() == pytest.approx(1.0, abs=0.06), name
            compared += 1
    assert compared > 50


def test_full_size_parameter_count_equals_the_official() -> None:
    with torch.device("meta"):
        official = OfficialAligner(2048, 77, layers=12, width=768, ffn=3072, heads=12, max_len=32768)
        ours = build_aligner(AlignerConfig(), 2048, 768)
    mapped = official_state_dict_to_ours(official.state_dict())
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in official.parameters())


def test_an_m_only_checkpoint_inside_a_whole_model_loads_onto_m() -> None:
    """Stage 3 keeps Aligner_encoder (encoder_proj, encoder_query, encoder) under "aligner." in
    KosmosGmodel's state dict, beside the MLLM's keys and CLIP's."""
    official, ours = pair()
    whole = {f"aligner.{k}": v for k, v in official.state_dict().items()
             if not k.startswith(("decoder", "decoder_query"))}
    whole["gpt_model.decoder.embed_tokens.weight"] = torch.zeros(5, 3)
    whole["aligner.clip_encoder.text_model.final_layer_norm.weight"] = torch.zeros(3)
    _, fresh = pair(seed=1)
    missing, unexpected = fresh.load_state_dict(official_state_dict_to_ours(whole), strict=False)
    assert not unexpected and missing and all(key.startswith("n.") for key in missing)
    source, mask, _ = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(fresh(source, mask), ours(source, mask))
    with pytest.raises(KeyError, match="encoder_extra"):
        official_state_dict_to_ours({"encoder_extra.weight": torch.zeros(1)})
