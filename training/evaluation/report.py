"""The ROI report of an evaluation (`nextbest evaluate` / `make report`, issue 4).

Rendering is pure: an `Evaluation` in, matplotlib figures or HTML text out. Writing happens at the
edge, in `write_report`, atomically, so a failed evaluation never leaves half a report over the
previous one; `log_report` puts the written folder and the headline metrics into MLflow. The page
opens offline: figures are embedded as PNG `data:` URIs, the CSS is inline and there is no script.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from training.atomic import atomic_directory
from training.errors import NextbestError
from training.evaluation.decisions import Evaluation
from training.evaluation.scores import BASELINES, ScoreEvaluation

REPORT_FILE = "report.html"
METADATA_FILE = "evaluation.json"
TABLES = ("policies", "actions", "qini", "calibration", "investment")  # each as <name>.csv
SCORES_FILE = "scores.csv"
TOPICS_FILE = "topics.csv"
OUTPUT_FILES = {REPORT_FILE, METADATA_FILE, SCORES_FILE, TOPICS_FILE,
                *(f"{name}.csv" for name in TABLES)}  # fmt: skip
RUN_NAME = "evaluate"
ARTIFACT_PATH = "report"

MISSING = "–"  # how a NaN (not estimable, not applicable) reads in the tables
Z95 = 1.96  # standard errors in the half-width of a 95% normal interval
CENTS = 2  # decimals of money per customer; totals are shown in whole units
RATIO_DECIMALS = 2
DPI = 110
STYLE: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "legend.fontsize": 7,
    "figure.titlesize": 10,
}
WIDE = 7.0  # inches: width of the single-panel figures
ROW_INCHES = 0.45  # height per bar in the horizontal bar charts
MIN_HEIGHT = 2.5
PANEL = (3.3, 2.7)  # inches per panel of the small multiples
PANEL_COLUMNS = 3
GREY = "0.5"


# ---------------------------------------------------------------------------------- figures
def figures(ev: Evaluation) -> dict[str, Figure]:
    """Every plot of the report by name, in page order; a plot whose table is empty is left out."""
    out: dict[str, Figure] = {}
    with matplotlib.rc_context(STYLE):
        out["policy_value"] = policy_value_figure(ev.policies, ev.currency)
        if len(ev.actions):
            out["action_roi"] = action_roi_figure(ev.actions)
        if len(ev.investment):
            out["investment"] = investment_figure(ev)
        if len(ev.curves):
            out["qini"] = qini_figure(ev.curves, action_colors(ev.arms))
        for outcome, rows in _groups(ev.calibration, "outcome"):
            out[f"calibration_{outcome}"] = calibration_figure(outcome, rows)
    return out


def policy_value_figure(policies: pd.DataFrame, currency: str) -> Figure:
    """DR value per policy as bars with 95% intervals, IPS (and the simulator's truth) as markers
    beside it and the oracle's true value as a reference line: estimators and truth at a glance."""
    shown = policies[policies["dr_value"].notna()].reset_index(drop=True)
    y = np.arange(len(shown))
    fig = _figure((WIDE, max(MIN_HEIGHT, ROW_INCHES * len(shown) + 1.2)))
    ax = fig.add_subplot()
    ax.barh(y, shown["dr_value"], xerr=shown["dr_ci"], capsize=3, color="C0", alpha=0.8,
            label="DR estimate ± 95% CI")  # fmt: skip
    ax.errorbar(shown["ips_value"], y + 0.25, xerr=shown["ips_ci"], fmt="D", ms=4, lw=0.8,
                color="C1", label="IPS estimate ± 95% CI")  # fmt: skip
    if "true_value" in shown:
        ax.plot(shown["true_value"], y, "*", ms=10, color="C3", label="true value (simulator)")
    oracle = _policy(policies, "oracle")
    if oracle is not None and _finite(oracle.get("true_value")):
        ax.axvline(oracle["true_value"], ls="--", color=GREY, label="oracle (true value)")
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(y, [_plain(p) for p in shown["policy"].astype(str)])
    ax.invert_yaxis()
    ax.set(xlabel=f"incremental net value per customer ({currency})",
           title="Policy value against doing nothing")  # fmt: skip
    ax.legend(loc="lower right")
    return fig


def action_roi_figure(actions: pd.DataFrame) -> Figure:
    """ROI per action of the learned policy (DR net value / spend) with the interval of the DR
    value scaled by the spend; red bars lose money."""
    roi = actions["roi"].to_numpy(dtype=float)
    spend = actions["spend"].to_numpy(dtype=float)
    error = np.divide(actions["dr_ci"].to_numpy(dtype=float), spend, where=spend > 0,
                      out=np.full_like(spend, np.nan))  # fmt: skip
    y = np.arange(len(actions))
    fig = _figure((WIDE, max(MIN_HEIGHT, ROW_INCHES * len(actions) + 1.0)))
    ax = fig.add_subplot()
    colors = np.where(np.nan_to_num(roi) >= 0, "C2", "C3").tolist()
    ax.barh(y, np.nan_to_num(roi), xerr=error, capsize=3, color=colors, alpha=0.85)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(y, [_plain(a) for a in actions["action_id"].astype(str)])
    ax.invert_yaxis()
    ax.set(xlabel="ROI: DR-estimated net value / spend (0 = break-even)",
           title="Return on spend per action (learned policy)")  # fmt: skip
    return fig


def investment_figure(ev: Evaluation) -> Figure:
    """Predicted net value against spend per customer, greedy by ROI, with the learned policy's
    point (predicted, and DR-estimated with its interval): where more budget stops paying."""
    fig = _figure((WIDE, WIDE * 0.6))
    ax = fig.add_subplot()
    ax.plot(ev.investment["spend"], ev.investment["value"], color="C0",
            label="predicted, customers added greedily by ROI")  # fmt: skip
    spend = float(ev.actions["spend"].sum()) / ev.exposures if len(ev.actions) else 0.0
    predicted = (
        float(ev.actions["predicted_value"].sum()) / ev.exposures if len(ev.actions) else 0.0
    )
    ax.plot(spend, predicted, "o", color="C1", label="learned policy (predicted)")
    learned = _policy(ev.policies, "learned")
    if learned is not None and _finite(learned.get("dr_value")):
        ax.errorbar(spend, learned["dr_value"], yerr=learned["dr_ci"], fmt="s", capsize=3,
                    color="C3", label="learned policy (DR estimate ± 95% CI)")  # fmt: skip
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel=f"spend per customer ({ev.currency})",
           ylabel=f"net value per customer ({ev.currency})", title="Investment curve")  # fmt: skip
    ax.legend(loc="best")
    return fig


