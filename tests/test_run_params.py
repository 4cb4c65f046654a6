"""What a run puts in MLflow's compare view: params for the config sections its recipe uses,
without unset values and with paths relative to their roots; constants as params, not metrics;
the data files it read as dataset inputs; and `repro ui` landing on the runs table."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from experiments.training.tracker import DataInput
from repro import cli
from repro.config import load_matrix
from repro.config.paths import tiny_assets_dir
from repro.tracking.mlflow_runs import MlflowTracker
from repro.tracking.run_params import PER_SEED_PARAMS, run_params
from repro.tracking.runs_view import SHARE_KEY_PARAMETER, SHARED_VIEW_TAG
from tests.support.full_tier import EXPERIMENTS
from tests.support.workdirs import ROOT


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Each tiny-tier experiment's seed-0 params, for a work folder whose assets are its own."""
    workdir = tmp_path_factory.mktemp("work")
    matrix = load_matrix(EXPERIMENTS, "tiny", seeds=[0], tiny_assets=tiny_assets_dir(workdir), env={})
    return {run.experiment: run_params(run, workdir) for run in matrix.runs}


def sections(params: dict[str, str]) -> set[str]:
    return {key.split(".")[0] for key in params if "." in key}


def test_each_recipe_logs_the_sections_it_uses(params):
    assert sections(params["sd-v1-5"]) == {"models", "fid"}  # trains nothing, reads no data
    assert sections(params["aligner-12"]) == {"models", "aligner", "train", "data", "fid"}
    assert sections(params["kosmos-g"]) == {"models", "aligner", "train", "data", "fid", "dreambench"}
    assert sections(params["real-images"]) == {"dreambench"}  # DreamBench's photos, no model
    assert params["sd-v1-5"]["recipe"] == "baseline" and params["sd-v1-5"]["seed"] == "0"


def test_no_unset_values_and_paths_relative_to_their_roots(params):
    for experiment, logged in params.items():
        assert "None" not in logged.values() and "" not in logged.values(), experiment
        assert not [value for value in logged.values() if value.startswith("/")], experiment
    assert params["sd-v1-5"]["models.stable_diffusion"] == "@tiny/sd"
    assert "models.mllm" not in params["sd-v1-5"]  # the baseline does not read it
    assert "train.micro_batch_size" not in params["aligner-12"]  # None: one micro-batch per rank
    assert params["kosmos-g"]["train.init_from"].startswith("@run/")
    assert params["aligner-12"]["train.optim.betas"] == "[0.9, 0.98]"


def test_the_seeds_of_one_config_log_params_that_differ_only_in_the_per_seed_ones(tmp_path):
    """The report calls a row whose runs' params differ beyond these mixed (repro/report/mixed_configs.py)."""
    workdir = tmp_path / "work"
    matrix = load_matrix(EXPERIMENTS, "tiny", seeds=[0, 1], tiny_assets=tiny_assets_dir(workdir), env={})
    by_experiment: dict[str, list[dict[str, str]]] = {}
    for run in matrix.runs:
        by_experiment.setdefault(run.experiment, []).append(run_params(run, workdir))
    differing = set()
    for first, second in by_experiment.values():
        differing |= {key for key in first.keys() | second.keys() if first.get(key) != second.get(key)}
    assert differing == set(PER_SEED_PARAMS)  # Table 1's stage-3 row has both


def test_constants_are_params_and_inputs_are_datasets(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("x", (tmp_path / "a").as_uri())).info.run_id
    tracker = MlflowTracker(client, run_id)
    tracker.log_params({"train/world_size": 2})
    tracker.log_params({"train/world_size": 4, "train/grad_accumulation": 1})  # a resume elsewhere: kept
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"caption": "a dog"}\n{"caption": "a cat"}\n')
    tracker.log_inputs([DataInput("data.train", "training", str(captions), 2)])
    run = client.get_run(run_id)
    assert run.data.params == {"train/world_size": "2", "train/grad_accumulation": "1"}
    assert not run.data.metrics
    (used,) = run.inputs.dataset_inputs
    assert (used.dataset.name, used.tags[0].value) == ("data.train", "training")
    assert str(captions) in used.dataset.source and '"num_rows": 2' in used.dataset.profile
    captions.write_text('{"caption": "a bird"}\n')
    tracker.log_inputs([DataInput("data.train", "training", str(captions), 1)])
    digests = {item.dataset.digest for item in client.get_run(run_id).inputs.dataset_inputs}
    assert len(digests) == 2  # the digest follows the contents


def test_ui_prints_the_runs_table_of_mlflow_3_in_the_tables_view(tmp_path, monkeypatch, capsys):
    executed = []
    monkeypatch.setattr(cli.os, "execv", lambda path, command: executed.append(command))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(ROOT / "experiments.toml", tmp_path / "experiments.toml")
    assert cli.main(["--workdir", str(tmp_path), "ui", "--port", "5123"]) == 0
    url = re.search(r"http://\S+", capsys.readouterr().out).group(0)
    experiment = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("kosmos-g")
    (key,) = [name.removeprefix(SHARED_VIEW_TAG) for name in experiment.tags
              if name.startswith(SHARED_VIEW_TAG)]
    assert url == (f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}/runs"
                   f"?workflowType=machine_learning&viewStateShareKey={key}")
    view = json.loads(experiment.tags[SHARED_VIEW_TAG + key])
    columns = {"metrics.`eval/fid`", "metrics.`eval/dino`", "tags.`row`", "tags.`seed`"}
    assert columns <= set(view["selectedColumns"])
    (command,) = executed
    assert command[2:4] == ["mlflow", "ui"] and command[command.index("--host") + 1] == "127.0.0.1"
    # The installed UI has that route and reads those parameters (MLflow 3 otherwise opens GenAI's overview).
    scripts = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    bundle = "".join(p.read_text(errors="ignore") for p in scripts.glob("*.js"))
    assert "/experiments/:experimentId/runs" in bundle and '"workflowType"' in bundle
    assert f'"{SHARE_KEY_PARAMETER}"' in bundle and f'"{SHARED_VIEW_TAG}"' in bundle
    assert 'MACHINE_LEARNING="machine_learning"' in bundle
