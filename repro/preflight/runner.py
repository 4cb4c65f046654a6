"""One preflight row per planned run, one run at a time on this machine's device: load (the
recipe's own builders), predict the step's peak (fake tensors), train a few real steps where the
prediction fits this machine, sample a few FID and DreamBench images through the evaluation code.
A stage that fails is recorded on its row and the next runs go on; each stage's seconds are kept
on the row."""

from __future__ import annotations

import gc
import json
import logging
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from experiments.config import FidConfig, RunConfig
from repro.config.schema import RunSpec
from repro.preflight.sizing import GIB, Launch, per_rank_peak, run_hours, suggest_micro_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Options:
    steps: int = 2
    micro_batch: int = 1
    fid_images: int = 2  # FID needs two images for a covariance
    sampler_steps: int = 2
    budget_bytes: float = 0.0  # what a real step may take on this machine


@dataclass
class Row:
    run: str
    config_hash: str
    recipe: str
    trainable: int | None = None
    frozen: int | None = None
    seconds_per_item: float | None = None
    peak_measured_gib: float | None = None
    peak_predicted_gib: float | None = None
    micro_batch: str = ""
    fits: str = ""
    wall_clock_h: float | None = None
    gpu_hours: float | None = None
    basis: list[str] = field(default_factory=list)
    note: str = ""
    failed: str = ""  # "stage: error" of the first stage that failed
    seconds: dict[str, float] = field(default_factory=dict)  # wall-clock per stage


class _Stages:
    """Times each stage onto its row, and names the one in flight when an error escapes."""

    def __init__(self, row: Row) -> None:
        self.row, self.current = row, "load"

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        started = time.perf_counter()
        try:
            yield
        finally:
            self.row.seconds[name] = round(time.perf_counter() - started, 1)


def shape_key(spec: RunSpec) -> tuple:
    """What decides a run's modules, shapes and launch: runs equal in it are measured once."""
    c = spec.config
    t = c.train
    return (c.recipe, c.models, c.aligner, t.batch_size, t.micro_batch_size, t.precision, t.resolution,
            t.max_caption_tokens, t.parallelism, t.trainable_vision_layers, c.fid.enabled,
            c.fid.generate_size, c.dreambench.enabled, c.dreambench.generate_size, spec.launch.world_size,
            spec.launch.gpu_memory_gb)


def sampling_key(config: RunConfig) -> tuple:
    """What decides the shapes and precision of FID sampling past the conditioner: every run on
    the same decoder samples alike, whatever conditions it."""
    f = config.fid
    return (config.models.stable_diffusion, f.generate_size, f.precision, f.sampler, f.resolution)


def preflight(runs: list[RunSpec], workdir: Path, options: Options,
              on_row: Callable[[list[Row]], None] | None = None) -> list[Row]:
    """A row per run, in plan order; `on_row` sees the rows so far after each (the table is
    rewritten then, so a preflight stopped halfway keeps what it measured)."""
    done: dict[tuple, Row] = {}
    sampled: dict[tuple, str] = {}  # sampling_key -> the run that sampled FID images through it
    rows = []
    for spec in runs:
        key = shape_key(spec)
        if key in done:
            first = done[key]
            row = replace(first, run=spec.run_name, config_hash=spec.config_hash, basis=list(first.basis),
                          note=f"same modules and shapes as {first.run}: measured once")
        else:
            row = _preflight_run(spec, workdir, options, sampled)
            done[key] = row
        rows.append(row)
        if on_row is not None:
            on_row(rows)
    return rows


def _preflight_run(spec: RunSpec, workdir: Path, options: Options, sampled: dict[tuple, str]) -> Row:
    from experiments.recipes.registry import recipe_named

    row = Row(spec.run_name, spec.config_hash, spec.config.recipe)
    stage = _Stages(row)
    recipe = recipe_named(spec.config.recipe)
    log.info("preflight: %s (%s)", spec.run_name, spec.config_hash)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="preflight-") as scratch:
        config = _preflight_config(spec.config, Path(scratch))
        held: dict[str, Any] = {}
        try:
            if recipe.trains:
                _train_stages(spec, config, recipe, workdir, options, row, held, stage)
            elif recipe.generates:
                from experiments.recipes.modules import pick_device
                from experiments.training.memory import module_tree, parameter_counts

                with stage("load"):
                    held["conditioner"], held["decoder"] = recipe.load()(config, pick_device())
                row.trainable, row.frozen = parameter_counts(
                    module_tree(held["conditioner"]) + module_tree(held["decoder"]))
                row.basis.append("no training")
            if recipe.generates and config.fid.enabled:
                with stage("fid"):
                    row.basis.append(_fid(spec, config, held, workdir, Path(scratch), options, sampled))
            if config.dreambench.enabled:
                with stage("dreambench"):
                    _dreambench(config, recipe, held, Path(scratch), options)
        except Exception as error:  # noqa: BLE001 - recorded on the row; the other runs go on
            log.debug("preflight stage %s of %s failed:\n%s", stage.current, spec.run_name,
                      traceback.format_exc())
            row.failed = f"{stage.current}: {type(error).__name__}: {error}"
        finally:
            held.clear()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in row.seconds.items())
    row.basis.append(f"preflight stages: {stages}")
    log.info("preflight: %s done in %.0f s (%s)%s", spec.run_name, time.perf_counter() - started, stages,
             f" (failed: {row.failed})" if row.failed else "")
    return row


