"""The ROI report: one self-contained, escaped HTML page with every figure embedded, the tables as
CSV that read back equal, an atomic write that keeps the previous report when it fails, and the
same folder logged to a real (temporary) MLflow store.

A real Evaluation of a bundle with uplift models on the small world is built once per module.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from training.data.contract import open_dataset
from training.errors import NextbestError
from training.evaluation.decisions import Evaluation, evaluate_bundle, verdict
from training.evaluation.metrics import lift_by_decile
from training.evaluation.report import (
    MISSING,
    REPORT_FILE,
    TABLES,
    figures,
    format_money,
    format_money_ci,
    format_share,
    log_report,
    render_html,
    write_report,
)
from training.evaluation.scores import ScoreEvaluation, lifetime_figures, lifetime_rows
from training.registry.bundle import Bundle
from training.registry.tracking import EXPERIMENT, configure_tracking

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGE = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def evaluation(small_world: Path) -> Evaluation:
    """The small world's bundle with uplift models, judged on its held-out exposures with truth."""
    from tests.training.registry.test_bundle import train_all
    from tests.training.uplift.test_fit import uplift_on

    base = train_all(small_world).bundle()
    learners = uplift_on(small_world).learners
    bundle = Bundle(base.builder, base.config, base.models, base.metadata, learners)
    with open_dataset(small_world).connect() as con:
        return evaluate_bundle(con, bundle, Path(f"{small_world}_truth"))


