"""Memory and precision at full size: the held-out diffusion loss in chunks, the frozen encoders
and held-out losses under the training precision, FSDP's mixed-precision policy."""

from __future__ import annotations

import torch

from experiments.data.batches import WHOLE
from experiments.recipes.diffusion import HELDOUT_CHUNK, heldout_diffusion_loss
from experiments.training.loop import train
from experiments.training.precision import fsdp_policy, sampling_autocast
from experiments.training.tracker import RecordingTracker
from tests.support.objectives import Regression, train_config


class ChunkCountingDecoder:
    """A decoder whose loss is its images' mean, recording the largest batch it was given."""

    def __init__(self) -> None:
        self.largest = 0

    def diffusion_loss(self, images, condition, generator=None):
        self.largest = max(self.largest, images.shape[0])
        noise = torch.rand(images.shape[0], generator=generator, device=images.device)
        return (images.flatten(1).mean(1) + noise).mean()


class Conditioner:
    device = torch.device("cpu")

    def __call__(self, texts):
        return torch.zeros(len(texts), 2, 3)


def test_the_heldout_loss_never_puts_more_than_a_chunk_through_the_vae():
    images = torch.linspace(-1, 1, 40).view(40, 1, 1, 1).expand(40, 3, 4, 4).contiguous()
    pairs = (images, [f"caption {i}" for i in range(40)])
    decoder = ChunkCountingDecoder()
    loss = heldout_diffusion_loss(decoder, Conditioner(), pairs)
    assert decoder.largest == HELDOUT_CHUNK < 40  # the old code sent all 40 at once
    assert loss == heldout_diffusion_loss(ChunkCountingDecoder(), Conditioner(), pairs)  # fixed noise
    # Each chunk weighs by its images: the mean of per-image values, whatever the chunking.
    shuffled = (images.flip(0), pairs[1])
    assert abs(heldout_diffusion_loss(decoder, Conditioner(), shuffled) - loss) < 0.2


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


def test_sampling_is_half_precision_on_a_gpu_only():
    with sampling_autocast("fp16"):
        assert torch.is_autocast_enabled("cuda") == torch.cuda.is_available()
        assert not torch.is_autocast_enabled("cpu")