def qini_figure(curves: pd.DataFrame, colors: Mapping[str, str]) -> Figure:
    """Qini curves, one panel per outcome and one line per action, each with its random-targeting
    diagonal (dotted): the area between them is what ranking by predicted uplift adds."""
    groups = list(_groups(curves, "outcome"))
    fig, axes = _panels(len(groups), "Qini curves (higher is better; churn as retention)")
    for ax, (outcome, rows) in zip(axes, groups, strict=True):
        for action, curve in _groups(rows.sort_values("share_targeted"), "action_id"):
            color = colors.get(action, GREY)
            ax.plot(curve["share_targeted"], curve["qini"], color=color, label=_plain(action))
            ax.plot([0, 1], [0, curve["qini"].iloc[-1]], ":", color=color, lw=0.8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=_plain(outcome), xlabel="share targeted, by predicted uplift",
               ylabel="incremental outcome / treated")  # fmt: skip
    _figure_legend(fig, axes)
    return fig


def calibration_figure(outcome: str, rows: pd.DataFrame) -> Figure:
    """Observed against predicted uplift by decile of predicted uplift, one panel per action, with
    ±1.96 standard errors and the identity line: does the model's uplift arrive as predicted?"""
    groups = list(_groups(rows, "action_id"))
    fig, axes = _panels(len(groups), f"Uplift calibration: {_plain(outcome)}")
    for ax, (action, deciles) in zip(axes, groups, strict=True):
        error = Z95 * deciles["observed_se"].to_numpy(dtype=float)
        ax.errorbar(deciles["predicted"], deciles["observed"], yerr=error, fmt="o", ms=3,
                    lw=0.8, capsize=2, color="C0")  # fmt: skip
        low, high = _span(
            deciles["predicted"], deciles["observed"] - error, deciles["observed"] + error
        )
        ax.plot([low, high], [low, high], "--", color=GREY, lw=0.8)
        ax.set(title=_plain(action), xlabel="predicted uplift", ylabel="observed uplift")
    return fig


