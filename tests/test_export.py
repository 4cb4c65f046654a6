"""`repro export`: a trained run becomes a folder of safetensors, config.json and a model card
that `KosmosGConditioner.from_pretrained`, `repro generate` and a stock diffusers pipeline use,
found by its directory, config hash or MLflow run id."""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.recipes.generation import trained_conditioner
from experiments.recipes.instruct import InstructObjective
from experiments.recipes.run import RecipeResult
from experiments.training.checkpoints import CheckpointStore
from models import KosmosGConditioner
from repro.cli import main as repro_main
from repro.config.stored import stored_config, stored_record
from repro.sharing.export import write_export
from repro.tracking import tags
from tests.support.mlflow_store import FakeRunStore
from tests.support.runs import trained_stage2
from tests.support.tiny import stage3_config

PROMPT = "<i> on the beach"


@pytest.fixture(scope="module")
def stage2_run(tiny_assets, tmp_path_factory) -> tuple[Path, RecipeResult]:
    """A work folder whose runs/ holds one finished stage-2 run, with the job's records, and the
    run's result, which holds the conditioner it trained."""
    folder = tmp_path_factory.mktemp("work")
    run_dir, result = trained_stage2(tiny_assets, folder / "runs" / "0123456789ab")
    record = json.loads((run_dir / "config.json").read_text())
    record.update(experiment="aligner-12", table="table2", row="AlignerNet 12 layers", tier="tiny", seed=0,
                  config_hash=run_dir.name, git_commit="abc123")
    (run_dir / "config.json").write_text(json.dumps(record))
    (run_dir / "metrics.json").write_text(json.dumps({"heldout/mse_loss": 0.25, "eval/fid": 4.5}))
    return folder, result


@pytest.fixture(scope="module")
def workdir(stage2_run) -> Path:
    return stage2_run[0]


