"""The `nextbest` command line: one program, one sub-command per step (docs/cli.md).

Commands are thin: they parse arguments, call the package and report. User errors (bad data, bad
configuration) end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from training.errors import NextbestError

app = typer.Typer(
    name="nextbest",
    help="Next-best-action decisioning: scores, uplift and ROI-ranked actions for CX teams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
import_app = typer.Typer(help="Convert a public data set into the nextbest data contract.")
app.add_typer(import_app, name="import")

out = Console(soft_wrap=True)
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
#: the score metrics `nextbest evaluate` prints (all of them are in the report)
HEADLINE_SCORE_METRICS = ("roc_auc", "brier", "mae", "spearman", "normalized_gini")

DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="NEXTBEST_DATABASE_URL",
        show_envvar=True,
        help="the contact history on PostgreSQL (postgresql://user@host:5432/db) instead of --log",
    ),
]
LogOpt = Annotated[
    Path, typer.Option("--log", help="the contact history's SQLite file (no --database-url)")
]
DataOpt = Annotated[Path, typer.Option("--data", help="data set directory (docs/data.md)")]
EventsOpt = Annotated[
    Path, typer.Option("--events", help="event store (default out/event_store.sqlite)")
]
EVENT_STORE = Path("out/event_store.sqlite")
TextCacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--text-cache",
        help="folder keeping the text model's scores between runs: only texts it does not hold "
        "are scored (docs/data.md#text); none: every text is scored",
    ),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="YAML config (default: the packaged demo config)")
]
EngineOpt = Annotated[
    str, typer.Option("--engine", help="local (this machine) or dask (a Dask cluster)")
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Dask scheduler address (default: a new LocalCluster)"),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", min=1, help="LocalCluster worker processes (engine dask)")
]


def user_errors(fn: F) -> F:
    """Turn a NextbestError, or a file-system failure (disk full, permission denied), into one line
    on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NextbestError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(
                f"[bold red]error:[/] {where}{exc.strerror or exc}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _engine(text: str) -> Literal["local", "dask"]:
    if text not in ("local", "dask"):
        raise NextbestError(f"--engine: '{text}' is not one of local, dask")
    return "local" if text == "local" else "dask"


def parse_date(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise NextbestError(f"{what}: '{text}' is not a date (expected YYYY-MM-DD)") from None


@app.command()
@user_errors
def synth(
    out_dir: Annotated[Path, typer.Option("--out", help="directory to write the data set to")],
    customers: Annotated[
        int, typer.Option("--customers", min=1, help="number of customers")
    ] = 20000,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same data)")] = 7,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="ground-truth directory (default: <out>_truth)")
    ] = None,
    design: Annotated[
        str,
        typer.Option(
            "--design",
            help="campaign history: demo (randomized and targeted waves, each reaching every "
            "active customer), waves (the same, reaching part of them), single (one randomized "
            "campaign, every action), offer (one randomized retention discount)",
        ),
    ] = "demo",
) -> None:
    """Write the synthetic customer-journey data set, and its ground truth apart from it."""
    from training.synth.generate import synthesize
    from training.synth.world import DESIGNS, design_config

    if design not in DESIGNS:
        raise NextbestError(f"--design must be one of {', '.join(DESIGNS)}; got {design!r}")
    with progress_bar() as bar:
        task = bar.add_task("simulating customers", total=customers)
        summary = synthesize(
            customers, out_dir, seed=seed, truth_dir=truth, cfg=design_config(design),
            progress=lambda n: bar.advance(task, n),
        )  # fmt: skip
    out.print(
        f"wrote {summary.customers:,} customers, {summary.events:,} events, "
        f"{summary.exposures:,} exposures to {summary.data_dir}; "
        f"ground truth ({summary.truth_rows:,} customer rows) to {summary.truth_dir}"
    )


@app.command()
@user_errors
def validate(
    data: Annotated[Path | None, typer.Option("--data", help="data set directory")] = None,
    config: ConfigOpt = None,
) -> None:
    """Check a data set against the contract, and a config + action catalog, before anything runs."""
    from training.pipelines.validate import validate_all

    for line in validate_all(data, config):
        out.print(line, highlight=False)


