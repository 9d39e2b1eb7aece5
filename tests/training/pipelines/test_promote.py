"""Promotion on decision value: a candidate whose uplift has a sign error is refused against a
good champion, a differently trained good one passes, and both get @challenger; on the small
world with one truly harmful action and a real (temporary) MLflow registry."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from tests.conftest import SMALL_WORLD_CUSTOMERS
from tests.training.registry.test_bundle import Trained, register, train_all
from training.cli import app
from training.config import DEMO_CONFIG, load_config
from training.data.contract import open_dataset
from training.features.definition import FeatureBuilder
from training.pipelines.promote import promote
from training.registry.bundle import Bundle
from training.synth.generate import synthesize
from training.synth.world import WorldConfig
from training.uplift.fit import UpliftResult, train_uplift
from training.uplift.selection import Line, SelectedUplift

#: the loyalty upgrade drives customers away: +3 churn log-odds (about 20 times the weekly hazard)
#: for the 13 weeks it is in force, on top of its documented effect
HARM = {"loyalty_upgrade": 3.0}


def learn_uplift(data: Path, **params: float) -> UpliftResult:
    config = load_config()
    with open_dataset(data).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        result = train_uplift(con, builder, config, params={"n_estimators": 30, **params})
    assert result is not None
    return result


@pytest.fixture(scope="module")
def harmful_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small world (same customers, seed and campaigns) in which the loyalty upgrade truly
    harms (`HARM`); no test here reads its ground truth, so one Monte-Carlo path suffices. On the
    small world itself no candidate could lose clearly: its actions' gains are about as large
    as the 95% half-width of the paired difference (10 EUR a customer), so a candidate that acted
    on noise lost -10.1 +- 10.5 and one with a sign and a unit error -11.7 +- 10.9."""
    out = tmp_path_factory.mktemp("harmful") / "demo"
    cfg = replace(WorldConfig(), chunk_size=3000, truth_reps=1, harm=HARM)
    synthesize(SMALL_WORLD_CUSTOMERS, out, seed=11, cfg=cfg)
    return out


@pytest.fixture(scope="module")
def trained(harmful_world: Path) -> Trained:
    return train_all(harmful_world)


@pytest.fixture(scope="module")
def good(harmful_world: Path) -> UpliftResult:
    return learn_uplift(harmful_world)


@pytest.fixture(scope="module")
def sabotaged(good: UpliftResult) -> UpliftResult:
    """The good uplift with a sign error: every effect negated, so its policy gives the
    harmful loyalty upgrade to everyone eligible (measured: -104 +- 24 EUR a customer against
    the good champion, which treats almost nobody; a policy that gives the upgrade to everyone
    eligible outright loses the same)."""
    flipped = {
        outcome: SelectedUplift(
            model.learners_,
            model.choice_,
            {a: Line(-line.intercept, -line.slope) for a, line in model.lines_.items()},
        )
        for outcome, model in good.learners.items()
    }
    return UpliftResult(flipped, good.comparison, good.skipped, good.exposures)


def with_uplift(trained: Trained, uplift: UpliftResult) -> Bundle:
    base = trained.bundle()
    return Bundle(base.builder, base.config, base.models, base.metadata, uplift.learners)


def aliases() -> dict[str, str]:
    client = mlflow.MlflowClient()
    return {
        a: str(client.get_model_version_by_alias("nextbest", a).version)
        for a in ("champion", "challenger")
    }


@pytest.mark.slow
@pytest.mark.xdist_group("promote")  # one worker: the uplift fixtures are fitted once
def test_a_sabotaged_candidate_is_refused_and_a_good_one_passes(
    trained: Trained, good: UpliftResult, sabotaged: UpliftResult, harmful_world: Path, store: Path
) -> None:
    register(trained, with_uplift(trained, good))
    first = promote(data=harmful_world)
    assert first.promoted and first.value is None and "nothing to compare" in first.reason

    register(trained, with_uplift(trained, sabotaged))
    refused = promote(data=harmful_world)
    assert not refused.promoted and not refused.passed
    assert all(row.ok for row in refused.rows)  # the same score models: only the value fails
    value = refused.value
    assert value is not None and not value.ok and value.exposures > 1000
    assert value.difference + value.half_width < -40  # worse, far beyond the 95% interval
    assert value.difference == pytest.approx(value.candidate - value.champion)
    assert "refused" in refused.reason and "policy value" in refused.reason
    assert aliases() == {"champion": "1", "challenger": "2"}
    run = mlflow.MlflowClient().get_run(
        mlflow.MlflowClient().get_model_version("nextbest", "2").run_id
    )
    assert run.data.metrics["promotion.value_difference"] == pytest.approx(value.difference)
    assert run.data.metrics["promotion.passed"] == 0.0
    assert run.data.tags["promotion.champion_version"] == "1"

    # a good candidate trained otherwise (more, slower trees): not worse beyond the tolerance
    register(trained, with_uplift(trained, learn_uplift(harmful_world, n_estimators=45,
                                                        learning_rate=0.08)))  # fmt: skip
    passed = promote(data=harmful_world)
    assert passed.promoted and passed.passed and passed.value is not None
    assert passed.value.ok and abs(passed.value.difference) < abs(value.difference)
    assert aliases() == {"champion": "3", "challenger": "3"}


@pytest.mark.slow
@pytest.mark.xdist_group("promote")  # one worker: the uplift fixtures are fitted once
def test_the_command_exits_non_zero_with_one_line_on_a_refusal(
    trained: Trained, good: UpliftResult, sabotaged: UpliftResult, harmful_world: Path, store: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    register(trained, with_uplift(trained, good))
    register(trained, with_uplift(trained, sabotaged))
    runner = CliRunner()
    first = runner.invoke(app, ["promote", "--model", "1", "--data", str(harmful_world)])
    assert first.exit_code == 0, first.output
    refused = runner.invoke(app, ["promote", "--data", str(harmful_world)])
    assert refused.exit_code == 1
    assert "policy value (DR" in refused.stdout
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("refused: version 2 refused, champion stays 1")
    # a tolerance of 1,000 EUR per customer lets the same loss through
    shutil.copytree(DEMO_CONFIG.parent, tmp_path / "demo")
    loose = tmp_path / "demo" / DEMO_CONFIG.name
    loose.write_text(loose.read_text() + "\npromotion:\n  max_value_loss: 1000\n")
    let_through = runner.invoke(
        app, ["promote", "--data", str(harmful_world), "--config", str(loose)]
    )
    assert let_through.exit_code == 0, let_through.output
    assert aliases() == {"champion": "2", "challenger": "2"}
