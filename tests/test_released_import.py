"""Kosmos-G's released stage-1 checkpoint imported as a transformers Kosmos-2 folder: proved on
a tiny model built under the official names (torchscale's Decoder, an open_clip-style ViT, the
XConnector) and saved as fairseq saves it, without the released files or a network."""

from __future__ import annotations

import re
from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image

from experiments.fixtures.kosmos_g_official import OfficialKosmosGMLLM, save_fairseq_checkpoint, scramble
from experiments.fixtures.xlmr_tokenizer import train_sentencepiece
from experiments.released.import_stage1 import import_stage1
from experiments.released.official_dictionary import SPM_CONTROLS, official_vocabulary_size
from models.mllm import MLLMEncoder
from repro.cli import main as repro_main

HEADS = 2


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory) -> tuple[Path, Path]:
    """(sentencepiece.bpe.model, dict.txt): the dictionary lists the pieces in the model's order;
    a unigram model, as the released one is."""
    import sentencepiece

    folder = tmp_path_factory.mktemp("vocabulary")
    spm_file = train_sentencepiece(folder / "sentencepiece.bpe.model", model_type="unigram")
    model = sentencepiece.SentencePieceProcessor(model_file=str(spm_file))
    pieces = [model.id_to_piece(i) for i in range(SPM_CONTROLS, model.get_piece_size())]
    (folder / "dict.txt").write_text("".join(f"{piece} {1000 - i}\n" for i, piece in enumerate(pieces)))
    return spm_file, folder / "dict.txt"


@pytest.fixture(scope="module")
def reference(vocabulary) -> OfficialKosmosGMLLM:
    rows = official_vocabulary_size(*vocabulary)
    model = OfficialKosmosGMLLM(vocabulary=rows, width=32, layers=2, heads=HEADS, ffn=64, vision_width=128,
                                vision_layers=2, vision_heads=2, image_size=28, patch=14, queries=4)
    return scramble(model, seed=0).eval()


@pytest.fixture(scope="module")
def stage1(reference, vocabulary, tmp_path_factory) -> tuple[Path, Path]:
    """(the fairseq checkpoint, the folder imported from it)."""
    folder = tmp_path_factory.mktemp("stage1")
    file = save_fairseq_checkpoint(reference.state_dict(), HEADS, folder / "checkpoint_stage1.pt")
    out = folder / "kosmos-g-stage1"
    assert repro_main(["import", "stage1", str(file), "--vocabulary", str(vocabulary[0].parent),
                       "--out", str(out)]) == 0
    return file, out


def _images(count: int, seed: int) -> list[Image.Image]:
    rng = numpy.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=numpy.uint8)) for _ in range(count)]


def test_imported_mllm_gives_the_official_hidden_states(stage1, reference):
    from transformers import AutoConfig

    _, folder = stage1
    # What the harness reads of models.mllm besides the model (preflight's sizing): the heads from the cfg.
    assert AutoConfig.from_pretrained(folder, local_files_only=True).text_config.attention_heads == HEADS
    encoder = MLLMEncoder.from_pretrained(str(folder))
    prompts = ["a photo of <i> on the grass", "<i> and <i> in a red car at night with a dog", "a cat"]
    inputs = encoder.tokenize(prompts, [_images(1, 1), _images(2, 2), []])
    with torch.no_grad():
        ours, real = encoder(inputs)
        official = reference.float()
        rounded = {key: value.half().float() for key, value in official.state_dict().items()}
        official.load_state_dict(rounded)  # the file holds fp16 weights
        theirs = official(inputs.input_ids, inputs.image_embeds_position_mask, inputs.pixel_values)
    assert not real.all()  # right padding present, compared at real positions only
    assert ours[real].abs().mean() > 0.1
    torch.testing.assert_close(ours[real], theirs[real], atol=2e-4, rtol=1e-4)


