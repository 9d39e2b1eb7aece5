"""The impact page: what the decisions earned in production, as one self-contained HTML page with
its tables as CSV beside it, and the headline figures in MLflow (a run "impact").

Built from the ROI report's pieces (training.evaluation.report): the same sections, tables,
number formats, figure embedding and page frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from training.atomic import atomic_directory  # noqa: E402
from training.config import GREEDY_COLUMN  # noqa: E402
from training.evaluation.impact import Impact  # noqa: E402
from training.evaluation.report import (  # noqa: E402
    Column,
    _definitions,
    _e,
    _page,
    _section,
    _table,
    format_count,
    format_money_ci,
    format_share,
    png_data_uri,
)

REPORT_FILE = "impact.html"
METADATA_FILE = "impact.json"
RUN_NAME = "impact"
ARTIFACT_PATH = "impact"

HEADLINE_TEXT = (
    "What the logged decisions earned against the global control group: money per decision, "
    "incremental over doing nothing, with 95% intervals (bootstrap standard errors). The "
    "decisions' value is the mean over customers outside the control group; doing nothing is "
    "valued over every customer who got nothing (the control group and those the policy left "
    "alone), each weighted by the inverse of its logged propensity. Decisions whose outcome "
    "window is not over yet are left out."
)
ACTIONS_TEXT = (
    "Per action: what giving it earns per customer it could be given to, over doing nothing "
    "(inverse-propensity weighted over the customers who got it). Exploration is what makes this "
    "measurable for every action. Take rates are feedback per decision that showed the action first."
)
GREEDY_TEXT = (
    "Per greedy action (the action the policy's ranking put first, logged for every decision, "
    "shown or not): what the decisions outside the control group earned, exploration included, "
    "against the control-group customers the policy wanted the same action for. The control "
    "group is a random share, so both sides are the same kind of customer: this is the effect of "
    '"the policy wants this action" on exactly the customers it wanted it for. An action '
    "with no control-group customer has no row."
)
GREEDY_MISSING_TEXT = (
    "The decisions do not log the policy's greedy action (a decision log older than schema "
    "version 4, or exposures without a greedy_action column), so there is no comparison per "
    "greedy action."
)
SLICE_TEXT = (
    "The same comparison inside each slice: decisions and control-group customers of the same "
    "model version, channel, week or customer segment."
)


def value_columns(
    key: str,
    header: str,
    currency: str,
    labels: tuple[str, str, str] = ("incremental value per decision", "decided", "nothing"),
) -> list[Column]:
    """A table of estimates: the slice, its rows, the difference with its interval and both terms
    (`labels`: what the page calls those three)."""
    effect, decided, nothing = labels
    return [
        Column(header, lambda r: str(r[key])),
        Column("decisions", lambda r: format_count(r["rows"])),
        Column(effect, lambda r: format_money_ci(r["incremental_value"], r["ci"], currency)),
        Column(decided, lambda r: format_money_ci(r["decided_value"], np.nan, currency)),
        Column(nothing, lambda r: format_money_ci(r["nothing_value"], np.nan, currency)),
    ]


def greedy_columns(currency: str) -> list[Column]:
    labels = ("effect per decision (policy vs control group)", "policy", "control group")
    columns = value_columns(GREEDY_COLUMN, "greedy action", currency, labels)
    held = Column("of them control group", lambda r: format_count(r["control"]))
    return [*columns[:2], held, *columns[2:]]


TAKE_COLUMNS = [
    Column("action", lambda r: str(r["action_id"])),
    Column("shown first", lambda r: format_count(r["shown"])),
    Column("accepted", lambda r: format_count(r["accepted"])),
    Column("declined", lambda r: format_count(r["declined"])),
    Column("accept rate", lambda r: format_share(r["accept_rate"])),
    Column("decline rate", lambda r: format_share(r["decline_rate"])),
]


def weekly_figure(weekly: pd.DataFrame, currency: str) -> Figure:
    """Incremental value per decision by week with its 95% interval."""
    fig = plt.figure(figsize=(7.0, 3.0), layout="constrained")
    ax = fig.add_subplot()
    shown = weekly.dropna(subset=["incremental_value"])
    ax.errorbar(shown["week"], shown["incremental_value"], yerr=shown["ci"], fmt="o-", capsize=3)
    ax.axhline(0.0, color="0.5", linestyle=":")
    ax.set_ylabel(f"{currency} per decision")
    ax.set_title("incremental value per decision, by week")
    ax.tick_params(axis="x", rotation=45)
    return fig


def render_impact_html(result: Impact) -> str:
    """The page of a training.pipelines.impact.Impact; every inserted string is escaped."""
    currency, tables = result.currency, result.tables
    overall = tables["overall"].iloc[0].to_dict()
    facts = [
        ("incremental value per decision",
         format_money_ci(overall["incremental_value"], overall["ci"], currency)),
        ("decisions judged", format_count(result.rows)),
        ("left out (outcome window not over)", format_count(result.censored)),
        ("since", result.since or "the first logged decision"),
        ("value of a decision", result.money),
        ("control group from", result.control_source),
    ]  # fmt: skip
    sections = [_section("headline", "Headline", HEADLINE_TEXT, _definitions(facts))]
    actions = _table(tables["actions"], value_columns("action_id", "action", currency))
    take = tables.get("take_rates")
    take_html = _table(take, TAKE_COLUMNS) if take is not None else ""
    sections.append(_section("actions", "Actions", ACTIONS_TEXT, actions, take_html))
    sections.append(greedy_section(result))
    weekly = tables["weekly"]
    image = ""
    if weekly["incremental_value"].notna().any():
        fig = weekly_figure(weekly, currency)
        image = f'<figure><img alt="weekly" src="{_e(png_data_uri(fig))}"></figure>'
        plt.close(fig)
    parts = [_table(weekly, value_columns("week", "week", currency)), image]
    for name in ("model_version", "channel"):
        if name in tables:
            parts.append(f"<h3>{_e(name.replace('_', ' '))}</h3>")
            parts.append(_table(tables[name], value_columns(name, name, currency)))
    segments = tables["segments"]
    if not segments.empty:
        labelled = segments.assign(segment=segments["column"] + " = " + segments["segment"])
        parts.append("<h3>segments</h3>")
        parts.append(_table(labelled, value_columns("segment", "segment", currency)))
    sections.append(_section("slices", "Over time and by slice", SLICE_TEXT, *parts))
    return _page("nextbest impact: what the decisions earned", "\n".join(sections))


def greedy_section(result: Impact) -> str:
    """The per-greedy-action table, with the rows it left out, or why there is none."""
    table = result.tables.get("greedy")
    if table is None:
        return _section("greedy", "Per greedy action", GREEDY_MISSING_TEXT)
    left_out = (
        f"<p>Decisions without a logged greedy action, left out: "
        f"{_e(format_count(result.greedy_unlogged or 0))}.</p>"
    )
    body = _table(table, greedy_columns(result.currency))
    return _section("greedy", "Per greedy action", GREEDY_TEXT, body, left_out)


def write_impact(result: Impact, out: Path) -> Path:
    """Write impact.html, impact.json and one CSV per table into `out` (replaced whole)."""
    with atomic_directory(Path(out)) as tmp:
        (tmp / REPORT_FILE).write_text(render_impact_html(result), encoding="utf-8")
        for name, table in result.tables.items():
            table.to_csv(tmp / f"{name}.csv", index=False)
        meta = {"rows": result.rows, "censored": result.censored, "since": result.since,
                "currency": result.currency, "money": result.money,
                "control_source": result.control_source, "greedy_unlogged": result.greedy_unlogged,
                "metrics": result.metrics()}  # fmt: skip
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return Path(out)


def log_impact(result: Impact, out: Path) -> str:
    """Log the impact as a run "impact" of the nextbest experiment (metrics and the page)."""
    import mlflow

    from training.registry.tracking import ensure_experiment

    ensure_experiment()
    with mlflow.start_run(run_name=RUN_NAME) as run:
        mlflow.log_params({"decisions": result.rows, "since": result.since or "all",
                           "currency": result.currency})  # fmt: skip
        mlflow.log_metrics(result.metrics())
        mlflow.log_artifacts(str(out), ARTIFACT_PATH)
    return str(run.info.run_id)
