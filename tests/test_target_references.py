"""What the aligner learns from, against independent references on the tiny models: the CLIP
target against the stock diffusers pipeline's own prompt encoding, the MLLM's states against
transformers' Kosmos2Model run on the token layout Kosmos-2 documents."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image
from transformers import AutoImageProcessor, Kosmos2Model

from experiments.tiny.models import save_tiny_kosmos2, save_tiny_stable_diffusion
from models.mllm import MLLMEncoder
from models.text_target import ClipTextTarget

CAPTIONS = ["a dog on the beach", "two cats sitting on a red couch near the window"]


def test_the_clip_target_is_what_the_stock_pipeline_conditions_on(tmp_path) -> None:
    save_tiny_stable_diffusion(tmp_path)
    pipeline = StableDiffusionPipeline.from_pretrained(str(tmp_path), local_files_only=True)
    expected, _ = pipeline.encode_prompt(CAPTIONS, "cpu", 1, do_classifier_free_guidance=False)
    target = ClipTextTarget.from_pretrained(str(tmp_path))(CAPTIONS)
    torch.testing.assert_close(target, expected, rtol=0, atol=0)
    # Another layer of the same encoder is far from it (what a wrong-layer target would be).
    ids = target.new_tensor(pipeline.tokenizer(CAPTIONS, padding="max_length", max_length=77,
                                               truncation=True).input_ids, dtype=torch.long)
    penultimate = pipeline.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
    assert (penultimate - expected).abs().max() > 0.1


@pytest.fixture(scope="module")
def kosmos2_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny_kosmos2")
    save_tiny_kosmos2(path)
    return str(path)


def documented_layout(tokenizer, words_before: str, words_after: str,
                      latents: int) -> tuple[list[int], list[int]]:
    """Ids and image-slot mask of Kosmos-2's model-card layout, <s> text <image> one id per latent
    query </image> text </s>, the latent ids being those right after <unk> (Kosmos2Processor's)."""
    def ids(words: str) -> list[int]:
        return tokenizer.convert_tokens_to_ids(words.split())
    before = [tokenizer.bos_token_id, *ids(words_before), tokenizer.convert_tokens_to_ids("<image>")]
    slots = list(range(tokenizer.unk_token_id + 1, tokenizer.unk_token_id + 1 + latents))
    after = [tokenizer.convert_tokens_to_ids("</image>"), *ids(words_after), tokenizer.eos_token_id]
    return before + slots + after, [0] * len(before) + [1] * latents + [0] * len(after)


@torch.no_grad()
def test_mllm_states_are_kosmos2_models_last_hidden_state(kosmos2_path: str) -> None:
    mllm = MLLMEncoder.from_pretrained(kosmos2_path)
    photo = Image.radial_gradient("L").resize((32, 32)).convert("RGB")
    # A second, longer row pads the first: its padding must not move the first row's states.
    inputs = mllm.tokenize(["a dog <i> on the beach", "two <i> cats sitting on a red couch"],
                           [[photo], [photo]], append_eos=True)
    states, mask = mllm(inputs)

    model = Kosmos2Model.from_pretrained(kosmos2_path, local_files_only=True).eval()
    pixels = AutoImageProcessor.from_pretrained(kosmos2_path)(photo, return_tensors="pt").pixel_values
    ids, slot_mask = documented_layout(mllm.tokenizer, "a dog", "on the beach", model.config.latent_query_num)
    expected = model(pixel_values=pixels, input_ids=torch.tensor([ids]),
                     attention_mask=torch.ones(1, len(ids)),
                     image_embeds_position_mask=torch.tensor([slot_mask])).last_hidden_state[0]
    assert inputs.input_ids[0, : len(ids)].tolist() == ids and int(mask[0].sum()) == len(ids)
    torch.testing.assert_close(states[0, : len(ids)], expected, rtol=1e-5, atol=1e-5)
