"""The [table.<key>] sections of experiments.toml, each read into one TableSpec: panels of metrics
(or, for a table of one metric, `metric` and `lower_is_better`), its own experiments' rows, rows
reused from experiments of other tables, cited rows, and an optional failure rule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from experiments.recipes.registry import RECIPES
from repro.config.checks import choices, metric_values, sub_tables, unknown_keys
from repro.config.fields import BadValue, coerce
from repro.config.schema import FAILED, BeyondPaperColumn, FailureRule, Panel, TableRow, TableSpec
from repro.config.table_claims import read_findings, read_gates

if TYPE_CHECKING:
    from repro.config.load import Experiment

# A table of one metric may name it directly instead of in a one-panel list: Table 2's
# sections were written that way before tables had panels, and still load.
_ONE_METRIC_KEYS = {"metric": str, "lower_is_better": bool}
_RULE_KEYS = {"baseline_row": str, "failed_above_baseline_ratio": float}
_TABLE_KEYS = {"title", "panels", "cited", "reuse", "findings", "gates", *_ONE_METRIC_KEYS, *_RULE_KEYS}
_PANEL_KEYS = {"name", "metrics", "labels", "lower_is_better", "beyond_paper"}
_BEYOND_PAPER_KEYS = {"metric", "label", "lower_is_better"}
_CITED_KEYS = {"row", "kind", "values"}
_REUSE_KEYS = {"experiment", "row", "kind", "paper"}


def read_tables(
    raw: Any, experiments: tuple[Experiment, ...]
) -> tuple[tuple[TableSpec, ...], list[str]]:
    tables: list[TableSpec] = []
    problems: list[str] = []
    for key, table in sub_tables(raw, "table", problems):
        spec, found = _read_table(key, table, experiments)
        problems += found
        if spec is not None:
            tables.append(spec)
    declared = set(raw) if isinstance(raw, dict) else set()
    for experiment in experiments:
        if experiment.table not in declared:
            problems.append(
                f"experiment {experiment.name!r}: table: {experiment.table!r} is not declared as a "
                f"[table.{experiment.table}] section{choices(experiment.table, declared)}"
            )
    return tuple(tables), problems


def _read_table(
    key: str, table: dict[str, Any], experiments: tuple[Experiment, ...]
) -> tuple[TableSpec | None, list[str]]:
    where = f"table.{key}"
    problems = unknown_keys(table, _TABLE_KEYS, where)
    if not isinstance(table.get("title"), str):
        problems.append(f"{where}.title: required, a string")
    panels = _read_panels(table, where, problems)
    known = [metric for panel in panels for metric in panel.metrics]
    members = [experiment for experiment in experiments if experiment.table == key]
    rows = _own_rows(members, known, where, problems)
    rows += _reused_rows(table, experiments, known, where, problems)
    rows += _cited_rows(table, known, where, problems)
    if not any(row.experiment for row in rows):
        problems.append(f"{where}: no [[experiment]] has table = {key!r} and nothing is reused")
    rule = _read_failure_rule(table, where, panels, rows, problems)
    names = {experiment.name for experiment in experiments}
    findings = read_findings(table.get("findings", []), f"{where}.findings", names, problems)
    columns = [*known, *(column.metric for panel in panels for column in panel.beyond_paper)]
    gates = read_gates(table.get("gates", []), f"{where}.gates", columns, names, problems)
    if problems:
        return None, problems
    return TableSpec(key, table["title"], tuple(panels), tuple(rows), rule, findings, gates), []


def _read_panels(table: dict[str, Any], where: str, problems: list[str]) -> list[Panel]:
    one_metric = [name for name in _ONE_METRIC_KEYS if name in table]
    if "panels" not in table:
        return _read_one_metric(table, where, problems)
    if one_metric:
        problems.append(f"{where}: {', '.join(one_metric)}: give panels, or metric and lower_is_better"
                        f" for a table of one metric, not both")
    panels: list[Panel] = []
    for index, raw in enumerate(_entries(table["panels"], f"{where}.panels", problems)):
        at = f"{where}.panels[{index}]"
        problems += unknown_keys(raw, _PANEL_KEYS, at)
        try:
            metrics = coerce(raw.get("metrics"), tuple[str, ...])
            labels = coerce(raw.get("labels", list(metrics)), tuple[str, ...])
            lower = coerce(raw.get("lower_is_better"), bool)
            name = coerce(raw.get("name"), str)
        except BadValue as bad:
            problems.append(f"{at}: name, metrics, labels, lower_is_better: {bad}")
            continue
        if len(labels) != len(metrics) or not metrics:
            problems.append(f"{at}.labels: one label per metric ({len(metrics)}), got {len(labels)}")
        beyond = _read_beyond_paper(raw.get("beyond_paper", []), f"{at}.beyond_paper", problems)
        panels.append(Panel(name, metrics, labels, lower, beyond))
    return panels


def _read_beyond_paper(raw: Any, where: str, problems: list[str]) -> tuple[BeyondPaperColumn, ...]:
    columns = []
    for index, entry in enumerate(_entries(raw, where, problems)):
        at = f"{where}[{index}]"
        problems += unknown_keys(entry, _BEYOND_PAPER_KEYS, at)
        try:
            metric, label = coerce(entry.get("metric"), str), coerce(entry.get("label"), str)
            columns.append(BeyondPaperColumn(metric, label, coerce(entry.get("lower_is_better"), bool)))
        except BadValue as bad:
            problems.append(f"{at}: metric, label (strings), lower_is_better (true or false): {bad}")
    return tuple(columns)


def _read_one_metric(table: dict[str, Any], where: str, problems: list[str]) -> list[Panel]:
    if not any(name in table for name in _ONE_METRIC_KEYS):
        problems.append(f"{where}.panels: required (or metric and lower_is_better, for a table of one"
                        f" metric)")
        return []
    values, found = _typed(table, _ONE_METRIC_KEYS, where)
    problems += found
    if found:
        return []
    metric = values["metric"]
    return [Panel(metric, (metric,), (metric,), values["lower_is_better"])]


def _own_rows(
    members: list[Experiment], known: list[str], where: str, problems: list[str]
) -> list[TableRow]:
    """The rows of the table's own experiments: the paper's value is one number (or "Failed") in
    a table of one metric, a table of metric = number in a table of several."""
    rows = []
    one_metric = len(known) == 1
    for e in members:
        if one_metric and not isinstance(e.paper, dict):
            rows.append(TableRow(e.row, e.name, e.kind, ((known[0], e.paper),), _source(e)))
        elif not one_metric and isinstance(e.paper, dict):
            problems += _unknown_metrics(e.paper, known, f"experiment {e.name!r}: paper")
            rows.append(TableRow(e.row, e.name, e.kind, tuple(e.paper.items()), _source(e)))
        elif one_metric:
            problems.append(f"experiment {e.name!r}: paper: {where} has one metric; give one number or"
                            f" {FAILED!r}")
        elif known:  # several metrics; with none, the panels' own problem says why
            problems.append(f"experiment {e.name!r}: paper: {where} has several metrics; give a table of "
                            f"metric = the paper's value (an empty table if the paper has none)")
    return rows


def _reused_rows(
    table: dict[str, Any], experiments: tuple[Experiment, ...], known: list[str], where: str,
    problems: list[str],
) -> list[TableRow]:
    """Rows filled by experiments of other tables (Table 1's SD v1.5 is Table 2's run)."""
    rows = []
    by_name = {e.name: e for e in experiments}
    for index, raw in enumerate(_entries(table.get("reuse", []), f"{where}.reuse", problems)):
        at = f"{where}.reuse[{index}]"
        problems += unknown_keys(raw, _REUSE_KEYS, at)
        named = raw.get("experiment")
        source = by_name.get(named) if isinstance(named, str) else None
        if source is None:
            problems.append(f"{at}.experiment: no experiment {raw.get('experiment')!r}")
            continue
        paper, found = metric_values(raw.get("paper", {}), f"{at}.paper")
        problems += found + _unknown_metrics(paper, known, f"{at}.paper")
        rows.append(TableRow(str(raw.get("row", source.row)), source.name, str(raw.get("kind", source.kind)),
                             tuple(paper.items()), _source(source)))
    return rows


def _source(experiment: Experiment) -> str:
    """The Source column's word for an experiment's row: what the harness trained or sampled
    itself is reproduced; a row that samples published weights (the released checkpoints) is
    that model evaluated under this protocol."""
    recipe = RECIPES.get(experiment.recipe)  # an unknown recipe is reported where recipes are checked
    if recipe is not None and recipe.published_weights:
        return "released checkpoint, evaluated here"
    return "reproduced"


def _cited_rows(table: dict[str, Any], known: list[str], where: str, problems: list[str]) -> list[TableRow]:
    """Other methods' rows, as the paper prints them; nothing reruns them."""
    rows = []
    for index, raw in enumerate(_entries(table.get("cited", []), f"{where}.cited", problems)):
        at = f"{where}.cited[{index}]"
        problems += unknown_keys(raw, _CITED_KEYS, at)
        if not isinstance(raw.get("row"), str) or not isinstance(raw.get("values"), dict):
            problems.append(f"{at}: row (a string) and values (metric = number) are required")
            continue
        values, found = metric_values(raw["values"], f"{at}.values")
        problems += found + _unknown_metrics(values, known, f"{at}.values")
        rows.append(TableRow(raw["row"], None, str(raw.get("kind", "")), tuple(values.items())))
    return rows