@app.command()
@user_errors
def features(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="Parquet file to write")],
    config: ConfigOpt = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: day after the last event)")
    ] = None,
) -> None:
    """Compute point-in-time features of every customer as of a date and write them to Parquet."""
    from training.pipelines.features import write_features

    with err.status("computing features"):
        summary = write_features(data, out_file, config, parse_date(as_of, "--as-of"))
    out.print(summary, highlight=False)


@app.command()
@user_errors
def train(
    data: DataOpt,
    config: ConfigOpt = None,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = 2,
    scores_only: Annotated[
        bool,
        typer.Option(
            "--scores-only",
            help="register a bundle of scores alone, even though the catalog has actions that "
            "no uplift model can value (otherwise that stops training)",
        ),
    ] = False,
) -> None:
    """Train every score the data supports, log the runs to MLflow and register a bundle version.

    `--engine dask` boosts the score models with LightGBM's Dask estimators on a cluster."""
    from training.pipelines.train import train as run
    from training.scores.distributed import training_engine

    with training_engine(_engine(engine), scheduler, workers), err.status("training") as status:
        result = run(data, config, step=lambda msg: status.update(msg), scores_only=scores_only)
    for role, metrics in result.metrics.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if not k.startswith("n_"))
        out.print(f"{role}: {shown}", highlight=False)
    for role, why in result.skipped.items():
        out.print(f"skipped {role}: {why}", highlight=False)
    for outcome, why in result.uplift_skipped.items():
        out.print(f"no uplift model for outcome '{outcome}': {why}", highlight=False)
    if result.lifetime:
        out.print(f"ltv: {result.lifetime} (chosen on held-out revenue)", highlight=False)
    if result.text:
        out.print(result.text, highlight=False)
    out.print(f"registered nextbest version {result.version} (snapshots {', '.join(result.as_of)})")


@app.command()
@user_errors
def evaluate(
    data: DataOpt,
    model: Annotated[
        str | None, typer.Option("--model", help="registry reference or version")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="report directory (replaced whole)")
    ] = Path("out/report"),
    truth: Annotated[
        Path | None,
        typer.Option("--truth", help="simulator truth (default: <data>_truth when present)"),
    ] = None,
) -> None:
    """Judge the bundle on held-out data (uplift policies on exposures, and the scores) and write
    the ROI report (HTML)."""
    import pandas as pd

    from training.pipelines.evaluate import evaluate as run
    from training.registry.tracking import configure_tracking

    configure_tracking()
    with err.status("evaluating on held-out data"):
        evaluation, scores, path = run(data, model, out_dir, truth)
    for metric in scores.metrics.to_dict("records"):
        if metric["metric"] in HEADLINE_SCORE_METRICS:
            model, baseline = (round(metric[k], 4) + 0.0 for k in ("model", "baseline"))  # no -0
            text = f"{metric['role']:12s} {metric['metric']:15s} {model:10.4f}"
            out.print(text + f"   (baseline {baseline:.4f})", highlight=False)
    if evaluation is None:
        out.print(f"report: {path / 'report.html'} (scores only: no uplift models to judge)")
        return
    shown = evaluation.policies.set_index("policy")
    currency = evaluation.currency
    for name, row in shown.iterrows():
        estimated = f"DR {row['dr_value']:+9.2f} ± {row['dr_ci']:.2f} {currency}/customer"
        text = f"{name:16s} {estimated if pd.notna(row['dr_value']) else '':34s}"
        if evaluation.has_truth:
            text += f"   true {row['true_value']:+9.2f}  ({row['oracle_share']:.0%} of oracle)"
        out.print(text, highlight=False)
    out.print(f"verdict: {evaluation.verdict()}", highlight=False)
    out.print(f"report: {path / 'report.html'} ({evaluation.exposures:,} held-out exposures)")