def _train_stages(spec: RunSpec, config: RunConfig, recipe: Any, workdir: Path, options: Options, row: Row,
                  held: dict[str, Any], stage: _Stages) -> None:
    from experiments.training.loop import build_optimizer
    from experiments.training.memory import module_tree, parameter_counts, run_steps

    with stage("load"):
        objective = recipe.load()(config, workdir / ".cache")
    held["objective"] = objective
    modules = module_tree(objective)
    row.trainable, row.frozen = parameter_counts(modules)
    train, launch = config.train, spec.launch
    world = launch.world_size
    per_rank = train.batch_size // world
    configured = train.micro_batch_size or per_rank
    local = min(options.micro_batch, configured)

    def optimizer(params):
        return build_optimizer(params, train.optim, train.steps)[0]

    trainable_bytes = sum(
        p.numel() * p.element_size() for p in objective.trainable.parameters() if p.requires_grad
    )
    sizing = Launch(world, train.parallelism, launch.gpu_memory_gb)
    gpu_budget = launch.gpu_memory_gb * 1e9 if launch.gpu_memory_gb is not None else None
    with stage("predict"):
        at_configured = run_steps(objective, train, configured, 0, fake=True, build_optimizer=optimizer)
        predicted = per_rank_peak(at_configured.peak_bytes, trainable_bytes, sizing)
        # The small micro-batch's peak is needed for a suggestion (the configured one does not
        # fit the GPU) and to tell whether a real step fits here (when the configured one does
        # not, and this machine gives any memory); a peak grows with the micro-batch.
        fits_gpu = gpu_budget is None or predicted <= gpu_budget
        fits_here = at_configured.peak_bytes <= options.budget_bytes
        small_needed = configured != local and (not fits_gpu or (not fits_here and options.budget_bytes > 0))
        small = local if small_needed else configured
        at_small = (run_steps(objective, train, local, 0, fake=True, build_optimizer=optimizer)
                    if small_needed else at_configured)
    row.peak_predicted_gib = predicted / GIB
    row.basis.append(f"peak predicted: {at_configured.basis}, {world} rank(s) {train.parallelism}")
    row.micro_batch = f"{configured}"
    if gpu_budget is not None:
        row.fits = "yes" if fits_gpu else "NO"
        if not fits_gpu:
            small_per_rank = per_rank_peak(at_small.peak_bytes, trainable_bytes, sizing)
            suggested = suggest_micro_batch(small, small_per_rank, configured, predicted, per_rank,
                                            gpu_budget)
            row.micro_batch = f"{configured} -> {suggested if suggested else 'none fits'}"

    seconds = None
    if at_small.peak_bytes > options.budget_bytes:
        row.note = (f"estimated, not run: a step at micro-batch {small} needs "
                    f"~{at_small.peak_bytes / GIB:.1f} GiB, this machine gives "
                    f"{options.budget_bytes / GIB:.1f} GiB")
    else:
        with stage("train"):
            measured = run_steps(objective, train, local, options.steps, fake=False,
                                 build_optimizer=optimizer)
        row.peak_measured_gib = measured.peak_bytes / GIB
        row.seconds_per_item = measured.seconds_per_item
        row.basis.append(f"measured at micro-batch {local}: {measured.basis}")
        on_target = objective.device.type == "cuda" and launch.gpus_per_node > 0
        seconds = measured.seconds_per_item if on_target else None
    row.wall_clock_h, row.gpu_hours, hours_basis = run_hours(
        train.steps, train.batch_size, world, seconds_per_item=seconds,
        flops_per_item=at_configured.flops_per_item, tflops=launch.gpu_tflops)
    row.basis.append(f"hours: {hours_basis}")


def _preflight_config(config: RunConfig, scratch: Path) -> RunConfig:
    """The run's config as the preflight runs it: rows read in this process (no DataLoader
    workers), encoders run on every step as in a run's first epoch (no cache), and a stage-3 run
    started from a random aligner of the configured shape in place of its stage-2 run, which has
    not trained yet."""
    from experiments.recipes.registry import recipe_named

    config = replace(config, data=replace(config.data, num_workers=0),
                     train=replace(config.train, cache_encoder_outputs=False))
    if recipe_named(config.recipe).starts_from_run:
        config = replace(config, train=replace(config.train, init_from=str(_random_stage2(config, scratch))))
    return config


