"""5-fold cross-validated ROC AUC of `ChurnModel` (default hyper-parameters) on IBM Telco churn.

Imports the CSV into the data contract, builds the features as of the snapshot with the real
feature pipeline, then for each of 5 stratified folds trains on the other four: 80% of them fit the
booster, 20% (stratified) are its validation slice (early stopping + calibration). The logistic
baseline is the one `ChurnModel.evaluate` reports, but fitted on the whole training folds so that it
sees as many rows as the model does.

    .venv/bin/python bench/telco_cv.py [--src ../shared/datasets/Telco-Customer-Churn.csv]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from training.config import load_config
from training.data.contract import open_dataset
from training.data.importers import import_telco
from training.data.snapshots import TrainingSet, build_snapshots, data_span, resolve_as_of
from training.evaluation import metrics
from training.evaluation.baselines import logistic_baseline
from training.features.definition import FeatureBuilder, categorical_names, to_matrix
from training.scores.base import fit_on
from training.scores.churn import ChurnModel

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "datasets" / "Telco-Customer-Churn.csv"


def telco_matrix(src: Path, work: Path) -> tuple[TrainingSet, np.ndarray, np.ndarray]:
    """All Telco customers as one TrainingSet template plus the full matrix and labels."""
    out = work / "telco"
    import_telco(src, out)
    config = load_config(out / "config.yaml")
    with open_dataset(out).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        frame = build_snapshots(con, builder, config, resolve_as_of(config, data_span(con)))
    names = builder.feature_names_
    X = to_matrix(frame, names)
    y = frame["churn"].to_numpy(dtype=np.float64)
    empty = np.empty((0, len(names)), dtype=np.float32)
    template = TrainingSet(
        names,
        categorical_names(frame, names),
        empty,
        np.empty(0),
        empty,
        np.empty(0),
        empty,
        np.empty(0),
    )
    return template, X, y


def cross_validate(
    template: TrainingSet, X: np.ndarray, y: np.ndarray, seed: int = 0
) -> dict[str, list[float]]:
    """Per-fold test AUC of the model and of the logistic baseline."""
    scores: dict[str, list[float]] = {"model": [], "baseline": []}
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
        fit, val = train_test_split(train, test_size=0.2, stratify=y[train], random_state=seed)
        data = replace(
            template,
            X_fit=X[fit],
            y_fit=y[fit],
            X_val=X[val],
            y_val=y[val],
            X_test=X[test],
            y_test=y[test],
        )
        model = fit_on(ChurnModel(), data)
        scores["model"].append(metrics.roc_auc(y[test], model.predict_score(X[test])))
        baseline = logistic_baseline(replace(data, X_fit=X[train], y_fit=y[train]))
        assert baseline is not None
        scores["baseline"].append(metrics.roc_auc(y[test], baseline.predict_proba(X[test])[:, 1]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        template, X, y = telco_matrix(args.src, Path(work))
    scores = cross_validate(template, X, y)
    print(f"IBM Telco churn: {len(y):,} customers, churn rate {y.mean():.3f}, 5-fold stratified CV")
    for name, label in (("model", "ChurnModel (LightGBM)"), ("baseline", "logistic regression")):
        values = np.array(scores[name])
        folds = " ".join(f"{v:.4f}" for v in values)
        print(f"{label:<24} AUC {values.mean():.4f} ± {values.std(ddof=1):.4f}   folds: {folds}")
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
