"""Stage-2 aligning on the mini world, measured outside the harness's loop (bench.mini_aligning,
tests/test_mini_learning.py; docs/performance.md, "Why MSE-aligning is slow here"):

- the mini Kosmos-2's last states and the mini SD's CLIP states for the same captions, encoded once;
- a linear map between them fitted in closed form, which reaches a held-out MSE at which the mini
  SD draws as well as from CLIP's own states, so the MLLM's states carry what the SD needs;
- other sources for the same captions (the states whitened, a random vector per token) and a short
  aligning run on any of them, which show that AlignerNet learns and that the states' conditioning
  is what slows it;
- captions that differ in one attribute word, to measure how far each encoding moves.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from experiments.config import OptimConfig
from experiments.training.loop import build_optimizer
from models.aligner import Aligner, alignment_losses
from models.mllm import MLLMEncoder
from models.text_target import ClipTextTarget

BATCH = 256


@dataclass(frozen=True)
class EncodedCaptions:
    """Captions as the aligner sees them (MLLM states) and as it must answer (CLIP states)."""

    states: Tensor  # (N, positions, S): the MLLM's last states, cut or zero-padded to `positions`
    mask: Tensor  # (N, positions) bool: True on a caption's tokens
    token_ids: Tensor  # (N, positions): the MLLM's token ids, 0 on padding
    targets: Tensor  # (N, target_len, T): the CLIP text tower's states, the aligning target

    def __len__(self) -> int:
        return len(self.states)

    def rows(self, index: Tensor | slice) -> EncodedCaptions:
        return EncodedCaptions(
            self.states[index], self.mask[index], self.token_ids[index], self.targets[index]
        )


def encode_captions(
    mllm: MLLMEncoder, target: ClipTextTarget, captions: list[str], positions: int
) -> EncodedCaptions:
    """Both encodings of `captions`, without gradients (an MLLM in eval mode has no dropout)."""
    parts: list[tuple[Tensor, ...]] = []
    with torch.no_grad():
        for start in range(0, len(captions), BATCH):
            batch = captions[start : start + BATCH]
            inputs = mllm.tokenize(batch)
            states, mask = mllm(inputs)
            # Text-only prompts: one state per token, so the ids line up with the states.
            ids = inputs.input_ids * mask
            fitted = [_fit(part, positions) for part in (states * mask[..., None], mask.bool(), ids)]
            parts.append((*fitted, target(batch)))
    states, mask, ids, targets = (torch.cat(column) for column in zip(*parts))
    return EncodedCaptions(states, mask, ids, targets)


def _fit(tensor: Tensor, positions: int) -> Tensor:
    """Cut or zero-pad dimension 1 to `positions`."""
    pad = [0, 0] * (tensor.dim() - 2) + [0, max(0, positions - tensor.shape[1])]
    return F.pad(tensor, pad)[:, :positions]


@dataclass(frozen=True)
class RidgeMap:
    """A linear map from a caption's flattened MLLM states to its flattened CLIP states, fitted in
    closed form on centred data: what an aligner that learned it perfectly would output."""

    source_mean: Tensor
    target_mean: Tensor
    weights: Tensor

    @classmethod
    def fit(cls, train: EncodedCaptions, strength: float = 1.0) -> RidgeMap:
        x, y = train.states.flatten(1).double(), train.targets.flatten(1).double()
        x_mean, y_mean = x.mean(0), y.mean(0)
        x, y = x - x_mean, y - y_mean
        gram = x.T @ x + strength * torch.eye(x.shape[1], dtype=x.dtype)
        return cls(x_mean, y_mean, torch.linalg.solve(gram, x.T @ y))

    def __call__(self, encoded: EncodedCaptions) -> Tensor:
        x = encoded.states.flatten(1).double() - self.source_mean
        return (x @ self.weights + self.target_mean).float().view_as(encoded.targets)


def position_means(train: EncodedCaptions, count: int) -> Tensor:
    """Each target position's mean CLIP state, `count` times: what an aligner that ignores the
    caption can at best output."""
    return train.targets.mean(0, keepdim=True).expand(count, -1, -1)


def heldout_mse(predicted: Tensor, heldout: EncodedCaptions) -> float:
    return F.mse_loss(predicted, heldout.targets).item()


def one_word_swapped(captions: list[str], words: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """The captions that name one of `words`, and each of them with the first such word replaced
    by another of `words` (drawn with `seed`): pairs that differ in one attribute."""
    draws = random.Random(seed)
    named = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b")
    originals, swapped = [], []
    for caption in captions:
        found = named.search(caption)
        if found is None:
            continue
        other = draws.choice([word for word in words if word != found.group()])
        originals.append(caption)
        swapped.append(caption[: found.start()] + other + caption[found.end() :])
    return originals, swapped


def relative_change(before: Tensor, after: Tensor) -> float:
    """How far each caption's encoding moves (before -> after), as a share of how far the
    captions' encodings lie from their mean; averaged over captions."""
    moved = (after - before).flatten(1).norm(dim=1)
    spread = (before - before.mean(0)).flatten(1).norm(dim=1)
    return (moved / spread).mean().item()


def whitened(encoded: EncodedCaptions, reference: EncodedCaptions, floor: float = 1e-3) -> EncodedCaptions:
    """`encoded` with each token's MLLM state rotated and scaled so that, over `reference`'s tokens,
    every direction has unit variance (directions below `floor` are scaled as if at `floor`)."""
    tokens = reference.states[reference.mask]
    mean = tokens.mean(0)
    variances, directions = torch.linalg.eigh(torch.cov(tokens.T))
    transform = directions / variances.clamp(min=floor).sqrt()
    states = ((encoded.states - mean) @ transform) * encoded.mask[..., None]
    return replace(encoded, states=states)


def token_embedded(encoded: EncodedCaptions, width: int, seed: int) -> EncodedCaptions:
    """`encoded` with each MLLM state replaced by a fixed random N(0, 1) vector per token id: a
    source that names each word as distinctly as any other, with nothing learned."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(int(encoded.token_ids.max()) + 1, width, generator=generator)
    return replace(encoded, states=table[encoded.token_ids] * encoded.mask[..., None])


def short_aligner_run(
    aligner: Aligner,
    optim: OptimConfig,
    train: EncodedCaptions,
    heldout: EncodedCaptions,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    every: int,
) -> dict[int, float]:
    """Held-out L_mse every `every` steps of aligning `aligner` on encoded captions with the
    protocol's losses (L_mse + L_rec) and optimiser: the stage-2 step without the MLLM's forward
    pass, so that different sources can be compared on the same captions. One difference from
    the harness's step: padding holds zeros here, where the harness feeds the pad token's state
    (which L_rec then reconstructs)."""
    optimizer, schedule = build_optimizer(list(aligner.parameters()), optim, steps)
    draws = torch.Generator().manual_seed(seed)
    curve: dict[int, float] = {}
    for step in range(1, steps + 1):
        batch = train.rows(torch.randint(len(train), (batch_size,), generator=draws))
        losses = alignment_losses(aligner, batch.states, batch.mask, batch.targets)
        (losses["mse_loss"] + losses["rec_loss"]).backward()
        torch.nn.utils.clip_grad_norm_(aligner.parameters(), optim.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % every == 0 or step == steps:
            aligner.eval()
            with torch.no_grad():
                curve[step] = heldout_mse(aligner(heldout.states, heldout.mask), heldout)
            aligner.train()
    return curve