def action_colors(arms: list[str]) -> dict[str, str]:
    """One colour per action, the same in every panel."""
    return {action: f"C{i % 10}" for i, action in enumerate(arms[1:])}


def _plain(text: str) -> str:
    """A name as literal text in a figure: a '$' would otherwise start matplotlib mathtext."""
    return text.replace("$", r"\$")


def _figure(size: tuple[float, float]) -> Figure:
    """A fresh figure on the Agg canvas, no pyplot (as in training.evaluation.plots)."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(n: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels in rows of at most PANEL_COLUMNS; unused grid cells are removed."""
    columns = max(1, min(n, PANEL_COLUMNS))
    rows = max(1, math.ceil(n / columns))
    fig = _figure((PANEL[0] * columns, PANEL[1] * rows + 0.6))
    grid = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in grid[n:]:
        ax.remove()
    fig.suptitle(title)
    return fig, list(grid[:n])


def _figure_legend(fig: Figure, axes: Iterable[Axes]) -> None:
    """One legend for all panels (the same actions in each), below them."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncols=min(len(handles), PANEL_COLUMNS + 1))  # fmt: skip


def _groups(frame: pd.DataFrame, column: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """(value, rows) per distinct value of `column`, in order of first appearance."""
    if frame.empty or column not in frame:
        return
    for value in dict.fromkeys(frame[column].astype(str)):
        yield value, frame[frame[column].astype(str) == value]


def _span(*columns: pd.Series) -> tuple[float, float]:
    """The finite range covered by some columns (for the identity line)."""
    values = np.concatenate([c.to_numpy(dtype=float) for c in columns])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)


def _policy(policies: pd.DataFrame, name: str) -> dict[str, Any] | None:
    """One policy's row as a dict, or None when the table has no such policy."""
    rows = policies[policies["policy"] == name]
    return None if rows.empty else {str(k): v for k, v in rows.iloc[0].items()}


def _finite(value: object) -> TypeGuard[float]:
    """A real number that is not NaN or infinite (None, pd.NA and text are not)."""
    return isinstance(value, int | float | np.number) and bool(np.isfinite(value))


# ----------------------------------------------------------------------------- formatting
def format_money(value: object, currency: str, decimals: int = CENTS) -> str:
    """'EUR 1.09' per customer, 'EUR 12,381' for totals (decimals=0); NaN reads as MISSING."""
    return f"{currency} {float(value):,.{decimals}f}" if _finite(value) else MISSING


def format_money_ci(value: object, half_width: object, currency: str, decimals: int = CENTS) -> str:
    """'EUR 1.09 ± 3.47': an estimate with its 95% half-width, rounded alike."""
    money = format_money(value, currency, decimals)
    if money == MISSING or not _finite(half_width):
        return money
    return f"{money} ± {float(half_width):,.{decimals}f}"


def format_share(value: object) -> str:
    """'16.0%'; NaN reads as MISSING."""
    return f"{float(value):.1%}" if _finite(value) else MISSING


