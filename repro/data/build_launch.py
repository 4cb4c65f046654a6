"""Launching `repro data build`: its parts one after another in this process, or as one job
array on an executor (a task per input shard), skipping the parts already built."""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.data.build_parts import BuildPart, build_part

EXIT_OK, EXIT_FAILED = 0, 1


def run_build(parts: list[BuildPart], jobs_folder: Path, executor: str | None, timeout_min: int) -> int:
    todo = [part for part in parts if not part.done]
    for part in parts:
        if part.done:
            print(f"{part.out_dir}: already built, skipped")
    if executor is None:
        for part in todo:
            print(build_part(part).summary())
        return EXIT_OK
    from repro.launch.executor import make_executor

    jobs = make_executor(executor, jobs_folder, timeout_min).map_array(build_part, todo)
    failed = 0
    for part, job in zip(todo, jobs):
        try:
            print(job.result().summary())
        except Exception as error:  # the task's own exception, re-raised by submitit
            failed += 1
            print(f"repro: data build of {part.captioned} failed (job {job.job_id}): {error}",
                  file=sys.stderr)
    if failed:
        print(f"repro: {failed} of {len(todo)} part(s) failed; run the same command again to redo them",
              file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
