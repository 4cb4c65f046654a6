"""A released checkpoint's `aligner.*` as models.aligner's AlignerNet, its sizes read off the
weights (models/aligner_official.py renames the keys)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from models.aligner import Aligner, build_aligner
from models.aligner_config import AlignerConfig
from models.aligner_official import official_state_dict_to_ours

# torchscale's EncoderDecoderConfig default, which the official Aligner keeps (unilm/models/aligner.py);
# the one size its weights do not tell.
OFFICIAL_ALIGNER_HEADS = 12


def official_aligner(aligner_keys: Mapping[str, Tensor], heads: int = OFFICIAL_ALIGNER_HEADS) -> Aligner:
    """AlignerNet in float32 with the file's M, and N when the file has it (stage 2; the final
    file's Aligner_encoder has M only, and the returned aligner then has n = None)."""
    mapped = {key: value.float() for key, value in official_state_dict_to_ours(aligner_keys).items()}
    if "m.source_in.weight" not in mapped:
        raise KeyError("no aligner.encoder_proj.embed_tokens.weight: the file holds no AlignerNet M")
    width, source_dim = mapped["m.source_in.weight"].shape
    layers = len({key.split(".")[3] for key in mapped if key.startswith("m.encoder.layers.")})
    config = AlignerConfig(
        kind="aligner", layers=layers, width=width, ffn=mapped["m.encoder.layers.0.ffn.fc1.weight"].shape[0],
        heads=heads, max_source_len=mapped["m.encoder.embed_positions.weight"].shape[0])
    aligner = build_aligner(config, source_dim, width, target_len=mapped["m.decoder.queries"].shape[0])
    if not any(key.startswith("n.") for key in mapped):
        aligner.n = None
    aligner.load_state_dict(mapped, strict=True)
    return aligner