@app.command()
@user_errors
def promote(
    model: Annotated[
        str | None, typer.Option("--model", help="version to promote (default: latest)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="move @champion even if worse")] = False,
    config: ConfigOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="data set to judge both policies on (default: the candidate's)"
        ),
    ] = None,
) -> None:
    """Move the @champion alias to a version, only if it is not worse than the current champion:
    on the score metrics and on its policy's value, paired with the champion's on the same
    held-out exposures. The candidate becomes @challenger either way; a refusal exits 1."""
    from training.pipelines.promote import promote as run
    from training.registry.promotion import render
    from training.registry.tracking import configure_tracking

    configure_tracking()
    with err.status("comparing the candidate with the champion"):
        result = run(model, force=force, config_path=config, data=data)
    render(result, out)
    if not result.promoted and result.champion != result.candidate:
        err.print(f"[bold red]refused:[/] {result.reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


@app.command()
@user_errors
def impact(
    data: DataOpt,
    since: Annotated[
        str | None, typer.Option("--since", help="only decisions from this date (YYYY-MM-DD)")
    ] = None,
    decision_log: Annotated[
        Path | None,
        typer.Option(
            "--decision-log", help="the service's decision log (default: DIR's exposures)"
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="output directory (replaced whole)")
    ] = Path("out/impact"),
    config: ConfigOpt = None,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """What the logged decisions earned against the global control group, per action, model
    version, channel, segment and week, with 95% intervals (HTML page and MLflow)."""
    from training.evaluation.impact_report import REPORT_FILE, log_impact, write_impact
    from training.pipelines.impact import impact as run
    from training.registry.tracking import configure_tracking

    decisions = feedback = None
    history = database_url or decision_log
    if history is not None:
        from serving.history.exports import exposures_frame, feedback_frame

        decisions, feedback = exposures_frame(history), feedback_frame(history)
    with err.status("measuring the decisions against the control group"):
        result = run(data, config, parse_date(since, "--since"), decisions, feedback)
    path = write_impact(result, out_dir)
    configure_tracking()
    log_impact(result, path)
    overall = result.tables["overall"].iloc[0]
    currency = result.currency
    out.print(
        f"incremental value per decision: {overall['incremental_value']:+.2f} ± "
        f"{overall['ci']:.2f} {currency} (95%, {result.rows:,} decisions, "
        f"{result.censored:,} with outcome windows not over yet)",
        highlight=False,
    )
    for row in result.tables["actions"].to_dict("records"):
        out.print(
            f"  {row['action_id']:24s} {row['incremental_value']:+9.2f} ± {row['ci']:.2f}",
            highlight=False,
        )
    greedy = result.tables.get("greedy")
    if greedy is not None and not greedy.empty:
        out.print("per greedy action, the policy vs the control group:", highlight=False)
        for row in greedy.to_dict("records"):
            out.print(
                f"  {row['greedy_action']:24s} {row['incremental_value']:+9.2f} ± {row['ci']:.2f}",
                highlight=False,
            )
    out.print(f"page: {path / REPORT_FILE}")


@app.command()
@user_errors
def loop(
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="learning rounds after round 0")
    ] = 4,
    customers: Annotated[
        int, typer.Option("--customers", min=500, help="simulated customers")
    ] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same loop)")] = 7,
    exploration: Annotated[
        float, typer.Option("--exploration", min=0.0, max=1.0, help="epsilon of the decisions")
    ] = 0.2,
    out_dir: Annotated[
        Path, typer.Option("--out", help="working directory (data, config, MLflow store)")
    ] = Path("out/loop"),
) -> None:
    """The closed learning loop on the simulator: explore, then per round train on every exposure
    so far, promote through the gate, decide with exploration, and see what the decisions did."""
    from training.pipelines.loop import run_loop

    result = run_loop(rounds, out_dir, customers, seed, exploration, say=lambda m: err.print(m))
    out.print(
        "round  week  decisions  champion  true value / oracle   features allow"
        "   impact of previous round (truth)"
    )
    for r in result.rounds:
        impact = (f"{r.impact:+8.2f} ± {r.impact_ci:5.2f} ({r.impact_truth:+.2f})"
                  if r.impact == r.impact else "")  # fmt: skip
        share = f"{r.value_share:6.1%}" if r.value_share == r.value_share else "   –  "
        ceiling = f"{r.ceiling_share:6.1%}" if r.ceiling_share == r.ceiling_share else "   –  "
        text = f"{r.round:5d}  {r.week:4d}  {r.decisions:9,d}  {r.model_version or 'random':>8s}"
        out.print(f"{text}  {r.true_value:+7.2f} / {r.oracle_value:5.2f} {share}  {ceiling}"
                  f"          {impact}",
                  highlight=False)  # fmt: skip
        out.print(f"       promotion: {r.promotion}", highlight=False)
    est, ci, truth = result.last_impact
    out.print(
        f"impact of the last round: {est:+.2f} ± {ci:.2f} (truth {truth:+.2f})", highlight=False
    )


