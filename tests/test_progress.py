"""Long stages say where they are off a terminal: a timed log line with the count and an estimate."""

from __future__ import annotations

import logging
import re
import time

from experiments.training.progress import Progress


def _lines(caplog) -> list[str]:
    return [
        record.getMessage() for record in caplog.records if record.name == "experiments.training.progress"
    ]


def test_a_stage_off_a_terminal_logs_its_count_and_an_estimate_while_it_runs(caplog):
    caplog.set_level(logging.INFO, logger="experiments.training.progress")
    with Progress("train", 5, initial=1, unit="step", bar=False, every=0.02) as progress:
        time.sleep(0.2)  # a first step slower than the interval: still reported, without an estimate
        for _ in range(4):
            progress.update()
            progress.note(loss="0.5")
            time.sleep(0.08)
    lines = _lines(caplog)
    assert "train: 1/5 steps" in lines[0] and "no estimate yet" in lines[0]
    estimate = re.compile(r"train: [2-4]/5 steps, .*s/step, ~[\d.]+s left, loss=0.5")
    estimates = [line for line in lines if estimate.search(line)]
    assert estimates, lines
    assert re.fullmatch(r"train: 5/5 steps done in [\d.]+s", lines[-1])


def test_a_stage_shorter_than_the_interval_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="experiments.training.progress")
    with Progress("FID sampling", 3, unit="image", bar=False, every=60) as progress:
        progress.update(3)
    assert _lines(caplog) == []
