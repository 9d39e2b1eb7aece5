"""Contact policy: cool-downs and 90-day caps from the actions a customer accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from training.config import Action, Catalog, SuppressAfterDeclines
from training.policy.contact import (
    Contact,
    allowed_mask,
    decline_lookback,
    declines_allowed,
    lookback,
)

NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)
CATALOG = Catalog(
    actions=(
        Action(id="credit", name="Credit", cost=4, cooldown_days=60),
        Action(id="call", name="Call", cost=8, max_per_90_days=2),
        Action(id="free", name="Free", cost=0),
    )
)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_nothing_received_allows_everything() -> None:
    assert allowed_mask(CATALOG, [], NOW).tolist() == [True, True, True]


def test_cooldown_blocks_until_it_has_passed() -> None:
    assert allowed_mask(CATALOG, [Contact("credit", days_ago(59))], NOW).tolist()[0] is False
    assert allowed_mask(CATALOG, [Contact("credit", days_ago(60))], NOW).tolist()[0] is True


def test_frequency_cap_counts_the_trailing_90_days() -> None:
    twice = [Contact("call", days_ago(10)), Contact("call", days_ago(80))]
    assert allowed_mask(CATALOG, twice, NOW).tolist()[1] is False
    once_recent = [Contact("call", days_ago(10)), Contact("call", days_ago(95))]
    assert allowed_mask(CATALOG, once_recent, NOW).tolist()[1] is True


def test_actions_without_limits_and_other_actions_are_untouched() -> None:
    many = [Contact("free", days_ago(d)) for d in range(5)] + [Contact("credit", days_ago(1))]
    assert allowed_mask(CATALOG, many, NOW).tolist() == [False, True, True]


def test_lookback_covers_the_longest_cooldown() -> None:
    long = Catalog(actions=(Action(id="a", name="A", cost=1, cooldown_days=180),))
    assert lookback(long) == timedelta(days=180)
    assert lookback(CATALOG) == timedelta(days=90)


DECLINING = Catalog(
    actions=(
        Action(
            id="discount",
            name="Discount",
            cost=15,
            suppress_after_declines=SuppressAfterDeclines(count=2, days=30),
        ),
        Action(id="credit", name="Credit", cost=4),
    )
)


def test_declines_suppress_after_count_within_days() -> None:
    once = [Contact("discount", days_ago(1))]
    assert declines_allowed(DECLINING, once, NOW).tolist() == [True, True]
    twice = [*once, Contact("discount", days_ago(29))]
    assert declines_allowed(DECLINING, twice, NOW).tolist() == [False, True]
    one_too_old = [*once, Contact("discount", days_ago(30))]
    assert declines_allowed(DECLINING, one_too_old, NOW).tolist() == [True, True]
    # an action without the field is never suppressed, however often it is declined
    many = [Contact("credit", days_ago(d)) for d in range(10)]
    assert declines_allowed(DECLINING, many, NOW).tolist() == [True, True]


def test_decline_lookback_is_the_longest_window() -> None:
    assert decline_lookback(DECLINING) == timedelta(days=30)
    assert decline_lookback(CATALOG) == timedelta(0)
    long = Catalog(
        actions=(
            Action(
                id="a",
                name="A",
                cost=1,
                suppress_after_declines=SuppressAfterDeclines(count=1, days=200),
            ),
        )
    )
    assert lookback(long) == timedelta(days=200)
