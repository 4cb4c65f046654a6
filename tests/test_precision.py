"""Memory and precision at full size: the held-out diffusion loss in chunks, the frozen encoders
and held-out losses under the training precision, FSDP's mixed-precision policy."""

from __future__ import annotations

import pytest
import torch

from experiments.data.batches import WHOLE
from experiments.recipes.diffusion import HELDOUT_CHUNK, heldout_diffusion_loss
from experiments.training.checkpoints import STATE, CheckpointStore, load_state
from experiments.training.loop import train
from experiments.training.precision import fsdp_policy, sampling_autocast
from experiments.training.tracker import RecordingTracker
from tests.support.objectives import Regression, train_config


class ChunkCountingDecoder:
    """A decoder whose loss is its images' mean (plus seeded noise if `noisy`), recording the
    largest batch it was given."""

    def __init__(self, noisy: bool = True) -> None:
        self.largest = 0
        self.noisy = noisy

    def diffusion_loss(self, images, condition, generator=None):
        self.largest = max(self.largest, images.shape[0])
        noise = torch.rand(images.shape[0], generator=generator, device=images.device) * self.noisy
        return (images.flatten(1).mean(1) + noise).mean()


class Conditioner:
    device = torch.device("cpu")

    def __call__(self, texts):
        return torch.zeros(len(texts), 2, 3)


def test_the_heldout_loss_never_puts_more_than_a_chunk_through_the_vae():
    # 36 rising values: the last chunk holds 4 images, and the largest ones.
    images = torch.linspace(0, 1, 36).view(36, 1, 1, 1).expand(36, 3, 4, 4).contiguous()
    pairs = (images, [f"caption {i}" for i in range(36)])
    decoder = ChunkCountingDecoder()
    loss = heldout_diffusion_loss(decoder, Conditioner(), pairs)
    assert decoder.largest == HELDOUT_CHUNK < 36  # the old code sent all of them at once
    assert loss == heldout_diffusion_loss(ChunkCountingDecoder(), Conditioner(), pairs)  # fixed noise
    # Each chunk weighs by its images: the mean of per-image values (0.5), where the mean of the
    # chunks' means would weigh the short last chunk's 4 images as 8.
    exact = heldout_diffusion_loss(ChunkCountingDecoder(noisy=False), Conditioner(), pairs)
    assert exact == pytest.approx(0.5, abs=1e-6)


class PrecisionRecording(Regression):
    def __init__(self) -> None:
        super().__init__()
        self.autocast_in: dict[str, set[bool]] = {"batch": set(), "heldout": set()}

    def batch(self, step, part=WHOLE):
        self.autocast_in["batch"].add(torch.is_autocast_enabled("cpu"))
        return super().batch(step, part)

    def heldout(self):
        self.autocast_in["heldout"].add(torch.is_autocast_enabled("cpu"))
        return super().heldout()


def test_batches_and_heldout_losses_run_in_the_training_precision(tmp_path):
    for precision, expected in (("bf16", {True}), ("no", {False})):
        objective = PrecisionRecording()
        train(objective, train_config(4, precision=precision, eval_every=2), tmp_path / precision,
              RecordingTracker(), progress=False)
        assert objective.autocast_in == {"batch": expected, "heldout": expected}


def test_fsdp_gathers_in_half_precision_and_reduces_in_fp32():
    policy = fsdp_policy("bf16")
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert fsdp_policy("no").param_dtype is None


class Fp32LossRegression(Regression):
    """The error squared and averaged in fp32, as the recipes' losses are (their MSE takes
    .float() of both sides): 2**16 times an fp16 loss's gradient of 1 is already past fp16's max.
    Scaled down so that the fp16 gradients stay finite at the scaler's first scale, 2**16."""

    def loss(self, x):
        error = (self.trainable(x) - x @ self.w_true.T).float()
        return {"loss": (error**2).mean() * 1e-2}


def test_fp16_takes_real_steps_through_the_grad_scaler(tmp_path):
    """The full tier's fp16: CPU autocast has float16 matmuls and torch's GradScaler a CPU kind."""
    runs = {}
    for precision in ("fp16", "no"):
        torch.manual_seed(0)
        objective = Fp32LossRegression()
        start = objective.trainable.weight.detach().clone()
        tracker = RecordingTracker()
        train(objective, train_config(10, precision=precision, log_every=1, checkpoint_every=10),
              tmp_path / precision, tracker, progress=False)
        runs[precision] = objective.trainable.weight.detach(), tracker.series("train/grad_norm")
    (half, half_norms), (full, full_norms) = runs["fp16"], runs["no"]
    scaler = load_state(CheckpointStore(tmp_path / "fp16" / "checkpoints").latest() / STATE)["scaler"]
    assert scaler["scale"] == 2.0**16  # scaled every step, and no step overflowed
    # Unscaled before clipping: the norms and the steps are fp32's, to fp16's precision (an
    # unscaled-after-clipping gradient would be clipped 65536 times too hard and barely move w).
    assert half_norms == pytest.approx(full_norms, rel=1e-2)
    torch.testing.assert_close(half, full, rtol=1e-2, atol=1e-3)
    assert (full - start).abs().max() > 0.05  # 10 real steps


@torch.no_grad()
def test_sampling_computes_in_fp16_on_a_gpu_and_fp32_on_a_cpu():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    layer = torch.nn.Linear(4, 4).to(device)
    with sampling_autocast("fp16"):
        half = layer(torch.ones(1, 4, device=device))
    with sampling_autocast("no"):
        full = layer(torch.ones(1, 4, device=device))
    assert (half.dtype, full.dtype) == (torch.float16 if device == "cuda" else torch.float32, torch.float32)
