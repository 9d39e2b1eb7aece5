"""The one-customer decision: the same ranking as batch scoring for the same features, and a
learning loop whose logged propensities are the real frequencies of its choices."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.batch.chunks import actions_table, score_chunk, unpack
from serving.online.decision import CONTROL, Decider, DecisionRequest, UnknownChannelError
from serving.online.fast_predict import accelerate
from serving.online.store import FeatureRow, namespace_rows, rule_names
from training.data.contract import open_dataset
from training.data.snapshots import active_spine
from training.features.definition import to_matrix
from training.policy.control import in_control
from training.registry.bundle import Bundle

AS_OF = date(2026, 11, 2)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A bundle with uplift learners, saved and loaded (a fresh copy this module may accelerate)."""
    from tests.training.registry.test_bundle import train_all
    from tests.training.uplift.test_fit import uplift_on

    base = train_all(small_world).bundle()
    learners = uplift_on(small_world).learners
    built = Bundle(base.builder, base.config, base.models, base.metadata, learners)
    return Bundle.load(built.save(tmp_path_factory.mktemp("decision") / "bundle"))


@pytest.fixture(scope="module")
def features(bundle: Bundle, small_world: Path) -> pd.DataFrame:
    with open_dataset(small_world).connect() as con:
        churn = bundle.config.outcome_for_role("churn")
        con.execute(f"CREATE TEMP TABLE _active AS {active_spine(con, AS_OF, churn and churn[1])}")
        return bundle.builder.transform(con, spine="_active").head(300)


def rows_of(bundle: Bundle, features: pd.DataFrame) -> list[FeatureRow]:
    """What the online store would hold for these customers."""
    matrix = to_matrix(bundle.prepare(features), bundle.builder.feature_names_)
    spaces = namespace_rows(features, rule_names(bundle))
    return [FeatureRow(v, ns) for v, ns in zip(matrix, spaces, strict=True)]


def with_decisioning(bundle: Bundle, **values: object) -> Bundle:
    config = bundle.config.model_copy(
        update={"decisioning": bundle.config.decisioning.model_copy(update=values)}
    )
    copy = Bundle(bundle.builder, config, bundle.models, bundle.metadata, bundle.uplift)
    copy.version = bundle.version
    return copy


def test_greedy_ranking_equals_the_batch_actions_table(bundle: Bundle, features) -> None:
    greedy = with_decisioning(bundle, control_share=0.0, exploration=0.0)
    # the batch job's own chunk function, with plain LightGBM predictions
    batch = actions_table(unpack(score_chunk(greedy, features), greedy.config))
    online = Decider(accelerate(greedy))
    rng = np.random.default_rng(0)
    offered = [a.id for a in bundle.config.catalog.actions if a.offered_on("email")]
    compared = 0
    for customer, row in zip(features["customer_id"], rows_of(bundle, features), strict=True):
        decision = online.decide(row, DecisionRequest(customer, "email", max_actions=20), None, rng)
        mine = batch[
            (batch["customer_id"] == customer)
            & (batch["expected_value"] > 0)
            & batch["action_id"].isin(offered)  # batch ranks over every channel
        ].sort_values("rank")
        assert decision.greedy == mine["action_id"].tolist()
        values = [a.expected_value for a in decision.actions]
        np.testing.assert_allclose(values, mine["expected_value"], rtol=1e-12)
        compared += bool(decision.greedy)
    assert compared > 20


def test_the_control_group_gets_nothing_with_its_propensity(bundle: Bundle, features) -> None:
    decider = Decider(with_decisioning(bundle, control_share=0.5, exploration=0.1))
    rng = np.random.default_rng(1)
    members = 0
    for customer, row in zip(features["customer_id"], rows_of(bundle, features), strict=True):
        decision = decider.decide(row, DecisionRequest(customer, "call_center"), None, rng)
        member = in_control(customer, 0.5, bundle.config.decisioning.control_salt)
        assert decision.control_group == member
        if member:
            members += 1
            assert decision.actions == [] and decision.chosen == CONTROL
            assert 0.5 < decision.propensity <= 1
    assert 100 < members < 200


