"""The model side of `repro preflight` (repro/preflight/ keeps the command, its stages, the
table and the launch sizing): a run's config as the preflight runs it, the recipe built by the
same build step as a run's, its parameters counted, a few training steps predicted on fake
tensors or taken for real, and a few FID and DreamBench images sampled through the evaluation
code."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from experiments.config import FidConfig, RunConfig
from experiments.data.captions import load_captions, sample_captions
from experiments.evaluation import fid
from experiments.recipes.modules import sampling_models
from experiments.recipes.registry import (
    Generates,
    Scores,
    Trains,
    build_recipe,
    evaluation_applies,
    recipe_named,
)
from experiments.training.flops import decoder_cost
from experiments.training.loop import build_optimizer
from experiments.training.memory import StepCost, module_tree, parameter_counts, run_steps
from experiments.training.objective import Objective
from experiments.training.precision import sampling_autocast
from models import build_aligner

# Classifier-free guidance: a conditional and a null U-Net prediction every sampler step.
GUIDED_PREDICTIONS = 2
CONDITION_TOKENS = 77  # SD v1.5's conditions, which every conditioner here gives


@dataclass(frozen=True)
class SamplingCost:
    """The images a run's evaluations sample and their U-Net FLOPs (the VAE decode, once an
    image, left out)."""

    images: dict[str, int]  # evaluation -> images
    flops: dict[str, int]  # evaluation -> their FLOPs


def preflight_config(config: RunConfig, scratch: Path) -> RunConfig:
    """The run's config as the preflight runs it: rows read in this process (no DataLoader
    workers), encoders run on every step as in a run's first epoch (no cache), and a stage-3 run
    started from a random aligner of the configured shape in place of its stage-2 run, which has
    not trained yet."""
    config = replace(config, data=replace(config.data, num_workers=0),
                     train=replace(config.train, cache_encoder_outputs=False))
    if recipe_named(config.recipe).starts_from_run:
        config = replace(config, train=replace(config.train, init_from=str(_random_stage2(config, scratch))))
    return config


def _random_stage2(config: RunConfig, scratch: Path) -> Path:
    from safetensors.torch import save_file
    from transformers import AutoConfig, CLIPTextConfig

    mllm = AutoConfig.from_pretrained(config.models.mllm, local_files_only=True).text_config
    clip = CLIPTextConfig.from_pretrained(Path(config.models.stable_diffusion) / "text_encoder",
                                          local_files_only=True)
    # aligner_for's sizes, read from the configs alone: no weights are loaded.
    aligner = build_aligner(config.aligner, mllm.embed_dim, clip.hidden_size, clip.max_position_embeddings)
    path = scratch / "stage2" / "model.safetensors"
    path.parent.mkdir()
    save_file({k: v.contiguous() for k, v in aligner.state_dict().items()}, path)
    return path


def release_memory() -> None:
    """What a finished run's models held goes back, on the GPU too, before the next run loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class PreflightRun:
    """One run's recipe, built (cache_dir: the work dir's shared cache), and what the preflight
    takes of it."""

    def __init__(self, config: RunConfig, cache_dir: Path) -> None:
        self.config, self.cache_dir = config, cache_dir
        self.built = build_recipe(config, cache_dir)
        self._sampling: Generates | None = None  # loaded once, for FID and DreamBench alike

    def parameter_counts(self) -> tuple[int | None, int | None]:
        """(trainable, frozen) parameters of what the recipe built; None for one with no model."""
        if isinstance(self.built, Scores):
            return None, None
        holders = [self.built.objective] if isinstance(self.built, Trains) else \
            [self.built.conditioner, self.built.decoder]
        return parameter_counts([module for holder in holders for module in module_tree(holder)])

    @property
    def objective(self) -> Objective:
        if not isinstance(self.built, Trains):
            raise TypeError(f"the {self.config.recipe} recipe trains nothing: it has no steps to take")
        return self.built.objective

    @property
    def trainable_bytes(self) -> int:
        return sum(p.numel() * p.element_size()
                   for p in self.objective.trainable.parameters() if p.requires_grad)

    @property
    def on_gpu(self) -> bool:
        return self.objective.device.type == "cuda"

    def steps(self, micro: int, count: int, *, fake: bool) -> StepCost:
        """`count` training steps of `micro` items with the run's optimiser (experiments/training/
        memory.py): predicted on fake tensors, or taken for real."""
        train = self.config.train

        def optimizer(params):
            return build_optimizer(params, train.optim, train.steps)[0]

        return run_steps(self.objective, train, micro, count, fake=fake, build_optimizer=optimizer)

    def sample_fid(self, images: int, sampler_steps: int, scratch: Path, sampled_in: str | None) -> str:
        """`images` FID images of `sampler_steps` steps through the evaluation code; where the run
        `sampled_in` (on the same decoder, size, precision and sampler) sampled them already, only
        this run's conditioner encodes the prompts, its conditions checked against what the
        decoder takes. Returns the row's basis line."""
        models = self._sampling_models()
        captions = _first_captions(self.config.fid, images, scratch)
        settings = replace(self.config.fid, captions=str(captions), num_captions=images, steps=sampler_steps,
                           batch_size=images)
        if sampled_in is not None:
            prompts = [c.caption for c in load_captions(captions)]
            with torch.no_grad(), sampling_autocast(settings.precision):
                for condition in (models.conditioner(prompts), models.conditioner.null(len(prompts))):
                    _check_condition(condition, len(prompts), models.decoder.cross_attention_dim)
            return (f"FID images: sampled in {sampled_in} (same decoder, size, precision and sampler); "
                    f"this run's conditioner encoded {len(prompts)} prompts")
        fid.evaluate_fid(models.conditioner, models.decoder, settings, seed=self.config.seed,
                         run_dir=scratch / "run", cache_dir=self.cache_dir, progress=False)
        return (f"FID images: {settings.num_captions} at {settings.generate_size} px, "
                f"{settings.steps} sampler step(s)")

    def sample_dreambench(self, sampler_steps: int, scratch: Path) -> None:
        """One subject, one prompt, one image of `sampler_steps` steps through DreamBench's
        evaluation code; a recipe with no model scores that much."""
        from experiments.evaluation.dreambench_scores import evaluate_dreambench

        bench = self.config.dreambench
        root = Path(bench.root or "")
        subjects = bench.subjects or tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))[:1]
        bench = replace(bench, subjects=subjects[:1], templates=(0,), images_per_prompt=1,
                        steps=sampler_steps, batch_size=1)
        if isinstance(self.built, Scores):
            self.built.score(replace(self.config, dreambench=bench))
            return
        models = self._sampling_models()
        # As in experiments.recipes.run: DreamBench is on only where the conditioner takes images.
        evaluate_dreambench(models.conditioner,  # type: ignore[arg-type]
                            models.decoder, bench, seed=self.config.seed, run_dir=scratch / "run",
                            progress=False)

    def sampling_cost(self) -> SamplingCost:
        """What the run's evaluations sample at its protocol's settings (30,000 COCO images of
        250 steps, 3,000 DreamBench images of 100 in the full tier), counted on the meta device."""
        from experiments.data.dreambench_layout import (
            read_prompts_file,
            selected_subjects,
            selected_templates,
        )

        decoder = self._sampling_models().decoder
        images: dict[str, tuple[int, int, int]] = {}  # evaluation -> (images, steps, size)
        if evaluation_applies(self.config, "fid"):
            fid_config = self.config.fid
            images["fid"] = (fid_config.num_captions, fid_config.steps, fid_config.generate_size)
        if evaluation_applies(self.config, "dreambench"):
            bench = self.config.dreambench
            subjects = selected_subjects(read_prompts_file(bench.prompts or ""), bench.subjects)
            count = len(subjects) * len(selected_templates(bench.templates)) * bench.images_per_prompt
            images["dreambench"] = (count, bench.steps, bench.generate_size)
        flops = {}
        for name, (count, steps, size) in images.items():
            unet = decoder_cost(type(decoder.unet), decoder.unet.config, type(decoder.vae),
                                decoder.vae.config, size, target_len=CONDITION_TOKENS).unet
            flops[name] = count * steps * GUIDED_PREDICTIONS * unet
        return SamplingCost({name: count for name, (count, _, _) in images.items()}, flops)

    def _sampling_models(self) -> Generates:
        if isinstance(self.built, Scores):
            raise TypeError(f"the {self.config.recipe} recipe has no model to sample with")
        if self._sampling is None:
            self._sampling = sampling_models(self.built, self.config)
        return self._sampling


def _first_captions(settings: FidConfig, count: int, scratch: Path) -> Path:
    """The `count` captions the run's FID draws first, as a manifest of their own, so that the
    reference set is their images only and not every image the protocol's captions name (40,000
    for COCO, each through Inception)."""
    path = scratch / "fid-captions.jsonl"
    drawn = sample_captions(load_captions(settings.captions), count, settings.caption_seed)
    path.write_text("".join(json.dumps({"caption": c.caption, "image": c.image_file}) + "\n" for c in drawn))
    return path


def _check_condition(condition: torch.Tensor, batch: int, width: int) -> None:
    if condition.ndim != 3 or condition.shape[0] != batch or condition.shape[2] != width:
        raise ValueError(f"the conditioner gave {tuple(condition.shape)} for {batch} prompts; "
                         f"the decoder's cross-attention takes (batch, tokens, {width})")
    if not torch.isfinite(condition).all():
        raise ValueError("the conditioner gave non-finite conditions")