def format_number(value: object, digits: int = 4) -> str:
    """A plain number with `digits` decimals; NaN reads as MISSING."""
    return f"{float(value):,.{digits}f}" if _finite(value) else MISSING


def format_count(value: object) -> str:
    """'6,223'; NaN reads as MISSING."""
    return f"{int(value):,}" if _finite(value) else MISSING


# ---------------------------------------------------------------------------------- HTML
class Column(NamedTuple):
    """A table column: its header and how a row (a dict) reads in it, as plain text."""

    header: str
    text: Callable[[Mapping[str, Any]], str]


def render_html(
    ev: Evaluation | None,
    figures: Mapping[str, Figure],
    scores: ScoreEvaluation | None = None,
    topics: pd.DataFrame | None = None,
) -> str:
    """The whole report as one self-contained HTML page; every inserted string is escaped. `ev` is
    None for a bundle without uplift models: the page then holds the scores alone. `topics`
    (training.evaluation.texts) adds the voice of the customer."""
    images = {name: png_data_uri(fig) for name, fig in figures.items()}
    sections = [] if ev is None else uplift_sections(ev, images)
    if scores is not None:
        if ev is None:
            facts = [
                ("model version", scores.model_version),
                ("trained as of", ", ".join(scores.as_of)),
            ]
            sections.append(_section("headline", "Headline", SCORES_ONLY_TEXT, _definitions(facts)))
        sections.append(score_section(scores))
    if topics is not None and not topics.empty:
        sections.append(topic_section(topics))
    version = model_version(ev, scores)
    kind = "ROI report" if ev is not None else "score report"
    return _page(f"nextbest {kind}: model version {version}", "\n".join(sections))


def uplift_sections(ev: Evaluation, images: Mapping[str, str]) -> list[str]:
    """Headline, policy value, actions and ROI, Qini and calibration of the uplift evaluation."""
    sections = [
        _section("headline", "Headline", HEADLINE_TEXT, _definitions(headline_facts(ev))),
        _section("policies", "Policy value", POLICY_TEXT, _table(ev.policies, policy_columns(ev)),
                 _images(images, ["policy_value"])),
        _section("actions", "Actions and ROI", ACTIONS_TEXT, _table(ev.actions, action_columns(ev)),
                 _images(images, ["action_roi", "investment"])),
        _section("qini", "Ranking quality: Qini and AUUC", QINI_TEXT,
                 _table(ev.qini, QINI_COLUMNS), _images(images, ["qini"])),
        _section("calibration", "Uplift calibration", CALIBRATION_TEXT,
                 _images(images, [n for n in images if n.startswith("calibration_")])),
    ]  # fmt: skip
    shown = {"policy_value", "action_roi", "investment", "qini"}
    others = [n for n in images if n not in shown and not n.startswith("calibration_")]
    if others:
        sections.append(_section("more", "More figures", "", _images(images, others)))
    return sections


def score_section(scores: ScoreEvaluation) -> str:
    """The score models' held-out metrics beside their baselines, and their figures."""
    images = {name: png_data_uri(fig) for name, fig in scores.figures.items()}
    parts = []
    for role, rows in _groups(scores.metrics, "role"):
        baseline = BASELINES.get(role, "baseline")
        parts.append(f"<h3>{_e(role)} (outcome {_e(rows['outcome'].iloc[0])})</h3>")
        columns = [*SCORE_COLUMNS, Column(baseline, lambda r: format_number(r["baseline"]))]
        if "without_text" in rows and rows["without_text"].notna().any():
            columns.append(Column(WITHOUT_TEXT, lambda r: format_number(r["without_text"])))
        parts.append(_table(rows, columns))
        if role == "lifetime" and scores.lifetime_deciles is not None:
            parts.append(lifetime_deciles_table(scores.lifetime_deciles, scores.lifetime_days))
        parts.append(_images(images, [n for n in images if n.startswith(f"{role}_")]))
    if not parts:
        parts.append('<p class="empty">No score model could be judged on this data.</p>')
    return _section("scores", "Scores: churn, satisfaction and LTV", SCORES_TEXT, *parts)


