"""The monotone-constraint table and its mapping onto feature names."""

from __future__ import annotations

from training.scores.constraints import monotone_constraints


def test_churn_constraints_follow_the_domain() -> None:
    names = [
        "complaints_30d",
        "complaint_count_365d",
        "unresolved_contacts_7d",
        "resolution_rate_90d",
        "contacts_30d",
        "days_since_last_complaint",
        "complaints_30d_extra",
        "plan",
    ]
    assert monotone_constraints("churn", names) == [1, 1, 1, -1, 0, 0, 0, 0]


def test_roles_without_rules_are_unconstrained() -> None:
    assert monotone_constraints("value", ["complaints_30d", "revenue_365d"]) == [0, 0]
    assert monotone_constraints("churn", []) == []
