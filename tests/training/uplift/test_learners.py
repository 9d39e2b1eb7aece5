"""Uplift meta-learners against a seeded synthetic world whose true effects are known.

The world: 5 standard-normal features, three actions plus control. Action `a1` helps where
x0 > 0 and harms where x0 < 0, `a2` helps everyone, `a3` harms everyone. Assignment is targeted on
x1 with known propensities, and x1 also raises the outcome: a naive difference in means is biased.
Each learner is fitted once per outcome kind (binary, continuous) and judged on a held-out sample
against the exact expected outcomes under every arm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.base import clone

from training.config import CONTROL
from training.errors import NextbestError
from training.uplift.learners import (
    BinnedFeatures,
    DRLearner,
    LinearTLearner,
    SLearner,
    TLearner,
    UpliftLearner,
    XLearner,
    aipw_pseudo_outcome,
    outcome_objective,
)
from training.uplift.metrics import dr_value, qini_coefficient

ACTIONS = ["a1", "a2", "a3"]
ARMS = [CONTROL, *ACTIONS]
N_TRAIN, N_TEST = 8000, 3000
PARAMS = {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 40}
LEARNER_CLASSES = [SLearner, TLearner, XLearner, DRLearner, LinearTLearner]


@dataclass(frozen=True)
class World:
    X: np.ndarray
    treatment: np.ndarray  # "control" | "a1" | "a2" | "a3"
    y: np.ndarray
    propensity: np.ndarray  # logged probability of the treatment each row got
    mu: np.ndarray  # (n, 4) true expected outcome under control, a1, a2, a3

    @property
    def cate(self) -> np.ndarray:
        """(n, 3) true effect of each action vs control."""
        return self.mu[:, 1:] - self.mu[:, [0]]


def simulate(n: int, seed: int, binary: bool, randomized: bool = False) -> World:
    """The synthetic world; `randomized` assigns the four arms uniformly instead of on x1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    x0, x1, x2 = X[:, 0], X[:, 1], X[:, 2]
    if randomized:
        logits = np.zeros((n, 4))
    else:  # a1 goes to high-x1 customers, a2 to low-x1 ones: both confounded through x1
        logits = np.column_stack([np.zeros(n), 0.9 * x1, -0.9 * x1, np.full(n, 0.2)])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arm = (probs.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(0, 3)
    rows = np.arange(n)
    if binary:  # effects on the logit scale; mu in probability
        effect = np.column_stack([np.zeros(n), 0.2 + 1.2 * x0, np.full(n, 0.6), np.full(n, -0.5)])
        mu = 1.0 / (1.0 + np.exp(-(-0.3 + 0.9 * x1 + 0.4 * x2)[:, None] - effect))
        y = (rng.random(n) < mu[rows, arm]).astype(np.float64)
    else:
        effect = np.column_stack([np.zeros(n), 0.2 + 1.0 * x0, np.full(n, 0.5), np.full(n, -0.3)])
        mu = (1.0 + 1.0 * x1 + 0.5 * x2)[:, None] + effect
        y = mu[rows, arm] + rng.normal(scale=0.5, size=n)
    return World(X, np.array(ARMS)[arm], y, probs[rows, arm], mu)


@pytest.fixture(scope="module", params=["binary", "continuous"])
def fitted(request: pytest.FixtureRequest) -> tuple[str, World, World, dict[str, UpliftLearner]]:
    """(kind, train world, held-out world, learner name -> learner fitted on train)."""
    binary = request.param == "binary"
    train = simulate(N_TRAIN, seed=1, binary=binary)
    test = simulate(N_TEST, seed=2, binary=binary)
    learners: dict[str, UpliftLearner] = {
        cls.__name__: cls(**PARAMS, n_jobs=1, random_state=0).fit(
            train.X, train.treatment, train.y, train.propensity
        )
        for cls in LEARNER_CLASSES
    }
    return request.param, train, test, learners


def tolerance(kind: str) -> float:
    """Allowed |mean predicted - true ATE|: effects are 0.05-0.12 in probability, 0.2-0.5 in y;
    measured over 5 training draws: worst error 0.042 (binary), 0.046 (continuous)."""
    return 0.05 if kind == "binary" else 0.10


# ---------------------------------------------------------------------------------------------
# accuracy


@pytest.mark.parametrize("name", [cls.__name__ for cls in LEARNER_CLASSES])
def test_mean_effect_recovers_the_true_ate(fitted, name):
    kind, _, test, learners = fitted
    pred = learners[name].predict(test.X)
    assert pred.shape == (N_TEST, 3)
    assert learners[name].actions_ == ACTIONS
    error = np.abs(pred.mean(axis=0) - test.cate.mean(axis=0))
    assert (error < tolerance(kind)).all(), (name, kind, pred.mean(axis=0), test.cate.mean(axis=0))


@pytest.mark.parametrize("name", ["TLearner", "XLearner", "DRLearner", "LinearTLearner"])
def test_heterogeneous_effect_is_ranked(fitted, name):
    _, _, test, learners = fitted
    pred = learners[name].predict(test.X)[:, 0]  # a1: helps where x0 > 0, harms where x0 < 0
    corr = np.corrcoef(pred, test.cate[:, 0])[0, 1]
    assert corr > 0.5, (name, corr)
    assert pred[test.X[:, 0] > 1].mean() > 0 > pred[test.X[:, 0] < -1].mean()


@pytest.mark.parametrize("name", ["XLearner", "DRLearner", "LinearTLearner"])
def test_feature_gain_names_what_drives_an_effect(fitted, name):
    """a1's effect moves with x0 alone: the learners that model effects directly say so."""
    _, _, _, learners = fitted
    gain = learners[name].feature_gain("a1")
    assert gain.shape == (5,) and gain.sum() == pytest.approx(1.0)
    assert int(np.argmax(gain)) == 0, (name, gain)


def test_the_linear_learner_is_near_exact_on_a_linear_world(fitted):
    """Effects linear in x0 (continuous) or on the logit (binary) are what its GLMs model."""
    _, _, test, learners = fitted
    pred = learners["LinearTLearner"].predict(test.X)
    corr = [np.corrcoef(pred[:, 0], test.cate[:, 0])[0, 1]]
    assert min(corr) > 0.95, corr


def test_the_linear_learner_shrinks_effects_that_are_noise():
    """A constant effect on 400 rows and ten irrelevant features: unpenalised per-arm logistic
    models read the noise of their difference as heterogeneity; the prior holds most of it
    back (the spread of predicted effects at most half theirs)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    X, X_new = rng.normal(size=(400, 10)), rng.normal(size=(2000, 10))
    treatment = np.where(np.arange(400) % 2 == 0, CONTROL, "a1")
    y = (rng.random(400) < np.where(treatment == "a1", 0.35, 0.3)).astype(float)
    shrunk = LinearTLearner().fit(X, treatment, y).predict(X_new)[:, 0]
    arms = [LogisticRegression(C=1e6).fit(X[treatment == a], y[treatment == a])
            for a in (CONTROL, "a1")]  # fmt: skip
    raw = arms[1].predict_proba(X_new)[:, 1] - arms[0].predict_proba(X_new)[:, 1]
    assert shrunk.std() < 0.5 * raw.std(), (shrunk.std(), raw.std())
    assert abs(shrunk.mean() - y[treatment == "a1"].mean() + y[treatment == CONTROL].mean()) < 0.02


def test_propensity_aware_learner_beats_naive_difference_on_confounded_data(fitted):
    kind, train, test, learners = fitted
    true_ate = test.cate[:, 0].mean()
    naive = train.y[train.treatment == "a1"].mean() - train.y[train.treatment == CONTROL].mean()
    dr = learners["DRLearner"].predict(test.X)[:, 0].mean()
    assert abs(dr - true_ate) < abs(naive - true_ate) / 3, (kind, dr, naive, true_ate)


def test_dr_value_of_the_oracle_policy_covers_its_true_value(fitted):
    """A 95% interval misses 1 time in 20, so one held-out sample proves little (seed 2 of the
    binary world is such a miss, with the TRUE mu as much as with the learned one): judge the
    interval's coverage over 10 independent held-out samples instead, and its centre."""
    kind, _, _, learners = fitted
    t_learner = learners["TLearner"]
    assert isinstance(t_learner, TLearner)
    covered, errors = [], []
    for seed in range(10, 20):
        test = simulate(N_TEST, seed=seed, binary=kind == "binary")
        best = test.mu.argmax(axis=1)
        true_value = test.mu[np.arange(N_TEST), best].mean()
        mu_hat = t_learner.predict_outcomes(test.X)  # fitted on train: honest on test
        value, half = dr_value(
            np.array(ARMS)[best], test.treatment, test.y, test.propensity, mu_hat
        )
        covered.append(abs(value - true_value) <= half)
        errors.append((value - true_value) / half)
        assert value - half > test.mu[:, 0].mean()  # doing nothing is clearly worse
    assert sum(covered) >= 8, errors
    assert abs(np.mean(errors)) < 0.35, errors  # centred: no systematic bias


def test_qini_of_true_and_learned_cate_beats_a_random_score():
    test = simulate(N_TEST, seed=3, binary=True, randomized=True)
    rows = np.isin(test.treatment, ["a1", CONTROL])
    treated, y = test.treatment[rows] == "a1", test.y[rows]
    random_score = np.random.default_rng(0).random(rows.sum())
    q_random = qini_coefficient(random_score, treated, y)
    q_true = qini_coefficient(test.cate[rows, 0], treated, y)
    train = simulate(N_TRAIN, seed=4, binary=True, randomized=True)
    learner = TLearner(**PARAMS).fit(train.X, train.treatment, train.y, None)
    q_model = qini_coefficient(learner.predict(test.X)[rows, 0], treated, y)
    assert q_true > q_random + 0.05, (q_true, q_random)
    assert q_model > q_random + 0.05, (q_model, q_random)


# ---------------------------------------------------------------------------------------------
# contract: persistence, clone, validation


@pytest.mark.parametrize("name", [cls.__name__ for cls in LEARNER_CLASSES])
def test_to_dict_from_dict_round_trips_predictions_exactly(fitted, name):
    _, _, test, learners = fitted
    learner = learners[name]
    data = json.loads(json.dumps(learner.to_dict()))  # JSON-able, no pickle
    for restored in (UpliftLearner.from_dict(data), type(learner).from_dict(data)):
        assert type(restored) is type(learner)
        assert restored.get_params() == learner.get_params()
        assert np.array_equal(restored.predict(test.X), learner.predict(test.X))


@pytest.mark.parametrize("name", [cls.__name__ for cls in LEARNER_CLASSES])
def test_predicting_some_actions_gives_exactly_their_columns(fitted, name):
    """`predict_actions` (what a served model asks a learner for) is `predict`'s columns, bit
    for bit, on many rows and on the single rows of a decision (the S-learner stacks its arms)."""
    _, _, test, learners = fitted
    learner = learners[name]
    full = learner.predict(test.X)
    for actions in (["a3", "a1"], ["a2"], ACTIONS):
        columns = [ACTIONS.index(a) for a in actions]
        np.testing.assert_array_equal(learner.predict_actions(test.X, actions), full[:, columns])
    # trees predict a row alike alone or among others; a GLM's matrix product may round the
    # last bit differently for one row
    same = np.testing.assert_array_equal if learner.models_ else _within_1e12
    for i in range(0, N_TEST, 150):
        same(learner.predict(test.X[i : i + 1]), full[i : i + 1])
        np.testing.assert_array_equal(
            learner.predict_actions(test.X[i : i + 1].astype(np.float32), ["a2"]),
            learner.predict(test.X[i : i + 1].astype(np.float32))[:, [1]],
        )


def _within_1e12(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


def test_predicting_some_actions_runs_no_model_of_the_others(fitted):
    """A per-action learner asked for a1 never touches the models of a2 and a3."""
    _, _, test, learners = fitted
    for name, prefixes in (("XLearner", ("tau0:", "tau1:")), ("DRLearner", ("tau:",))):
        learner = learners[name]
        expected = learner.predict(test.X[:50])[:, [0]]
        kept = dict(learner.models_)
        learner.models_ = {k: m for k, m in kept.items()
                           if not k.startswith(prefixes) or k.endswith(":a1")}  # fmt: skip
        try:
            np.testing.assert_array_equal(learner.predict_actions(test.X[:50], ["a1"]), expected)
            with pytest.raises(KeyError):
                learner.predict_actions(test.X[:50], ["a2"])
        finally:
            learner.models_ = kept


def test_from_dict_refuses_another_class(fitted):
    _, _, _, learners = fitted
    with pytest.raises(NextbestError, match="cannot load a TLearner"):
        DRLearner.from_dict(learners["TLearner"].to_dict())


@pytest.mark.parametrize("cls", LEARNER_CLASSES)
def test_sklearn_clone_keeps_hyper_parameters_and_drops_state(cls):
    learner = cls(n_estimators=7, categorical=[4], n_jobs=1, random_state=3)
    copy = clone(learner)
    assert copy.get_params() == learner.get_params()
    assert not hasattr(copy, "actions_")


def test_categorical_columns_and_randomized_data_without_propensity():
    world = simulate(2000, seed=5, binary=False, randomized=True)
    X = world.X.copy()
    X[:, 4] = (X[:, 4] > 0).astype(float) + (X[:, 4] > 1)  # a 3-level code
    learner = SLearner(**PARAMS, categorical=[4]).fit(X, world.treatment, world.y, None)
    assert learner.predict(X).shape == (2000, 3)
    assert learner.objective_ == "regression"


def test_bad_input_is_refused():
    world = simulate(200, seed=6, binary=True)
    with pytest.raises(NextbestError, match="'control' rows"):
        TLearner().fit(world.X, np.full(200, "a1"), world.y)
    with pytest.raises(NextbestError, match=r"propensity must hold 200 values in \(0, 1\]"):
        TLearner().fit(world.X, world.treatment, world.y, np.zeros(200))
    fitted = TLearner(n_estimators=5).fit(world.X, world.treatment, world.y, world.propensity)
    with pytest.raises(NextbestError, match=r"expected \(n, 5\) features"):
        fitted.predict(world.X[:, :3])


# ---------------------------------------------------------------------------------------------
# the pure maths


def test_outcome_objective_follows_the_outcome():
    assert outcome_objective(np.array([0.0, 1.0, 1.0])) == "binary"
    assert outcome_objective(np.array([0.0, 0.0])) == "binary"
    assert outcome_objective(np.array([0.0, 2.5])) == "regression"


def test_outcome_objective_checks_what_is_asked_for():
    assert outcome_objective(np.array([0.0, 2.5]), "tweedie") == "tweedie"
    assert outcome_objective(np.array([0.0, 1.0]), "regression") == "regression"
    with pytest.raises(NextbestError, match="'tweedie' needs non-negative outcomes"):
        outcome_objective(np.array([-1.0, 2.5]), "tweedie")
    with pytest.raises(NextbestError, match="'tweedie' needs non-negative outcomes"):
        outcome_objective(np.zeros(3), "tweedie")
    with pytest.raises(NextbestError, match="'binary' needs outcomes that are all 0 or 1"):
        outcome_objective(np.array([0.0, 2.0]), "binary")
    with pytest.raises(NextbestError, match="objective must be one of"):
        outcome_objective(np.array([0.0, 2.0]), "poisson")


def spend_world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Randomized spend test: baseline spend varies 20-fold with x0, and the offer lifts spend by
    50% where x1 > 0 and nothing elsewhere (a proportional effect, as offers on spend have).
    Returns X, treatment, spend and the true uplift."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    base = np.exp(1.0 + 1.0 * X[:, 0])
    lift = 0.5 * (X[:, 1] > 0)
    treated = rng.random(n) < 0.5
    mean = base * (1.0 + lift * treated)
    spend = rng.gamma(2.0, mean / 2.0) * (rng.random(n) < 0.8)  # 20% spend nothing
    return X, np.where(treated, "offer", CONTROL), spend, 0.8 * base * lift


def test_tweedie_recovers_a_proportional_spend_effect_better_than_regression():
    X, treatment, spend, _ = spend_world(12000, seed=11)
    X_test, _, _, true_uplift = spend_world(4000, seed=12)
    gains = []
    for cls in (SLearner, TLearner, XLearner):  # the learners whose outcome models use the link
        corr = {}
        for objective in ("auto", "tweedie"):
            learner = cls(**PARAMS, objective=objective).fit(X, treatment, spend)
            assert learner.objective_ == ("regression" if objective == "auto" else "tweedie")
            corr[objective] = np.corrcoef(learner.predict(X_test)[:, 0], true_uplift)[0, 1]
        assert corr["tweedie"] > 0.7
        gains.append(corr["tweedie"] - corr["auto"])
    assert min(gains) > 0 and np.mean(gains) > 0.02  # measured 0.03-0.05 each


def test_tweedie_learners_fit_an_arm_where_nobody_spent():
    X, treatment, spend, _ = spend_world(3000, seed=13)
    treatment = np.where(np.arange(3000) % 10 == 0, "rare_offer", treatment)
    spend[treatment == "rare_offer"] = 0.0
    for cls in (TLearner, XLearner, DRLearner):
        learner = cls(**PARAMS, objective="tweedie").fit(X, treatment, spend)
        uplift = learner.predict(X)
        assert np.isfinite(uplift).all(), cls.__name__
        assert learner.actions_ == ["offer", "rare_offer"]
        assert uplift[:, 1].mean() < 0 < uplift[:, 0].mean()  # nobody spends after the rare offer


def test_aipw_pseudo_outcome_by_hand():
    # row 0 treated (y=1, mu_a=.6, p=.5), row 1 control (y=0, mu_c=.3, p=.25), row 2 other arm
    phi = aipw_pseudo_outcome(
        y=np.array([1.0, 0.0, 1.0]),
        in_arm=np.array([True, False, False]),
        in_control=np.array([False, True, False]),
        mu_arm=np.array([0.6, 0.5, 0.4]),
        mu_control=np.array([0.2, 0.3, 0.1]),
        propensity=np.array([0.5, 0.25, 0.9]),
    )
    assert np.allclose(phi, [0.4 + 0.4 / 0.5, 0.2 + 0.3 / 0.25, 0.3])


def test_x_learner_borrowing_the_t_learner_is_the_same_model() -> None:
    world = simulate(3000, seed=8, binary=False)
    args = (world.X, world.treatment, world.y, world.propensity)
    params = PARAMS | {"n_estimators": 30}
    t_learner = TLearner(**params).fit(*args)
    borrowed = XLearner(**params).fit(*args, first_stage=t_learner)
    own = XLearner(**params).fit(*args)
    np.testing.assert_array_equal(borrowed.predict(world.X), own.predict(world.X))
    assert not hasattr(borrowed, "_first_stage")  # nothing of the loan stays on the estimator


@pytest.mark.parametrize("cls", LEARNER_CLASSES)
def test_sharing_one_binning_of_x_is_the_same_model(cls) -> None:
    """Learners fitted on one `BinnedFeatures` of X (as uplift training shares it) predict
    exactly as if each had binned X itself; a binning of another matrix is refused."""
    world = simulate(3000, seed=9, binary=True)
    args = (world.X, world.treatment, world.y, world.propensity)
    params = PARAMS | {"n_estimators": 30}
    shared = cls(**params).fit(*args, binned=BinnedFeatures(world.X))
    own = cls(**params).fit(*args)
    np.testing.assert_array_equal(shared.predict(world.X), own.predict(world.X))
    assert not hasattr(shared, "_shared_bins")
    with pytest.raises(NextbestError, match="binned features"):
        cls(**params).fit(*args, binned=BinnedFeatures(world.X[:100]))
