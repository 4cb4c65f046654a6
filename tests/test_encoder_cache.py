"""Stage 2's encoder-output cache: same tensors as encoding afresh, and the encoders really skipped."""

from __future__ import annotations

import json
import math

import torch

from experiments.data.batches import WHOLE
from experiments.data.captions import load_captions
from experiments.data.items import CaptionItem
from experiments.data.shards import open_shards
from experiments.data.stream import StepRows
from experiments.recipes.align import AlignObjective
from tests.support.tiny import tiny_config


def count_encoded_captions(objective: AlignObjective) -> list[int]:
    """Batch sizes the frozen MLLM and CLIP encoders are called with, both recorded."""
    calls: list[int] = []
    mllm_forward, clip_forward = objective.mllm.forward, objective.target.forward

    def mllm(inputs):
        calls.append(inputs.input_ids.shape[0])
        return mllm_forward(inputs)

    def clip(captions):
        calls.append(len(captions))
        return clip_forward(captions)

    objective.mllm.forward, objective.target.forward = mllm, clip
    return calls


def assert_same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_cached_batches_equal_fresh_ones_and_skip_the_encoders(tiny_assets):
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12", cache_encoder_outputs=True))
    calls = count_encoded_captions(objective)
    captions = objective.stream.source(0, WHOLE).items
    first = objective.batch(0)
    assert calls == [len(set(captions))] * 2  # one MLLM and one CLIP call, each caption once
    again = objective.batch(0)
    assert len(calls) == 2
    assert_same(again, first)
    assert_same(objective.encode(captions)[:3], first)


def test_rows_cached_from_other_batches_are_re_padded_with_their_pad_token_state(tiny_assets):
    """L_rec reconstructs the padding too, so a cached row must be padded with what the MLLM
    puts there, whatever length the batch it was encoded in had."""
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12", cache_encoder_outputs=True))
    captions = sorted(set(objective.stream.source(0, WHOLE).items), key=len)
    short, long = captions[:4], captions[-4:]
    objective.cache(short)  # each half encoded alone, padded to its own length
    objective.cache(long)
    mixed = short + long
    source, mask, target, pad = objective.cache(mixed)
    fresh_source, fresh_mask, fresh_target, fresh_pad = objective.encode(mixed)
    assert not mask.all()  # the short rows are padded
    assert torch.equal(mask, fresh_mask) and torch.equal(target, fresh_target)
    assert torch.allclose(source, fresh_source, atol=1e-5)
    assert torch.allclose(pad, fresh_pad, atol=1e-5)
    assert not torch.allclose(source[~mask], torch.zeros_like(source[~mask]))  # not zeros


def test_two_epochs_encode_each_caption_once(tiny_assets, tmp_path):
    config = tiny_config(tiny_assets, "aligner-12", cache_encoder_outputs=True)
    objective = AlignObjective(config)
    # Two epochs of the whole tiny set take too long here: 40 of its captions stand in for it.
    items = [c.caption for c in load_captions(tiny_assets / "coco" / "captions_train.json")[:40]]
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text("".join(json.dumps({"caption": caption}) + "\n" for caption in items))
    rows = StepRows(open_shards(str(manifest)), CaptionItem(objective.target.tokenizer, 75),
                    config.train.batch_size, seed=0)
    objective.stream_steps(rows)
    calls = count_encoded_captions(objective)
    distinct = set(items)
    steps_per_epoch = math.ceil(len(items) / config.train.batch_size)
    for step in range(2 * steps_per_epoch):
        objective.batch(step)
    assert sum(calls) == 2 * len(distinct)  # MLLM + CLIP, once per caption over both epochs
    objective.heldout()
    objective.heldout()
    assert sum(calls) == 2 * len(distinct | set(objective.heldout_texts))


def test_runs_on_the_same_encoders_share_the_disk_cache(tiny_assets, tmp_path):
    config = tiny_config(tiny_assets, "aligner-12", cache_encoder_outputs=True)
    writer = AlignObjective(config, cache_dir=tmp_path)
    written = writer.batch(3)
    assert list((tmp_path / "encoder-outputs").glob("*/*.safetensors"))
    reader = AlignObjective(config, cache_dir=tmp_path)  # another row, another process alike
    calls = count_encoded_captions(reader)
    assert_same(reader.batch(3), written)
    assert calls == []


def test_without_the_cache_every_batch_is_encoded(tiny_assets):
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12"))
    calls = count_encoded_captions(objective)
    objective.batch(0)
    objective.batch(0)
    assert len(calls) == 4
