"""Progress bars only where someone watches them. Output that goes to a log file, a pipe or CI
(a job's log, `repro report > log`) would otherwise fill with the bars of MLflow's artifact
downloads and transformers' "Loading weights", one carriage-return-joined line per update."""

from __future__ import annotations

import os
import sys

from experiments.training.progress import on_terminal


def quiet_unless_interactive() -> None:
    """Turns the libraries' bars off unless both stdout and stderr are terminals. Settings the
    user made in the environment win; the environment also reaches the jobs started from here."""
    if on_terminal():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # huggingface_hub and transformers
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # transformers reads the variable when first imported; one that is loaded already is told.
    if "transformers" in sys.modules and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        from transformers.utils import logging

        logging.disable_progress_bar()
