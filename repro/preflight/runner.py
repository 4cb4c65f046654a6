"""One preflight row per planned run, one run at a time on this machine's device: load (the
recipe's own build step), predict the step's peak (fake tensors), train a few real steps where
the prediction fits this machine, sample a few FID and DreamBench images through the evaluation
code (the model side of each: experiments/recipes/preflight_steps.py). A stage that fails is
recorded on its row and the next runs go on; each stage's seconds are kept on the row."""

from __future__ import annotations

import logging
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.config import RunConfig
from experiments.recipes.registry import evaluation_applies, recipe_named
from repro.config.schema import RunSpec
from repro.preflight.sizing import GIB, Launch, per_rank_peak, run_hours, suggest_micro_batch

if TYPE_CHECKING:
    from experiments.recipes.preflight_steps import PreflightRun

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
              on_row: Callable[[list[Row]], object] | None = None) -> list[Row]:
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
    # Imported here: torch and the models load only when a preflight runs.
    from experiments.recipes.preflight_steps import PreflightRun, preflight_config, release_memory

    row = Row(spec.run_name, spec.config_hash, spec.config.recipe)
    stage = _Stages(row)
    recipe = recipe_named(spec.config.recipe)
    log.info("preflight: %s (%s)", spec.run_name, spec.config_hash)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="preflight-") as scratch:
        config = preflight_config(spec.config, Path(scratch))
        run: PreflightRun | None = None
        try:
            with stage("load"):
                run = PreflightRun(config, workdir / ".cache")
            row.trainable, row.frozen = run.parameter_counts()
            if recipe.trains:
                _train_stages(spec, run, options, row, stage)
            elif recipe.generates:
                row.basis.append("no training")
            if evaluation_applies(config, "fid"):
                with stage("fid"):
                    key = sampling_key(config)
                    row.basis.append(run.sample_fid(options.fid_images, options.sampler_steps, Path(scratch),
                                                    sampled.get(key)))
                    sampled.setdefault(key, spec.run_name)
            if config.dreambench.enabled:
                with stage("dreambench"):
                    run.sample_dreambench(options.sampler_steps, Path(scratch))
            if recipe.generates and not recipe.trains:
                with stage("size"):
                    _sampling_hours(spec, run, row)
        except Exception as error:  # noqa: BLE001 - recorded on the row; the other runs go on
            log.debug("preflight stage %s of %s failed:\n%s", stage.current, spec.run_name,
                      traceback.format_exc())
            row.failed = f"{stage.current}: {type(error).__name__}: {error}"
        finally:
            run = None  # its models go before the next run's load
            release_memory()
    stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in row.seconds.items())
    row.basis.append(f"preflight stages: {stages}")
    log.info("preflight: %s done in %.0f s (%s)%s", spec.run_name, time.perf_counter() - started, stages,
             f" (failed: {row.failed})" if row.failed else "")
    return row


def _sampling_hours(spec: RunSpec, run: PreflightRun, row: Row) -> None:
    """A run that trains nothing costs its evaluations' sampling: their U-Net FLOPs at the
    launch's TFLOP/s per GPU."""
    cost = run.sampling_cost()
    tflops = spec.launch.gpu_tflops
    if tflops is None:
        row.basis.append("hours: sampling not sized (no launch.gpu_tflops)")
        return
    rates = ", ".join(f"{count:,} {name} images at {count * tflops * 1e12 / cost.flops[name]:.3g} images/s"
                      for name, count in cost.images.items())
    row.gpu_hours = sum(cost.flops.values()) / (tflops * 1e12) / 3600
    row.basis.append(f"hours: sampling {rates} (U-Net FLOPs at {tflops:g} TFLOP/s per GPU)")


def _train_stages(spec: RunSpec, run: PreflightRun, options: Options, row: Row, stage: _Stages) -> None:
    train, launch = run.config.train, spec.launch
    world = launch.world_size
    per_rank = train.batch_size // world
    configured = train.micro_batch_size or per_rank
    local = min(options.micro_batch, configured)

    trainable_bytes = run.trainable_bytes
    sizing = Launch(world, train.parallelism, launch.gpu_memory_gb)
    gpu_budget = launch.gpu_memory_gb * 1e9 if launch.gpu_memory_gb is not None else None
    with stage("predict"):
        at_configured = run.steps(configured, 0, fake=True)
        predicted = per_rank_peak(at_configured.peak_bytes, trainable_bytes, sizing)
        # The small micro-batch's peak is needed for a suggestion (the configured one does not
        # fit the GPU) and to tell whether a real step fits here (when the configured one does
        # not, and this machine gives any memory); a peak grows with the micro-batch.
        fits_gpu = gpu_budget is None or predicted <= gpu_budget
        fits_here = at_configured.peak_bytes <= options.budget_bytes
        small_needed = configured != local and (not fits_gpu or (not fits_here and options.budget_bytes > 0))
        small = local if small_needed else configured
        at_small = run.steps(local, 0, fake=True) if small_needed else at_configured
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
            measured = run.steps(local, options.steps, fake=False)
        row.peak_measured_gib = measured.peak_bytes / GIB
        row.seconds_per_item = measured.seconds_per_item
        row.basis.append(f"measured at micro-batch {local}: {measured.basis}")
        on_target = run.on_gpu and launch.gpus_per_node > 0
        seconds = measured.seconds_per_item if on_target else None
    row.wall_clock_h, row.gpu_hours, hours_basis = run_hours(
        train.steps, train.batch_size, world, seconds_per_item=seconds,
        flops_per_item=at_configured.flops_per_item, tflops=launch.gpu_tflops)
    row.basis.append(f"hours: {hours_basis}")
