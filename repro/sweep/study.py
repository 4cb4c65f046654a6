"""A SweepSpec in Optuna's terms: storage, study name, distributions, sampler and pruner."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from repro.config.schema import RunSpec
from repro.config.sweep import Param, PrunerSpec, SamplerSpec, SweepSpec


def open_storage(where: str) -> BaseStorage:
    """A database URL (`postgresql://...`) is an RDB storage; anything else is the path of an
    append-only journal file, which many processes on a shared filesystem can write at once
    (SQLite cannot take parallel writers)."""
    if "://" in where:
        return RDBStorage(where)
    return JournalStorage(JournalFileBackend(where))


def study_name(sweep: SweepSpec, base: RunSpec) -> str:
    """Same sweep, same study. Editing anything that changes what the objective measures (the
    base run's resolved config, the metric, the space) starts a new study rather than mixing
    incomparable trials; n_trials, parallelism, sampler and pruner may change between restarts."""
    defining = {
        "base": base.config_hash,
        "metric": sweep.metric,
        "direction": sweep.direction,
        "space": [asdict(param) for param in sweep.space],
    }
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:8]
    return f"{sweep.name}.{base.tier}.{digest}"


def annotate(study: optuna.Study, trial_id: int, attributes: dict[str, str]) -> None:
    """User attributes on a trial still running; a trial that has ended keeps those it has
    (Optuna refuses changes to it)."""
    trial = optuna.Trial(study, trial_id)
    try:
        for key, value in attributes.items():
            trial.set_user_attr(key, value)
    except UpdateFinishedTrialError:
        pass


def distribution(param: Param) -> BaseDistribution:
    if param.kind == "categorical":
        return CategoricalDistribution(param.choices)
    low, high = param.low, param.high
    assert low is not None and high is not None  # a range's bounds are required (config/sweep.py)
    if param.kind == "int":
        return IntDistribution(int(low), int(high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(low, high, log=param.log, step=param.step)


def distributions(sweep: SweepSpec) -> dict[str, BaseDistribution]:
    return {param.key: distribution(param) for param in sweep.space}


def make_sampler(spec: SamplerSpec, seed_offset: int) -> optuna.samplers.BaseSampler:
    """seed_offset: trials already in the study. A restarted sweep must not replay the random
    sequence it started with, or its first new trials would repeat the first old ones."""
    seed = spec.seed + seed_offset
    if spec.kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # The constant liar keeps trials in flight at the same time from being sampled alike.
    return optuna.samplers.TPESampler(n_startup_trials=spec.startup_trials, seed=seed, constant_liar=True)


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    if spec.kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_steps
        )
    if spec.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.NopPruner()
