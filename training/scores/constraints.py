"""Monotone constraints the domain demands, as one small table per score role.

A model must never say that more complaints or more unresolved contacts make a customer *less*
likely to leave, even where a thin slice of training data suggests it: agents act on these scores,
and eligibility rules and uplift assume the direction. LightGBM enforces the sign per feature.
"""

from __future__ import annotations

import re

# role -> [(full-match pattern on the feature name, +1 increasing / -1 decreasing)]
MONOTONE: dict[str, list[tuple[str, int]]] = {
    "churn": [
        (r"complaints_\d+d", +1),
        (r"complaint_count_\d+d", +1),
        (r"unresolved_contacts_\d+d", +1),
        (r"resolution_rate_\d+d", -1),
    ],
}


def monotone_constraints(role: str, names: list[str]) -> list[int]:
    """LightGBM's `monotone_constraints` for features `names`: the sign of the first matching rule
    of `role`, 0 (free) for every other feature and for roles without rules."""
    rules = [(re.compile(pattern), sign) for pattern, sign in MONOTONE.get(role, [])]
    return [next((sign for rx, sign in rules if rx.fullmatch(name)), 0) for name in names]
