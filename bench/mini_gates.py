"""(j) The mini world's gates (issue 21), from an MLflow store's Table 2 runs: per gate PASS, FAIL
or not measured, with the numbers, exactly as `repro report` writes them under "Gates"
(repro.report.gates; the gates are declared in experiments.toml's [table.table2]). Nothing is
run or trained: point it at the store `make table2` filled.

    python -m bench.mini_gates [--workdir DIR] [--tracking-uri URI] [--tier mini]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench._common import ROOT, parse_args, report
from repro.config import load_matrix
from repro.config.paths import tiny_assets_dir
from repro.report.collect import collect_runs
from repro.report.gates import check_gates
from repro.tracking.mlflow_runs import DEFAULT_EXPERIMENT, default_tracking_uri
from repro.tracking.store import require_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("."), help="the work dir `repro` ran in")
    parser.add_argument("--tracking-uri", default=None, help="default: the work dir's store, as `repro`")
    parser.add_argument("--experiment-name", default=DEFAULT_EXPERIMENT)
    parser.add_argument("--tier", default="mini")
    parser.add_argument("--table", default="table2")
    args = parse_args(parser)
    load = os.getloadavg()
    uri = args.tracking_uri or default_tracking_uri(args.workdir)
    require_store(uri)
    matrix = load_matrix(ROOT / "experiments.toml", args.tier, tiny_assets=tiny_assets_dir(args.workdir))
    spec = next(table for table in matrix.tables if table.key == args.table)
    experiments = {row.experiment for row in spec.reproduced if row.experiment is not None}
    runs = collect_runs(uri, args.experiment_name, experiments, args.tier, spec.collected_metrics)
    gates = [{"gate": result.gate.name, "outcome": result.outcome, "evidence": result.evidence}
             for result in check_gates(runs, spec)]
    report("mini_gates", {"tier": args.tier, "store": uri, "gates": gates}, load)


if __name__ == "__main__":
    main()
