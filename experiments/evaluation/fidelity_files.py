"""torch-fidelity unpickles two kinds of file in full (`torch.load(weights_only=False)`): the
Inception weights `fid.inception_weights` names and its own statistics cache in the work dir's
.cache/, which a shared or copied work dir may hold from someone else. Each is read once with
weights_only first, numpy arrays allowed (the cached statistics are numpy): a file that needs
anything more is refused, naming it, before torch-fidelity ever opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.training.checkpoints import load_state

# What pickling a plain numpy array of numbers takes: its reconstructor, the class, the dtype.
_NUMPY_ARRAYS: list[Any] = [np.zeros(1).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.float64)),
                 type(np.dtype(np.float32))]


def require_plain(paths: list[Path]) -> None:
    with torch.serialization.safe_globals(_NUMPY_ARRAYS):
        for path in paths:
            load_state(path)
