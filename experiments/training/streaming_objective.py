"""The base of the objectives whose training items stream from shards (experiments/data/stream.py):
a recipe hands `stream_steps` what makes a step's items, and the loop's prefetching, the items,
the skip counts and the training data's inputs all come from the stream."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from experiments.data.batches import WHOLE, Part
from experiments.data.stream import StepSource, StepStream
from experiments.training.objective import Objective
from experiments.training.tracker import DataInput


class StreamingObjective(Objective):
    stream: StepStream

    def stream_steps(self, source: StepSource) -> None:
        """Trains on `source`'s steps; the objective's `device` must be set (it decides pinning)."""
        self.stream = StepStream(source, self.config.data, pin_memory=self.device.type == "cuda")

    def prefetching(self, start: int, parts: list[Part]) -> AbstractContextManager[None]:
        return self.stream.streaming(start, parts)

    def items(self, step: int, part: Part = WHOLE) -> list[Any]:
        return self.stream.take(step, part)

    def data_counts(self) -> dict[str, int]:
        return self.stream.counts()

    @property
    def rows_in_data(self) -> dict[str, int]:
        """Rows in one epoch of each training data set, by its key under `data`."""
        return self.stream.source.rows_in_data

    def training_inputs(self) -> list[DataInput]:
        """The training data sets as `data_inputs` lists them, with their rows."""
        data = self.config.data
        return [DataInput(f"data.{key}", "training", getattr(data, key), rows)
                for key, rows in self.rows_in_data.items()]
