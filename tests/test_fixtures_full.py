"""`repro fixtures full`: the published classes and config values (on the meta device), the
Kosmos-2 tokenizer, resumable parts, and (marker `preflight`, one full build per session) that
the full tier's own loaders load every part and `repro plan --tier full` resolves with the
printed exports."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from experiments.fixtures import build as fixtures_build
from experiments.fixtures.kosmos2 import save_kosmos2_processor
from experiments.fixtures.random_weights import random_model
from experiments.fixtures.scorers import clip_vit_b32_config, clipseg_rd64_refined_config, dino_vits16_config
from experiments.fixtures.stable_diffusion import sd15_text_config, sd15_unet, sd15_vae
from repro.cli import main
from tests.support.full_tier import EXPERIMENTS as FULL_TIER_EXPERIMENTS
from tests.support.full_tier import FULL_TIER_ENV

# Published facts the fixtures must match (the hub's config.json files and parameter counts).
KOSMOS2_VOCAB = 65_037
KOSMOS2_TAGS = ["</doc>", "<image>", "</image>", "</chunk>", "</line>", "<phrase>", "</phrase>", "<object>",
                "</object>", "</delimiter_of_multi_objects/>", "<grounding>"]
SD15_PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def _on_meta(build):
    with torch.device("meta"):
        return build()


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_kosmos2_config_defaults_are_the_published_checkpoint():
    from transformers import Kosmos2Config

    config = Kosmos2Config()
    text, vision = config.text_config, config.vision_config
    assert (text.vocab_size, text.embed_dim, text.layers, text.attention_heads, text.ffn_dim) == (
        KOSMOS2_VOCAB, 2048, 24, 32, 8192)
    assert (text.max_position_embeddings, text.scale_embedding, text.activation_function) == (
        2048, True, "gelu")
    assert (text.bos_token_id, text.pad_token_id, text.eos_token_id) == (0, 1, 2)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads,
            vision.intermediate_size) == (1024, 24, 16, 4096)
    assert (vision.image_size, vision.patch_size, vision.hidden_act) == (224, 14, "quick_gelu")
    assert config.latent_query_num == 64


def test_stable_diffusion_configs_and_sizes_are_v1_5():
    unet, vae = _on_meta(sd15_unet), _on_meta(sd15_vae)
    assert tuple(unet.config.block_out_channels) == (320, 640, 1280, 1280)
    assert (unet.config.cross_attention_dim, unet.config.attention_head_dim, unet.config.sample_size) == (
        768, 8, 64)
    assert (unet.config.layers_per_block, unet.config.in_channels, unet.config.out_channels) == (2, 4, 4)
    assert tuple(vae.config.block_out_channels) == (128, 256, 512, 512)
    assert (vae.config.latent_channels, vae.config.sample_size, vae.config.scaling_factor) == (
        4, 512, 0.18215)
    text = sd15_text_config()
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size, text.num_attention_heads) == (
        12, 768, 3072, 12)
    assert (text.hidden_act, text.max_position_embeddings, text.vocab_size) == ("quick_gelu", 77, 49408)
    from transformers import CLIPTextModel

    counts = {"unet": _parameters(unet), "vae": _parameters(vae),
              "text_encoder": _parameters(_on_meta(lambda: CLIPTextModel(text)))}
    assert counts == SD15_PARAMETERS


def test_scorer_configs_are_the_published_checkpoints():
    dino = dino_vits16_config()
    assert (dino.hidden_size, dino.num_hidden_layers, dino.num_attention_heads, dino.patch_size,
            dino.image_size) == (384, 12, 6, 16, 224)
    clip = clip_vit_b32_config()
    assert (clip.vision_config.patch_size, clip.vision_config.hidden_size, clip.text_config.hidden_size,
            clip.projection_dim) == (32, 768, 512, 512)
    seg = clipseg_rd64_refined_config()
    assert (seg.reduce_dim, seg.use_complex_transposed_convolution, tuple(seg.extract_layers)) == (
        64, True, (3, 6, 9))
    assert seg.vision_config.patch_size == 16


def test_random_weights_are_seeded_with_unit_norms_and_zero_biases():
    from transformers import ViTConfig, ViTModel

    def build():
        return ViTModel(
            ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        )

    first, again, other = random_model(build, 0), random_model(build, 0), random_model(build, 1)
    weight = "layers.0.attention.q_proj.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    assert first.dtype == torch.float16
    params = dict(first.named_parameters())
    assert torch.all(params["layers.0.layernorm_before.weight"] == 1)
    assert torch.all(params["layers.0.attention.q_proj.bias"] == 0)
    assert 0.015 < params[weight].float().std() < 0.025
    # Rows of one matrix start at different offsets of the bank.
    assert not torch.equal(params[weight][0], params[weight][1])


@pytest.fixture(scope="module")
def kosmos2_processor(tmp_path_factory):
    return save_kosmos2_processor(tmp_path_factory.mktemp("kosmos2-processor"))


def test_kosmos2_tokenizer_has_the_published_special_tokens_in_order(kosmos2_processor):
    tokenizer = kosmos2_processor.tokenizer
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    mask = tokenizer.convert_tokens_to_ids("<mask>")
    added = KOSMOS2_TAGS + [f"<patch_index_{i:04d}>" for i in range(1024)]
    # As published: the pieces, then <mask>, then the tags and patch indices (64001, 64002, ... there).
    assert [tokenizer.convert_tokens_to_ids(t) for t in added] == list(range(mask + 1, mask + 1 + len(added)))
    assert len(tokenizer) == mask + 1 + len(added) <= KOSMOS2_VOCAB
    assert tokenizer.model_max_length == 2048


def test_kosmos2_tokenizer_round_trips_captions(kosmos2_processor):
    tokenizer = kosmos2_processor.tokenizer
    caption = "a small red circle on a white background next to a dog"
    ids = tokenizer(caption).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == caption
    grounded = tokenizer("<grounding> <phrase> a dog </phrase>", add_special_tokens=False).input_ids
    assert grounded[0] == tokenizer.convert_tokens_to_ids("<grounding>")


def test_kosmos2_processor_files_are_published_ones(kosmos2_processor, tmp_path):
    from transformers import Kosmos2Processor

    kosmos2_processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "XLMRobertaTokenizer"
    reloaded = Kosmos2Processor.from_pretrained(tmp_path)
    assert len(reloaded.tokenizer) == len(kosmos2_processor.tokenizer)  # the added tokens are not added twice
    inputs = reloaded(images=Image.new("RGB", (300, 200)), text="a dog", return_tensors="pt")
    assert tuple(inputs.pixel_values.shape) == (1, 3, 224, 224)
    assert int(inputs.image_embeds_position_mask.sum()) == 64


def test_finished_parts_are_kept_and_unfinished_ones_rebuilt(tmp_path, monkeypatch):
    builds = []

    def build(folder: Path, seed: int) -> None:
        builds.append(folder.name)
        (folder / "data.txt").write_text(str(seed))

    parts = (fixtures_build.Part("a", build, {"KOSMOS_A": ""}),
             fixtures_build.Part("b", build, {"KOSMOS_B": "data.txt"}))
    monkeypatch.setattr(fixtures_build, "PARTS", parts)
    exports = fixtures_build.build_full_fixtures(tmp_path)
    assert exports == {"KOSMOS_A": tmp_path / "a", "KOSMOS_B": tmp_path / "b" / "data.txt"}
    (tmp_path / "b" / fixtures_build.MARKER).unlink()  # as if killed while building b
    (tmp_path / "b" / "partial").write_text("")
    fixtures_build.build_full_fixtures(tmp_path)
    assert builds == ["a", "b", "b"]
    assert not (tmp_path / "b" / "partial").exists()
    assert fixtures_build.build_full_fixtures(tmp_path, parts=["a"]) == {"KOSMOS_A": tmp_path / "a"}
    with pytest.raises(ValueError, match="no fixture part"):
        fixtures_build.build_full_fixtures(tmp_path, parts=["c"])


def test_a_part_brings_the_parts_it_reads(tmp_path, monkeypatch):
    def build(folder: Path, seed: int) -> None:
        (folder / "made").write_text("")

    def reads_a(folder: Path, seed: int) -> None:
        (folder / "made").write_text((folder.parent / "a" / "made").read_text())

    parts = (fixtures_build.Part("a", build, {"KOSMOS_A": ""}),
             fixtures_build.Part("b", build, {"KOSMOS_B": ""}),
             fixtures_build.Part("c", reads_a, {"KOSMOS_C": ""}, needs=("a",)))
    monkeypatch.setattr(fixtures_build, "PARTS", parts)
    assert set(fixtures_build.build_full_fixtures(tmp_path, parts=["c"])) == {"KOSMOS_A", "KOSMOS_C"}
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------
# Full size: one build per session, through the CLI.


@pytest.fixture(scope="session")
def full_fixtures(tmp_path_factory):
    """The exports `repro fixtures full` prints; the folder (~6 GB, and 9.6 GB of released
    stand-ins) goes when the session ends."""
    out = tmp_path_factory.mktemp("full-fixtures")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["fixtures", "full", "--out", str(out)]) == 0
    exports = {}
    for line in stdout.getvalue().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        exports[name] = shlex.split(value)[0]
    yield exports
    shutil.rmtree(out)


@pytest.mark.preflight
def test_exports_resolve_the_full_tier_plan(full_fixtures, monkeypatch, capsys):
    assert set(FULL_TIER_ENV) <= set(full_fixtures)
    for name, path in full_fixtures.items():
        monkeypatch.setenv(name, path)
    assert main(["plan", "--tier", "full"]) == 0
    assert "10 runs from 10 experiments, tier full" in capsys.readouterr().out


@pytest.mark.preflight
def test_mllm_loads_as_published(full_fixtures):
    from models.mllm import MLLMEncoder

    folder = Path(full_fixtures["KOSMOS_MLLM"])
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Kosmos2ForConditionalGeneration"] and config["dtype"] == "float32"
    assert (folder / "sentencepiece.bpe.model").is_file()
    encoder = MLLMEncoder.from_pretrained(str(folder))
    assert encoder.model.dtype == torch.float32  # as from the published fp32 checkpoint
    assert type(encoder.image_processor).__name__ == "CLIPImageProcessor"
    inputs = encoder.tokenize(["a dog on the beach"])
    with torch.no_grad():
        states, mask = encoder(inputs)
    assert tuple(states.shape) == (1, inputs.input_ids.shape[1], 2048) and bool(mask.all())
    assert torch.isfinite(states).all()


@pytest.mark.preflight
def test_stable_diffusion_loads_as_published(full_fixtures):
    from models.image_decoder import ImageDecoder
    from models.text_target import ClipTextTarget

    folder = Path(full_fixtures["KOSMOS_SD"])
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "feature_extractor", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    target = ClipTextTarget.from_pretrained(str(folder))
    with torch.no_grad():
        condition = target(["a red circle on a white background"])
    assert tuple(condition.shape) == (1, 77, 768) and condition.dtype == torch.float32
    decoder = ImageDecoder.from_pretrained(str(folder))
    assert decoder.unet.dtype == torch.float32 and decoder.cross_attention_dim == 768
    assert decoder.noise_scheduler.config.beta_schedule == "scaled_linear"
    # 64 px: an 8 x 8 latent, every U-Net block at a size the CPU passes quickly.
    loss = decoder.diffusion_loss(torch.zeros(1, 3, 64, 64), condition, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


@pytest.mark.preflight
def test_released_stage1_stand_in_imports_at_the_published_size(full_fixtures):
    """The stage-1 file written at full size in the official layout (fp16, fairseq's pickle) and
    imported by `repro import`'s code: every Kosmos-2 weight at the published shape (read from the
    safetensors headers, without loading 6 GB), 1.53B of them: the published model less the
    embedding rows of the pieces the stand-in SentencePiece model does not have."""
    from safetensors import safe_open
    from transformers import Kosmos2Config, Kosmos2Model

    folder = Path(full_fixtures["KOSMOS_RELEASED_STAGE1"])
    config = Kosmos2Config.from_pretrained(folder, local_files_only=True)
    text, vision = config.text_config, config.vision_config
    assert (text.embed_dim, text.layers, text.attention_heads, text.ffn_dim) == (2048, 24, 32, 8192)
    assert (vision.hidden_size, vision.num_hidden_layers, config.latent_query_num) == (1024, 24, 64)
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in Kosmos2Model(config).state_dict().items()}
    saved = {}
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as weights:
            saved |= {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    assert saved == expected and sum(torch.Size(shape).numel() for shape in saved.values()) > 1.5e9
    record = json.loads((folder / "released.json").read_text())
    assert record["imported_from"]["file"] == "checkpoint_stage1.pt"


@pytest.mark.preflight
def test_scorers_and_segmenter_load_as_published(full_fixtures):
    from experiments.data.clipseg import ClipSegSegmenter
    from experiments.evaluation.similarity import ClipEncoder, DinoEncoder

    images = [Image.new("RGB", (512, 512), (200, 30, 30)), Image.new("RGB", (300, 400), (30, 30, 200))]
    dino = DinoEncoder.from_pretrained(full_fixtures["KOSMOS_DINO"], torch.device("cpu"))
    assert tuple(dino.image_features(images).shape) == (2, 384)
    clip = ClipEncoder.from_pretrained(full_fixtures["KOSMOS_CLIP"], torch.device("cpu"))
    assert tuple(clip.image_features(images).shape) == (2, 512)
    assert tuple(clip.text_features(["a red dog", "a blue backpack"]).shape) == (2, 512)
    masks = ClipSegSegmenter.from_pretrained(full_fixtures["KOSMOS_CLIPSEG"])(images[0], ["dog", "backpack"])
    assert len(masks) == 2 and masks[0].shape == (512, 512)


@pytest.mark.preflight
def test_inception_file_loads_in_torch_fidelity(full_fixtures):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    extractor = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=full_fixtures["KOSMOS_INCEPTION"])
    (features,) = extractor(torch.zeros(1, 3, 299, 299, dtype=torch.uint8))
    assert tuple(features.shape) == (1, 2048)


@pytest.mark.preflight
def test_miniature_data_reads_in_the_full_tier_readers(full_fixtures):
    from experiments.data.stage3_rows import LOADERS

    edits = LOADERS["edits"](full_fixtures["KOSMOS_EDITS"])
    assert len(edits.rows) == 32 and edits.total_skipped == 0
    with Image.open(io.BytesIO(edits.rows[0].source)) as image:
        assert image.size == (512, 512)
    assert len(LOADERS["compositional"](full_fixtures["KOSMOS_COMPOSITIONAL"]).rows) == 32
    # and one small image, a valid row that stage 3's 384-px filter refuses
    assert len(LOADERS["captioned"](full_fixtures["KOSMOS_CAPTIONED"]).rows) == 33
    assert len(list(Path(full_fixtures["KOSMOS_HELDOUT_IMAGES"]).glob("*.png"))) == 256
    assert (Path(full_fixtures["KOSMOS_DREAMBENCH"]) / "prompts_and_classes.txt").is_file()


@pytest.mark.preflight
def test_preflight_runs_every_table_run_on_the_fixtures(full_fixtures, monkeypatch, tmp_path, capsys):
    """Every Table 2 and Table 1 run loaded from the full-size fixtures and sized for the paper's
    launch (peaks predicted on fake tensors, nothing trained for real: --budget-gb 0), FID and
    DreamBench images at 512 px with one sampler step."""
    for name, path in full_fixtures.items():
        monkeypatch.setenv(name, path)
    status = main(["--workdir", str(tmp_path), "--config", str(FULL_TIER_EXPERIMENTS), "preflight", "--tier",
                   "full", "--seeds", "0", "--budget-gb", "0", "--sampler-steps", "1",
                   "--out", str(tmp_path / "reports")])
    table = {row["run"].removesuffix(" seed=0"): row for row in
             json.loads((tmp_path / "reports" / "preflight.json").read_text())}
    assert status == 0, {run: row["failed"] for run, row in table.items() if row["failed"]}
    assert {row["recipe"] for row in table.values()} == {
        "baseline", "e2e", "align", "instruct", "oracle", "released"}
    # The oracle loads no model.
    assert all("load" in row["seconds"] for row in table.values() if row["recipe"] != "oracle")

    aligner = table["12-Layers AlignerNet"]
    assert aligner["trainable"] == 476_031_488 and aligner["frozen"] > 1.6e9
    assert aligner["note"].startswith("estimated, not run") and aligner["peak_predicted_gib"] > 0
    assert aligner["fits"] == "yes" and aligner["wall_clock_h"] > 0
    assert aligner["gpu_hours"] >= aligner["wall_clock_h"]
    # End to end, the U-Net's activations for 32 images at 512 px do not fit a 32 GB V100.
    for run in ("E2E w/o AlignerNet", "E2E w/ AlignerNet"):
        configured, suggested = (int(n) for n in table[run]["micro_batch"].split(" -> "))
        assert table[run]["fits"] == "NO" and table[run]["peak_predicted_gib"] > 32e9 / 2**30
        assert suggested < configured
    stage3 = table["KOSMOS-G"]
    assert stage3["trainable"] > 1.5e9 and stage3["note"].startswith("estimated, not run")
    assert {"fid", "dreambench"} <= set(stage3["seconds"])
    assert "dreambench" in table["Real images (oracle)"]["seconds"]
    # FID images are sampled once through the shared decoder; every other run encodes its prompts.
    sampled = [run for run, row in table.items() if "FID images: 2 at 512 px" in "; ".join(row["basis"])]
    encoded = [run for run, row in table.items() if "FID images: sampled in" in "; ".join(row["basis"])]
    assert len(sampled) == 1 and len(encoded) == 8, (sampled, encoded)
    assert "KOSMOS-G" in capsys.readouterr().out
    # The released rows: the imported exports (full-width stand-ins) sampled, nothing trained.
    for run in ("KOSMOS-G (released checkpoint)", "12-Layers AlignerNet (released checkpoint)"):
        row = table[run]
        assert row["trainable"] == 0 and row["frozen"] > 1e9 and "no training" in row["basis"]
        assert "30,000 fid images at" in "; ".join(table[run]["basis"]) and table[run]["gpu_hours"] > 0
    final = table["KOSMOS-G (released checkpoint)"]
    stage2 = table["12-Layers AlignerNet (released checkpoint)"]
    assert "3,000 dreambench images at" in "; ".join(final["basis"])
    assert final["gpu_hours"] > stage2["gpu_hours"]
