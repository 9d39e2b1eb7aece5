"""The decision for one customer: stored features + request context -> scores, uplift, net value,
eligibility, contact policy, ranking, then the learning loop (control group, exploration).

Pure: no I/O. The caller passes the stored features (None for a customer the store lacks: a
cold start, decided on the request's channel and the models' answer for unknown features), the
contact-policy mask and a random generator. Ranking is `training.policy.arbitration.rank_one` on
`training.policy.value.net_value`, exactly what batch scoring ranks, so for the same customer and features
the greedy ranking here equals rank 1.. of the batch `actions` table.

The learning loop (docs/api.md) makes every decision a draw from a known policy:
- customers of the global control group (`training.policy.control.in_control`) get no action;
- otherwise, with probability `exploration` the first action is drawn uniformly from the arms
  (every action the customer may receive, plus doing nothing), else it is the greedy best.
`propensity` is the probability of the logged first action (or of "control"), marginal over both:
the inverse-propensity weight the next training needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from serving.online.model_cells import ModelCells
from serving.online.store import FeatureRow
from training.config import CONTROL, SCORE_COLUMNS
from training.errors import ConfigError
from training.policy.arbitration import eligibility_mask, exclude_mask, rank_one
from training.policy.contact import ContactRules, PolicyMask
from training.policy.control import in_control
from training.policy.value import net_value
from training.registry.bundle import Bundle
from training.rules import CHANNEL_NAME, context_name
from training.uplift.arm_forest import load_kernel


class UnknownChannelError(ValueError):
    """The request names a channel no catalog action is offered on."""


class Allowed(NamedTuple):
    """What the contact policy allows one customer at a decision: the (k,) action mask on the
    request's channel (any channel for ""), the `consent_<channel>` names the rules read, the
    policy's parts (for the reason given when nothing is shown) and whether the customer has
    consent on no channel at all."""

    actions: NDArray[np.bool_]
    consent: dict[str, object]
    mask: PolicyMask
    nowhere: bool


@dataclass(frozen=True)
class DecisionRequest:
    """What the caller asks: who, on which channel, how many actions, which ones never, and the
    request's context (free key/values such as the call reason, which rules read)."""

    customer_id: str
    channel: str
    max_actions: int = 3
    exclude: tuple[str, ...] = ()
    context: Mapping[str, object] = field(default_factory=dict)

    def rule_inputs(self) -> dict[str, object]:
        """What eligibility rules read from the request: `channel` and `context_<key>`."""
        inputs = {context_name(k): v for k, v in self.context.items()}
        return inputs | {CHANNEL_NAME: self.channel}


@dataclass(frozen=True)
class RankedAction:
    """One recommended action with its value; `index` is its position in the catalog."""

    index: int
    action_id: str
    expected_value: float
    roi: float
    uplift: dict[str, float]


@dataclass(frozen=True)
class Decision:
    """The answer and what the decision log records about it."""

    scores: dict[str, float | None]
    actions: list[RankedAction]
    chosen: str  # the first action's id, or CONTROL when no action is shown
    propensity: float
    control_group: bool
    explored: bool
    cold_start: bool
    greedy: list[str] = field(default_factory=list)  # the ranking before the learning loop


@dataclass(frozen=True)
class Evaluation:
    """Everything computed for one customer before ranking, all (k,) in catalog order."""

    scores: dict[str, float]
    uplift: dict[str, NDArray[np.float64]]
    expected_value: NDArray[np.float64]
    roi: NDArray[np.float64]
    eligible: NDArray[np.bool_]