def _random_stage2(config: RunConfig, scratch: Path) -> Path:
    from safetensors.torch import save_file
    from transformers import AutoConfig, CLIPTextConfig

    from experiments.recipes.modules import aligner_for

    mllm = AutoConfig.from_pretrained(config.models.mllm, local_files_only=True).text_config
    clip = CLIPTextConfig.from_pretrained(Path(config.models.stable_diffusion) / "text_encoder",
                                          local_files_only=True)
    aligner = aligner_for(config.aligner, SimpleNamespace(hidden_size=mllm.embed_dim),
                          SimpleNamespace(hidden_size=clip.hidden_size,
                                          max_length=clip.max_position_embeddings))
    path = scratch / "stage2" / "model.safetensors"
    path.parent.mkdir()
    save_file({k: v.contiguous() for k, v in aligner.state_dict().items()}, path)
    return path


def _decoder(config: RunConfig, held: dict[str, Any]):
    from experiments.recipes.modules import frozen, pick_device
    from models import ImageDecoder

    if "objective" in held:
        objective = held["objective"]
        held["conditioner"] = objective.conditioner.eval()
        if objective.decoder is not None:
            return objective.decoder
    if held.get("decoder") is None:
        held["decoder"] = frozen(ImageDecoder.from_pretrained(config.models.stable_diffusion), pick_device())
    return held["decoder"]


def _fid(spec: RunSpec, config: RunConfig, held: dict[str, Any], workdir: Path, scratch: Path,
         options: Options, sampled: dict[tuple, str]) -> str:
    """FID images through the evaluation code, sampled once per sampling_key: a later run on the
    same decoder only has its conditioner encode the prompts, and its conditions checked against
    what the decoder takes. Returns the row's basis line."""
    from experiments.data.captions import load_captions
    from experiments.evaluation.fid import evaluate_fid
    from experiments.training.precision import sampling_autocast

    decoder = _decoder(config, held)
    captions = _first_captions(config.fid, options.fid_images, scratch)
    fid = replace(config.fid, captions=str(captions), num_captions=options.fid_images,
                  steps=options.sampler_steps, batch_size=options.fid_images)
    key = sampling_key(config)
    if key in sampled:
        prompts = [c.caption for c in load_captions(captions)]
        with torch.no_grad(), sampling_autocast(fid.precision):
            for condition in (held["conditioner"](prompts), held["conditioner"].null(len(prompts))):
                _check_condition(condition, len(prompts), decoder.cross_attention_dim)
        return (f"FID images: sampled in {sampled[key]} (same decoder, size, precision and sampler); "
                f"this run's conditioner encoded {len(prompts)} prompts")
    evaluate_fid(held["conditioner"], decoder, fid, seed=config.seed, run_dir=scratch / "run",
                 cache_dir=workdir / ".cache", progress=False)
    sampled[key] = spec.run_name
    return f"FID images: {fid.num_captions} at {fid.generate_size} px, {fid.steps} sampler step(s)"


def _first_captions(fid: FidConfig, count: int, scratch: Path) -> Path:
    """The `count` captions the run's FID draws first, as a manifest of their own, so that the
    reference set is their images only and not every image the protocol's captions name (40,000
    for COCO, each through Inception)."""
    from experiments.data.captions import load_captions, sample_captions

    path = scratch / "fid-captions.jsonl"
    drawn = sample_captions(load_captions(fid.captions), count, fid.caption_seed)
    path.write_text("".join(json.dumps({"caption": c.caption, "image": c.image_file}) + "\n" for c in drawn))
    return path


def _check_condition(condition: torch.Tensor, batch: int, width: int) -> None:
    if condition.ndim != 3 or condition.shape[0] != batch or condition.shape[2] != width:
        raise ValueError(f"the conditioner gave {tuple(condition.shape)} for {batch} prompts; "
                         f"the decoder's cross-attention takes (batch, tokens, {width})")
    if not torch.isfinite(condition).all():
        raise ValueError("the conditioner gave non-finite conditions")


def _dreambench(
    config: RunConfig, recipe: Any, held: dict[str, Any], scratch: Path, options: Options
) -> None:
    from experiments.evaluation.dreambench_scores import dreambench_oracle, evaluate_dreambench

    root = Path(config.dreambench.root or "")
    subjects = config.dreambench.subjects or tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))[:1]
    bench = replace(config.dreambench, subjects=subjects[:1], templates=(0,), images_per_prompt=1,
                    steps=options.sampler_steps, batch_size=1)
    if not recipe.generates:
        dreambench_oracle(bench)
        return
    decoder = _decoder(config, held)
    evaluate_dreambench(held["conditioner"], decoder, bench, seed=config.seed, run_dir=scratch / "run",
                        progress=False)