@app.command()
@user_errors
def score(
    data: DataOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD")],
    out_dir: Annotated[Path, typer.Option("--out", help="output directory (replaced whole)")],
    model: Annotated[
        str | None, typer.Option("--model", help="registry reference or version")
    ] = None,
    engine: EngineOpt = "local",
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = 2,
    budget: Annotated[
        float | None, typer.Option("--budget", help="total campaign budget (cost units)")
    ] = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="customers per chunk (bounds memory)")
    ] = 200_000,
    keep_runs: Annotated[
        int, typer.Option("--keep-runs", help="as-of partitions kept in --out, this run's included")
    ] = 7,
    fail_on_drift: Annotated[
        bool,
        typer.Option(
            "--fail-on-drift", help="exit with status 3 when drift is flagged (schedulers)"
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML config whose drift thresholds apply (default: the bundle's)"
        ),
    ] = None,
    decision_log: Annotated[
        Path | None,
        typer.Option(
            "--decision-log",
            help="the contact history (the service's decision log): the contact policy and the "
            "consent events posted to /events apply from it as of the run; none: no history",
        ),
    ] = None,
    event_store: Annotated[
        Path | None,
        typer.Option(
            "--event-store",
            help="a service's event store: its opt_in / opt_out count too (those posted before "
            "the history kept consent; docs/batch.md)",
        ),
    ] = None,
    record_contacts: Annotated[
        bool,
        typer.Option(
            "--record-contacts",
            help="record the selected rows (and the control group) in the contact history "
            "(--decision-log or --database-url) as contacts, all or nothing",
        ),
    ] = False,
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="the campaign's channel (default: any the action has)"),
    ] = None,
    database_url: DatabaseUrlOpt = None,
    text_cache: TextCacheOpt = None,
) -> None:
    """Score every customer as of a date with the registered bundle, and check drift against the
    training reference and the previous run (output: docs/batch.md)."""
    from serving.batch.job import score as run
    from serving.batch.settings import BatchSettings
    from training.config import load_config
    from training.registry.tracking import configure_tracking, log_batch_run

    day = parse_date(as_of, "--as-of")
    assert day is not None
    contacts = _contact_sources(database_url or decision_log, event_store, record_contacts, channel)
    settings = BatchSettings(
        engine=_engine(engine),
        chunk_customers=chunk_size,
        budget=budget,
        scheduler=scheduler,
        workers=workers,
        keep_runs=keep_runs,
        text_cache=text_cache,
    )
    thresholds = load_config(config).drift if config is not None else None
    configure_tracking()
    with progress_bar() as bar:
        summary = run(data, day, out_dir, model, settings, RichProgress(bar), thresholds, contacts)
    out.print(
        f"scored {summary.customers:,} customers as of {summary.as_of} with model version "
        f"{summary.model_version}: {summary.out}"
    )
    if summary.stats is not None and summary.stats.action_rows is not None:
        out.print(_campaign_line(summary.stats), highlight=False)
    if summary.stats is not None and summary.stats.recorded is not None:
        assert contacts.history is not None
        where = contacts.history.where
        contacts.history.close()
        out.print(f"{summary.stats.recorded:,} decisions recorded in {where}")
    elif contacts.history is not None:
        contacts.history.close()
    if summary.drift is None:
        return
    for line in summary.drift.lines():
        out.print(line, style="bold yellow" if "flagged" in line or "moved" in line else None,
                  highlight=False, soft_wrap=True)  # fmt: skip
    log_batch_run(day, summary.model_version, summary.drift.metrics(), summary.drift.to_dict())
    if fail_on_drift and summary.drift.flagged:
        err.print("[bold red]drift flagged[/] (--fail-on-drift): see _drift.json", highlight=False)
        raise typer.Exit(code=3)


