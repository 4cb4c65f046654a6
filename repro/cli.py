"""The `repro` command. Heavy libraries (torch, mlflow, diffusers) are imported inside the
commands that need them, so `repro --help` and `repro plan` answer at once."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.config import MAX_IMAGE_PIXELS, STAGE3_KINDS
from experiments.data.shards import DataError
from experiments.released.stages import Stage
from repro.config import ConfigError, SweepSpec, load_matrix, load_sweep, load_sweeps
from repro.config.launch import EXECUTORS
from repro.config.schema import Matrix
from repro.terminal import quiet_unless_interactive

EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_DISK = 4
EXIT_TRACKING = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repro",
        description="Reproduce Kosmos-G's Tables 1 and 2: plan, run, track and report experiments.",
    )
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("REPRO_WORKDIR", ".")),
                        help="where runs/, the MLflow store, caches and reports/ live (default: .)")
    parser.add_argument("--config", type=Path, default=None,
                        help="experiment matrix (default: experiments.toml in the work directory)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def matrix_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--tier", default="tiny", help="tier from experiments.toml (default: tiny)")
        command.add_argument("--only", action="append", default=None, metavar="NAME",
                             help="an experiment name or row label; repeatable")
        command.add_argument("--table", default=None, help="only the runs of this table, e.g. table2")
        command.add_argument("--seeds", type=_seed_list, default=None, metavar="0,1,2",
                             help="override the tier's seeds")
        command.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override a config value for every run, e.g. train.steps=10 or "
                                  "models.mllm=/path (value as a TOML literal or bare string)")

    def tracking_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--tracking-uri", default=None,
                             help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///WORKDIR/mlflow.db)")
        command.add_argument("--experiment-name", default=None,
                             help="MLflow experiment (default: kosmos-g)")

    plan = commands.add_parser("plan", help="print the runs a matrix expands to; launches nothing")
    matrix_options(plan)
    plan.add_argument("--sbatch", action="store_true",
                      help="also print the sbatch script of each SLURM job array the plan makes")

    run = commands.add_parser("run", help="launch the runs, skipping those already finished")
    matrix_options(run)
    tracking_options(run)
    run.add_argument("--executor", default=None, choices=EXECUTORS,
                     help="local: a subprocess per run; debug: in this process; slurm: job arrays "
                          "(default: launch.executor of experiments.toml, i.e. --set launch.executor=...)")
    run.add_argument("--parallel", type=int, default=1, help="local runs in flight at once (default: 1)")
    run.add_argument("--threads", type=int, default=None,
                     help="torch threads per run (default: this machine's cores / --parallel)")
    run.add_argument("--force", action="store_true", help="rerun from scratch even if finished")
    run.add_argument("--timeout-min", type=int, default=None,
                     help="wall-clock limit per run attempt in minutes (default: launch.timeout_min)")
    run.add_argument("--no-wait", action="store_true",
                     help="return once the SLURM jobs are submitted; follow them with `repro status`")
    run.add_argument("--no-report", action="store_true", help="skip writing reports/ afterwards")

    for name, text in (("status", "each run of a plan: its job, the job's state and its MLflow status"),
                       ("cancel", "cancel the SLURM jobs of a plan's campaign that have not ended")):
        command = commands.add_parser(name, help=text + " (give the same matrix options as `repro run`)")
        matrix_options(command)
        tracking_options(command)

    sweep = commands.add_parser("sweep", help="create or resume an Optuna sweep declared in experiments.toml")
    sweep.add_argument("name", help="a [[sweep]] name from experiments.toml")
    sweep.add_argument("--tier", default="tiny", help="tier from experiments.toml (default: tiny)")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value for every trial (the trial's params still win)")
    tracking_options(sweep)
    sweep.add_argument("--storage", default=None,
                       help="Optuna storage: a journal file path or a database URL "
                            "(default: WORKDIR/optuna.journal)")
    sweep.add_argument("--executor", default=None, choices=EXECUTORS,
                       help="local: a subprocess per trial; debug: in this process; slurm: a job per "
                            "trial (default: launch.executor of the sweep's experiment)")
    sweep.add_argument("--parallel", type=int, default=None,
                       help="trials in flight at once (default: the sweep's parallel)")
    sweep.add_argument("--n-trials", type=int, default=None,
                       help="trials the study ends with, counting earlier starts' "
                            "(default: the sweep's n_trials)")
    sweep.add_argument("--timeout-min", type=int, default=None,
                       help="wall-clock limit per trial in minutes (default: launch.timeout_min)")
    sweep.add_argument("--no-report", action="store_true", help="skip writing reports/ afterwards")

    report = commands.add_parser("report", help="regenerate tables and plots from MLflow into reports/")
    report.add_argument("--tier", default="tiny")
    report.add_argument("--out", type=Path, default=None, help="output folder (default: WORKDIR/reports)")
    tracking_options(report)

    generate = commands.add_parser("generate", help="images from a trained run and an interleaved prompt")
    generate.add_argument("--checkpoint", required=True, metavar="RUN_OR_PATH",
                          help="a run directory, one of its checkpoint files, a config hash under "
                               "WORKDIR/runs, or an MLflow run id")
    generate.add_argument("--prompt", required=True,
                          help='text with one "<i>" per --image, e.g. "<i> wearing <i> in the jungle"')
    generate.add_argument("--image", dest="images", type=Path, action="append", default=[],
                          help="an input image, in the order of the prompt's <i>; repeatable")
    generate.add_argument("-n", "--count", type=int, default=4, help="images to make (default: 4)")
    generate.add_argument("--out", type=Path, default=Path("generated"), help="output folder")
    generate.add_argument("--guidance", type=float, default=7.5)
    generate.add_argument("--steps", type=int, default=100)
    generate.add_argument("--sampler", default="dpm", choices=("ddim", "dpm"))
    generate.add_argument("--size", type=int, default=None,
                          help="image side in pixels (default: the run's fid.generate_size)")
    generate.add_argument("--seed", type=int, default=0)
    tracking_options(generate)

    export = commands.add_parser("export", help="a trained run as a self-contained Hugging Face-style folder")
    export.add_argument("run", metavar="RUN",
                        help="a run directory, a config hash under WORKDIR/runs, or an MLflow run id")
    export.add_argument("--out", type=Path, required=True,
                        help="the folder to write (new, empty or an export)")
    tracking_options(export)

    imported = commands.add_parser(
        "import", help="a released Kosmos-G checkpoint (xichenpan/Kosmos-G) as a folder the harness reads; "
                       "nothing in the file is run")
    imported.add_argument("stage", choices=[stage.value for stage in Stage],
                          help="stage1: checkpoint_stage1.pt -> a Kosmos-2 folder for models.mllm; "
                               "stage2, final: "
                               "checkpoint_stage2.pt, checkpoint_final.pt -> exports like `repro export`'s")
    imported.add_argument("file", type=Path, help="the released .pt file")
    imported.add_argument("--out", type=Path, required=True,
                          help="the folder to write (new, empty or an import)")
    imported.add_argument("--vocabulary", type=Path, default=None, metavar="DIR",
                          help="the official repository's data/ (sentencepiece.bpe.model, dict.txt); "
                               "stage1, final")
    imported.add_argument("--base-mllm", type=Path, default=None, metavar="DIR",
                          help="stage2: the imported stage 1, which the file's frozen MLLM must equal")
    imported.add_argument("--stable-diffusion", type=Path, default=None, metavar="DIR",
                          help="the SD v1.5 folder the file's U-Net, VAE and CLIP text encoder must equal; "
                               "stage2, final (stage1 if the file has them)")

    data = commands.add_parser("data", help="stage-3 data: build compositional rows, check manifests")
    data_steps = data.add_subparsers(dest="data_step", required=True, metavar="STEP")
    build = data_steps.add_parser("build",
                                  help="segment the entities of captioned images into compositional rows")
    build.add_argument("--captioned", required=True,
                       help="captioned manifest(s) whose rows list 'entities' (and optionally 'masks'): a "
                            "file, or a glob of input shards (one output part each); format in "
                            "experiments/data/build.py")
    build.add_argument("--out", type=Path, required=True,
                       help="folder for the output parts: part-NNNNN/compositional.jsonl and segments/")
    segmenter = build.add_mutually_exclusive_group(required=True)
    segmenter.add_argument("--clipseg", type=Path, metavar="DIR",
                           help="segment with this local CLIPSeg checkpoint "
                                "(e.g. CIDAS/clipseg-rd64-refined); masks given in a row still win")
    segmenter.add_argument("--masks", action="store_true", help="use only the masks given in the rows")
    # Defaults live with the build (experiments/data/build.py), which this parser does not import.
    build.add_argument("--threshold", type=_mask_threshold, default=None,
                       help="a mask pixel above this is the entity (default: 0.3, the official build's)")
    build.add_argument("--segment-size", type=_positive, default=None, metavar="PX",
                       help="side of the two square images written per entity (default: 512, the official)")
    build.add_argument("--max-image-pixels", type=_max_image_pixels, default=None, metavar="N",
                       help="an input image or mask with more pixels skips its row, never decoded "
                            f"(default and most: {MAX_IMAGE_PIXELS}, as data.max_image_pixels)")
    build.add_argument("--device", default="cpu", help="where CLIPSeg runs (default: cpu)")
    build.add_argument("--executor", default=None, choices=EXECUTORS,
                       help="run one task per input manifest on this executor (slurm: a job array); "
                            "default: the parts one after another in this process")
    build.add_argument("--timeout-min", type=int, default=24 * 60, help="per task, with --executor")
    check = data_steps.add_parser("check", help="load a stage-3 manifest and count its rows kept and skipped")
    check.add_argument("manifest", type=Path, help="a .jsonl or .parquet manifest")
    check.add_argument("--kind", required=True, choices=STAGE3_KINDS)

    fixtures = commands.add_parser("fixtures", help="random stand-ins for the real checkpoints and data")
    fixture_kinds = fixtures.add_subparsers(dest="fixture_kind", required=True, metavar="KIND")
    full = fixture_kinds.add_parser(
        "full", help="full-size random checkpoints in the published layouts and miniature data in the "
                     "published formats; prints the export lines for the full tier (eval them)")
    full.add_argument("--out", type=Path, required=True,
                      help="folder to build in; a part already complete there is kept")
    full.add_argument("--seed", type=int, default=0, help="seed of every random weight and image")

    mini = commands.add_parser("mini", help="the mini world (a compositional shapes world) and its models")
    mini_kinds = mini.add_subparsers(dest="mini_kind", required=True, metavar="KIND")
    world = mini_kinds.add_parser(
        "world", help="the mini world in every format the full tier reads (COCO, LAION parquet, webdataset, "
                      "DreamBench, stage-3 manifests), with each image's attribute labels")
    world.add_argument("--out", type=Path, required=True, help="folder to write (made if missing)")
    world.add_argument("--seed", type=int, default=0, help="seed of every scene (same seed, same bytes)")
    # Left unset, a size or step count is the builder's or trainer's own default.
    world.add_argument("--train-images", type=_positive, help="images in the training split")
    world.add_argument("--heldout-images", type=_positive,
                       help="images in the held-out split (FID, attribute accuracy)")
    classifier = mini_kinds.add_parser(
        "classifier",
        help="train the attribute classifier (attribute accuracy, FID features) on a mini world; "
             "prints its loss and held-out accuracy as JSON lines")
    classifier.add_argument("--world", type=Path, required=True, help="a folder `repro mini world` wrote")
    classifier.add_argument("--out", type=Path, required=True, help="folder for its safetensors and JSON")
    classifier.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches")
    classifier.add_argument("--steps", type=_positive, help="optimiser steps")
    classifier.add_argument("--batch-size", type=_positive, help="images per step")
    for kind, purpose in (
        ("clip", "train the mini CLIP (CLIP-I, CLIP-T) contrastively on a mini world's images and captions; "
                 "prints its loss and how often it prefers a held-out image's own caption as JSON lines"),
        ("dino", "train the mini DINO (the DINO score) self-supervised on a mini world's images; prints its "
                 "loss and how often two photos of one DreamBench subject are the closer as JSON lines"),
        ("kosmos2", "train the mini Kosmos-2 (the MLLM) as a multimodal language model on a mini world's "
                    "captions and image-caption pairs; prints its loss as JSON lines"),
    ):
        scorer = mini_kinds.add_parser(kind, help=purpose)
        scorer.add_argument("--world", type=Path, required=True, help="a folder `repro mini world` wrote")
        scorer.add_argument("--out", type=Path, required=True, help="folder for the published layout")
        scorer.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches")
        scorer.add_argument("--steps", type=_positive, help="optimiser steps")
        scorer.add_argument("--batch-size", type=_positive, help="images per step")

    sd = mini_kinds.add_parser(
        "sd", help="train the mini Stable Diffusion (its VAE, then its U-Net under the mini CLIP's frozen "
                   "text tower) on a mini world; prints both losses as JSON lines")
    sd.add_argument("--world", type=Path, required=True, help="a folder `repro mini world` wrote")
    sd.add_argument("--clip", type=Path, required=True,
                    help="a trained mini CLIP (`repro mini clip`): its text tower is the SD's text encoder")
    sd.add_argument("--out", type=Path, required=True, help="folder for the SD v1.5 layout")
    sd.add_argument("--seed", type=int, default=0, help="seed of the weights and the batches")
    sd.add_argument("--steps", type=_positive, help="U-Net optimiser steps")
    sd.add_argument("--batch-size", type=_positive, help="images per U-Net step")
    sd.add_argument("--vae-steps", type=_positive, help="VAE optimiser steps")

    preflight = commands.add_parser(
        "preflight", help="every planned run loaded, stepped, sampled and sized on this machine: one table")
    matrix_options(preflight)
    preflight.add_argument("--steps", type=int, default=2, help="real training steps per run (default: 2)")
    preflight.add_argument("--micro-batch", type=int, default=1, help="items per real step (default: 1)")
    preflight.add_argument("--fid-images", type=int, default=2, help="FID images per run (default: 2)")
    preflight.add_argument("--sampler-steps", type=int, default=2,
                           help="sampler steps per image (default: 2)")
    preflight.add_argument("--budget-gb", type=float, default=None,
                           help="memory a real step may take here; a run predicted above it is estimated "
                                "only (default: 80%% of the GPU's free memory, else of the RAM available)")
    preflight.add_argument("--out", type=Path, default=None, help="table folder (default: WORKDIR/reports)")

    server = commands.add_parser(
        "server", help="start the team's MLflow tracking server: a database, an artifact folder, logins")
    server.add_argument("--backend-store-uri", default=None, metavar="URL",
                        help="the runs' database, e.g. postgresql://user:password@db-host/mlflow "
                             "(default: sqlite:///WORKDIR/mlflow.db)")
    server.add_argument("--artifacts-destination", type=Path, default=None, metavar="DIR",
                        help="folder the server writes artifacts into (default: WORKDIR/mlartifacts)")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=_positive, default=None,
                        help="server processes (default: MLflow's)")
    server.add_argument("--allowed-hosts", default=None, metavar="HOST[:PORT],...",
                        help="names clients on other machines reach it by (MLflow answers localhost only "
                             "otherwise); with --host 0.0.0.0")
    auth = server.add_mutually_exclusive_group()
    auth.add_argument("--auth-db", default=None, metavar="URL",
                      help="the logins' database (default: sqlite:///WORKDIR/basic_auth.db); the first start "
                           "creates the user admin with the password in $MLFLOW_AUTH_ADMIN_PASSWORD")
    auth.add_argument("--no-auth", action="store_true", help="anyone who reaches the port may write")

    ui = commands.add_parser("ui",
                             help="serve the MLflow UI on 127.0.0.1 and print the URL of the runs table")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tier", default="tiny", help="tier from experiments.toml whose tables' metrics the "
                                                  "runs table shows (default: tiny)")
    tracking_options(ui)
    return parser


def _seed_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {text!r}")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number >= 1, got {text!r}")
    return int(text)


def _max_image_pixels(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_IMAGE_PIXELS:
        raise argparse.ArgumentTypeError(f"takes a whole number in [1, {MAX_IMAGE_PIXELS}], got {text!r}")
    return int(text)


def _mask_threshold(text: str) -> float:
    message = f"--threshold takes a number in [0, 1), got {text!r}"
    try:
        threshold = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(message)
    if not 0.0 <= threshold < 1.0:
        raise argparse.ArgumentTypeError(message)
    return threshold


def _load(args: argparse.Namespace, tier: str, **filters) -> Matrix:
    config = args.config or args.workdir / "experiments.toml"
    return load_matrix(config, tier, assets=_asset_roots(args.workdir), **filters)


def _asset_roots(workdir: Path) -> dict[str, Path]:
    from repro.config.paths import asset_roots

    return asset_roots(workdir)


def _matrix(args: argparse.Namespace) -> Matrix:
    return _load(args, args.tier, only=args.only, seeds=args.seeds, table=args.table,
                 overrides=args.overrides)


def _tracking(args: argparse.Namespace) -> tuple[str, str]:
    from repro.tracking.mlflow_runs import DEFAULT_EXPERIMENT, default_tracking_uri

    return args.tracking_uri or default_tracking_uri(args.workdir), args.experiment_name or DEFAULT_EXPERIMENT


def _reading(args: argparse.Namespace) -> tuple[str, str]:
    """_tracking, for a command that reads the store and must never create one."""
    from repro.tracking.store import require_store

    uri, experiment = _tracking(args)
    require_store(uri)
    return uri, experiment


def cmd_plan(args: argparse.Namespace) -> int:
    from repro.data.source_check import check_data
    from repro.launch.plan_table import format_plan

    matrix = _matrix(args)
    check_data(matrix, args.workdir / ".cache", skip_under=tuple(_asset_roots(args.workdir).values()))
    print(format_plan(matrix))
    if args.sbatch:
        from repro.launch.executor import dependency_waves, slurm_arrays
        from repro.launch.slurm_params import sbatch_script

        # Runs that start from others go out later, in arrays of their own.
        groups = [group for wave in dependency_waves(list(matrix.runs)) for group in slurm_arrays(wave)]
        for group in groups:
            names = ", ".join(spec.run_name for spec in group)
            folder = args.workdir.resolve() / "jobs" / "%j"
            print(f"\n# array of {len(group)}: {names}\n{sbatch_script(group[0].launch, folder, len(group))}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from repro.launch.job_control import campaign_states, format_states

    uri, experiment = _reading(args)
    print(format_states(campaign_states(_matrix(args), args.workdir, uri, experiment)))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from repro.launch.job_control import campaign_states, cancel_campaign

    uri, experiment = _reading(args)
    cancelled = cancel_campaign(campaign_states(_matrix(args), args.workdir, uri, experiment))
    print(f"cancelled {len(cancelled)} job(s): {' '.join(cancelled)}" if cancelled else "no job to cancel")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _apply_launch_flags(args)
    matrix = _matrix(args)
    if args.parallel < 1:
        raise ConfigError("--parallel must be at least 1")
    _prepare_assets(args, matrix)
    from repro.data.source_check import check_data
    from repro.launch.campaign import run_campaign

    check_data(matrix, args.workdir / ".cache")
    from repro.launch.signals import sigterm_as_interrupt
    from repro.tracking.store import writable_store

    uri, experiment = _tracking(args)
    writable_store(uri)
    with sigterm_as_interrupt():
        result = run_campaign(
            matrix, workdir=args.workdir, tracking_uri=uri, experiment_name=experiment,
            parallel=args.parallel, force=args.force, wait=not args.no_wait, threads=args.threads,
        )
    for spec in result.busy:
        print(f"  in progress elsewhere, left to it: {spec.run_name} ({spec.config_hash})", file=sys.stderr)
    if args.no_wait:
        print("submitted; follow with `repro status` (same options); "
              f"MLflow parent run {result.parent_run_id}")
        return 0
    crashed = [o for o in result.outcomes if o.result is None]
    failed = [(o.spec, o.result) for o in result.outcomes
              if o.result is not None and o.result.status == "FAILED"
              and not (o.result.failure or "").startswith("diverged")]
    print(f"{len(result.outcomes)} run(s) launched, {len(result.skipped)} already finished, "
          f"{len(failed)} failed, {len(crashed)} crashed; MLflow parent run {result.parent_run_id} at {uri}")
    for spec, run in failed:
        print(f"  failed: {spec.run_name}: {run.failure}", file=sys.stderr)
    for outcome in crashed:
        print(f"  crashed: {outcome.spec.run_name}: {outcome.error}", file=sys.stderr)
    if not args.no_report:
        _log_reports(args, result.parent_run_id, _write_reports(args, matrix))
    return 0 if result.ok else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    _apply_launch_flags(args)
    config = args.config or args.workdir / "experiments.toml"
    sweep = load_sweep(config, args.name)
    parallel = args.parallel or sweep.parallel
    if parallel < 1 or (args.n_trials is not None and args.n_trials < 1):
        raise ConfigError("--parallel and --n-trials must be at least 1")
    if args.n_trials is not None:
        sweep = replace(sweep, n_trials=args.n_trials)
    from repro.sweep.runs import TrialRuns

    runs = TrialRuns(config, sweep, args.tier, tuple(args.overrides), _asset_roots(args.workdir))
    # Loaded before anything runs, so a bad --set, a missing path or a space the base config
    # cannot take stops here, before any trial is asked for.
    base = Matrix(args.tier, (), (), (runs.base(),))
    runs.check_space()
    _prepare_assets(args, base)
    from repro.sweep.driver import run_sweep

    uri, experiment = _tracking(args)
    result = run_sweep(
        runs, workdir=args.workdir, storage=args.storage or str(args.workdir.resolve() / "optuna.journal"),
        tracking_uri=uri, experiment_name=experiment, parallel=parallel,
    )
    # Optuna's state names, lower-cased, as the sweep report writes them.
    states = [outcome.state for outcome in result.outcomes]
    print(f"study {result.study}: {len(states)} trial(s) ran ({len(result.resumed)} resumed): "
          + ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL")))
    if result.best is not None:
        best = result.best
        print(f"best: trial {best.number}, {sweep.metric} = {best.value:.6g}, {best.params}")
    print(f"MLflow parent run {result.parent_run_id} at {uri}")
    for failed in result.failed:
        print(f"  fail: trial {failed.number}: {failed.reason}", file=sys.stderr)
    if not args.no_report:
        _log_reports(args, result.parent_run_id, _write_sweep_reports(args, [sweep]))
    return 0 if not result.failed else 1


def cmd_report(args: argparse.Namespace) -> int:
    _reading(args)
    _write_sweep_reports(args, load_sweeps(args.config or args.workdir / "experiments.toml"))
    _write_reports(args, _load(args, args.tier))
    return 0


def _write_reports(args: argparse.Namespace, matrix: Matrix) -> list[Path]:
    from repro.report.run_report import write_report

    uri, experiment = _tracking(args)
    out = _reports_dir(args)
    # `--table` names the one to write (its plan also holds runs of tables it reuses rows from);
    # otherwise every table with runs of its own in the plan.
    wanted = {args.table} if getattr(args, "table", None) else {run.table for run in matrix.runs}
    written = []
    for spec in matrix.tables:
        if spec.key not in wanted:
            continue
        for path in write_report(uri, experiment, spec, matrix.tier, out):
            print(f"wrote {path}")
            written.append(path)
    return written


def _write_sweep_reports(args: argparse.Namespace, sweeps: Iterable[SweepSpec]) -> list[Path]:
    from repro.report.sweep_report import write_sweep_report

    uri, experiment = _tracking(args)
    written = []
    for sweep in sweeps:
        for path in write_sweep_report(uri, experiment, sweep, args.tier, _reports_dir(args)):
            print(f"wrote {path}")
            written.append(path)
    return written


def _log_reports(args: argparse.Namespace, parent_run_id: str, paths: list[Path]) -> None:
    """The tables and plots a campaign or sweep produced, on its MLflow parent run, so they are
    found where its runs are and not only on this disk."""
    from mlflow import MlflowClient

    from repro.tracking.tags import REPORTS_ARTIFACT

    client = MlflowClient(_tracking(args)[0])
    for path in paths:
        client.log_artifact(parent_run_id, str(path), REPORTS_ARTIFACT)


def cmd_generate(args: argparse.Namespace) -> int:
    if args.count < 1 or args.steps < 1:
        raise ConfigError("-n/--count and --steps must be at least 1")
    from repro.sharing.generate import generate_to_folder

    uri, _ = _tracking(args)
    written = generate_to_folder(
        args.checkpoint, args.prompt, args.images, args.out, workdir=args.workdir, tracking_uri=uri,
        count=args.count, guidance=args.guidance, steps=args.steps, sampler=args.sampler,
        size=args.size, seed=args.seed,
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from repro.sharing.export import export_run
    from repro.sharing.run_reference import find_run

    uri, _ = _tracking(args)
    run_dir, _ = find_run(args.run, args.workdir, uri)
    print(f"wrote {export_run(run_dir, args.out)}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from repro.sharing.import_released import import_released

    out = import_released(Stage(args.stage), args.file, args.out, vocabulary=args.vocabulary,
                          base_mllm=args.base_mllm, stable_diffusion=args.stable_diffusion)
    print(f"wrote {out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from experiments.data.manifest import ManifestError

    try:
        return _data_build(args) if args.data_step == "build" else _data_check(args)
    except ManifestError as error:
        print(f"repro: data error: {error}", file=sys.stderr)
        return EXIT_DATA


def _data_build(args: argparse.Namespace) -> int:
    if args.clipseg is not None and not args.clipseg.is_dir():
        print(f"repro: --clipseg {args.clipseg} is not a directory", file=sys.stderr)
        return EXIT_DATA
    from experiments.data.build_parts import build_parts
    from repro.data.build_launch import run_build

    parts = build_parts(str(args.captioned), args.out, args.clipseg, args.device,
                        threshold=args.threshold, segment_size=args.segment_size,
                        max_image_pixels=args.max_image_pixels)
    return run_build(parts, args.workdir / "jobs" / "data-build", args.executor, args.timeout_min)


def _data_check(args: argparse.Namespace) -> int:
    from experiments.data.stage3_rows import LOADERS

    loaded = LOADERS[args.kind](args.manifest)
    print(f"{loaded.path}: {len(loaded.rows)} row(s) kept, {loaded.total_skipped} skipped")
    for reason, count in loaded.skipped.items():
        print(f"  {reason:<22} {count:>8}" + (f"  first: {loaded.first_skip[reason]}" if count else ""))
    return 0


def cmd_fixtures(args: argparse.Namespace) -> int:
    import shlex

    from experiments.fixtures.build import build_full_fixtures

    exports = build_full_fixtures(args.out, args.seed)
    # stdout carries only the exports, so that `eval $(repro fixtures full --out DIR)` sets them;
    # progress goes to stderr through logging.
    for name, path in exports.items():
        print(f"export {name}={shlex.quote(str(path))}")
    return 0


def cmd_mini(args: argparse.Namespace) -> int:
    if args.mini_kind == "world":
        from experiments.mini.world import WorldSizes, build_world

        sizes = WorldSizes(**_given(args, "train_images", "heldout_images"))
        world = build_world(args.out, args.seed, sizes)
        print(f"wrote the mini world to {world.root}")
        return 0
    import json
    import shlex

    coco = args.world / "coco"
    for path in (coco / "captions_train.json", coco / "captions_val.json"):
        if not path.is_file():
            where = path.relative_to(args.world)
            raise ConfigError(f"--world {args.world}: no {where}; build it with `repro mini world`")

    def command(training) -> str:
        return shlex.join([
            "repro", "mini", args.mini_kind, "--world", str(args.world), "--out", str(args.out), "--seed",
            str(training.seed), "--steps", str(training.steps), "--batch-size", str(training.batch_size),
        ])

    settings = {"seed": args.seed, **_given(args, "steps", "batch_size")}
    train = (coco / "captions_train.json", coco / "train", args.out)
    if args.mini_kind == "classifier":
        from experiments.mini.heldout import heldout_accuracy
        from experiments.mini.train_classifier import ClassifierTraining, train_classifier

        training = ClassifierTraining(**settings)
        weights, _ = train_classifier(*train, training, command(training))
        accuracy = heldout_accuracy(weights, coco / "captions_val.json", coco / "val")
        print(json.dumps({"heldout_attribute_accuracy": accuracy}))
        print(f"wrote {weights}")
        return 0
    if args.mini_kind == "sd":
        from experiments.mini.clip import RECORD_FILE, RETRAIN
        from experiments.mini.provenance import read_record
        from experiments.mini.sd_check import heldout_sd_accuracy
        from experiments.mini.train_stable_diffusion import SdTraining, train_stable_diffusion

        read_record(args.clip / RECORD_FILE, "mini CLIP", args.clip / "model.safetensors", RETRAIN)
        def sd_command(training: SdTraining) -> str:
            extra = ["--clip", str(args.clip), "--vae-steps", str(training.vae_steps)]
            return command(training) + " " + shlex.join(extra)

        sd_training = SdTraining(**settings, **_given(args, "vae_steps"))
        train_stable_diffusion(*train[:2], args.clip, args.out, sd_training, sd_command)
        print(json.dumps({"heldout_sampled_accuracy": heldout_sd_accuracy(args.out, coco, args.seed)}))
        print(f"wrote {args.out}")
        return 0
    if args.mini_kind == "kosmos2":
        from experiments.mini.train_kosmos2 import Kosmos2Training, train_kosmos2

        kosmos2_training = Kosmos2Training(**settings)
        train_kosmos2(*train, kosmos2_training, command(kosmos2_training))
        print(f"wrote {args.out}")
        return 0
    from experiments.mini.scorer_checks import dreambench_photos, own_caption_preferred, same_subject_closer

    if args.mini_kind == "clip":
        from experiments.mini.clip import load_mini_clip
        from experiments.mini.labelled_images import labelled_images
        from experiments.mini.train_clip import ClipTraining, train_clip

        clip_training = ClipTraining(**settings)
        train_clip(*train, clip_training, command(clip_training))
        heldout = labelled_images(coco / "captions_val.json", coco / "val")
        score = {"heldout_own_caption_preferred": own_caption_preferred(load_mini_clip(args.out), heldout)}
    else:
        from experiments.mini.dino import load_mini_dino
        from experiments.mini.train_dino import DinoTraining, train_dino

        dino_training = DinoTraining(**settings)
        train_dino(*train, dino_training, command(dino_training))
        photos = dreambench_photos(args.world / "dreambench")
        score = {"dreambench_same_subject_closer": same_subject_closer(load_mini_dino(args.out), photos)}
    print(json.dumps(score))
    print(f"wrote {args.out}")
    return 0


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among `names` the user set: the others keep the callee's defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def cmd_preflight(args: argparse.Namespace) -> int:
    if min(args.steps, args.micro_batch, args.fid_images - 1, args.sampler_steps) < 1:
        raise ConfigError(
            "--steps, --micro-batch and --sampler-steps must be at least 1, --fid-images at least 2"
        )
    matrix = _matrix(args)
    _prepare_assets(args, matrix)
    from repro.preflight.budget import memory_budget
    from repro.preflight.runner import Options, preflight
    from repro.preflight.sizing import GIB
    from repro.preflight.table import frame, write

    budget = args.budget_gb * GIB if args.budget_gb is not None else memory_budget()
    options = Options(args.steps, args.micro_batch, args.fid_images, args.sampler_steps, budget)
    rows = preflight(list(matrix.runs), args.workdir, options,
                     on_row=lambda rows: write(rows, _reports_dir(args)))
    print(frame(rows).to_string(index=False))
    for path in write(rows, _reports_dir(args)):
        print(f"wrote {path}")
    for row in rows:
        if row.failed:
            print(f"repro: preflight failed: {row.run} ({row.config_hash}): {row.failed}", file=sys.stderr)
    return 1 if any(row.failed for row in rows) else 0


def cmd_ui(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from repro.tracking.mlflow_runs import ensure_experiment, runs_url
    from repro.tracking.runs_view import share_runs_view

    metrics = [metric for table in _load(args, args.tier).tables
               for panel in table.panels for metric in panel.metrics]
    uri, experiment = _tracking(args)
    client = MlflowClient(uri)
    # Created if need be, so the URL names it before the first run exists.
    experiment_id = ensure_experiment(client, experiment, args.workdir / "mlartifacts")
    view = share_runs_view(client, experiment_id, metrics)
    url = runs_url(f"http://127.0.0.1:{args.port}", experiment_id, view)
    # MLflow's job runner serves GenAI evaluation jobs, which the harness never submits.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI for {uri}: the {experiment!r} runs at {url}", flush=True)
    os.execv(sys.executable, command)
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    from repro.tracking.server import ServerOptions, server_command, server_environment, tracking_uri

    workdir = args.workdir.resolve()
    auth_db = None if args.no_auth else args.auth_db or f"sqlite:///{workdir / 'basic_auth.db'}"
    options = ServerOptions(args.backend_store_uri or f"sqlite:///{workdir / 'mlflow.db'}",
                            args.artifacts_destination or workdir / "mlartifacts", args.host, args.port,
                            auth_db, args.workers, args.allowed_hosts)
    environment = server_environment(options, workdir / ".cache")
    logins = ("; clients log in with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
              if auth_db else "; no logins (--no-auth)")
    print(f"MLflow tracking server: export MLFLOW_TRACKING_URI={tracking_uri(options)}{logins}", flush=True)
    command = server_command(options)
    os.execve(command[0], command, environment)
    return 0


def _apply_launch_flags(args: argparse.Namespace) -> None:
    """--executor and --timeout-min are the launch section's last layer, so they reach every
    run's LaunchConfig."""
    if args.executor is not None:
        args.overrides = [*args.overrides, f"launch.executor={args.executor}"]
    if args.timeout_min is not None:
        args.overrides = [*args.overrides, f"launch.timeout_min={args.timeout_min}"]


