"""Qini on Hillstrom's e-mail test: nextbest's served uplift model beside same-split peers.

Imports the CSV into the data contract, builds the exposure set with the real feature pipeline
(features as of the campaign, labels over the 14 days after it), outcome `visit`, and two
comparisons: any e-mail (mens or womens) against no e-mail, and the womens e-mail against no
e-mail (mens rows left out). Each is split 70/30, stratified by treatment x outcome, on `SEEDS`;
on every split each model is fitted on the 70% and scored on the 30% with `qini_coefficient`
(scikit-uplift's normalisation):

- nextbest: what uplift training serves (training.uplift.fit.compare_learners: the default
  learner unless a paired comparison picks another, calibrated, refitted on all the 70%), with
  its own inner split of the 70% to choose on;
- s_script, t_script: the plain LightGBM S- and T-learner of bench/uplift_peers.py;
- sklift_two_models, sklift_solo_model: scikit-uplift's TwoModels and SoloModel over logistic
  regression (one-hot categoricals, scaled numbers), when the `bench` extra is installed.

The test is randomized: nobody gets propensities (each arm's share is used).

    .venv/bin/python bench/hillstrom_qini.py [--src ../shared/datasets/hillstrom.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from training.config import CONTROL, load_config
from training.data.contract import open_dataset
from training.data.exposures import build_exposure_set, uplift_arrays
from training.data.importers import import_hillstrom
from training.data.snapshots import holdout_mask
from training.features.definition import FeatureBuilder
from training.uplift.metrics import qini_coefficient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uplift_peers import s_script, t_script  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "datasets" / "hillstrom.csv"
OUTCOME = "visit"
SEEDS = (0, 1, 2, 3, 4)  # the stratified 70/30 splits
TEST_SHARE = 0.3
COMPARISONS = {"any_email": ("mens_email", "womens_email"), "womens": ("womens_email",)}

Model = Callable[[np.ndarray, np.ndarray, np.ndarray, list[int], np.ndarray], np.ndarray]


class Arrays:
    """X, arm (0 control, 1 treated), visit, customer ids and categorical columns of one comparison."""

    def __init__(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, ids: np.ndarray,
                 categorical: list[int]) -> None:  # fmt: skip
        self.X, self.arm, self.y, self.ids, self.categorical = X, arm, y, ids, categorical


def hillstrom_arrays(src: Path, work: Path) -> dict[str, Arrays]:
    """The arrays of every comparison in COMPARISONS."""
    data = work / "hillstrom"
    import_hillstrom(src, data)
    config = load_config(data / "config.yaml")
    with open_dataset(data).connect() as con:
        exposures = build_exposure_set(con, FeatureBuilder(config.features).fit(con), config)
    frame = exposures.frame[exposures.frame[OUTCOME].notna()]
    X, treatment, y, _ = uplift_arrays(frame, OUTCOME, exposures.feature_names)
    ids = frame["customer_id"].to_numpy()
    out = {}
    for name, treated in COMPARISONS.items():
        rows = np.isin(treatment, [CONTROL, *treated])
        arm = np.isin(treatment[rows], treated).astype(np.int64)
        out[name] = Arrays(X[rows], arm, y[rows], ids[rows], exposures.categorical)
    return out


def nextbest(ids: np.ndarray) -> Model:
    """nextbest's served model, choosing on a customer-hash share of the training rows."""
    from training.config import OutcomeSpec
    from training.uplift.fit import FAST_PARAMS, compare_learners

    def fit(X: np.ndarray, arm: np.ndarray, y: np.ndarray, cats: list[int],
            X_new: np.ndarray) -> np.ndarray:  # fmt: skip
        judge = holdout_mask(pd.Series(ids), share=0.2)
        treatment = np.where(arm == 1, "email", CONTROL)
        spec = OutcomeSpec(kind="any", event_types=["visit"], horizon_days=14)
        p = np.where(arm == 1, arm.mean(), 1 - arm.mean())
        params = FAST_PARAMS | {"n_jobs": 2}
        _, model = compare_learners(X, treatment, y, p, ~judge, judge, spec, cats, params)
        return np.asarray(model.predict(X_new))[:, 0]

    return fit


def _logistic(categorical: list[int], d: int):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [j for j in range(d) if j not in categorical]
    columns = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
         ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric)],
        remainder="passthrough",
    )  # fmt: skip
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def sklift_models() -> dict[str, Model]:
    """scikit-uplift's TwoModels and SoloModel over logistic regression, if installed."""
    try:
        from sklift.models import SoloModel, TwoModels
    except ImportError:
        return {}

    def two(X: np.ndarray, arm: np.ndarray, y: np.ndarray, cats: list[int],
            X_new: np.ndarray) -> np.ndarray:  # fmt: skip
        d = X.shape[1]
        model = TwoModels(estimator_trmnt=_logistic(cats, d), estimator_ctrl=_logistic(cats, d))
        return np.asarray(model.fit(X, y, arm).predict(X_new))

    def solo(X: np.ndarray, arm: np.ndarray, y: np.ndarray, cats: list[int],
             X_new: np.ndarray) -> np.ndarray:  # fmt: skip
        model = SoloModel(estimator=_logistic(cats, X.shape[1]))
        return np.asarray(model.fit(X, y, arm).predict(X_new))

    return {"sklift_two_models": two, "sklift_solo_model": solo}


def qini_on_split(a: Arrays, seed: int) -> dict[str, float]:
    """Qini on the stratified 30% of every model fitted on the 70%."""
    strata = np.char.add(a.arm.astype(str), a.y.astype(int).astype(str))
    train, test = train_test_split(
        np.arange(len(a.y)), test_size=TEST_SHARE, stratify=strata, random_state=seed
    )

    def script(peer: Callable[..., np.ndarray]) -> Model:
        return lambda X, arm, y, cats, X_new: peer(X, arm, y, cats, X_new, 1)[:, 0]

    models: dict[str, Model] = {"nextbest": nextbest(a.ids[train]), "s_script": script(s_script),
                                "t_script": script(t_script)} | sklift_models()  # fmt: skip
    out = {}
    for name, fit in models.items():
        start = time.perf_counter()
        uplift = fit(a.X[train], a.arm[train], a.y[train], a.categorical, a.X[test])
        out[name] = qini_coefficient(uplift, a.arm[test] == 1, a.y[test])
        took = time.perf_counter() - start
        print(f"split {seed}  {name:<18} qini {out[name]:.4f}  ({took:.1f} s)", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        comparisons = hillstrom_arrays(args.src, Path(work))
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name, a in comparisons.items():
        splits = [qini_on_split(a, seed) for seed in SEEDS]
        summary[name] = {
            model: {
                "mean": float(np.mean([s[model] for s in splits])),
                "sd": float(np.std([s[model] for s in splits], ddof=1)),
                "splits": [round(s[model], 4) for s in splits],
            }  # fmt: skip
            for model in splits[0]
        }
    print(json.dumps({"seeds": list(SEEDS), "comparisons": summary}))


if __name__ == "__main__":
    main()
