"""Stage 2 as the official code runs it: the frozen MLLM with dropout in train mode, L_rec over
the pad token's states too, no `</s>`, and each of them switchable."""

from __future__ import annotations

import torch

from experiments.data.batches import WHOLE
from experiments.recipes.align import AlignObjective
from experiments.training.loop import train
from experiments.training.tracker import RecordingTracker
from models import KosmosGConditioner
from tests.support.tiny import tiny_config


def test_the_frozen_mllm_runs_with_dropout_but_held_out_losses_repeat(tiny_assets, tmp_path):
    config = tiny_config(tiny_assets, "aligner-12", mllm_dropout=0.1, steps=4, eval_every=2,
                         checkpoint_every=2)
    objective = AlignObjective(config)
    assert objective.mllm.training and not any(p.requires_grad for p in objective.mllm.parameters())
    captions = objective.stream.source(0, WHOLE).items
    first, again = objective.encode(captions)[0], objective.encode(captions)[0]
    assert not torch.allclose(first, again)  # dropout noise in M's input and in L_rec's target
    assert objective.heldout() == objective.heldout()  # held out without the dropout
    assert objective.mllm.training  # and back in train mode after it
    outcome = train(objective, config.train, tmp_path, RecordingTracker(), progress=False)
    assert outcome.failure is None and objective.mllm.training

    quiet = AlignObjective(tiny_config(tiny_assets, "aligner-12", mllm_dropout=0.0))
    assert not quiet.mllm.training
    assert torch.equal(quiet.encode(captions)[0], quiet.encode(captions)[0])


def test_rec_loss_covers_the_pad_token_states_unless_masked(tiny_assets):
    official = AlignObjective(tiny_config(tiny_assets, "aligner-12", mllm_dropout=0.0))
    masked = AlignObjective(tiny_config(tiny_assets, "aligner-12", mllm_dropout=0.0, rec_mask_padding=True))
    batch = official.batch(0)
    source, mask, _ = batch
    assert not mask.all()
    # The padding holds the MLLM's state at its pad token, one per row, not zeros.
    padded_rows = (~mask).any(dim=1)
    first_pad = (~mask).int().argmax(dim=1)
    rows = torch.arange(len(source))[padded_rows]
    pad_states = source[rows, first_pad[padded_rows]]
    assert pad_states.abs().sum(dim=-1).min() > 0
    assert torch.equal(source[rows, -1], pad_states)
    masked.trainable.load_state_dict(official.trainable.state_dict())
    everywhere, real_only = official.loss(batch)["rec_loss"], masked.loss(batch)["rec_loss"]
    assert not torch.isclose(everywhere, real_only)
    reconstruction = official.trainable.reconstruct(official.trainable(source, mask), source.shape[1])
    expected = (reconstruction - source).pow(2).mean() * 77 / source.shape[1]
    assert torch.isclose(everywhere, expected)


def test_prompts_end_without_eos_unless_asked(tiny_assets):
    objective = AlignObjective(tiny_config(tiny_assets, "aligner-12", mllm_dropout=0.0))
    closed = AlignObjective(tiny_config(tiny_assets, "aligner-12", mllm_dropout=0.0, append_eos=True))
    eos = objective.mllm.tokenizer.eos_token_id
    captions = objective.stream.source(0, WHOLE).items[:3]
    assert objective.encode(captions)[1].sum() + 3 == closed.encode(captions)[1].sum()
    bare = objective.mllm.tokenize(captions, append_eos=objective.append_eos).input_ids
    assert eos not in bare
    with_eos = KosmosGConditioner(objective.mllm, objective.trainable, append_eos=True)
    assert not torch.allclose(with_eos(captions), objective.conditioner(captions))