def test_the_import_says_where_it_came_from(stage1):
    import hashlib
    import json

    file, folder = stage1
    record = json.loads((folder / "released.json").read_text())
    sha256 = hashlib.sha256(file.read_bytes()).hexdigest()
    assert record["imported_from"] == {"file": file.name, "sha256": sha256}
    assert set(record["dropped_keys"]) == {"gpt_model.decoder.output_projection.weight",
                                           "gpt_model.decoder.embed_positions._float_tensor",
                                           "gpt_model.decoder.self_attn_sope.scale",
                                           *(f"img_model.visual.transformer.resblocks.{i}.attn.{name}"
                                             for i in range(2)
                                             for name in ("in_proj_weight", "in_proj_bias",
                                                          "out_proj.weight", "out_proj.bias"))}
    assert record["official"]["commit"] in (folder / "README.md").read_text()


def test_imported_tokenizer_has_the_official_dictionary_ids(stage1, vocabulary):
    import sentencepiece

    spm_file, dict_file = vocabulary
    _, folder = stage1
    tokenizer = MLLMEncoder.from_pretrained(str(folder)).tokenizer
    fairseq_index = {line.rsplit(" ", 1)[0]: 4 + i
                     for i, line in enumerate(dict_file.read_text().splitlines())}
    text = "a dog and a cat in the red car"
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(spm_file)).encode(text, out_type=str)
    assert tokenizer(text, add_special_tokens=False).input_ids == [fairseq_index[p] for p in pieces]


