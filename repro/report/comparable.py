"""A table's FIDs must be comparable: runs scored by another implementation or on images resized
by another rule (resampling filter, antialiasing, crop) give numbers that differ by more than the
table's rows do, so they never share a table."""

from __future__ import annotations

import pandas as pd

from repro.config.schema import TableSpec
from repro.tracking import tags


def check_comparable_fids(runs: pd.DataFrame, spec: TableSpec) -> None:
    """Raises ValueError naming the rules and their runs when `runs` scored FID more than one way.
    Runs logged before the tags existed count as one unknown way."""
    if tags.METRIC_FID not in spec.metrics:
        return
    scored = runs[runs[tags.METRIC_FID].notna()]
    ways = scored[["fid_implementation", "fid_preprocessing"]].astype(object).fillna("untagged")
    groups = scored.groupby([ways["fid_implementation"], ways["fid_preprocessing"]])["experiment"]
    if groups.ngroups <= 1:
        return
    listed = "; ".join(
        f"{implementation}, {preprocessing}: {', '.join(sorted(set(experiments)))}"
        for (implementation, preprocessing), experiments in groups
    )
    raise ValueError(
        f"{spec.key}: its runs scored FID in {groups.ngroups} different ways ({listed}); "
        "re-run the odd ones out (or report them in a store of their own)"
    )