def lifetime_deciles_table(deciles: pd.DataFrame, days: int) -> str:
    """Held-out customers by decile of predicted `ltv`: predicted and realised revenue over
    `days`, lift and the share of the realised total held by the deciles so far (the gain)."""
    columns = [
        Column("decile", lambda r: str(int(r["decile"]))),
        Column("customers", lambda r: format_count(r["n"])),
        Column("mean predicted ltv", lambda r: format_number(r["mean_pred"], 2)),
        Column("mean realised revenue", lambda r: format_number(r["mean_y"], 2)),
        Column("lift", lambda r: format_number(r["lift"], 2)),
        Column("share of realised revenue so far", lambda r: format_share(r["cum_capture"])),
    ]
    title = f"<h4>ltv by decile (1 = highest), realised over the next {days} days</h4>"
    return title + _table(deciles, columns)


def topic_section(topics: pd.DataFrame) -> str:
    """What customers write about: each topic's terms, volume by month, negative share, drift."""
    months = [c for c in topics.columns if c[:4].isdigit()]
    columns = [
        Column("topic", lambda r: str(r["topic"]) if r["topic"] >= 0 else "none"),
        Column("top terms", lambda r: str(r["terms"])),
        Column("texts", lambda r: format_count(r["texts"])),
        Column("negative", lambda r: format_share(r["negative_share"])),
        Column("drift", lambda r: f"{100 * r['drift']:+.1f} pts"),
        *(Column(m, _count_of(m)) for m in months),
    ]
    return _section("topics", "Voice of the customer: topics", TOPICS_TEXT, _table(topics, columns))


