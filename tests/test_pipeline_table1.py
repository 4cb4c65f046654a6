"""Table 1 on the tiny tier, as a user runs it: `repro run --table table1` trains stage 2, then
stage 3 from it, evaluates DreamBench and COCO FID, and `reports/table1.md` tells the
reproduced rows from the cited ones."""

from __future__ import annotations

import json

import pytest

from repro.tracking import tags
from tests.support.workdirs import FAST, child_runs, new_workdir, repro

pytestmark = pytest.mark.slow

QUICK_DREAMBENCH = ["--set", "dreambench.templates=[0, 20]", "--set", "dreambench.images_per_prompt=1",
                    "--set", "dreambench.steps=2"]


def test_table1_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = new_workdir(tmp_path / "work")
    options = ["--tier", "tiny", "--table", "table1", "--seeds", "0", *FAST, *QUICK_DREAMBENCH]
    assert repro(workdir, "run", *options, "--executor", "debug") == 0

    client, runs = child_runs(workdir)
    by_experiment = {run.data.tags[tags.EXPERIMENT]: run for run in runs}
    assert set(by_experiment) == {"sd-v1-5", "aligner-12", "kosmos-g", "kosmos-g-released", "real-images"}
    assert all(run.info.status == "FINISHED" for run in runs)
    stage2, stage3 = by_experiment["aligner-12"], by_experiment["kosmos-g"]
    # Stage 3 started from stage 2's run, named by its config hash (re-rooted in runs/ in the job).
    config = json.loads((workdir / "runs" / stage3.data.tags[tags.CONFIG_HASH] / "config.json").read_text())
    assert config["config"]["train"]["init_from"] == f"@run/{stage2.data.tags[tags.CONFIG_HASH]}"
    assert stage3.info.start_time >= stage2.info.end_time
    metrics = stage3.data.metrics
    assert {"eval/dino", "eval/clip_i", "eval/clip_t", "eval/fid"} <= set(metrics)
    assert metrics["data/skipped_edits_corrupt_image"] >= 1  # the planted corrupt image, met once an epoch
    oracle = by_experiment["real-images"].data.metrics
    assert set(oracle) >= {"eval/dino", "eval/clip_i"} and "eval/fid" not in oracle

    table = (workdir / "reports" / "table1.md").read_text()
    assert "### DreamBench" in table and "### MS-COCO" in table
    assert "| SuTI | zero-shot | paper (cited) | 0.741 (cited)" in table
    # The released model's row: evaluated here, said so, the paper's KOSMOS-G beside it.
    sources = {"KOSMOS-G": "reproduced",
               "KOSMOS-G (released checkpoint)": "released checkpoint, evaluated here"}
    for row, source in sources.items():
        line = next(line for line in table.splitlines() if line.startswith(f"| {row} |") and "0.694" in line)
        assert f"| {source} (tier tiny, n=1) |" in line
    assert (workdir / "reports" / "table1_dreambench_samples.png").stat().st_size > 10_000

    # Everything finished: a second run launches nothing.
    assert repro(workdir, "run", *options, "--executor", "debug", "--no-report") == 0
    assert len(child_runs(workdir)[1]) == 5
