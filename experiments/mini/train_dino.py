"""Trains the mini DINO self-supervised on a mini world's training images with a SimCLR objective:
two random views of each image (crop and zoom, flip, brightness and contrast jitter) must find each other
among the batch's views (NT-Xent), through a projection head that is dropped afterwards, as DINO
was published without its head. Hue is left alone: colour is part of a subject's identity. Seeded:
the same seed on the same machine gives the same weights. The loss goes out as JSON lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from experiments.mini.attribute_classifier import pixels_of
from experiments.mini.dino import RECORD_FILE, MiniDinoConfig, save_untrained_dino
from experiments.mini.labelled_images import labelled_images
from experiments.mini.provenance import Provenance, write_record
from experiments.mini.training_loop import LossLog, MiniTraining, optimise, print_line
from experiments.mini.version import WORLD_VERSION


@dataclass(frozen=True)
class DinoTraining(MiniTraining):
    steps: int = 300
    batch_size: int = 128  # images per step, two views each
    temperature: float = 0.2
    config: MiniDinoConfig = MiniDinoConfig()


def random_view(pixels: torch.Tensor) -> torch.Tensor:
    """A view of each uint8 image [N, 3, H, W], normalised as DinoEncoder normalises: a square crop
    of 40-100% of the area at a random place zoomed back to full size, flipped left-right half the
    time, brightness and contrast scaled by 0.6-1.4. Drawn per image in one batched resampling
    (torchvision's transforms draw one crop for a whole batch)."""
    n = len(pixels)
    x = pixels.float() / 255
    side = torch.sqrt(torch.empty(n).uniform_(0.4, 1.0))
    shift = (1 - side)[:, None] * torch.empty(n, 2).uniform_(-1, 1)
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side * flip, side, shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x * torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4)
    grey = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - grey) * torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4) + grey).clamp(0, 1)
    mean, std = (torch.tensor(v)[None, :, None, None] for v in (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    return (x - mean) / std


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: row i of `a` and row i of `b` are views of one image; every other row of
    either is a negative."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = len(a)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(similarity, partner)


def train_dino(
    captions_file: Path,
    images: Path,
    out: Path,
    training: DinoTraining,
    command: str,
    log: LossLog = print_line,
) -> list[float]:
    """Writes the trained mini DINO to `out`; returns every step's loss."""
    pixels = pixels_of([item.rgb() for item in labelled_images(captions_file, images)])
    out = Path(out)
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's global RNG
        torch.manual_seed(training.seed)
        model = save_untrained_dino(out, training.config)
        width = training.config.width
        head = torch.nn.Sequential(
            torch.nn.Linear(width, 2 * width), torch.nn.ReLU(), torch.nn.Linear(2 * width, width)
        )
        batch = min(training.batch_size, len(pixels))

        def embed(views: torch.Tensor) -> torch.Tensor:
            return head(model(pixel_values=views).last_hidden_state[:, 0])

        def step_loss() -> torch.Tensor:
            chosen = pixels[torch.randperm(len(pixels))[:batch]]
            return nt_xent(embed(random_view(chosen)), embed(random_view(chosen)), training.temperature)

        model.train()
        parameters = [*model.parameters(), *head.parameters()]
        losses = optimise(
            parameters, step_loss, training.steps, training.learning_rate, training.log_every, log
        )
    model.eval().save_pretrained(out)
    write_record(out / RECORD_FILE, Provenance(command, training.seed, WORLD_VERSION, training))
    return losses
