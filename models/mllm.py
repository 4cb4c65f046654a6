"""The multimodal LLM that encodes interleaved text-and-image prompts (Kosmos-2 for KOSMOS-1).

KOSMOS-1 weights were never released; Kosmos-2 has the same 24 x 2048 causal decoder, ViT-L/14
and 64-query resampler (shared/PAPER.md). Its stock processor only puts one image at the start
of a sequence, so this module builds the token layout itself and splices any number of images,
each as `latent_query_num` embeddings between <image> and </image>, where "<i>" stands in the
prompt.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, cast

import torch
from PIL import Image
from torch import Tensor, nn
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    Kosmos2Model,
    PreTrainedTokenizerBase,
)
from transformers.models.kosmos2.configuration_kosmos2 import Kosmos2TextConfig, Kosmos2VisionConfig
from transformers.models.kosmos2.modeling_kosmos2 import (
    Kosmos2TextBlock,
    Kosmos2TextFFN,
    Kosmos2TextTransformer,
    KosmosTextAttention,
)

from models.image_preprocessing import clip_pixel_values


class ImageProcessor(Protocol):
    """What the encoder uses of Kosmos-2's image processor: CLIP's mean and std (its resizing
    squashes images, where the official code resizes and crops: `tokenize`), and its saving
    beside an exported model."""

    image_mean: Sequence[float]
    image_std: Sequence[float]

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> object: ...


@dataclass
class MLLMInputs:
    """A right-padded batch ready for `MLLMEncoder.forward`."""

    input_ids: Tensor  # (B, L) long
    attention_mask: Tensor  # (B, L), 1 = real token
    image_embeds_position_mask: Tensor  # (B, L), 1 where an image latent goes
    pixel_values: Tensor | None  # (N_images_total, 3, H, W), in order of appearance (row-major)
    # Image slots in the batch, counted while tokenizing: reading it off the mask would cost a
    # device sync per forward, and a forward on fake tensors (memory prediction) cannot read it.
    num_slots: int = 0

    def to(self, device: torch.device | str) -> MLLMInputs:
        pixels = None if self.pixel_values is None else self.pixel_values.to(device)
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            image_embeds_position_mask=self.image_embeds_position_mask.to(device),
            pixel_values=pixels,
        )


class MLLMEncoder(nn.Module):
    """Kosmos-2 as an encoder: interleaved prompt -> last hidden states + padding mask."""

    IMAGE_PLACEHOLDER = "<i>"

    def __init__(
        self, model: Kosmos2Model, tokenizer: PreTrainedTokenizerBase, image_processor: ImageProcessor
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        # transformers types a sub-config as dict | config | None; Kosmos2Config always builds configs.
        text_config = cast(Kosmos2TextConfig, model.config.text_config)
        self.hidden_size: int = text_config.embed_dim
        self.latent_query_num: int = model.config.latent_query_num
        vision_config = cast(Kosmos2VisionConfig, model.config.vision_config)
        # transformers allows an (h, w) pair; Kosmos-2's vision tower takes square images, one side.
        self.image_size: int = vision_config.image_size  # type: ignore[assignment]
        self._boi_id = self._token_id("<image>")
        self._eoi_id = self._token_id("</image>")
        # Kosmos2Processor fills an image's slots with the ids right after <unk>; the embeddings
        # overwrite them, but the ids must not be <pad> or the sinusoidal positions skip them.
        first = tokenizer.unk_token_id + 1
        self._latent_ids = list(range(first, first + self.latent_query_num))

    @classmethod
    def from_pretrained(cls, path: str, dtype: torch.dtype | None = None) -> MLLMEncoder:
        """Model, tokenizer and image processor from one local Kosmos-2 directory, in eval mode."""
        model = Kosmos2Model.from_pretrained(path, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, image_processor).eval()

    def set_text_dropout(self, dropout: float, attention_dropout: float | None = None) -> MLLMEncoder:
        """Set the text model's dropout (residual and feed-forward outputs, embeddings) and
        attention dropout (default: `dropout`); they act in train mode only.

        (code) Stage 2 runs the frozen MLLM in train mode with both at 0.1 (kosmosg_xl in
        unilm/models/kosmosg.py), so its states carry dropout noise; the image connector and
        the vision tower keep theirs.
        """
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        for rate in (dropout, attention_dropout):
            if not 0 <= rate < 1:
                raise ValueError(f"dropout {rate} is not in [0, 1)")
        for module in self.model.text_model.modules():
            # Each module copied its rate from the config when it was built.
            if isinstance(module, KosmosTextAttention):
                module.dropout = attention_dropout
            elif isinstance(module, (Kosmos2TextTransformer, Kosmos2TextBlock, Kosmos2TextFFN)):
                module.dropout = dropout
        for config in (cast(Kosmos2TextConfig, self.model.config.text_config), self.model.text_model.config):
            config.dropout, config.attention_dropout = dropout, attention_dropout
        return self

    def unfreeze_for_instruction_tuning(self, vision_layers: int) -> MLLMEncoder:
        """Stage 3 trains the language model and the image connector; of the vision tower only
        the last `vision_layers` layers (paper: the last one) and its final LayerNorm."""
        self.requires_grad_(False)
        self.model.text_model.requires_grad_(True)
        self.model.image_to_text_projection.requires_grad_(True)
        if vision_layers:
            vision = self.model.vision_model.model
            for layer in vision.encoder.layers[-vision_layers:]:
                layer.requires_grad_(True)
            vision.post_layernorm.requires_grad_(True)
        return self

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        # A single token gives one id, or None where the tokenizer lacks it.
        if not isinstance(token_id, int) or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token!r} token; is this a Kosmos-2 checkpoint?")
        return token_id

    def _sequence(
        self, prompt: str, num_images: int, max_length: int | None, append_eos: bool
    ) -> tuple[list[int], list[int]]:
        """Token ids and image-slot mask of `<s> text <image> slots </image> text ...`, then
        `</s>` if `append_eos`."""
        segments = prompt.split(self.IMAGE_PLACEHOLDER)
        if len(segments) - 1 != num_images:
            raise ValueError(
                f"prompt {prompt!r} has {len(segments) - 1} {self.IMAGE_PLACEHOLDER!r} placeholders "
                f"but {num_images} images were given for it"
            )
        ids = [self.tokenizer.bos_token_id]
        slots = [0]
        images_end = 0  # length of the shortest prefix that holds every image whole
        for k, segment in enumerate(segments):
            if k > 0:
                ids += [self._boi_id, *self._latent_ids, self._eoi_id]
                slots += [0, *[1] * self.latent_query_num, 0]
                images_end = len(ids)
            # Each segment is tokenized on its own so no text piece straddles an image.
            text = segment.strip()
            text_ids = self.tokenizer(text, add_special_tokens=False).input_ids if text else []
            ids += text_ids
            slots += [0] * len(text_ids)
        end = [self.tokenizer.eos_token_id] if append_eos else []
        if max_length is not None and len(ids) + len(end) > max_length:
            keep = max_length - len(end)
            if keep < images_end:
                raise ValueError(f"max_length={max_length} would cut an image out of prompt {prompt!r}")
            ids, slots = ids[:keep], slots[:keep]
        return ids + end, slots + [0] * len(end)

    def tokenize(
        self,
        prompts: list[str],
        images: list[list[Image.Image]] | None = None,
        max_length: int | None = None,
        append_eos: bool = False,
        min_padding: int = 0,
    ) -> MLLMInputs:
        """Pad a batch of prompts, every row by at least `min_padding` pad tokens; the k-th
        "<i>" of prompt b is images[b][k].

        (code) The official MLLM never sees `</s>`: its stage-2/3 loaders and its inference
        tokenize with append_eos = False (unilm/data/vl/laion2b_loader.py,
        instructpix2pix_loader.py, app_model.py). `append_eos=True` ends every prompt with it.
        Images are resized and centre-cropped to the vision tower's size, as the official
        loaders do (models/image_preprocessing.py).
        """
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but image lists for {len(images)}")
        per_prompt = images if images is not None else [[] for _ in prompts]
        rows = [self._sequence(p, len(imgs), max_length, append_eos) for p, imgs in zip(prompts, per_prompt)]
        length = max(len(ids) for ids, _ in rows) + min_padding
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        slot_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for b, (ids, slots) in enumerate(rows):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            attention_mask[b, : len(ids)] = 1
            slot_mask[b, : len(ids)] = torch.tensor(slots)
        flat_images = [img for imgs in per_prompt for img in imgs]
        pixel_values = None
        if flat_images:
            mean, std = self.image_processor.image_mean, self.image_processor.image_std
            pixel_values = clip_pixel_values(flat_images, self.image_size, mean, std)
        num_slots = sum(sum(slots) for _, slots in rows)
        return MLLMInputs(input_ids, attention_mask, slot_mask, pixel_values, num_slots)

    def null_inputs(self, batch_size: int) -> MLLMInputs:
        """The "<s>"-only prompt: (code) the null condition is the aligned embedding of token 0."""
        ones = torch.ones((batch_size, 1), dtype=torch.long)
        return MLLMInputs(ones * self.tokenizer.bos_token_id, ones, torch.zeros_like(ones), None)

    def forward(self, inputs: MLLMInputs) -> tuple[Tensor, Tensor]:
        """Hidden states (B, L, hidden) of the text model and a bool mask, True = real token."""
        image_embeds = None
        num_slots = inputs.num_slots
        if inputs.pixel_values is not None:
            pixels = inputs.pixel_values.to(self.model.dtype)
            # (N, latent_query_num, hidden); Kosmos-2 scatters the rows, flattened, over the mask
            # positions in row-major order, which is the images' order of appearance.
            image_embeds = self.model.get_image_features(pixels, return_dict=True).pooler_output
            if image_embeds.shape[0] * image_embeds.shape[1] != num_slots:
                raise ValueError(f"{image_embeds.shape[0]} images for {num_slots} image slots")
        elif num_slots:
            raise ValueError(f"{num_slots} image slots but no pixel_values")
        slot_mask = inputs.image_embeds_position_mask if image_embeds is not None else None
        out = self.model.text_model(
            input_ids=inputs.input_ids,
            attention_mask=inputs.attention_mask,
            image_embeds=image_embeds,
            image_embeds_position_mask=slot_mask,
            return_dict=True,
        )
        return out.last_hidden_state, inputs.attention_mask.bool()
