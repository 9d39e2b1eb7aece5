"""Contact policy: cool-downs and 90-day caps from the actions a customer accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from training.config import Action, Catalog, Config, SuppressAfterDeclines, load_config
from training.policy.contact import (
    HISTORY_COLUMNS,
    ConsentEvents,
    Contact,
    ContactRules,
    History,
    PolicyMask,
    allowed_mask,
    consent_mask,
    consent_names,
    decline_lookback,
    declines_allowed,
    history_arrays,
    lookback,
    on_any_channel,
    policy_mask,
    suppression_reason,
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


# --- the vectorised policy: per action (as before), per channel, across actions, consent --------

MIXED = Catalog(
    actions=(
        Action(id="credit", name="Credit", cost=4, cooldown_days=60, channels=("email", "call")),
        Action(id="call", name="Call", cost=8, max_per_90_days=2, channels=("call",)),
        Action(
            id="discount",
            name="Discount",
            cost=15,
            suppress_after_declines=SuppressAfterDeclines(count=2, days=30),
        ),
    )
)


def config_with(**fields: object) -> Config:
    base = load_config()
    return Config.model_validate(
        base.model_dump(mode="json", warnings=False) | {"catalog": MIXED.model_dump()} | fields
    )


def history(rows: list[tuple[str, str, str, float, str]]) -> pd.DataFrame:
    """(customer, action, channel, days ago, outcome) rows as a contact-history frame."""
    return pd.DataFrame(
        [(c, a, ch, NOW - timedelta(days=d), o) for c, a, ch, d, o in rows],
        columns=list(HISTORY_COLUMNS),
    )


def mask_of(config: Config, rows: list[tuple[str, str, str, float, str]], ids: list[str],
            channels: tuple[str, ...]) -> PolicyMask:  # fmt: skip
    rules = ContactRules.of(config)
    return policy_mask(rules, history_arrays(history(rows), ids, rules), len(ids), NOW, channels)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["credit", "call", "discount", "gone"]),
            st.floats(-3, 120, allow_nan=False),
            st.sampled_from(["accepted", "declined", "sent", "ignored"]),
        ),
        max_size=12,
    )
)
def test_per_action_part_equals_the_rules_the_service_applied_alone(
    events: list[tuple[str, float, str]],
) -> None:
    rows = [("c1", a, "call", d, o) for a, d, o in events]
    mask = mask_of(config_with(), rows, ["c1"], ("call",))
    contacts = [Contact(a, days_ago(d)) for a, d, o in events if o in ("accepted", "sent")]
    declines = [Contact(a, days_ago(d)) for a, d, o in events if o == "declined"]
    expected = allowed_mask(MIXED, contacts, NOW) & declines_allowed(MIXED, declines, NOW)
    assert mask.per_action[0].tolist() == expected.tolist()
    assert mask.allowed().shape == (1, 3, 1)


def test_a_channel_cap_closes_the_channel_for_every_action() -> None:
    config = config_with(contact_policy={"channels": {"email": {"max_per_7_days": 1}}})
    rows = [("c1", "credit", "email", 2, "sent"), ("c2", "credit", "email", 8, "sent"),
            ("c3", "credit", "call", 1, "accepted"), ("c4", "credit", "email", 1, "declined")]  # fmt: skip
    mask = mask_of(config, rows, ["c1", "c2", "c3", "c4"], ("call", "email"))
    assert mask.channel_ok.tolist() == [[True, False], [True, True], [True, True], [True, True]]
    allowed = mask.allowed()
    assert not allowed[0, :, 1].any() and allowed[0, 1:, 0].all()
    assert suppression_reason(mask, 0, "email") == (
        "contact limit: the customer has had the most contacts allowed on email"
    )
    assert suppression_reason(mask, 0, "call") is None


def test_a_cap_across_actions_counts_every_action_and_channel() -> None:
    config = config_with(contact_policy={"max_contacts_per_30_days": 2})
    two = [("c1", "credit", "email", 40, "sent"), ("c1", "call", "call", 3, "accepted"),
           ("c1", "gone", "", 5, "sent"), ("c2", "call", "call", 3, "accepted"),
           ("c2", "discount", "call", 3, "declined")]  # fmt: skip
    mask = mask_of(config, two, ["c1", "c2"], ("call", "email"))
    assert mask.total_ok.tolist() == [False, True]
    assert not mask.allowed()[0].any() and mask.allowed()[1].any()
    assert "across all actions" in (suppression_reason(mask, 0, "call") or "")


def test_any_channel_takes_the_first_allowed_channel_the_action_is_offered_on() -> None:
    config = config_with(contact_policy={"channels": {"email": {"max_per_7_days": 1}}})
    rules = ContactRules.of(config)
    assert rules.channels == ("call", "email")
    mask = mask_of(config, [("c1", "credit", "call", 1, "sent")], ["c1", "c2"], rules.channels)
    allowed, first = on_any_channel(mask.allowed(), rules.offered(rules.channels))
    assert allowed.tolist() == [[False, True, True], [True, True, True]]  # credit: cool-down
    assert first.tolist() == [[-1, 0, 0], [0, 0, 0]]
    emailed = mask_of(config, [("c1", "call", "email", 1, "sent")], ["c1"], rules.channels)
    allowed, first = on_any_channel(emailed.allowed(), rules.offered(rules.channels))
    assert allowed.tolist() == [[True, True, True]] and first.tolist() == [[0, 0, 0]]


def test_consent_from_the_attribute_and_the_latest_event() -> None:
    config = config_with(consent={"email": "paperless"})
    rules = ContactRules.of(config)
    ids = ["yes", "no", "unknown", "out", "back", "late"]
    attribute = {"paperless": np.array([1.0, 0.0, np.nan, 1.0, 1.0, 1.0])}
    events = pd.DataFrame(
        [("out", NOW - timedelta(days=3), "email", "opt_out"),
         ("back", NOW - timedelta(days=3), "email", "opt_out"),
         ("back", NOW - timedelta(days=1), "email", "opt_in"),
         ("late", NOW + timedelta(days=1), "email", "opt_out"),   # after now: not yet
         ("yes", NOW - timedelta(days=1), "call", "opt_out"),
         ("no", NOW - timedelta(days=1), "email", "purchase")],
        columns=["customer_id", "ts", "channel", "event_type"],
    )  # fmt: skip
    consent = consent_mask(
        rules, len(ids), rules.channels, attribute, ConsentEvents.of(events, ids), NOW
    )
    assert consent is not None
    assert consent.tolist() == [[False, True], [True, False], [True, False], [True, False],
                                [True, True], [True, True]]  # fmt: skip
    assert consent_names(rules, rules.channels, consent)["consent_email"].tolist() == [
        True, False, False, False, True, True,
    ]  # fmt: skip
    mask = policy_mask(rules, History.empty(), len(ids), NOW, rules.channels, consent)
    assert not mask.allowed()[2, :, 1].any()
    assert suppression_reason(mask, 2, "email") == "no consent to be contacted on email"
    everything = consent.copy()
    everything[3] = False
    mask = policy_mask(rules, History.empty(), len(ids), NOW, rules.channels, everything)
    assert suppression_reason(mask, 3, "call", consent_nowhere=True) == (
        "no consent: the customer has opted out of every channel"
    )
    assert consent_mask(config_with(), 2, ("call",), {}, ConsentEvents.of(events, ids), NOW) is None


def test_an_opt_out_wins_a_tie_with_an_opt_in() -> None:
    config = config_with(consent={"email": "paperless"})
    rules = ContactRules.of(config)
    same = NOW - timedelta(days=1)
    events = pd.DataFrame(
        [("c", same, "email", "opt_out"), ("c", same, "email", "opt_in")],
        columns=["customer_id", "ts", "channel", "event_type"],
    )
    consent = consent_mask(
        rules, 1, ("email",), {"paperless": np.array([1.0])}, ConsentEvents.of(events, ["c"]), NOW
    )
    assert consent is not None and consent.tolist() == [[False]]


def test_an_acceptance_is_refused_over_its_own_limits_or_the_caps_of_the_policy() -> None:
    from training.policy.contact import acceptance_allowed

    def ok(config: Config, rows: list[tuple[str, str, str, float, str]], index: int,
           channel: str) -> bool:  # fmt: skip
        others = [(c, a, ch, NOW - timedelta(days=d), o) for c, a, ch, d, o in rows]
        return acceptance_allowed(ContactRules.of(config), others, index, channel, NOW)

    plain = config_with()
    others = [("c1", "discount", "call", 3, "accepted"), ("c1", "call", "call", 40, "sent")]
    assert ok(plain, others, 1, "call")  # no cap across actions: one call in 90 days
    assert not ok(plain, [("c1", "credit", "call", 5, "sent")], 0, "call")  # a batch send cools
    assert ok(plain, [("c1", "credit", "call", 5, "declined")], 0, "call")  # a decline does not
    total = config_with(contact_policy={"max_contacts_per_30_days": 2})
    assert ok(total, others, 1, "call")  # one in 30 days: a second is fine
    assert ok(total, [*others, ("c1", "credit", "", 70, "accepted")], 1, "call")  # outside
    assert not ok(total, [*others, ("c1", "credit", "email", 1, "sent")], 1, "call")
    capped = config_with(contact_policy={"channels": {"email": {"max_per_7_days": 1}}})
    emailed = [("c1", "discount", "email", 2, "sent")]
    assert not ok(capped, emailed, 1, "email")  # the channel's cap, from a batch send
    assert ok(capped, emailed, 1, "call")  # another channel
    assert ok(capped, emailed, 1, "")  # any channel: the call channel is still open