def _contact_sources(
    history: str | Path | None, events: Path | None, record: bool, channel: str | None
) -> Any:
    """The batch's contact history (an SQLite file or a PostgreSQL URL), consent events and
    whether to record the run's sends (serving.batch.contacts), as of NEXTBEST_NOW when set (as
    the service), else now."""
    from serving.batch.contacts import ContactSources
    from serving.history.log import DecisionLog
    from serving.online.events import events_frame

    if record and history is None:
        raise NextbestError(
            "--record-contacts: needs --decision-log or --database-url (where contacts are kept)"
        )
    if isinstance(history, Path) and not record and not history.is_file():
        raise NextbestError(f"--decision-log: {history}: no such file")
    now_text = os.environ.get("NEXTBEST_NOW")
    try:
        now = datetime.fromisoformat(now_text) if now_text else datetime.now(UTC)
    except ValueError:
        raise NextbestError(f"NEXTBEST_NOW: {now_text!r} is not an ISO timestamp") from None
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return ContactSources(
        now=now,
        history=DecisionLog(history) if history is not None else None,
        events=events_frame(events) if events is not None else None,
        record=record,
        channel=channel,
    )


class RichProgress:
    """serving.batch.output.Progress on a Rich progress bar: one task per phase."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: Any = None

    def phase(self, name: str, total: int) -> None:
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)


def _campaign_line(stats: Any) -> str:
    line = f"{stats.selected:,} customers selected for an action, {stats.control:,} in the control group"
    if stats.allocation is not None:
        line += (
            f"; campaign spend {stats.allocation.spend:,.2f} for expected net value "
            f"{stats.allocation.value:,.2f}"
        )
    return line


ModelOpt = Annotated[str | None, typer.Option("--model", help="registry reference or version")]


@app.command()
@user_errors
def materialize(
    data: DataOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="YYYY-MM-DD")],
    out_file: Annotated[
        Path, typer.Option("--out", help="SQLite file (replaced atomically)")
    ] = Path("out/online_store.sqlite"),
    model: ModelOpt = None,
    text_cache: TextCacheOpt = None,
) -> None:
    """Write the online feature store: the bundle's features of every active customer as of a date."""
    from serving.online.store import materialize as run
    from training.registry.tracking import configure_tracking

    day = parse_date(as_of, "--as-of")
    assert day is not None
    configure_tracking()
    with err.status("materializing features"):
        info = run(data, day, out_file, model, text_cache)
    out.print(
        f"stored features of {info.customers:,} customers as of {info.as_of} "
        f"(feature version {info.feature_version}): {info.path}"
    )


@app.command()
@user_errors
def serve(
    model: ModelOpt = None,
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 3000,
    host: Annotated[str, typer.Option("--host", help="interface to listen on")] = "127.0.0.1",
    store: Annotated[
        Path | None, typer.Option("--store", help="online store (default out/online_store.sqlite)")
    ] = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="decision log (default out/decision_log.sqlite)")
    ] = None,
    database_url: DatabaseUrlOpt = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="worker processes")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle", help="a bundle folder (nextbest export-bundle) instead of --model"
        ),
    ] = None,
) -> None:
    """Start the BentoML service; other settings come from NEXTBEST_* variables (docs/api.md)."""
    import os
    import sys
    import tempfile

    from serving.online.settings import ServingSettings

    flags: dict[str, Any] = {"model": model, "bundle_dir": bundle, "online_store": store}
    flags |= {"decision_log": log, "workers": workers, "database_url": database_url}
    settings = ServingSettings.from_env().model_copy(
        update={k: v for k, v in flags.items() if v is not None}
    )
    settings = ServingSettings.model_validate(settings.model_dump())
    if not settings.online_store.is_file():
        raise NextbestError(f"{settings.online_store}: no online store; run `nextbest materialize`")
    env = os.environ | settings.to_env()
    # BentoML wipes $BENTOML_HOME/prometheus_multiproc_dir when a server starts: a home per port
    # keeps a second service on this host from erasing this one's metrics
    env.setdefault("BENTOML_HOME", str(Path(tempfile.gettempdir()) / f"nextbest-bentoml-{port}"))
    command = [sys.executable, "-m", "bentoml", "serve", "serving.online.service:Nextbest"]
    os.execvpe(sys.executable, [*command, "--host", host, "--port", str(port)], env)  # noqa: S606


