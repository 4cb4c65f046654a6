"""Trains the mini Stable Diffusion on a mini world's training split, as SD was trained: first the
VAE (reconstruction, with a small KL term), then the U-Net on the frozen VAE's latents with
epsilon prediction under SD v1.5's noise schedule, conditioned on the frozen text encoder's last
hidden state of one of the image's captions, or of the empty caption for a tenth of the images so
that classifier-free guidance has an unconditional model to push against. The U-Net keeps an
exponential moving average of its weights, which is what is saved, every `save_every` steps and
at the end, with a record naming the steps it holds: nothing depends on the total step count, so
the weights saved at step n are those `--steps n` gives. Seeded: the same seed on the same
machine gives the same weights. Both losses go out as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from diffusers.training_utils import EMAModel

from experiments.mini.labelled_images import labelled_images
from experiments.mini.provenance import Provenance, write_record
from experiments.mini.stable_diffusion import (
    RECORD_FILE,
    MiniSdConfig,
    save_text_encoder,
    untrained_unet,
    untrained_vae,
)
from experiments.mini.training_loop import LossLog, MiniTraining, optimise, print_line
from experiments.mini.version import WORLD_VERSION
from models.text_target import ClipTextTarget


@dataclass(frozen=True)
class SdTraining(MiniTraining):
    steps: int = 5000  # U-Net steps
    learning_rate: float = 1e-3  # U-Net
    vae_steps: int = 2000
    vae_batch_size: int = 32
    vae_learning_rate: float = 2e-3
    kl_weight: float = 1e-6  # small, as LDM's: the latents only need to stay bounded
    null_share: float = 0.1  # empty captions, for classifier-free guidance
    ema_decay: float = 0.999
    save_every: int = 500
    log_every: int = 100
    config: MiniSdConfig = MiniSdConfig()


def train_stable_diffusion(
    captions_file: Path,
    images: Path,
    clip: Path,
    out: Path,
    training: SdTraining,
    command: Callable[[SdTraining], str],
    log: LossLog = print_line,
) -> tuple[list[float], list[float]]:
    """Writes the trained mini SD to `out`, its text encoder the mini CLIP's at `clip`; returns
    every VAE step's loss and every U-Net step's loss. `command(settings)` is the command line
    that trains with `settings`, for the record."""
    labelled = [item for item in labelled_images(captions_file, images) if item.captions]
    pixels = torch.from_numpy(np.stack([np.asarray(item.rgb()) for item in labelled]))
    pixels = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1
    out = Path(out)
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's global RNG
        torch.manual_seed(training.seed)
        draws = torch.Generator().manual_seed(training.seed)
        text_encoder = save_text_encoder(clip, out)
        vae = untrained_vae(training.config)
        vae_losses = _train_vae(vae, pixels, training, draws, _tagged(log, "vae"))
        noise_scheduler = DDPMScheduler.from_pretrained(out, subfolder="scheduler", local_files_only=True)
        with torch.no_grad():
            posterior = vae.eval().encode(pixels).latent_dist
        # SD's scaling factor is 1 / the std of its latents: the U-Net sees unit-variance latents.
        vae.register_to_config(scaling_factor=round(1 / posterior.mean.std().item(), 5))
        vae.save_pretrained(out / "vae")
        target = ClipTextTarget.from_pretrained(str(out))
        captions = [text for item in labelled for text in item.captions]
        with torch.no_grad():
            states = torch.cat([target(captions[i : i + 256]) for i in range(0, len(captions), 256)])
            null = target([""])
        count = torch.tensor([len(item.captions) for item in labelled])
        first = torch.cumsum(count, 0) - count
        unet = untrained_unet(
            training.config, text_encoder.config.hidden_size, posterior.mean.shape[-1]
        ).train()
        ema = EMAModel(unet.parameters(), decay=training.ema_decay, use_ema_warmup=True)
        scale = vae.config.scaling_factor
        batch = min(training.batch_size, len(labelled))

        def save(steps: int) -> None:
            ema.store(unet.parameters())
            ema.copy_to(unet.parameters())
            unet.save_pretrained(out / "unet")
            ema.restore(unet.parameters())
            taken = replace(training, steps=steps)
            write_record(out / RECORD_FILE, Provenance(command(taken), training.seed, WORLD_VERSION, taken))

        taken = 0

        def after_step() -> None:
            nonlocal taken
            ema.step(unet.parameters())
            taken += 1
            if taken % training.save_every == 0 or taken == training.steps:
                save(taken)

        def unet_loss() -> torch.Tensor:
            chosen = torch.randperm(len(labelled), generator=draws)[:batch]
            text = first[chosen] + (torch.rand(batch, generator=draws) * count[chosen]).long()
            condition = states[text]
            empty = torch.rand(batch, generator=draws) < training.null_share
            condition = torch.where(empty[:, None, None], null, condition)
            mean, std = posterior.mean[chosen], posterior.std[chosen]
            latents = (mean + std * torch.randn(mean.shape, generator=draws)) * scale
            noise = torch.randn(latents.shape, generator=draws)
            steps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=draws)
            noisy = noise_scheduler.add_noise(latents, noise, steps)
            return F.mse_loss(unet(noisy, steps, encoder_hidden_states=condition).sample, noise)

        unet_losses = optimise(
            unet.parameters(), unet_loss, training.steps, training.learning_rate, training.log_every,
            _tagged(log, "unet"), after_step=after_step,
        )  # fmt: skip
    return vae_losses, unet_losses


def _train_vae(
    vae: AutoencoderKL, pixels: torch.Tensor, training: SdTraining, draws: torch.Generator, log: LossLog
) -> list[float]:
    batch = min(training.vae_batch_size, len(pixels))

    def vae_loss() -> torch.Tensor:
        chosen = pixels[torch.randperm(len(pixels), generator=draws)[:batch]]
        posterior = vae.encode(chosen).latent_dist
        reconstruction = vae.decode(posterior.sample(draws)).sample
        return F.mse_loss(reconstruction, chosen) + training.kl_weight * posterior.kl().mean()

    vae.train()
    return optimise(
        vae.parameters(), vae_loss, training.vae_steps, training.vae_learning_rate, training.log_every, log
    )


def _tagged(log: LossLog, part: str) -> LossLog:
    """Lines of `log` saying which of the two models they are about."""
    return lambda line: log(json.dumps({"model": part, **json.loads(line)}))