class Decider:
    """The bundle's one-customer decision function, with what can be precomputed done once."""

    def __init__(self, bundle: Bundle, stored_outputs: bool = False) -> None:
        """`stored_outputs`: the online store was materialized with this very bundle, so its rows'
        model outputs are what the models would compute (serving.online.store.model_outputs)."""

        self.bundle = bundle
        self.stored_outputs = stored_outputs
        self.catalog = bundle.config.catalog
        self.decisioning = bundle.config.decisioning
        self.action_ids = self.catalog.ids
        self.cost = np.array([a.cost for a in self.catalog.actions], dtype=np.float64)
        self.score_columns = SCORE_COLUMNS
        self.trained_scores = bundle.trained_scores
        self.n_features = len(bundle.builder.feature_names_)
        self._rule_features = self._rule_feature_decoders(bundle)
        self.channels = frozenset(c for a in self.catalog.actions for c in a.channels or ())
        self.rules = ContactRules.of(bundle.config)
        missing = sorted(set(self.rules.consent.values()) - set(self._rule_features))
        if missing:
            raise ConfigError(
                f"consent: the customer attribute '{missing[0]}' is not a feature of this bundle"
            )

    @staticmethod
    def _rule_feature_decoders(bundle: Bundle) -> dict[str, tuple[int, tuple[str, ...] | None]]:
        """For each feature a rule reads: its vector index and, if categorical, its categories."""
        names = bundle.builder.feature_names_
        categories = {s.name: tuple(s.categories) for s in bundle.builder.static_
                      if s.kind == "categorical"}  # fmt: skip
        read = {n for a in bundle.config.catalog.actions for n in a.names_read}
        read |= set(bundle.config.consent.values())  # consent attributes, read for the policy
        return {n: (names.index(n), categories.get(n)) for n in sorted(read & set(names))}

    # -- the steps ---------------------------------------------------------------------------

    def check(self, request: DecisionRequest) -> None:
        """Refuse an unknown channel or unknown action ids in `exclude` (the caller's mistakes)."""
        if self.channels and request.channel not in self.channels:
            known = ", ".join(sorted(self.channels))
            raise UnknownChannelError(f"unknown channel {request.channel!r} (channels: {known})")
        exclude_mask(self.action_ids, request.exclude)

    def scores(self, row: FeatureRow | None) -> dict[str, float | None]:
        """The three scores alone (null for an untrained one)."""
        scores, _ = self.model_outputs(row, with_uplift=False)
        return {name: _finite(value) for name, value in scores.items()}

    def model_outputs(
        self, row: FeatureRow | None, with_uplift: bool = True
    ) -> tuple[dict[str, float], dict[str, NDArray[np.float64]]]:
        """Scores and uplift per outcome ((k,) in catalog order): read from the store's row when it
        was materialized with this bundle, else from the models (cold starts, another bundle); a
        live row's memo gives the outputs of the models whose trees its row walks as before."""
        if self.stored_outputs and row is not None and row.outputs is not None:
            out, n = row.outputs, len(self.score_columns)
            scores = {name: float(out[i]) for i, name in enumerate(self.score_columns)}
            k = len(self.action_ids)
            uplift = {o: out[n + i * k : n + (i + 1) * k] for i, o in enumerate(self.bundle.uplift)}
            return scores, uplift
        X = self.vector(row)[None, :]
        memo = row.memo if row is not None else None
        # a live row: its last outputs, of the models whose trees' paths are the same
        kept, held = memo.reusable(self.bundle, self.cells, X[0]) if memo is not None else ({}, {})
        known = {name: np.array([value]) for name, value in held.items()}
        scores = {name: float(v[0]) for name, v in self.bundle.score_matrix(X, known).items()}
        if not with_uplift:
            return scores, {}
        uplift = {o: self._reused(X, o, *kept[o]) for o in kept if "" not in kept[o][1]}
        missing = [outcome for outcome in self.bundle.uplift if outcome not in uplift]
        fresh = self.bundle.uplift_matrix(X, missing) if missing else {}
        uplift = {o: uplift[o] if o in uplift else fresh[o][0] for o in self.bundle.uplift}
        if memo is not None and (
            missing or any(moved for _, moved in kept.values()) or held.keys() != self._scored
        ):
            memo.put(self.bundle, X[0], uplift, {name: scores[name] for name in self._scored})
        return scores, uplift

    def _reused(
        self, X: NDArray[np.float32], outcome: str, old: NDArray[np.float64], moved: list[str]
    ) -> NDArray[np.float64]:
        """The outcome's kept uplift with the actions of the `moved` learners computed anew."""
        if not moved:
            return old
        positions, values = self.bundle.uplift_of_learners(X, outcome, moved)
        new = old.copy()
        new[positions] = values[0]
        return new

    @cached_property
    def cells(self) -> ModelCells:
        """The uplift and score models' split thresholds, read once (`warm`, or the first live
        row)."""
        return ModelCells(self.bundle)

    @cached_property
    def _scored(self) -> set[str]:
        """The score columns a score model gives (the ones a live row's memo keeps)."""
        return set(self.cells.score_cuts)

    def warm(self) -> Decider:
        """Read what live rows need now (the models' trees' thresholds: ~0.1 s for 20 actions),
        load the S-learners' tree walk (numba: 1-2 s) and run the uplift models once on a blank
        row (each S-learner's arm masks for the actions it serves are made then), not on the
        first request of a customer with live events."""
        _ = self.cells  # a cached property: read once, kept
        load_kernel()
        self.bundle.uplift_matrix(self.vector(None)[None, :])
        return self

    def vector(self, row: FeatureRow | None) -> NDArray[np.float32]:
        """The model row: the stored vector, or all-missing for a cold start."""
        if row is None:
            return np.full(self.n_features, np.nan, dtype=np.float32)
        return row.vector

    def attribute(self, row: FeatureRow | None, name: str) -> float:
        """A numeric customer attribute (a consent flag) of the row; NaN when unknown."""
        if row is None or name not in self._rule_features:
            return np.nan
        value = row.namespace.get(name, row.vector[self._rule_features[name][0]])
        return float(value) if isinstance(value, int | float | np.floating) else np.nan

    def namespace(
        self,
        row: FeatureRow | None,
        scores: dict[str, float],
        request: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        """Rule inputs: the request's (DecisionRequest.rule_inputs), the scores, and the features:
        stored values (float64, category text), else decoded from the vector."""
        values: dict[str, object] = dict(scores)
        for name, (index, categories) in self._rule_features.items():
            if row is not None and name in row.namespace:
                values[name] = row.namespace[name]
            elif row is None or np.isnan(row.vector[index]):
                values[name] = None
            else:
                code = float(row.vector[index])
                values[name] = categories[int(code)] if categories is not None else code
        return values | dict(request or {})  # the request's names are the request's

    def evaluate(
        self, row: FeatureRow | None, channel: str, request: Mapping[str, object] | None = None
    ) -> Evaluation:
        """Scores, uplift, net value and eligibility of every catalog action for one customer;
        `request` holds the rule inputs of the request (DecisionRequest.rule_inputs)."""
        scores, uplift = self.model_outputs(row)
        known = {name: scores[name] for name in self.trained_scores}
        config = self.bundle.config
        value = net_value(uplift, known, self.cost, config.objective, config.outcomes)
        namespace = self.namespace(row, scores, request)
        # an empty channel (a trigger on an event of a channel the catalog lacks): any channel
        eligible = np.asarray(
            eligibility_mask(self.catalog, namespace, channel or None), dtype=bool
        )
        return Evaluation(scores, uplift, value.expected_value, value.roi, eligible)

    def decide(
        self,
        row: FeatureRow | None,
        request: DecisionRequest,
        allowed: NDArray[np.bool_] | None,
        rng: np.random.Generator,
        inputs: Mapping[str, object] | None = None,
    ) -> Decision:
        """The whole decision: evaluate, rank greedily, then apply the control group and
        exploration; `inputs` are more names for the rules (the customer's `consent_<channel>`)."""
        evaluation = self.evaluate(row, request.channel, request.rule_inputs() | dict(inputs or {}))
        mask = evaluation.eligible & exclude_mask(self.action_ids, request.exclude)
        if allowed is not None:
            mask &= allowed
        greedy = rank_one(evaluation.expected_value, mask, cost=self.cost)
        arms = np.flatnonzero(mask & np.isfinite(evaluation.expected_value))
        control_group = in_control(
            request.customer_id, self.decisioning.control_share, self.decisioning.control_salt
        )
        first, propensity, explored = self._learning_loop(greedy, arms, control_group, rng)
        order = [] if first is None else [first, *(j for j in greedy if j != first)]
        shown = [self._ranked(j, evaluation) for j in order[: request.max_actions]]
        return Decision(
            scores={n: _finite(evaluation.scores[n]) for n in self.score_columns},
            actions=shown,
            chosen=CONTROL if first is None else self.action_ids[first],
            propensity=propensity,
            control_group=control_group,
            explored=explored,
            cold_start=row is None,
            greedy=[self.action_ids[j] for j in greedy],
        )

    def _learning_loop(
        self,
        greedy: Sequence[int],
        arms: NDArray[np.intp],
        control_group: bool,
        rng: np.random.Generator,
    ) -> tuple[int | None, float, bool]:
        """(first action or None for control, its propensity, whether exploration chose it)."""
        share, epsilon = self.decisioning.control_share, self.decisioning.exploration
        best = greedy[0] if greedy else None
        candidates: list[int | None] = [*map(int, arms), None]  # None: do nothing

        def policy(arm: int | None) -> float:
            """Probability that a customer outside the control group gets `arm` first."""
            return (1 - epsilon) * (arm == best) + epsilon / len(candidates)

        explored = False
        if control_group:
            first = None
        elif epsilon > 0 and len(candidates) > 1 and rng.random() < epsilon:
            first, explored = candidates[int(rng.integers(len(candidates)))], True
        else:
            first = best
        propensity = (1 - share) * policy(first) + (share if first is None else 0.0)
        return first, float(propensity), explored

    def _ranked(self, j: int, evaluation: Evaluation) -> RankedAction:
        return RankedAction(
            index=j,
            action_id=self.action_ids[j],
            expected_value=float(evaluation.expected_value[j]),
            roi=float(evaluation.roi[j]),
            uplift={name: float(u[j]) for name, u in evaluation.uplift.items()},
        )


def _finite(value: float) -> float | None:
    """JSON has no NaN: an untrained score is null."""
    return value if np.isfinite(value) else None