@app.command("export-bundle")
@user_errors
def export_bundle(
    out_dir: Annotated[Path, typer.Option("--out", help="bundle folder (replaced atomically)")],
    model: ModelOpt = None,
) -> None:
    """Write a registry bundle (default @champion) as files: NEXTBEST_BUNDLE_DIR serves it without MLflow."""
    from training.registry.mlflow_models import export_bundle as run
    from training.registry.tracking import configure_tracking

    configure_tracking()
    bundle = run(model, out_dir)
    out.print(f"exported bundle version {bundle.version} to {out_dir}")


@app.command()
@user_errors
def bento(
    model: ModelOpt = None,
    store: Annotated[
        Path, typer.Option("--store", help="online store baked into the Bento")
    ] = Path("out/online_store.sqlite"),
    wheelhouse: Annotated[
        Path | None,
        typer.Option("--wheelhouse", help="wheels of requirements-serve.lock: an offline image"),
    ] = None,
) -> None:
    """Build a Bento that runs on its own: the bundle (default @champion) and the store inside."""
    from serving.online.packaging import build_bento
    from training.registry.tracking import configure_tracking

    configure_tracking()
    with err.status("building the Bento"):
        built = build_bento(model, store, wheelhouse=wheelhouse)
    out.print(
        f"built Bento {built.tag}: bundle version {built.model_version}, online store as of "
        f"{built.store_as_of} ({built.customers:,} customers)\n"
        f"  serve it:        bentoml serve {built.tag}\n"
        f"  containerize it: bentoml containerize {built.tag}"
    )


@app.command("export-exposures")
@user_errors
def export_exposures(
    out_dir: Annotated[Path, typer.Option("--out", help="directory for exposures.parquet")],
    log: LogOpt = Path("out/decision_log.sqlite"),
    database_url: DatabaseUrlOpt = None,
    include_cold_start: Annotated[
        bool, typer.Option(help="also export decisions on customers the store did not hold")
    ] = False,
) -> None:
    """Turn the decision log into contract exposures (with logged propensities) for retraining."""
    from serving.history.exports import export_exposures as run

    rows, path = run(database_url or log, out_dir, include_cold_start)
    out.print(f"wrote {rows:,} exposures to {path}")


@app.command("export-feedback")
@user_errors
def export_feedback(
    out_dir: Annotated[
        Path, typer.Option("--out", help="directory for feedback.parquet (events.parquet)")
    ],
    log: LogOpt = Path("out/decision_log.sqlite"),
    database_url: DatabaseUrlOpt = None,
    include_cold_start: Annotated[
        bool, typer.Option(help="also export feedback on decisions of customers the store lacked")
    ] = False,
    as_events: Annotated[
        bool,
        typer.Option(
            "--as-events",
            help="write offers shown and their outcomes as contract events (events.parquet), "
            "to append to the data set's events: features of the next training",
        ),
    ] = False,
) -> None:
    """Write what happened to shown actions (accepted, declined, ignored) for the next training."""
    from serving.history.exports import export_feedback as run
    from serving.history.exports import export_offer_events

    if as_events:
        rows, path = export_offer_events(database_url or log, out_dir, include_cold_start)
        out.print(f"wrote {rows:,} offer events to {path}")
        return
    rows, path = run(database_url or log, out_dir, include_cold_start)
    out.print(f"wrote {rows:,} feedback rows to {path}")