def _count_of(key: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda r: format_count(r[key])


def headline_facts(ev: Evaluation) -> list[tuple[str, str]]:
    """The key figures at the top of the page: what was judged and what the learned policy earns."""
    money = ev.currency
    learned = _policy(ev.policies, "learned") or {}
    churn = _policy(ev.policies, "churn_targeting") or {}
    facts = [
        ("model version", ev.model_version),
        ("held-out exposures", format_count(ev.exposures)),
        ("currency", ev.currency),
        ("learned policy vs doing nothing (DR)",
         format_money_ci(learned.get("dr_value"), learned.get("dr_ci"), money)),
        ("learned policy vs doing nothing (IPS)",
         format_money_ci(learned.get("ips_value"), learned.get("ips_ci"), money)),
        ("target the highest churn risk (DR)",
         format_money_ci(churn.get("dr_value"), churn.get("dr_ci"), money)),
        ("customers the learned policy treats", format_share(learned.get("treated_share"))),
        ("verdict", ev.verdict()),
    ]  # fmt: skip
    if ev.has_truth:
        learned_true, churn_true = learned.get("true_value"), churn.get("true_value")
        ratio = _ratio(learned_true, churn_true)
        both = f"{format_money(learned_true, money)} / {format_money(churn_true, money)}"
        facts += [
            (
                "true value: learned / churn targeting",
                both + (f" ({ratio:.1f}×)" if ratio is not None else ""),
            ),
            (
                "learned policy's share of the oracle's value",
                format_share(learned.get("oracle_share")),
            ),
        ]
    return facts


def _ratio(numerator: object, denominator: object) -> float | None:
    """numerator / denominator when both are finite and the denominator is positive."""
    if _finite(numerator) and _finite(denominator) and denominator > 0:
        return float(numerator) / float(denominator)
    return None


def policy_columns(ev: Evaluation) -> list[Column]:
    """Columns of the policy table (truth columns only on simulator data)."""
    money = ev.currency
    columns = [
        Column("policy", lambda r: str(r["policy"])),
        Column("what it does", lambda r: str(r["description"])),
        Column("treated", lambda r: format_share(r["treated_share"])),
        Column(f"DR value ({money})", lambda r: format_money_ci(r["dr_value"], r["dr_ci"], money)),
        Column(
            f"IPS value ({money})", lambda r: format_money_ci(r["ips_value"], r["ips_ci"], money)
        ),
    ]
    if ev.has_truth:
        columns += [
            Column("true value", lambda r: format_money(r.get("true_value"), money)),
            Column(
                f"DR on the truth's rows ({money})",
                lambda r: format_money_ci(
                    r.get("truth_rows_dr_value"), r.get("truth_rows_dr_ci"), money
                ),
            ),
            Column("share of oracle", lambda r: format_share(r.get("oracle_share"))),
        ]
    return columns


def action_columns(ev: Evaluation) -> list[Column]:
    """Columns of the per-action table of the learned policy (totals over the held-out rows)."""
    money = ev.currency
    return [
        Column("action", lambda r: str(r["action_id"])),
        Column("customers", lambda r: format_count(r["customers"])),
        Column("share", lambda r: format_share(r["share"])),
        Column("spend", lambda r: format_money(r["spend"], money, 0)),
        Column("predicted net value", lambda r: format_money(r["predicted_value"], money, 0)),
        Column("DR net value", lambda r: format_money_ci(r["dr_value"], r["dr_ci"], money, 0)),
        Column("ROI", lambda r: format_number(r["roi"], RATIO_DECIMALS)),
    ]


QINI_COLUMNS = [
    Column("outcome", lambda r: str(r["outcome"])),
    Column("action", lambda r: str(r["action_id"])),
    Column("Qini coefficient", lambda r: format_number(r["qini"])),
    Column("AUUC", lambda r: format_number(r["auuc"])),
    Column("treated", lambda r: format_count(r["n_treated"])),
    Column("control", lambda r: format_count(r["n_control"])),
]


def png_data_uri(fig: Figure) -> str:
    """The figure as a `data:` URI of a PNG, so the page needs no files beside it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _section(anchor: str, title: str, explanation: str, *parts: str) -> str:
    """A section: heading, a 'how to read this' paragraph, then its tables and figures."""
    how = f'<p class="how">{_e(explanation)}</p>' if explanation else ""
    body = "\n".join(p for p in parts if p)
    return f'<section id="{_e(anchor)}">\n<h2>{_e(title)}</h2>\n{how}\n{body}\n</section>'


def _definitions(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in facts)
    return f'<dl class="facts">{rows}</dl>'


def _table(frame: pd.DataFrame, columns: list[Column]) -> str:
    """An HTML table of `frame` through `columns`; an empty frame reads as a sentence."""
    if frame.empty:
        return '<p class="empty">Nothing to show.</p>'
    head = "".join(f"<th>{_e(c.header)}</th>" for c in columns)
    records = [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    body = "\n".join(
        "<tr>" + "".join(f"<td>{_e(c.text(row))}</td>" for c in columns) + "</tr>"
        for row in records
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _images(images: Mapping[str, str], names: Iterable[str]) -> str:
    return "\n".join(
        f'<figure><img alt="{_e(name)}" src="{_e(images[name])}"></figure>'
        for name in names
        if name in images
    )


def _page(title: str, body: str) -> str:
    anchors = re.findall(r'<section id="([^"]+)">\n<h2>([^<]*)</h2>', body)
    nav = " · ".join(f'<a href="#{a}">{h.lower()}</a>' for a, h in anchors)  # both escaped already
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n<nav>{nav}</nav>\n{body}\n"
        f"<footer>Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by nextbest evaluate. "
        "The tables are also in the CSV files beside this page.</footer>\n</body>\n</html>\n"
    )


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
p.how { color: #444; max-width: 70em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .3em 1.5em; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; font-weight: 600; }
table { border-collapse: collapse; font-size: .9em; margin: 1em 0; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
thead th { background: #f4f4f4; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
nav { color: #777; } nav a { color: #2a5db0; }
footer { color: #777; font-size: .85em; margin-top: 3em; }
"""

HEADLINE_TEXT = (
    "Every number on this page is measured on held-out customers: the training never saw them, so "
    "the values are an honest forecast of what the decisions earn. Values are money per customer, "
    "incremental over doing nothing and net of the actions' cost, with 95% confidence intervals."
)
POLICY_TEXT = (
    "Each policy decides an action (or none) per held-out customer. Its value is estimated from "
    "the actions that were really taken: IPS (inverse propensity scoring) reweights the customers "
    "whose logged action matches the policy's; DR (doubly robust) adds an outcome model's "
    "prediction and corrects it with those same matches, which is unbiased if either part is right "
    "and usually has a narrower interval. The baselines are what CX teams do without a model: "
    "nothing, a random action, the best single action for everyone and the action that retains "
    "most for the highest churn risk. On simulator data the true value is known, and the oracle "
    "(the best action per customer in truth) sets the ceiling."
)
ACTIONS_TEXT = (
    "The learned policy per action: how many held-out customers get it, what it costs, the net "
    "value the models predicted and the DR estimate of the net value that arrived (totals over the "
    "held-out customers). ROI is the DR net value divided by the spend: 0 is break-even. The "
    "investment curve adds customers in order of predicted ROI: where it flattens, more budget "
    "stops paying."
)
QINI_TEXT = (
    "How well the predicted uplift ranks customers, per outcome and action, on the held-out "
    "customers who got the action or nothing (outcomes oriented so that higher is better: churn "
    "counts as retention). A Qini curve is the cumulative incremental outcome when customers are "
    "targeted from the highest predicted uplift down; the dotted diagonal is random targeting. The "
    "Qini coefficient is the area between them divided by the same area for a perfect ranking (0 = "
    "random, 1 = perfect; as scikit-uplift's qini_auc_score); it and AUUC assume a 0/1 outcome, so "
    "other outcomes show curves only."
)
SCORES_TEXT = (
    "Each score model judged on its held-out test slice: customers the training never fitted on, "
    "at the latest training date, with the outcome observed over the window after it. The "
    "baseline column is the simple model it has to beat. Churn: ROC AUC and PR AUC rank "
    "(higher is better), Brier score and expected calibration error (ECE) measure the "
    "probabilities (lower is better); the calibration plot puts predicted against observed "
    "churn. Satisfaction and LTV: MAE and RMSE (lower is better) and rank correlations. "
    "Lifetime value (with a lifetime horizon): the held-out customers of the earliest training "
    "date by decile of predicted ltv against the revenue they really brought afterwards; the "
    "gain chart shows the share of that revenue the top x% by ltv hold, the calibration plot "
    "the mean predicted against the mean realised per decile. With a text model, the last "
    "column is the same estimator fitted on the same rows without the text features: what the "
    "customers' words add to each score."
)
TOPICS_TEXT = (
    "What customers wrote about in the last months (survey comments, chat and call notes, "
    "complaints), in topics the text model found without labels, each named by its heaviest "
    "terms. Negative: the share of the topic's texts the model reads as negative. Drift: the "
    "topic's share of all texts in the last month minus its share in the first."
)
SCORES_ONLY_TEXT = (
    "This bundle has no uplift models (the data set has no exposures, or the catalog no actions), "
    "so there is no policy or ROI to judge: the page reports how well the scores predict."
)
WITHOUT_TEXT = "same model without the text features"
SCORE_COLUMNS = [Column("metric", lambda r: str(r["metric"])),
                 Column("model", lambda r: format_number(r["model"]))]  # fmt: skip
CALIBRATION_TEXT = (
    "Customers grouped into deciles of predicted uplift; the observed uplift in each decile is the "
    "difference between treated and untreated customers (with ±1.96 standard errors). Points on "
    "the dashed identity line mean the predicted effect is the effect that arrives; a flat cloud "
    "means the model does not separate customers for that action."
)


# --------------------------------------------------------------------------------- writing
def write_report(
    ev: Evaluation | None,
    out_dir: Path | str,
    scores: ScoreEvaluation | None = None,
    topics: pd.DataFrame | None = None,
) -> Path:
    """Write report.html, the tables as CSV and evaluation.json into `out_dir`, replacing it whole
    and atomically: the previous report stays complete until the new one is. `ev` is None for a
    bundle without uplift models (scores only)."""
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    with atomic_directory(out_dir) as tmp:
        plots = figures(ev) if ev is not None else {}
        try:
            page = render_html(ev, plots, scores, topics)
        finally:
            for fig in [*plots.values(), *(scores.figures.values() if scores else ())]:
                fig.clear()  # not pyplot-managed: clearing drops the artists and their buffers
        (tmp / REPORT_FILE).write_text(page, encoding="utf-8")
        for name in TABLES if ev is not None else ():
            getattr(ev, name).to_csv(tmp / f"{name}.csv", index=False)
        if scores is not None:
            scores.metrics.to_csv(tmp / SCORES_FILE, index=False)
        if topics is not None:
            topics.to_csv(tmp / TOPICS_FILE, index=False)
        text = json.dumps(metadata(ev, scores, tmp), indent=2, allow_nan=False)
        (tmp / METADATA_FILE).write_text(text + "\n", encoding="utf-8")
    return out_dir


def metadata(
    ev: Evaluation | None, scores: ScoreEvaluation | None = None, folder: Path | None = None
) -> dict[str, Any]:
    """What evaluation.json records: what was judged, the headline metrics and the files."""
    out: dict[str, Any] = {}
    if ev is not None or scores is not None:
        out["model_version"] = model_version(ev, scores)
    if ev is not None:
        out |= {"currency": ev.currency, "exposures": ev.exposures, "arms": list(ev.arms),
                "has_truth": ev.has_truth}  # fmt: skip
    out["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["headline"] = headline(ev, scores)
    written = {p.name for p in folder.iterdir()} | {METADATA_FILE} if folder else OUTPUT_FILES
    out["files"] = sorted(written)
    return out


def model_version(ev: Evaluation | None, scores: ScoreEvaluation | None) -> str:
    """The version the report judges: the uplift evaluation's, else the scores'."""
    return ev.model_version if ev is not None else scores.model_version if scores else ""


def headline(ev: Evaluation | None, scores: ScoreEvaluation | None) -> dict[str, float]:
    """The flat metrics logged to MLflow: policy values and score metrics."""
    return (ev.headline() if ev is not None else {}) | (scores.headline() if scores else {})


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace anything but a previous report or an empty directory (as
    serving.batch.job.check_output_dir does), so that a slip like `--out ~` deletes nothing."""
    if out_dir.exists() and (
        not out_dir.is_dir() or {p.name for p in out_dir.iterdir()} - OUTPUT_FILES
    ):
        raise NextbestError(
            f"{out_dir}: exists and holds files nextbest did not write; choose an empty or new --out"
        )


def log_report(
    ev: Evaluation | None, out_dir: Path | str, scores: ScoreEvaluation | None = None
) -> str:
    """Log a written report to MLflow as a run "evaluate" of the nextbest experiment: headline
    metrics, the model version as a tag and the folder as artifacts under `report/`. Returns the
    run id. The caller has configured tracking (training.registry.tracking.configure_tracking)."""
    import mlflow

    from training.registry.tracking import ensure_experiment

    version = model_version(ev, scores)
    ensure_experiment()
    with mlflow.start_run(run_name=RUN_NAME, tags={"model_version": version}) as run:
        if ev is not None:
            mlflow.log_params({"exposures": ev.exposures, "currency": ev.currency,
                               "has_truth": ev.has_truth, "actions": ",".join(ev.arms[1:])})  # fmt: skip
        mlflow.log_metrics(headline(ev, scores))
        mlflow.log_artifacts(str(out_dir), ARTIFACT_PATH)
    return str(run.info.run_id)
