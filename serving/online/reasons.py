"""Reasons: two or three short sentences an agent can read out, never a raw feature name.

- Risk: the customer's churn probability and the feature that raises it most for *this* customer
  (TreeSHAP contributions of the churn model's booster, one row: a fraction of a millisecond).
- Fit: the features the action's uplift models split on most (gain over the boosters that model
  that action), phrased with this customer's values; learner-agnostic, precomputed per bundle.
- Value: the expected incremental value net of the action's cost, in the configured currency.

Features become text through `training.features.definition.feature_descriptions` ("complaints in the last
30 days"); counts read naturally ("2 complaints in the last 30 days"), other values follow a colon.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from training.features.definition import feature_descriptions
from training.registry.bundle import Bundle
from training.uplift.selection import base_learners

if TYPE_CHECKING:
    from serving.online.decision import RankedAction

TOP_FEATURES = 3  # candidate features per action; the first with a known value is used
COLD_START = "New or unknown customer: this answer uses the channel and population averages only."
_COUNT = re.compile(
    r"^(events|contacts|unresolved|complaints|purchases|actions|times|minutes|texts)\b"
)


def phrase(description: str, value: float | str) -> str:
    """One feature for an agent: "2 complaints in the last 30 days", "plan: premium"."""
    if isinstance(value, str):
        return f"{description}: {value}"
    if float(value).is_integer() and (_COUNT.match(description) or description.startswith("days")):
        count = int(value)
        return f"{count} {description}"
    return f"{description}: {value:.2f}".rstrip("0").rstrip(".")


class Explainer:
    """Reason sentences for a bundle's decisions; what does not depend on the customer is precomputed."""

    def __init__(self, bundle: Bundle) -> None:
        self.names = list(bundle.builder.feature_names_)
        self.descriptions = feature_descriptions(self.names, bundle.builder.topic_terms_)
        self.categories = {self.names.index(s.name): tuple(s.categories)
                           for s in bundle.builder.static_ if s.kind == "categorical"}  # fmt: skip
        churn = bundle.models.get("churn")
        self.churn_booster = getattr(churn, "booster_", None)
        self.currency = bundle.config.objective.currency
        self.cost = {a.id: a.cost for a in bundle.config.catalog.actions}
        self.drivers = {a: _uplift_drivers(bundle, a) for a in bundle.config.catalog.ids}
        self.request_names = {a.id: sorted(a.rule.request_names)
                              for a in bundle.config.catalog.actions
                              if a.rule is not None and a.rule.request_names}  # fmt: skip

    def _value(self, x: NDArray[np.float32], j: int) -> float | str | None:
        if np.isnan(x[j]):
            return None
        categories = self.categories.get(j)
        return categories[int(x[j])] if categories is not None else float(x[j])

    def _phrase(self, x: NDArray[np.float32], j: int) -> str | None:
        value = self._value(x, j)
        return None if value is None else phrase(self.descriptions[self.names[j]], value)

    def risk(self, x: NDArray[np.float32], churn_probability: float | None) -> str | None:
        """The churn probability and its strongest driver for this customer."""
        if self.churn_booster is None or churn_probability is None:
            return None
        contrib = self.churn_booster.predict(x[None, :], pred_contrib=True, num_threads=1)[0][:-1]
        for j in np.argsort(-contrib):
            if contrib[j] <= 0:
                break
            text = self._phrase(x, int(j))
            if text is not None:
                return f"Churn risk {churn_probability:.0%}, raised most by {text}."
        return f"Churn risk {churn_probability:.0%}."

    def fit(self, x: NDArray[np.float32], action_id: str) -> str | None:
        """What the action's predicted effect rests on, with this customer's value."""
        for j in self.drivers.get(action_id, []):
            text = self._phrase(x, j)
            if text is not None:
                return f"Its expected effect depends most on {text}."
        return None

    def request(self, action_id: str, inputs: Mapping[str, object]) -> str | None:
        """What of the request the action's rule read ("call reason: billing"), when it read any."""
        parts = []
        for name in self.request_names.get(action_id, ()):
            value = inputs.get(name)
            if value is None:
                continue
            what = name.removeprefix("context_").replace("_", " ")
            shown = str(value).replace("_", " ") if isinstance(value, str) else f"{value}"
            parts.append(f"{what}: {shown}")
        return f"Offered for this request, {', '.join(parts)}." if parts else None

    def value(self, action: RankedAction) -> str:
        cost = self.cost[action.action_id]
        if action.expected_value > 0:
            return (
                f"Expected to add {action.expected_value:.2f} {self.currency} "
                f"after its {cost:.2f} {self.currency} cost."
            )
        return f"Offered to learn: expected net value {action.expected_value:.2f} {self.currency}."

    def explain(
        self,
        x: NDArray[np.float32],
        actions: list[RankedAction],
        churn_probability: float | None,
        cold_start: bool,
        request: Mapping[str, object] | None = None,
    ) -> dict[str, list[str]]:
        """2-3 sentences per shown action: risk (or cold start), fit, value. For an action whose
        rule read the request (`request`: DecisionRequest.rule_inputs), what it read replaces the
        fit sentence: that is why it is offered now."""
        if not actions:
            return {}
        risk = COLD_START if cold_start else self.risk(x, churn_probability)
        out = {}
        for action in actions:
            fit = self.request(action.action_id, request or {})
            if fit is None and not cold_start:
                fit = self.fit(x, action.action_id)
            out[action.action_id] = [s for s in (risk, fit, self.value(action)) if s]
        return out


def _uplift_drivers(bundle: Bundle, action_id: str) -> list[int]:
    """Feature indices that drive the action's uplift most (its learners' `feature_gain`,
    summed over outcomes)."""
    n = len(bundle.builder.feature_names_)
    gain = np.zeros(n)
    for model in bundle.uplift.values():
        for learner in base_learners(model, action_id):
            if action_id in learner.actions_:
                gain += learner.feature_gain(action_id)[:n]
    order = [int(j) for j in np.argsort(-gain) if gain[j] > 0]
    return order[:TOP_FEATURES]
