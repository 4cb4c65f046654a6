"""(g) Start-up costs the tests used to time: reading experiments.toml into the tiny tier's plan
in a fresh interpreter (what every `repro` command pays before it does anything), and writing
the tiny Kosmos-2 and Stable Diffusion checkpoints (what a fresh tiny tier pays once).

    python -m bench.startup [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from bench._common import ROOT, parse_args, report
from experiments.tiny.models import save_tiny_kosmos2, save_tiny_stable_diffusion

PLAN = (
    "from pathlib import Path\n"
    "from repro.config import load_matrix\nfrom repro.launch.plan_table import format_plan\n"
    f"format_plan(load_matrix({str(ROOT / 'experiments.toml')!r}, 'tiny', tiny_assets=Path('a'), env={{}}))\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings of each; the median is reported")
    args = parse_args(parser)
    load = os.getloadavg()
    plan, builds = [], []
    for seed in range(args.repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", PLAN], check=True, cwd=ROOT)
        plan.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            save_tiny_kosmos2(Path(folder) / "kosmos2", seed=seed)
            save_tiny_stable_diffusion(Path(folder) / "sd", seed=seed)
            builds.append(time.perf_counter() - started)
    report("startup", {
        "plan_in_a_fresh_process_s": round(median(plan), 3),
        "tiny_checkpoints_build_s": round(median(builds), 3),
        "repeats": args.repeats,
    }, load)


if __name__ == "__main__":
    main()
