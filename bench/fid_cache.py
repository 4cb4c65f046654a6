"""(d) FID with the reference set's prepared images and Inception statistics cached, against
preparing and extracting them afresh: experiments.evaluation.fid on the tiny tier's COCO set with its
random-weight Inception (the real architecture at 299 px, so the per-image cost is the real one).

The generated folder is a copy of the prepared reference set; what is timed is the scoring, not
the sampling (see bench/sampling.py for that). Times are wall clock and process CPU time, the
latter barely moved by other processes on a shared box.

    python -m bench.fid_cache
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench._common import parse_args, report, tiny_config
from experiments.config import FidConfig
from experiments.evaluation.fid import compute_fid, prepare_reference


def score(fid: FidConfig, cache: Path, generated: Path) -> tuple[dict[str, float], Path]:
    """Wall and CPU seconds to prepare the reference and score against it; the reference folder."""
    wall, cpu = time.perf_counter(), time.process_time()
    reference = prepare_reference(fid, cache)
    if not generated.is_dir():  # first call: the "generated" set is a copy of the reference
        shutil.copytree(reference, generated)
    compute_fid(generated, reference, fid, cache)
    figures = {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3)}
    return figures, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parse_args(parser)  # sets the torch threads
    load = os.getloadavg()
    fid = tiny_config().fid
    with tempfile.TemporaryDirectory() as tmp:
        cache, generated = Path(tmp) / "cache", Path(tmp) / "generated"
        recompute, reference = score(fid, cache, generated)
        cached, _ = score(fid, cache, generated)
        images = len(list(reference.glob("*.png")))
    report("fid_reference_cache", {
        "reference_images": images, "generated_images": images,
        "feature_extractor": fid.feature_extractor, "resolution": fid.resolution,
        "recompute_reference": recompute, "cached_reference": cached,
        "speedup_cpu": round(recompute["cpu_s"] / cached["cpu_s"], 2),
        "speedup_wall": round(recompute["wall_s"] / cached["wall_s"], 2),
    }, load)


if __name__ == "__main__":
    main()