def _prepare_assets(args: argparse.Namespace, matrix: Matrix) -> None:
    """Builds the assets the runs read (the tiny or mini tier's) once, in this process, before
    any job needs them."""
    from dataclasses import asdict

    from repro.config.paths import ensure_assets

    def strings(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    values = [s for run in matrix.runs for s in strings(asdict(run.config))]
    for prefix, root in _asset_roots(args.workdir).items():
        if any(s.startswith(str(root)) for s in values):
            ensure_assets(prefix, root)


def _reports_dir(args: argparse.Namespace) -> Path:
    """`repro report --out`, else WORKDIR/reports (run and sweep have no --out)."""
    return getattr(args, "out", None) or args.workdir / "reports"


COMMANDS = {"plan": cmd_plan, "run": cmd_run, "status": cmd_status, "cancel": cmd_cancel,
            "sweep": cmd_sweep, "report": cmd_report, "generate": cmd_generate, "export": cmd_export,
            "import": cmd_import, "data": cmd_data, "fixtures": cmd_fixtures, "mini": cmd_mini,
            "preflight": cmd_preflight, "server": cmd_server, "ui": cmd_ui}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_unless_interactive()
    from repro.launch.failures import disk_full_path
    from repro.tracking.http_retries import server_gone_message, use_patient_client
    from repro.tracking.store import StoreError

    use_patient_client()

    try:
        return COMMANDS[args.command](args)
    except StoreError as error:
        print(f"repro: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except DataError as error:
        print(f"repro: data error: {error}", file=sys.stderr)
        return EXIT_DATA
    except ConfigError as error:
        print(f"repro: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt as interrupt:
        from repro.launch.signals import exit_status, signal_name

        print(f"repro: stopped by {signal_name(interrupt)}; its local jobs were stopped and their runs "
              "marked KILLED (SLURM jobs go on: `repro cancel`); `repro run` again resumes them",
              file=sys.stderr)
        return exit_status(interrupt)
    except Exception as error:
        gone = server_gone_message(error)
        if gone is not None:
            print(f"repro: {gone}", file=sys.stderr)
            return EXIT_TRACKING
        # A full disk anywhere in the launcher (MLflow's SQLite says "database or disk is full").
        full = disk_full_path(error)
        if full is None and "database or disk is full" not in str(error):
            raise
        print(f"repro: disk full: {full or _tracking(args)[0]}", file=sys.stderr)
        return EXIT_DISK


if __name__ == "__main__":
    sys.exit(main())