@pytest.fixture(scope="module")
def exported(workdir) -> Path:
    out = workdir / "export"
    assert repro_main(["--workdir", str(workdir), "export", str(workdir / "runs" / "0123456789ab"),
                       "--out", str(out)]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _photo(tiny_assets: Path) -> Image.Image:
    return Image.open(sorted((tiny_assets / "dreambench" / "dog").glob("*.jpg"))[0]).convert("RGB")


def _is_pickle(path: Path) -> bool:
    """A raw pickle (protocol 2+ opens with 0x80) or torch.save's zip with a data.pkl inside."""
    if path.read_bytes()[:1] == b"\x80":
        return True
    return zipfile.is_zipfile(path) and any(n.endswith(".pkl") for n in zipfile.ZipFile(path).namelist())


def test_the_export_is_safetensors_json_and_text_only(exported):
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert {"config.json", "aligner.safetensors", "README.md", "mllm/model.safetensors"} <= set(files)
    assert not [f for f in files if _is_pickle(exported / f)]
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    config = json.loads((exported / "config.json").read_text())
    assert config["repro"]["config_hash"] == "0123456789ab" and config["repro"]["git_commit"] == "abc123"
    card = (exported / "README.md").read_text()
    for fact in ("AlignerNet 12 layers", "table2", "0123456789ab", "abc123", "`eval/fid` | 4.5",
                 "from_pretrained"):
        assert fact in card, fact


def test_a_run_exports_from_memory_what_repro_export_writes_from_its_checkpoint(stage2_run, exported,
                                                                                tmp_path):
    """A finished job writes its export from the conditioner it holds; `repro export` loads the
    run's checkpoint: the two folders hold the same files, byte for byte."""
    workdir, result = stage2_run
    run_dir = workdir / "runs" / "0123456789ab"
    record, config = stored_record(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    in_memory = write_export(result.trained, config, record, metrics, tmp_path / "job", copy_base_mllm=True)
    assert _files(in_memory) == _files(exported)


def test_from_pretrained_conditions_as_the_trained_run_does(exported, workdir, tiny_assets, tmp_path):
    run_dir = workdir / "runs" / "0123456789ab"
    trained = trained_conditioner(stored_config(run_dir), run_dir)
    loaded = KosmosGConditioner.from_pretrained(exported)
    assert loaded.aligner.n is None  # M alone is exported
    assert loaded.append_eos is trained.append_eos is False  # (code) no `</s>`, as it was trained
    loaded.append_eos = True  # how prompts are tokenized travels with the folder
    sd = json.loads((exported / "config.json").read_text())["stable_diffusion"]
    resaved = loaded.save_pretrained(tmp_path / "eos", stable_diffusion=sd, base_mllm=str(exported / "mllm"))
    assert KosmosGConditioner.from_pretrained(resaved).append_eos is True
    loaded.append_eos = False
    with torch.no_grad():
        expected = trained([PROMPT], [[_photo(tiny_assets)]])
        torch.testing.assert_close(loaded([PROMPT], [[_photo(tiny_assets)]]), expected, rtol=0, atol=0)
        torch.testing.assert_close(loaded.null(1), trained.null(1), rtol=0, atol=0)


def test_a_stock_diffusers_pipeline_generates_with_its_prompt_embeds(exported, tiny_assets):
    from diffusers import StableDiffusionPipeline

    conditioner = KosmosGConditioner.from_pretrained(exported)
    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_assets / "sd"), safety_checker=None, requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    def generated(prompt: str, photos: list) -> np.ndarray:
        with torch.no_grad():
            embeds = conditioner.pipeline_embeds([prompt], [photos])
        return pipe(**embeds, num_inference_steps=2, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    images = generated(PROMPT, [_photo(tiny_assets)])
    assert images.shape == (1, 32, 32, 3)
    # The same noise under another prompt gives another image: the embeddings steer the pipeline.
    assert np.abs(images - generated("a red car on the street", [])).max() > 0.01


def test_generate_uses_the_export_without_the_run(exported, tiny_assets, tmp_path):
    moved = tmp_path / "shared-model"
    shutil.copytree(exported, moved)  # no run directory, no work folder behind it
    photo = sorted((tiny_assets / "dreambench" / "dog").glob("*.jpg"))[0]
    assert repro_main(["--workdir", str(tmp_path), "generate", "--checkpoint", str(moved), "--prompt", PROMPT,
                       "--image", str(photo), "-n", "2", "--steps", "2", "--size", "32",
                       "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0-0.png", "0-1.png"]


def test_a_config_hash_and_an_mlflow_run_id_name_the_run(workdir, exported, tmp_path):
    store = FakeRunStore(tmp_path, "kosmos-g")
    run_id = store.create_run({tags.KIND: "run", tags.CONFIG_HASH: "0123456789ab"})
    for reference in ("0123456789ab", run_id):
        out = tmp_path / f"by-{reference}"
        assert repro_main(["--workdir", str(workdir), "export", reference, "--out", str(out),
                           "--tracking-uri", store.uri]) == 0
        assert (out / "aligner.safetensors").read_bytes() == (exported / "aligner.safetensors").read_bytes()


def test_generate_on_an_mlflow_run_id_uses_its_logged_export(exported, tiny_assets, tmp_path):
    """On a machine without the run's directory: the run's `model` artifact, downloaded."""
    store = FakeRunStore(tmp_path, "kosmos-g")
    run_id = store.create_run({tags.KIND: "run", tags.CONFIG_HASH: "0123456789ab"})
    store.client.log_artifacts(run_id, str(exported), tags.MODEL_ARTIFACT)
    photo = sorted((tiny_assets / "dreambench" / "dog").glob("*.jpg"))[0]
    assert repro_main(["--workdir", str(tmp_path), "generate", "--checkpoint", run_id, "--tracking-uri",
                       store.uri, "--prompt", PROMPT, "--image", str(photo), "-n", "1", "--steps", "2",
                       "--size", "32", "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["0-0.png"]
    downloaded = tmp_path / ".cache" / "mlflow-models" / run_id / tags.MODEL_ARTIFACT
    assert (downloaded / "aligner.safetensors").is_file()


def test_export_refuses_a_folder_holding_other_things(workdir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert repro_main(["--workdir", str(workdir), "export", "0123456789ab", "--out", str(tmp_path)]) == 2
    assert "other things in it" in capsys.readouterr().err and (tmp_path / "notes.txt").exists()


def test_a_stage3_export_carries_the_trained_mllm(workdir, tiny_assets, tmp_path):
    """A stage-3 run's checkpoint holds MLLM and aligner; the export keeps the MLLM it trained."""
    stage2 = workdir / "runs" / "0123456789ab"
    config = stage3_config(tiny_assets, stage2)
    trainable = InstructObjective(config).trainable
    with torch.no_grad():
        trainable["mllm"].model.text_model.model.layer_norm.weight.add_(1.0)  # stands in for training
    run_dir = tmp_path / "stage3"
    CheckpointStore(run_dir / "checkpoints").save(6, {"model": trainable.state_dict()})
    record = json.loads((stage2 / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**record, "config": asdict(config)}))
    command = ["--workdir", str(tmp_path), "export", str(run_dir), "--out", str(tmp_path / "out")]
    assert repro_main(command) == 0
    loaded = KosmosGConditioner.from_pretrained(tmp_path / "out")
    torch.testing.assert_close(loaded.mllm.model.text_model.model.layer_norm.weight,
                               trainable["mllm"].model.text_model.model.layer_norm.weight, rtol=0, atol=0)


def test_a_stage3_run_exports_from_memory_what_repro_export_writes(workdir, tiny_assets, tmp_path):
    """Stage 3's export carries the MLLM it trained whichever way it is written: from the
    objective the job holds, or by `repro export` from the checkpoint."""
    stage2 = workdir / "runs" / "0123456789ab"
    config = stage3_config(tiny_assets, stage2)
    objective = InstructObjective(config)
    with torch.no_grad():
        # stands in for training
        objective.trainable["mllm"].model.text_model.model.layer_norm.weight.add_(1.0)
    run_dir = tmp_path / "stage3"
    CheckpointStore(run_dir / "checkpoints").save(6, {"model": objective.trainable.state_dict()})
    record = {**json.loads((stage2 / "config.json").read_text()), "config": asdict(config)}
    (run_dir / "config.json").write_text(json.dumps(record))
    command = ["--workdir", str(tmp_path), "export", str(run_dir), "--out", str(tmp_path / "out")]
    assert repro_main(command) == 0
    in_memory = write_export(objective.conditioner, config, record, {}, tmp_path / "job",
                             copy_base_mllm=False)
    assert "mllm/model.safetensors" in _files(in_memory)
    assert _files(in_memory) == _files(tmp_path / "out")
