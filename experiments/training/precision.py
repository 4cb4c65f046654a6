"""The precision a run computes in: autocast for training (the trainable and the frozen encoders
that feed it, held-out losses included), for sampling on a GPU, and FSDP's mixed-precision policy."""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Training's autocast: on wherever torch has it for the device."""
    return torch.autocast(device.type, dtype=DTYPES.get(precision, torch.bfloat16), enabled=precision != "no")


def sampling_autocast(precision: str) -> torch.autocast:
    """Sampling's autocast: on a GPU (where evaluation runs when there is one) only, in the half
    precision the official code samples in (fp16); a CPU samples in fp32, where it buys nothing."""
    on = precision != "no" and torch.cuda.is_available()
    return torch.autocast("cuda" if on else "cpu", dtype=DTYPES.get(precision, torch.float16), enabled=on)


def enable_tf32() -> None:
    """fp32 matmuls and convolutions on TF32 tensor cores where the GPU has them (Ampere on)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def fsdp_policy(precision: str):  # -> MixedPrecisionPolicy
    """FSDP2 gathers parameters in the training precision and reduces gradients in fp32, so the
    all-gathers move half the bytes and the averaged gradients lose nothing."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "no":
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=DTYPES[precision], reduce_dtype=torch.float32)
