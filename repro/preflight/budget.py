"""How much memory a real preflight step may take on this machine."""

from __future__ import annotations

import torch

SHARE = 0.8  # of what is free: other processes (and the allocator's slack) keep the rest


def memory_budget() -> float:
    """Bytes: a share of the GPU's free memory, else of the RAM Linux reports available."""
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return SHARE * free
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return SHARE * int(fields["MemAvailable"].split()[0]) * 1024
