"""The frozen Stable Diffusion v1.5 image decoder: diffusion loss for training, sampling with CFG.

U-Net and VAE are never modified (that is what keeps ControlNet/LoRA U-Nets usable). Sampling
goes through diffusers' own StableDiffusionPipeline with the aligned MLLM output passed as
`prompt_embeds`: the aligned MLLM is a drop-in for the pipeline's text encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch import Tensor, nn

SAMPLERS = ("ddim", "dpm")


class ImageDecoder(nn.Module):
    """Frozen U-Net + VAE + schedulers of one SD-v1.5-layout directory."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        noise_scheduler: DDPMScheduler,
        samplers: dict[str, SchedulerMixin],
    ) -> None:
        super().__init__()
        prediction_type = noise_scheduler.config.prediction_type
        if prediction_type != "epsilon":
            raise ValueError(f"eq. 3 is an epsilon-prediction loss; this U-Net predicts {prediction_type!r}")
        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.noise_scheduler = noise_scheduler
        self.samplers = samplers
        self.cross_attention_dim: int = unet.config.cross_attention_dim
        self._pipeline: StableDiffusionPipeline | None = None

    @classmethod
    def from_pretrained(cls, sd_path: str, dtype: torch.dtype | None = None) -> ImageDecoder:
        unet = UNet2DConditionModel.from_pretrained(
            sd_path, subfolder="unet", torch_dtype=dtype, local_files_only=True
        )
        vae = AutoencoderKL.from_pretrained(
            sd_path, subfolder="vae", torch_dtype=dtype, local_files_only=True
        )
        # All schedulers read the checkpoint's own scheduler config, as the official code does
        # (app_model.py), so SD v1.5's betas, steps_offset and clip_sample=False carry over.
        load = dict(subfolder="scheduler", local_files_only=True)
        samplers: dict[str, SchedulerMixin] = {
            "ddim": DDIMScheduler.from_pretrained(sd_path, **load),
            "dpm": DPMSolverMultistepScheduler.from_pretrained(sd_path, **load),
        }
        return cls(unet, vae, DDPMScheduler.from_pretrained(sd_path, **load), samplers)

    def train(self, mode: bool = True) -> ImageDecoder:
        # Frozen in every stage: a parent's .train() must not flip it out of eval mode.
        return super().train(False)

    @torch.no_grad()
    def encode_images(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> latents sampled from the VAE posterior, times its scale."""
        posterior = self.vae.encode(images.to(self.vae.device, self.vae.dtype)).latent_dist
        return posterior.sample(generator) * self.vae.config.scaling_factor

    def diffusion_loss(
        self, images: Tensor, condition: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Eq. 3: E||eps - eps_theta(z_t, t, C)||^2 at a uniform random timestep per image.

        Only `condition` can receive gradient; the U-Net and VAE are frozen. The loss is the
        mean over elements (the official code sums per-image means over the batch; the mean
        keeps the learning rate independent of the batch size).
        """
        latents = self.encode_images(images, generator)
        device = latents.device
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
            generator=generator, device=generator.device if generator is not None else device,
        ).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self.unet(noisy, timesteps, encoder_hidden_states=condition.to(self.unet.dtype)).sample
        return F.mse_loss(prediction.float(), noise.float())

    def _get_pipeline(self) -> StableDiffusionPipeline:
        if self._pipeline is None:
            # The pipeline shares this module's U-Net and VAE (no copies), so it follows .to().
            # No text encoder: every call passes prompt_embeds.
            self._pipeline = StableDiffusionPipeline(
                vae=self.vae,
                text_encoder=None,
                tokenizer=None,
                unet=self.unet,
                scheduler=self.samplers["ddim"],
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            self._pipeline.set_progress_bar_config(disable=True)
        return self._pipeline

    @torch.no_grad()
    def sample(
        self,
        condition: Tensor,
        null_condition: Tensor,
        *,
        guidance: float,
        steps: int,
        sampler: str = "ddim",
        height: int,
        width: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> list[Image.Image]:
        """Images for conditions (B, 77, T) with classifier-free guidance against the null one.
        A list of B generators draws each image's noise from its own generator.

        The pipeline's guidance eps_u + w (eps_c - eps_u) equals eq. 4, w eps_c - (w - 1) eps_u.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
        pipeline = self._get_pipeline()
        pipeline.scheduler = self.samplers[sampler]
        dtype = self.unet.dtype
        condition = condition.to(self.unet.device, dtype)
        null_condition = null_condition.to(self.unet.device, dtype).expand_as(condition)
        return pipeline(
            prompt_embeds=condition,
            negative_prompt_embeds=null_condition,
            guidance_scale=guidance,
            num_inference_steps=steps,
            height=height,
            width=width,
            generator=generator,
            output_type="pil",
        ).images
