"""The MLLM encoder on a tiny random Kosmos-2 saved to disk and loaded back."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from experiments.tiny.models import save_tiny_kosmos2
from models.mllm import MLLMEncoder, MLLMInputs

LATENTS = 4  # latent_query_num of the tiny Kosmos-2


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> MLLMEncoder:
    path = tmp_path_factory.mktemp("tiny_kosmos2")
    save_tiny_kosmos2(path)
    return MLLMEncoder.from_pretrained(str(path))


def solid(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def noise_image(seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (32, 32, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def encode(encoder: MLLMEncoder, inputs: MLLMInputs) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return encoder(inputs)


def test_loads_from_disk_with_tokenizer_and_processor(encoder: MLLMEncoder) -> None:
    assert encoder.hidden_size == 32
    assert encoder.latent_query_num == LATENTS
    assert not encoder.training


def test_text_only_batch_is_right_padded_and_framed(encoder: MLLMEncoder) -> None:
    inputs = encoder.tokenize(["a dog", "a man riding a horse on the beach"])
    assert inputs.pixel_values is None
    assert inputs.image_embeds_position_mask.sum() == 0
    lengths = inputs.attention_mask.sum(1).tolist()
    assert lengths == [3, 9]  # <s> + words: (code) the official MLLM never sees </s>
    tok = encoder.tokenizer
    assert inputs.input_ids[:, 0].tolist() == [tok.bos_token_id] * 2
    assert not inputs.input_ids.eq(tok.eos_token_id).any()
    assert inputs.input_ids[0, 3:].eq(tok.pad_token_id).all()
    hidden, mask = encode(encoder, inputs)
    assert hidden.shape == (2, 9, 32)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths


def test_append_eos_closes_every_prompt_with_eos(encoder: MLLMEncoder) -> None:
    prompts = ["a dog", "a man riding a horse on the beach"]
    bare = encoder.tokenize(prompts)
    closed = encoder.tokenize(prompts, append_eos=True)
    tok = encoder.tokenizer
    assert closed.attention_mask.sum(1).tolist() == [4, 10]
    for b, length in enumerate(bare.attention_mask.sum(1).tolist()):
        assert closed.input_ids[b, :length].tolist() == bare.input_ids[b, :length].tolist()
        assert closed.input_ids[b, length] == tok.eos_token_id
    # The model is causal: the states before </s> are the eos-less prompt's.
    torch.testing.assert_close(encode(encoder, closed)[0][0, :3], encode(encoder, bare)[0][0, :3])


def test_interleaved_prompt_splices_every_image(encoder: MLLMEncoder) -> None:
    prompts = ["<i> wearing <i> in the jungle", "a cat"]
    inputs = encoder.tokenize(prompts, [[solid((255, 0, 0)), solid((0, 0, 255))], []])
    assert inputs.pixel_values.shape == (2, 3, 32, 32)
    assert inputs.image_embeds_position_mask.sum(1).tolist() == [2 * LATENTS, 0]
    tok = encoder.tokenizer
    boi, eoi = tok.convert_tokens_to_ids("<image>"), tok.convert_tokens_to_ids("</image>")
    ids = inputs.input_ids[0].tolist()
    assert ids.count(boi) == 2 and ids.count(eoi) == 2
    # Each image's slots sit between its <image> and </image>.
    first = ids.index(boi)
    assert inputs.image_embeds_position_mask[0, first + 1 : first + 1 + LATENTS].all()
    assert ids[first + 1 + LATENTS] == eoi
    hidden, mask = encode(encoder, inputs)
    assert hidden.shape == (2, inputs.input_ids.shape[1], 32)
    assert mask[0].all()


def test_images_change_the_states_from_their_position_on(encoder: MLLMEncoder) -> None:
    prompt = ["a dog <i> in the park"]
    red = encode(encoder, encoder.tokenize(prompt, [[noise_image(0)]]))[0]
    blue = encode(encoder, encoder.tokenize(prompt, [[noise_image(1)]]))[0]
    start = 3  # <s> a dog | <image> ...; the model is causal, so earlier states are untouched
    torch.testing.assert_close(red[:, : start + 1], blue[:, : start + 1])
    assert not torch.allclose(red[:, start + 1 :], blue[:, start + 1 :], atol=1e-4)


def test_batched_interleaved_matches_one_prompt_at_a_time(encoder: MLLMEncoder) -> None:
    """Images are scattered in order of appearance: batching must not mix them up."""
    prompts = ["<i> wearing <i> in the jungle", "a boy and <i>"]
    images = [[noise_image(0), noise_image(1)], [noise_image(2)]]
    batch_hidden, batch_mask = encode(encoder, encoder.tokenize(prompts, images))
    for b, (prompt, imgs) in enumerate(zip(prompts, images)):
        alone, _ = encode(encoder, encoder.tokenize([prompt], [imgs]))
        length = alone.shape[1]
        assert int(batch_mask[b].sum()) == length
        torch.testing.assert_close(batch_hidden[b, :length], alone[0], atol=1e-5, rtol=1e-4)


def test_placeholder_count_must_match_images(encoder: MLLMEncoder) -> None:
    with pytest.raises(ValueError, match="2 '<i>' placeholders but 1 images"):
        encoder.tokenize(["<i> wearing <i> in the jungle"], [[solid((0, 255, 0))]])
    with pytest.raises(ValueError, match="1 '<i>' placeholders but 0 images"):
        encoder.tokenize(["a photo of <i>"])


def test_max_length_truncates_text_but_never_an_image(encoder: MLLMEncoder) -> None:
    prompt = ["a man riding a horse on the beach"]
    full = encoder.tokenize(prompt).input_ids
    inputs = encoder.tokenize(prompt, max_length=5)
    assert inputs.input_ids.tolist() == full[:, :5].tolist()
    closed = encoder.tokenize(prompt, max_length=5, append_eos=True)
    assert closed.input_ids.tolist() == [full[0, :4].tolist() + [encoder.tokenizer.eos_token_id]]
    # <s> a dog <image> + 4 slots + </image> is 9 tokens: 8 would leave the image unclosed.
    assert encoder.tokenize(["a dog <i>"], [[solid((1, 2, 3))]], max_length=9).input_ids.shape == (1, 9)
    with pytest.raises(ValueError, match="would cut an image"):
        encoder.tokenize(["a dog <i>"], [[solid((1, 2, 3))]], max_length=8)
    with pytest.raises(ValueError, match="would cut an image"):
        encoder.tokenize(["a dog <i>"], [[solid((1, 2, 3))]], max_length=9, append_eos=True)


def test_null_prompt_is_bos_alone(encoder: MLLMEncoder) -> None:
    inputs = encoder.null_inputs(3)
    assert inputs.input_ids.tolist() == [[encoder.tokenizer.bos_token_id]] * 3
    hidden, mask = encode(encoder, inputs)
    assert hidden.shape == (3, 1, 32) and mask.all()


def test_inputs_move_between_devices_as_a_copy(encoder: MLLMEncoder) -> None:
    inputs = encoder.tokenize(["<i> a dog"], [[solid((9, 9, 9))]])
    moved = inputs.to("meta")
    assert moved.input_ids.device.type == "meta" and moved.pixel_values.device.type == "meta"
    assert inputs.input_ids.device.type == "cpu"


def test_gradient_reaches_the_mllm_for_instruction_tuning(encoder: MLLMEncoder) -> None:
    inputs = encoder.tokenize(["<i> in the snow"], [[noise_image(3)]])
    hidden, _ = encoder(inputs)
    hidden.sum().backward()
    vision_grad = encoder.model.vision_model.model.embeddings.patch_embedding.weight.grad
    text_grad = encoder.model.text_model.model.embed_tokens.weight.grad
    assert vision_grad is not None and vision_grad.abs().sum() > 0
    assert text_grad is not None and text_grad.abs().sum() > 0
    encoder.zero_grad(set_to_none=True)


def test_text_dropout_is_settable_and_acts_in_train_mode_only(tmp_path) -> None:
    """(code) Stage 2 runs the frozen MLLM in train mode with dropout = attention_dropout = 0.1."""
    save_tiny_kosmos2(tmp_path)
    encoder = MLLMEncoder.from_pretrained(str(tmp_path))
    inputs = encoder.tokenize(["a man riding a horse on the beach"])
    before = encode(encoder, inputs)[0]
    encoder.train()
    torch.testing.assert_close(encode(encoder, inputs)[0], before)  # the tiny model's rates are 0
    assert encoder.set_text_dropout(0.1) is encoder
    text = encoder.model.text_model
    assert text.model.dropout == 0.1
    assert all(layer.dropout == 0.1 and layer.ffn.dropout == 0.1 and layer.self_attn.dropout == 0.1
               for layer in text.model.layers)
    assert encoder.model.config.text_config.attention_dropout == 0.1
    torch.manual_seed(0)
    first = encode(encoder, inputs)[0]
    assert not torch.allclose(first, before)
    assert not torch.allclose(encode(encoder, inputs)[0], first)  # fresh noise on every call
    encoder.eval()
    torch.testing.assert_close(encode(encoder, inputs)[0], before)
    encoder.set_text_dropout(0.0, attention_dropout=0.2)
    assert all(layer.dropout == 0.0 and layer.self_attn.dropout == 0.2 for layer in text.model.layers)
    with pytest.raises(ValueError, match="not in"):
        encoder.set_text_dropout(1.0)


def test_images_are_resized_and_centre_cropped_not_squashed(encoder: MLLMEncoder) -> None:
    """(code) The MLLM's images keep their aspect: short side to the tower's size, centre crop."""
    wide = solid((255, 0, 0), (64, 32))
    wide.paste((0, 0, 255), (16, 0, 48, 32))  # blue in the central square only
    pixels = encoder.tokenize(["<i>"], [[wide]]).pixel_values
    assert pixels.shape == (1, 3, encoder.image_size, encoder.image_size)
    std = torch.tensor(encoder.image_processor.image_std)
    mean = torch.tensor(encoder.image_processor.image_mean)
    rgb = pixels[0].permute(1, 2, 0) * std + mean
    assert torch.allclose(rgb, torch.tensor([0.0, 0.0, 1.0]).expand_as(rgb), atol=1e-5)  # no red left