def test_logged_propensities_are_the_frequencies_of_the_choices(bundle: Bundle, features) -> None:
    decider = Decider(with_decisioning(bundle, control_share=0.0, exploration=0.3))
    rows = rows_of(bundle, features)
    customer, row = next(
        (c, r)
        for c, r in zip(features["customer_id"], rows, strict=True)
        if len(
            decider.decide(
                r, DecisionRequest(c, "call_center"), None, np.random.default_rng(0)
            ).greedy
        )
        >= 2
    )
    rng = np.random.default_rng(2)
    draws = 6000
    seen: dict[str, int] = {}
    propensity: dict[str, float] = {}
    for _ in range(draws):
        decision = decider.decide(row, DecisionRequest(customer, "call_center"), None, rng)
        seen[decision.chosen] = seen.get(decision.chosen, 0) + 1
        propensity[decision.chosen] = decision.propensity
    assert abs(sum(propensity.values()) - 1) < 1e-9  # every arm was drawn: they sum to one
    for chosen, count in seen.items():
        p = propensity[chosen]
        assert abs(count / draws - p) < 4 * np.sqrt(p * (1 - p) / draws) + 1e-9, chosen


def test_nothing_to_choose_from_is_not_exploration(bundle: Bundle, features) -> None:
    decider = Decider(with_decisioning(bundle, control_share=0.0, exploration=0.5))
    row = rows_of(bundle, features)[0]
    everything = tuple(bundle.config.catalog.ids)
    rng = np.random.default_rng(0)
    for _ in range(50):
        ask = DecisionRequest(str(features["customer_id"].iloc[0]), "call_center", 3, everything)
        decision = decider.decide(row, ask, None, rng)
        assert decision.chosen == CONTROL and not decision.explored and decision.propensity == 1.0


def test_a_cold_start_is_decided_and_flagged(bundle: Bundle) -> None:
    decision = Decider(bundle).decide(
        None, DecisionRequest("new", "call_center"), None, np.random.default_rng(0)
    )
    assert decision.cold_start
    assert decision.scores["churn_probability"] is not None


def test_unknown_channels_and_actions_are_refused(bundle: Bundle) -> None:
    decider = Decider(bundle)
    with pytest.raises(UnknownChannelError, match="fax"):
        decider.check(DecisionRequest("c", "fax"))
    with pytest.raises(ValueError, match="nope"):
        decider.check(DecisionRequest("c", "chat", exclude=("nope",)))


def test_the_contact_policy_mask_removes_actions(bundle: Bundle, features) -> None:
    decider = Decider(with_decisioning(bundle, control_share=0.0, exploration=0.0))
    rng = np.random.default_rng(0)
    for customer, row in zip(features["customer_id"], rows_of(bundle, features), strict=True):
        request = DecisionRequest(customer, "email")
        free = decider.decide(row, request, None, rng)
        if free.greedy:
            blocked = np.array([a != free.greedy[0] for a in decider.action_ids])
            assert free.greedy[0] not in decider.decide(row, request, blocked, rng).greedy
            return
    pytest.fail("no customer with a recommendation")


def test_stored_model_outputs_decide_exactly_as_the_live_models(bundle: Bundle, features) -> None:
    from serving.online.store import model_outputs

    greedy = with_decisioning(bundle, control_share=0.0, exploration=0.0)
    rows = rows_of(greedy, features)
    matrix = np.vstack([r.vector for r in rows])
    stored = [FeatureRow(r.vector, r.namespace, o) for r, o in zip(rows, model_outputs(greedy, matrix), strict=True)]  # fmt: skip
    live, precomputed = Decider(greedy), Decider(greedy, stored_outputs=True)
    rng = np.random.default_rng(0)
    for customer, row, with_outputs in zip(features["customer_id"], rows, stored, strict=True):
        ask = DecisionRequest(customer, "email", max_actions=20)
        a, b = live.decide(row, ask, None, rng), precomputed.decide(with_outputs, ask, None, rng)
        assert a.greedy == b.greedy and a.scores == b.scores
        np.testing.assert_allclose(
            [x.expected_value for x in a.actions], [x.expected_value for x in b.actions], rtol=1e-12
        )
    assert precomputed.scores(None) == live.scores(None)  # a cold start is always live


def test_one_row_model_outputs_equal_the_batch_matrix(bundle: Bundle, features) -> None:
    """A live decision's model outputs (one row: FastBooster's single-row path, only the chosen
    learners' models, an S-learner's arms stacked in one call) are the store's batch outputs for
    the same rows (whole matrices, LightGBM's own predict), to the last bit."""
    from serving.online.store import model_outputs

    rows = rows_of(bundle, features)
    batch = model_outputs(bundle, np.vstack([r.vector for r in rows]))
    decider = Decider(accelerate(with_decisioning(bundle)))
    n = len(decider.score_columns)
    for row, expected in zip(rows, batch, strict=True):
        scores, uplift = decider.model_outputs(FeatureRow(row.vector, row.namespace))
        np.testing.assert_array_equal([scores[c] for c in decider.score_columns], expected[:n])
        np.testing.assert_array_equal(np.concatenate(list(uplift.values())), expected[n:])
    assert any(type(m).__name__ == "SelectedUplift" for m in bundle.uplift.values())