def _read_failure_rule(
    table: dict[str, Any], where: str, panels: list[Panel], rows: list[TableRow], problems: list[str]
) -> FailureRule | None:
    given = [name for name in _RULE_KEYS if name in table]
    if not given:
        return None
    values, found = _typed(table, _RULE_KEYS, where)
    problems += [f"{problem} with {given[0]}" if problem.endswith(": required") else problem
                 for problem in found]
    if found:
        return None
    reproduced = [row.name for row in rows if row.experiment is not None]
    if values["baseline_row"] not in reproduced:
        problems.append(f"{where}.baseline_row: no row {values['baseline_row']!r}"
                        f"{choices(values['baseline_row'], reproduced)}")
    # The rule flags means above the baseline's: a failure only where lower is better.
    problems += [f"{where}.failed_above_baseline_ratio: panel {panel.name!r} is higher is better; the rule"
                 f" needs lower-is-better metrics" for panel in panels if not panel.lower_is_better]
    return FailureRule(**values)


def _unknown_metrics(values: dict[str, Any], known: list[str], where: str) -> list[str]:
    return [f"{where}.{metric}: not a metric of any panel{choices(metric, known)}"
            for metric in values if metric not in known]


def _typed(
    table: dict[str, Any], types: dict[str, type], where: str
) -> tuple[dict[str, Any], list[str]]:
    """The keys of `types`, each required and coerced to its type."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, hint in types.items():
        if name not in table:
            problems.append(f"{where}.{name}: required")
            continue
        try:
            values[name] = coerce(table[name], hint)
        except BadValue as bad:
            problems.append(f"{where}.{name}: {bad}")
    return values, problems


def _entries(raw: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    """A list of tables (TOML array of tables or inline tables)."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        problems.append(f"{where}: expected a list of tables, got {raw!r}")
        return []
    return raw