def test_unknown_and_missing_keys_are_errors_naming_them(stage1, vocabulary, reference, tmp_path):
    state = reference.state_dict()
    with_extra = save_fairseq_checkpoint({**state, "gpt_model.decoder.chunk_emb.weight": torch.zeros(2)},
                                         HEADS,
                                         tmp_path / "extra.pt", with_optimizer=False)
    with pytest.raises(KeyError, match=r"gpt_model\.decoder\.chunk_emb\.weight"):
        import_stage1(with_extra, *vocabulary, tmp_path / "out")
    lacking = {key: value for key, value in state.items() if key != "img_connector.latent_query"}
    without = save_fairseq_checkpoint(lacking, HEADS, tmp_path / "lacking.pt")
    with pytest.raises(KeyError, match=r"image_to_text_projection\.latent_query"):
        import_stage1(without, *vocabulary, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_dictionary_out_of_the_models_order_is_refused_naming_the_line(vocabulary, tmp_path):
    spm_file, dict_file = vocabulary
    lines = dict_file.read_text().splitlines()
    lines[5], lines[6] = lines[6], lines[5]
    swapped = tmp_path / "dict.txt"
    swapped.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{swapped}:6: "):
        official_vocabulary_size(spm_file, swapped)


# Stage 2 and the final model: exports in the harness's format, their SD parts checked.

ALIGNER = dict(target_len=7, layers=1, width=24, ffn=48, heads=12, max_len=64)


@pytest.fixture(scope="module")
def stable_diffusion(tmp_path_factory) -> Path:
    from experiments.tiny.models import save_tiny_stable_diffusion

    folder = tmp_path_factory.mktemp("sd")
    save_tiny_stable_diffusion(folder, cross_attention_dim=ALIGNER["width"])
    return folder


def _sd_as_official(stable_diffusion: Path) -> dict[str, torch.Tensor]:
    """The SD parts under the official modules' names, as an older diffusers and transformers
    saved them: the VAE's attention as query/key/value/proj_attn, CLIP's position ids kept."""
    from safetensors.torch import load_file

    def weights(sub: str) -> dict[str, torch.Tensor]:
        files = sorted((stable_diffusion / sub).glob("*.safetensors"))
        return {k: v for file in files for k, v in load_file(file).items()}

    legacy = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    vae = {}
    for key, value in weights("vae").items():
        for new, old in legacy.items():
            key = key.replace(new, old)
        vae[f"vae.vae.{key}"] = value
    clip = {f"aligner.clip_encoder.{k}": v for k, v in weights("text_encoder").items()}
    clip["aligner.clip_encoder.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return {**{f"diffusion_unet.unet.{k}": v for k, v in weights("unet").items()}, **vae, **clip}


@pytest.fixture(scope="module")
def official_aligner_net(reference):
    from tests.test_aligner_torchscale_peer import OfficialAligner

    torch.manual_seed(3)
    return scramble(OfficialAligner(reference.gpt_model.decoder.embed_dim, **ALIGNER), seed=3).eval()


def _conditions(folder: Path, mllm: OfficialKosmosGMLLM, aligner) -> tuple[torch.Tensor, torch.Tensor]:
    """(the export's conditions, the official modules' on the same tokens)."""
    from models.conditioning import KosmosGConditioner

    conditioner = KosmosGConditioner.from_pretrained(folder)
    prompts = ["<i> wearing a red hat", "a dog and a cat in the car"]
    images = [_images(1, 4), []]
    inputs = conditioner.mllm.tokenize(prompts, images)
    with torch.no_grad():
        ours = conditioner(prompts, images)
        rounded = {key: value.half().float() for key, value in mllm.state_dict().items()}
        mllm.load_state_dict(rounded)
        hidden = mllm(inputs.input_ids, inputs.image_embeds_position_mask, inputs.pixel_values)
        aligner.load_state_dict({key: value.half().float() for key, value in aligner.state_dict().items()})
        theirs = aligner.condition(hidden, ~inputs.attention_mask.bool())
    return ours, theirs


def test_stage2_and_final_exports_condition_as_the_official_modules(
        stage1, reference, official_aligner_net, stable_diffusion, vocabulary, tmp_path):
    import copy

    from experiments.released.import_aligned import N_WEIGHTS, import_aligned
    from experiments.released.stages import Stage

    sd_parts = _sd_as_official(stable_diffusion)
    aligner_keys = {f"aligner.{k}": v for k, v in official_aligner_net.state_dict().items()}
    stage2 = save_fairseq_checkpoint({**reference.state_dict(), **aligner_keys, **sd_parts}, HEADS,
                                     tmp_path / "checkpoint_stage2.pt")
    record = import_aligned(stage2, Stage.STAGE2, stable_diffusion, tmp_path / "stage2", base_mllm=stage1[1])
    assert (tmp_path / "stage2" / N_WEIGHTS).is_file() and not (tmp_path / "stage2" / "mllm").exists()
    assert "aligner.clip_encoder.text_model.embeddings.position_ids" in record["dropped_keys"]
    ours, theirs = _conditions(tmp_path / "stage2", copy.deepcopy(reference),
                               copy.deepcopy(official_aligner_net))
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)

    tuned = scramble(copy.deepcopy(reference), seed=5)  # stage 3 trained the MLLM
    m_only = {k: v for k, v in aligner_keys.items()
              if k.startswith(("aligner.encoder", "aligner.encoder_proj"))}
    final = save_fairseq_checkpoint({**tuned.state_dict(), **m_only, **sd_parts}, HEADS,
                                    tmp_path / "checkpoint_final.pt", with_optimizer=False)
    assert repro_main(["import", "final", str(final), "--vocabulary", str(vocabulary[0].parent),
                       "--stable-diffusion", str(stable_diffusion), "--out", str(tmp_path / "final")]) == 0
    assert "checkpoint_final.pt" in (tmp_path / "final" / "README.md").read_text()
    assert (tmp_path / "final" / "mllm" / "model.safetensors").is_file()
    _images(1, 6)[0].save(tmp_path / "subject.png")
    assert repro_main(["--workdir", str(tmp_path), "generate", "--checkpoint", str(tmp_path / "final"),
                       "--prompt", "<i> on the grass", "--image", str(tmp_path / "subject.png"),
                       "-n", "1", "--steps", "1",
                       "--out", str(tmp_path / "made")]) == 0
    with Image.open(tmp_path / "made" / "0-0.png") as made:
        assert made.size == (32, 32)  # the tiny U-Net's native size, which the export records
    ours, theirs = _conditions(tmp_path / "final", tuned, copy.deepcopy(official_aligner_net))
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-4)

    with pytest.raises(KeyError, match=r"checkpoint_final\.pt: lacks AlignerNet N"):
        import_aligned(final, Stage.STAGE2, stable_diffusion, tmp_path / "wrong", base_mllm=stage1[1])
    other_base = save_fairseq_checkpoint({**tuned.state_dict(), **aligner_keys}, HEADS, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not .*kosmos-g-stage1's at \d+ weights \(text_model"):
        import_aligned(other_base, Stage.STAGE2, stable_diffusion, tmp_path / "wrong", base_mllm=stage1[1])
    no_mllm = save_fairseq_checkpoint(aligner_keys, HEADS, tmp_path / "aligner-only.pt")
    with pytest.raises(KeyError, match=r"lacks \d+ of .*kosmos-g-stage1's MLLM weights \(image_to_text"):
        import_aligned(no_mllm, Stage.STAGE2, stable_diffusion, tmp_path / "wrong", base_mllm=stage1[1])
    assert not (tmp_path / "wrong").exists()


def test_a_file_made_with_another_stable_diffusion_is_refused_naming_the_part(
        reference, official_aligner_net, stable_diffusion, tmp_path):
    from experiments.released.import_aligned import import_aligned
    from experiments.released.stages import Stage

    sd_parts = _sd_as_official(stable_diffusion)
    key = next(k for k in sd_parts if k.startswith("diffusion_unet.unet.") and k.endswith("weight"))
    sd_parts[key] = sd_parts[key] + 1
    aligner_keys = {f"aligner.{k}": v for k, v in official_aligner_net.state_dict().items()}
    file = save_fairseq_checkpoint({**reference.state_dict(), **aligner_keys, **sd_parts}, HEADS,
                                   tmp_path / "checkpoint_stage2.pt")
    differs = rf"diffusion_unet\.unet\.\* differs .* at 1 keys \({re.escape(key[20:])}\)"
    with pytest.raises(ValueError, match=differs):
        import_aligned(file, Stage.STAGE2, stable_diffusion, tmp_path / "out", base_mllm=tmp_path)
    assert not (tmp_path / "out").exists()


def test_full_size_official_keys_fill_the_published_kosmos2_exactly():
    """At full size, on the meta device (no memory): the official MLLM's keys fill every weight
    of the published Kosmos-2 configuration, whose sizes are read off them."""
    from transformers import Kosmos2Config, Kosmos2Model

    from experiments.released.mllm_folder import EMBED, kosmos2_config
    from experiments.released.mllm_keys import check_complete, rename_mllm

    with torch.device("meta"):
        official = OfficialKosmosGMLLM(vocabulary=64_007, width=2048, layers=24, heads=32, ffn=8192,
                                       vision_width=1024, vision_layers=24, vision_heads=16, image_size=224,
                                       patch=14, queries=64)
        weights = rename_mllm(official.state_dict()).weights
        weights[EMBED] = torch.empty(65_037, 2048)  # padded to Kosmos2Processor's tokens
        config = kosmos2_config(weights, heads=32, vocabulary=65_037)
        check_complete(weights, Kosmos2Model(config).state_dict())
    assert config.to_diff_dict() == Kosmos2Config().to_diff_dict()


def test_repro_import_names_the_options_a_stage_needs(tmp_path, capsys):
    command = ["import", "stage2", str(tmp_path / "checkpoint_stage2.pt"), "--out", str(tmp_path / "o")]
    assert repro_main(command) == 2
    assert "repro import stage2 needs --base-mllm and --stable-diffusion" in capsys.readouterr().err
