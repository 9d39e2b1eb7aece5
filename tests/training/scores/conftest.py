"""The score models' training sets, built from the session's small synthetic world with the real
pipeline (features -> snapshots -> split), and the three models trained once on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.snapshots import TrainingSet
from training.evaluation.score_metrics import score_metrics
from training.scores.base import LightGBMScoreModel, fit_on
from training.scores.churn import ChurnModel
from training.scores.ltv import LtvModel
from training.scores.satisfaction import SatisfactionModel

# One LightGBM thread per model: `make test` runs pytest on 2 workers of a 2-core box, and
# 2 x 2 spinning OpenMP threads made this suite ~50x slower (258 s instead of 5 s).
TEST_JOBS = 1

OUTCOMES = {"churn": "churn", "satisfaction": "satisfaction", "value": "value"}  # role -> outcome


@pytest.fixture(scope="session")
def score_sets(small_world: Path) -> dict[str, TrainingSet]:
    """role -> TrainingSet of the demo config's outcome for that role."""
    from training.config import load_config
    from training.data.contract import open_dataset
    from training.data.snapshots import build_snapshots, data_span, resolve_as_of, split_for
    from training.features.definition import FeatureBuilder

    config = load_config()
    with open_dataset(small_world).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        frame = build_snapshots(con, builder, config, resolve_as_of(config, data_span(con)))
    return {
        role: split_for(
            frame, outcome, builder.feature_names_, config.outcomes[outcome].horizon_days
        )
        for role, outcome in OUTCOMES.items()
    }


@pytest.fixture(scope="session")
def trained(score_sets: dict[str, TrainingSet]) -> dict[str, LightGBMScoreModel]:
    """role -> the model of that role with default hyper-parameters, fitted on its set."""
    models: dict[str, LightGBMScoreModel] = {
        "churn": ChurnModel(n_jobs=TEST_JOBS),
        "satisfaction": SatisfactionModel(survey_type="nps", n_jobs=TEST_JOBS),
        "value": LtvModel(value_event_types=("purchase",), n_jobs=TEST_JOBS),
    }
    return {role: fit_on(model, score_sets[role]) for role, model in models.items()}


@pytest.fixture(scope="session")
def evaluations(
    trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> dict[str, dict[str, float]]:
    """role -> score_metrics() of the trained model on its test slice."""
    return {role: score_metrics(model, score_sets[role]) for role, model in trained.items()}