@pytest.fixture(scope="module")
def written(evaluation: Evaluation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(evaluation, tmp_path_factory.mktemp("report") / "out")


def page_of(folder: Path) -> str:
    return (folder / REPORT_FILE).read_text(encoding="utf-8")


def cells(page: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    row = re.search(rf"<tr><td>{re.escape(first)}</td>(.*?)</tr>", page)
    assert row is not None, f"no row {first!r}"
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_money_and_missing_values_read_plainly() -> None:
    assert format_money(1.0869, "EUR") == "EUR 1.09"
    assert format_money(-12380.64, "EUR", 0) == "EUR -12,381"
    assert format_money_ci(1.0869, 3.4731, "EUR") == "EUR 1.09 ± 3.47"
    assert format_money_ci(1.0869, float("nan"), "EUR") == "EUR 1.09"
    assert format_share(0.1599) == "16.0%"
    for missing in (float("nan"), None, pd.NA, np.inf):
        assert format_money(missing, "EUR") == MISSING == format_share(missing)
        assert format_money_ci(missing, 1.0, "EUR") == MISSING


@pytest.mark.slow
def test_page_is_self_contained_with_every_figure_embedded(
    evaluation: Evaluation, written: Path
) -> None:
    page = page_of(written)
    for external in ('src="http', "src='http", 'href="http', "<script", "<link", "@import", "url("):
        assert external not in page
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # only data: URIs and in-page anchors
    embedded = dict(IMAGE.findall(page))
    assert set(embedded) == set(figures(evaluation))
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for data in embedded.values())


@pytest.mark.slow
def test_figures_cover_every_policy_outcome_and_action(evaluation: Evaluation) -> None:
    plots = figures(evaluation)
    estimated = evaluation.policies["dr_value"].notna().sum()
    assert len(plots["policy_value"].axes[0].patches) == estimated  # one DR bar per policy
    assert len(plots["action_roi"].axes[0].patches) == len(evaluation.actions)
    assert len(plots["qini"].axes) == evaluation.curves["outcome"].nunique()
    for outcome, rows in evaluation.calibration.groupby("outcome"):
        assert len(plots[f"calibration_{outcome}"].axes) == rows["action_id"].nunique()


@pytest.mark.slow
def test_every_policy_and_action_is_named_and_nan_reads_as_a_dash(
    evaluation: Evaluation, written: Path
) -> None:
    page = page_of(written)
    for policy in evaluation.policies["policy"]:
        assert f"<td>{policy}</td>" in page
    for action in set(evaluation.actions["action_id"]) | set(evaluation.qini["action_id"]):
        assert f"<td>{action}</td>" in page
    assert evaluation.has_truth
    oracle = cells(page, "oracle")  # the oracle is known in truth only: no DR or IPS estimate
    assert oracle[2:4] == [MISSING, MISSING]
    assert not re.search(r"\bnan\b", page, re.IGNORECASE)
    learned = evaluation.policies.set_index("policy").loc["learned"]
    said = verdict(learned.dr_value, learned.dr_ci, evaluation.exposures)
    assert html.escape(said) in page  # the headline's verdict


@pytest.mark.slow
def test_inserted_strings_are_escaped(evaluation: Evaluation) -> None:
    policies = evaluation.policies.assign(description=HOSTILE)
    actions = evaluation.actions.assign(action_id=evaluation.actions["action_id"] + "<b>&")
    hostile = replace(evaluation, policies=policies, actions=actions, model_version='7"><i>')
    page = render_html(hostile, {})
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;&amp;" in page and "7&quot;&gt;&lt;i&gt;" in page


@pytest.mark.slow
def test_tables_round_trip_through_csv(evaluation: Evaluation, written: Path) -> None:
    for name in TABLES:
        table: pd.DataFrame = getattr(evaluation, name)
        back = pd.read_csv(written / f"{name}.csv")
        pd.testing.assert_frame_equal(
            back, table.reset_index(drop=True), check_dtype=False, rtol=1e-12
        )
    meta = json.loads((written / "evaluation.json").read_text())
    assert meta["model_version"] == evaluation.model_version
    assert meta["exposures"] == evaluation.exposures
    assert meta["headline"] == pytest.approx(evaluation.headline())


@pytest.mark.slow
def test_failed_write_keeps_the_previous_report(evaluation: Evaluation, tmp_path: Path) -> None:
    out = write_report(evaluation, tmp_path / "report")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = replace(evaluation, calibration=evaluation.calibration.drop(columns="observed_se"))
    with pytest.raises(KeyError, match="observed_se"):
        write_report(broken, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary sibling left


@pytest.mark.slow
def test_refuses_to_replace_a_folder_that_is_not_a_report(
    evaluation: Evaluation, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NextbestError, match="did not write"):
        write_report(evaluation, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_log_report_records_a_run_with_metrics_and_the_page(
    evaluation: Evaluation, written: Path, store: Path
) -> None:
    configure_tracking()
    run_id = log_report(evaluation, written)
    run = mlflow.get_run(run_id)
    assert run.info.run_name == "evaluate"
    assert mlflow.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.tags["model_version"] == evaluation.model_version
    assert run.data.metrics == pytest.approx(evaluation.headline())
    logged = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "report")}
    assert {"report/report.html", *(f"report/{n}.csv" for n in TABLES)} <= logged


@pytest.mark.slow
def test_a_policy_that_treats_nobody_still_reports(evaluation: Evaluation, tmp_path: Path) -> None:
    empty = pd.DataFrame()
    nobody = replace(evaluation, actions=empty, qini=empty, curves=empty, calibration=empty)
    out = write_report(nobody, tmp_path / "report")
    assert set(dict(IMAGE.findall(page_of(out)))) == {"policy_value", "investment"}
    assert page_of(out).count("Nothing to show.") == 2  # the action and Qini tables


def test_score_report_shows_ltv_deciles_gain_and_calibration() -> None:
    """Held-out customers by decile of ltv: the realised revenue the top deciles hold, computed
    here from the same numbers, and both lifetime figures embedded."""
    rng = np.random.default_rng(0)
    pred = rng.gamma(2.0, 50.0, 1000)
    y = pred * rng.gamma(4.0, 0.25, 1000)  # realised: the prediction times unit-mean noise
    figures_ = lifetime_figures(y, pred)
    judged = {"normalized_gini": 0.5, "spearman": 0.6, "pearson": 0.7, "judged_days": 273.0}
    rows = lifetime_rows("blend", {"blend": judged, "window_scaled": {"pearson": 0.6}})
    columns = ["role", "outcome", "metric", "model", "baseline"]
    scores = ScoreEvaluation("v7", ["2026-01-01"], pd.DataFrame(rows, columns=columns),
                             figures_, lift_by_decile(y, pred), 273)  # fmt: skip
    page = render_html(None, {}, scores)
    assert "realised over the next 273 days" in page
    order = np.argsort(-pred)
    top, second = y[order[:100]].sum() / y.sum(), y[order[:200]].sum() / y.sum()
    assert cells(page, "1")[0] == "100" and cells(page, "1")[-1] == format_share(top)
    assert cells(page, "2")[-1] == format_share(second)
    assert cells(page, "10")[-1] == "100.0%"
    assert float(cells(page, "1")[1]) == pytest.approx(pred[order[:100]].mean(), abs=0.01)
    assert float(cells(page, "1")[2]) == pytest.approx(y[order[:100]].mean(), abs=0.01)
    assert top > 0.2  # an informative ltv: the top tenth holds twice its share or more
    shown = {alt for alt, _ in IMAGE.findall(page)}
    assert {"lifetime_gain", "lifetime_calibration"} <= shown
