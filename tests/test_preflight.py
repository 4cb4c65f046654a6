"""`repro preflight`'s pieces: the live-storage measure, fake-tensor predictions against real
measurements, the held-out loss's chunking at a size the old code could not have run, the
per-rank sizing and micro-batch suggestion, and the launch keys it reads."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from experiments.recipes.diffusion import HELDOUT_CHUNK, heldout_diffusion_loss
from experiments.recipes.registry import build_recipe
from experiments.training.loop import build_optimizer
from experiments.training.memory import LiveBytes, module_tree, run_steps
from repro.config import ConfigError, load_matrix
from repro.preflight.sizing import GIB, Launch, per_rank_peak, run_hours, suggest_micro_batch
from tests.support.full_tier import EXPERIMENTS, fake_full_env
from tests.support.tiny import tiny_config


def test_live_bytes_counts_what_is_allocated_and_freed():
    kept = torch.zeros(1024)  # 4 KiB alive on entry
    with LiveBytes([kept]) as live:
        start = live.current
        big = torch.ones(256, 1024)  # 1 MiB
        view = big[:10]  # shares the storage: counted once
        assert live.current - start == 2**20
        del big, view
        assert live.current == start == 4096
    assert live.peak == 4096 + 2**20


def test_live_bytes_counts_the_flops_torchs_flop_counter_counts():
    from torch.utils.flop_counter import FlopCounterMode

    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    inputs = torch.randn(3, 7, 32)

    def step():
        layer(inputs).square().sum().backward()

    with FlopCounterMode(display=False) as reference:
        step()
    with LiveBytes() as live:
        step()
    assert live.flops == reference.get_total_flops() > 0


def _objective(assets, experiment, **sets):
    config = tiny_config(assets, experiment, {"data.num_workers": 0, **sets})
    return config, build_recipe(config, None).objective


@pytest.mark.parametrize("experiment", ["aligner-12", "e2e-aligner"])
def test_predicted_peak_is_within_5_percent_of_the_measured_one(tiny_assets, experiment):
    config, objective = _objective(tiny_assets, experiment)

    def optimizer(params):
        return build_optimizer(params, config.train.optim, config.train.steps)[0]

    predicted = run_steps(objective, config.train, 1, 1, fake=True, build_optimizer=optimizer)
    measured = run_steps(objective, config.train, 1, 1, fake=False, build_optimizer=optimizer)
    assert predicted.seconds_per_item is None and measured.seconds_per_item > 0
    # The issue asks for 20%. Both count the same storages, so they agree far closer; 5% still
    # catches a prediction that gives optimiser state to parameters the loss leaves unused.
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.05 * measured.peak_bytes
    # No fake tensor is left behind in the modules (nor in the scheduler's moved tensors).
    tensors = [t for module in module_tree(objective) for t in [*module.parameters(), *module.buffers()]]
    assert not any(isinstance(t, torch._subclasses.FakeTensor) for t in tensors)


def test_heldout_loss_runs_in_chunks_whatever_the_heldout_size(tiny_assets):
    """64 held-out images through the VAE and U-Net: the chunked loss peaks at a fraction of what
    one batch of all of them (the old code: 256 at 512 px, ~160 GiB) takes."""
    config, objective = _objective(tiny_assets, "e2e-aligner")
    decoder, conditioner = objective.decoder, objective.conditioner
    images, texts = torch.zeros(64, 3, 64, 64), ["a photo of a dog"] * 64
    with torch.no_grad(), LiveBytes() as chunked:
        heldout_diffusion_loss(decoder, conditioner, (images, texts))
    with torch.no_grad(), LiveBytes() as whole:
        decoder.diffusion_loss(images, conditioner(texts))
    assert whole.peak > 3 * chunked.peak  # 64 / HELDOUT_CHUNK = 8 chunks, each a few activations
    assert HELDOUT_CHUNK < 64


def test_sharding_changes_the_per_rank_peak_as_ddp_and_fsdp_hold_the_trainable():
    single, trainable = 40 * GIB, 6 * GIB  # ~1.6B fp32 weights, everything whole in one process
    assert per_rank_peak(single, trainable, Launch(1, "ddp", 32)) == single
    assert per_rank_peak(single, trainable, Launch(32, "ddp", 32)) == single + trainable  # gradient buckets
    fsdp = per_rank_peak(single, trainable, Launch(32, "fsdp", 32))
    assert fsdp == single - 4 * trainable + 4 * trainable // 32


def test_a_micro_batch_too_large_for_32_gb_is_flagged_with_a_smaller_one():
    # 10 GB fixed, 1 GB per item: 32 items need 41 GB; 16 (a divisor of 32) need 25 GB.
    one, configured = 11e9, 42e9
    assert suggest_micro_batch(1, one, 32, configured, 32, 32e9) == 16
    assert suggest_micro_batch(1, one, 32, configured, 32, 64e9) == 32
    assert suggest_micro_batch(1, one, 32, configured, 32, 5e9) is None
    # Predicted at 8 items rather than 1 (`--micro-batch 8`): 18 GB there, the same line.
    assert suggest_micro_batch(8, 18e9, 32, configured, 32, 27e9) == 16


def test_run_hours_say_their_basis():
    wall, gpu, basis = run_hours(100, 64, 32, seconds_per_item=0.5, flops_per_item=None, tflops=None)
    assert (gpu, wall, basis) == (100 * 64 * 0.5 / 3600, 100 * 64 * 0.5 / 3600 / 32, "timed on this GPU")
    wall, gpu, basis = run_hours(1000, 1000, 10, seconds_per_item=None, flops_per_item=36 * 10**12, tflops=10)
    assert gpu == pytest.approx(1000.0) and wall == pytest.approx(100.0) and "10 TFLOP/s" in basis
    assert run_hours(1, 1, 1, seconds_per_item=None, flops_per_item=5, tflops=None)[:2] == (None, None)


def test_the_full_tier_declares_a_32_gb_gpu_and_bad_values_name_the_key(tmp_path):
    env = fake_full_env(tmp_path / "world")
    launch = load_matrix(EXPERIMENTS, "full", env=env).runs[0].launch
    assert (launch.gpu_memory_gb, launch.gpu_tflops) == (32, 40)
    for key in ("gpu_memory_gb", "gpu_tflops"):
        with pytest.raises(ConfigError, match=f"launch.{key}: must be > 0"):
            load_matrix(EXPERIMENTS, "full", env=env, overrides=[f"launch.{key}=0"])


def test_a_stage3_run_is_started_from_a_random_aligner_of_its_shape(tiny_assets, tmp_path):
    from experiments.recipes.preflight_steps import preflight_config

    config = replace(tiny_config(tiny_assets, "kosmos-g"), train=replace(
        tiny_config(tiny_assets, "kosmos-g").train, init_from="@run/missing"))
    ready = preflight_config(config, tmp_path)
    assert ready.data.num_workers == 0 and not ready.train.cache_encoder_outputs
    objective = build_recipe(ready, None).objective  # loads the aligner from init_from
    assert any(p.requires_grad for p in objective.trainable.parameters())


def test_the_command_samples_fid_once_and_a_failed_stage_names_its_run(tmp_path, monkeypatch, capsys):
    """Three tiny runs through `repro preflight`: the first run's FID fails (planted), which
    fails that row only, names run and stage, and exits 1; the next run samples the FID images,
    and the third, on the same decoder, only encodes its prompts. Real steps fit here and are timed."""
    import json

    import experiments.evaluation.fid as fid
    from tests.support.workdirs import new_workdir, repro

    real_evaluate, calls = fid.evaluate_fid, []

    def first_one_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("planted")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(fid, "evaluate_fid", first_one_fails)
    workdir = new_workdir(tmp_path / "work")
    status = repro(workdir, "preflight", "--only", "sd-v1-5", "--only", "decoder-12", "--only", "aligner-12",
                   "--seeds", "0", "--set", "aligner.layers=2",
                   "--set", "fid.feature_extractor=tiny-random-conv", "--budget-gb", "4")
    assert status == 1
    rows = {row["run"]: row for row in json.loads((workdir / "reports" / "preflight.json").read_text())}
    baseline = rows["SD v1.5 seed=0"]
    aligner, decoder = rows["12-Layers AlignerNet seed=0"], rows["12-Layers Decoder seed=0"]
    assert baseline["failed"] == "fid: RuntimeError: planted"
    assert f"preflight failed: SD v1.5 seed=0 ({baseline['config_hash']}): fid: RuntimeError: planted" in (
        capsys.readouterr().err)
    assert not aligner["failed"] and not decoder["failed"] and len(calls) == 2
    assert any(line.startswith("FID images: 2 at") for line in decoder["basis"])  # plan order: decoder first
    assert any(line.startswith("FID images: sampled in 12-Layers Decoder seed=0")
               for line in aligner["basis"])
    for row in (decoder, aligner):
        assert set(row["seconds"]) == {"load", "predict", "train", "fid"}
        assert row["seconds_per_item"] > 0 and row["peak_measured_gib"] > 0 and row["peak_predicted_gib"] > 0
    # The reference side is the drawn captions' images, not the 128 the tier's captions name.
    (reference,) = (p for p in (workdir / ".cache").glob("reference-*") if p.is_dir())
    assert 1 <= len(list(reference.glob("*.png"))) <= 2
    assert (workdir / "reports" / "preflight.md").is_file()


def test_a_run_that_trains_nothing_is_sized_by_the_images_its_evaluations_sample(tiny_assets, tmp_path):
    from experiments.recipes.preflight_steps import PreflightRun

    config = tiny_config(tiny_assets, "kosmos-g-released")
    cost = PreflightRun(config, tmp_path).sampling_cost()
    bench = config.dreambench
    images = len(bench.subjects) * len(bench.templates) * bench.images_per_prompt
    assert cost.images == {"fid": 8, "dreambench": images}
    longer = replace(config, fid=replace(config.fid, steps=2 * config.fid.steps))
    doubled = PreflightRun(longer, tmp_path).sampling_cost()
    assert doubled.flops["fid"] == 2 * cost.flops["fid"] > 0
    assert doubled.flops["dreambench"] == cost.flops["dreambench"] > 0
