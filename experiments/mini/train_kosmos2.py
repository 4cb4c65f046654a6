"""Trains the mini Kosmos-2 as a multimodal language model on a mini world's training split, as
KOSMOS-1 learned from text and image-caption pairs: each step, every other row is an image followed by
its caption and the rest captions alone, tokenized by the harness's own MLLMEncoder, with the
next-token loss on every text token, some words of the text doubled (Kosmos2Training says why).
Seeded: the same seed on the same machine gives the same weights. The loss goes out as JSON lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.mini.kosmos2 import RECORD_FILE, MiniKosmos2Config, save_untrained_kosmos2
from experiments.mini.labelled_images import labelled_images
from experiments.mini.provenance import Provenance, write_record
from experiments.mini.training_loop import LossLog, MiniTraining, optimise, print_line
from experiments.mini.version import WORLD_VERSION
from models.mllm import MLLMEncoder

IGNORED = -100  # cross_entropy's ignore_index: padding and image slots are not predicted


@dataclass(frozen=True)
class Kosmos2Training(MiniTraining):
    steps: int = 600  # image conditioning learned by then: docs/mini-world.md
    # A causal language model keeps a word in its last hidden state only where the next token
    # depends on it. The world draws its attributes independently, so on its captions alone
    # nothing after "red" depends on "red", and the last states of "red" and "green" nearly
    # coincide: swapping one colour word moved them 3% of the spread between captions, against 94%
    # for CLIP's (docs/mini-world.md). Natural text is full of such dependencies. Doubling each
    # word of the training text with this probability gives the world's text one: the next token
    # may be the current one, so the last state must say which word it is. Training text only;
    # the harness feeds the world's captions as they are.
    word_repeat_probability: float = 0.5
    config: MiniKosmos2Config = MiniKosmos2Config()


def with_repeated_words(text: str, probability: float, draws: torch.Generator) -> str:
    """`text` with each word doubled with `probability`, one draw from `draws` per word."""
    words: list[str] = []
    for word in text.split():
        words += [word] * (2 if float(torch.rand((), generator=draws)) < probability else 1)
    return " ".join(words)


def train_kosmos2(
    captions_file: Path,
    images: Path,
    out: Path,
    training: Kosmos2Training,
    command: str,
    log: LossLog = print_line,
) -> list[float]:
    """Writes the trained mini Kosmos-2 to `out`; returns every step's loss."""
    labelled = [item for item in labelled_images(captions_file, images) if item.captions]
    originals = [item.rgb() for item in labelled]
    out = Path(out)
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's global RNG
        torch.manual_seed(training.seed)
        model = save_untrained_kosmos2(out, training.config)
        model.save_pretrained(out)
        # Only its tokenize is used: the prompts are laid out exactly as the harness lays them out.
        layout = MLLMEncoder.from_pretrained(str(out))
        draws = torch.Generator().manual_seed(training.seed)
        batch = min(training.batch_size, len(labelled))

        def step_loss() -> torch.Tensor:
            chosen = torch.randperm(len(labelled), generator=draws)[:batch].tolist()
            # Every other row, starting with the first: Kosmos2ForConditionalGeneration refuses a
            # batch without an image.
            with_image = [row % 2 == 0 for row in range(batch)]
            texts = [
                labelled[i].captions[int(torch.randint(len(labelled[i].captions), (1,), generator=draws))]
                for i in chosen
            ]
            texts = [with_repeated_words(t, training.word_repeat_probability, draws) for t in texts]
            prompts = [f"{MLLMEncoder.IMAGE_PLACEHOLDER} {t}" if w else t for t, w in zip(texts, with_image)]
            pictures = [[originals[i]] if w else [] for i, w in zip(chosen, with_image)]
            inputs = layout.tokenize(prompts, pictures, append_eos=True)
            labels = inputs.input_ids.masked_fill(
                (inputs.attention_mask == 0) | (inputs.image_embeds_position_mask == 1), IGNORED
            )
            return model(
                input_ids=inputs.input_ids,
                attention_mask=inputs.attention_mask,
                image_embeds_position_mask=inputs.image_embeds_position_mask,
                pixel_values=inputs.pixel_values,
                labels=labels,
            ).loss

        model.train()
        losses = optimise(
            model.parameters(), step_loss, training.steps, training.learning_rate, training.log_every, log
        )
    model.eval().save_pretrained(out)
    write_record(out / RECORD_FILE, Provenance(command, training.seed, WORLD_VERSION, training))
    return losses
