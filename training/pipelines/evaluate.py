"""`nextbest evaluate`: load a bundle, judge its decisions and scores on held-out data, write and log
the ROI report."""

from __future__ import annotations

from pathlib import Path

from training.data.contract import open_dataset, validate_dataset
from training.evaluation.decisions import Evaluation, evaluate_bundle
from training.evaluation.report import log_report, write_report
from training.evaluation.scores import ScoreEvaluation, evaluate_scores
from training.evaluation.texts import evaluate_topics
from training.registry.mlflow_models import load_bundle
from training.synth.generate import default_truth_dir


def evaluate(
    data: Path, model_ref: str | None, out: Path, truth_dir: Path | None = None
) -> tuple[Evaluation | None, ScoreEvaluation, Path]:
    """`nextbest evaluate`: validate, evaluate the bundle (uplift policies where it has uplift
    models and actions, the score models always), write the report folder, log to MLflow.

    Simulator truth is used when `truth_dir` is given, or found beside the data (`<data>_truth`).
    The uplift evaluation is None for a scores-only bundle.
    """
    bundle = load_bundle(model_ref)
    validate_dataset(data, known_actions=bundle.config.catalog.ids)
    if truth_dir is None and default_truth_dir(Path(data)).is_dir():
        truth_dir = default_truth_dir(Path(data))
    with open_dataset(data).connect() as con:
        uplift = bool(bundle.uplift and bundle.config.catalog.actions)
        evaluation = evaluate_bundle(con, bundle, truth_dir) if uplift else None
        scores = evaluate_scores(con, bundle)
        topics = evaluate_topics(con, bundle)
    path = write_report(evaluation, out, scores, topics)
    log_report(evaluation, path, scores)
    return evaluation, scores, path