@app.command()
@user_errors
def forget(
    customer: Annotated[
        list[str] | None, typer.Option("--customer", help="a customer id (repeatable)")
    ] = None,
    customers_file: Annotated[
        Path | None, typer.Option("--customers-file", help="customer ids, one per line")
    ] = None,
    log: LogOpt = Path("out/decision_log.sqlite"),
    database_url: DatabaseUrlOpt = None,
    store: Annotated[Path, typer.Option("--store", help="online store")] = Path(
        "out/online_store.sqlite"
    ),
    events: Annotated[Path, typer.Option("--events", help="event store and outbox")] = Path(
        "out/event_store.sqlite"
    ),
    exports: Annotated[
        list[Path] | None,
        typer.Option("--exports", help="a folder of exported Parquet files (repeatable)"),
    ] = None,
    erasure_log: Annotated[
        Path, typer.Option("--erasure-log", help="JSON lines: when, salted hashes, counts")
    ] = Path("out/erasures.jsonl"),
    salt_file: Annotated[
        Path, typer.Option("--salt-file", help="the hashes' salt (NEXTBEST_ERASURE_SALT wins)")
    ] = Path("out/erasure.salt"),
) -> None:
    """Erase customers from the online store, the contact history, the event store and outbox,
    and exported files; the erasure is logged with a salted hash, never the id (docs/operations.md)."""
    from serving.online.erasure import forget as run
    from serving.online.erasure import log_erasure, read_ids, salt

    ids = read_ids(customer or [], customers_file)
    key = salt(salt_file)
    done = run(ids, database_url or log, store, events, exports or [])
    log_erasure(done, ids, key, erasure_log)
    counts = ", ".join(f"{k} {v:,}" for k, v in done.removed.items())
    out.print(f"forgot {len(ids):,} customers: {counts}; logged in {erasure_log}")


@app.command("export-events")
@user_errors
def export_events(
    events: EventsOpt = EVENT_STORE,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for events.parquet")] = Path(
        "out/live_events"
    ),
    after: Annotated[
        int,
        typer.Option("--after", min=0, help="only events after this sequence (the last export's)"),
    ] = 0,
) -> None:
    """Write the events ingested by POST /events as a contract events table, for retraining
    (docs/api.md, "POST /events")."""
    from serving.online.events import export_events as run

    rows, path, last = run(events, out_dir, after)
    out.print(f"wrote {rows:,} events to {path}; the next export: --after {last}")


@app.command("prune-events")
@user_errors
def prune_events(
    events: EventsOpt = EVENT_STORE,
    store: Annotated[Path, typer.Option("--store", help="online store (materialized)")] = Path(
        "out/online_store.sqlite"
    ),
) -> None:
    """Delete the ingested events that the online store's journeys hold (exported, appended and
    materialized): run it once the service serves that store (docs/api.md, "POST /events")."""
    from serving.online.event_retention import prune_materialized

    done = prune_materialized(events, store)
    out.print(
        f"deleted {done.events:,} events the stored journeys hold ({done.customers:,} customers "
        f"with events); {done.kept:,} events stay"
    )


@app.command("export-outbox")
@user_errors
def export_outbox(
    events: EventsOpt = EVENT_STORE,
    after: Annotated[str, typer.Option("--after", help="cursor: decisions after it")] = "0",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="at most")] = 100,
) -> None:
    """Print the decisions triggers fired after a cursor, as GET /outbox answers them (JSON)."""
    import json

    from serving.online.outbox import export_page

    page = export_page(events, after, limit)
    print(json.dumps({"decisions": page.decisions, "cursor": page.cursor}))  # noqa: T201


SrcOpt = Annotated[Path, typer.Option("--src", help="the public CSV file")]
OutDirOpt = Annotated[Path, typer.Option("--out", help="directory to write the data set to")]


@import_app.command("telco")
@user_errors
def import_telco(src: SrcOpt, out_dir: OutDirOpt) -> None:
    """IBM Telco churn: customers as static attributes, churners as explicit churn events."""
    from training.data.importers import import_telco as run

    _report_import(run(_require_file(src), out_dir).root)


@import_app.command("hillstrom")
@user_errors
def import_hillstrom(src: SrcOpt, out_dir: OutDirOpt) -> None:
    """Hillstrom's randomized e-mail test: exposures with propensity 1/3, visits and purchases."""
    from training.data.importers import import_hillstrom as run

    _report_import(run(_require_file(src), out_dir).root)


@import_app.command("airline-tweets")
@user_errors
def import_airline_tweets(src: SrcOpt, out_dir: OutDirOpt) -> None:
    """Airline tweets: one customer per tweet, the tweet as the comment of a CSAT answer."""
    from training.data.importers import import_airline_tweets as run

    _report_import(run(_require_file(src), out_dir).root)


def _report_import(root: Path) -> None:
    out.print(f"wrote {root} (config: {root / 'config.yaml'})")


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise NextbestError(f"{path}: no such file")
    return path
