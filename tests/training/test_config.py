"""Configuration and action catalog: the demo loads; every mistake is one line naming file and field."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from training.config import (
    DEMO_CONFIG,
    Action,
    Catalog,
    Config,
    check_eligibility_names,
    check_exposure_actions,
    load_catalog,
    load_config,
)
from training.errors import ConfigError

DEMO = yaml.safe_load(DEMO_CONFIG.read_text())
DEMO_ACTIONS = yaml.safe_load((DEMO_CONFIG.parent / "actions.yaml").read_text())


def test_packaged_demo_config_loads() -> None:
    config = load_config()
    assert config.snapshots.as_of == (
        date(2025, 11, 3),
        date(2026, 2, 2),
        date(2026, 5, 4),
        date(2026, 8, 3),
    )
    assert config.outcome_for_role("churn") == ("churn", config.outcomes["churn"])
    assert config.outcomes["satisfaction"].kind == "last"
    assert config.outcomes["visit"].role is None and config.outcomes["visit"].horizon_days == 14
    assert config.objective.retention_value == "ltv" and config.objective.satisfaction_weight == 2.0
    assert config.catalog.ids == (
        "retention_discount",
        "proactive_service_call",
        "apology_credit",
        "loyalty_upgrade",
        "premium_support_trial",
    )
    discount = config.catalog["retention_discount"]
    assert (discount.cost, discount.batch_volume_cap, discount.max_per_90_days) == (15.0, 20000, 1)
    assert discount.rule is not None and discount.rule.names == {"churn_probability"}
    assert all(action.name and action.script for action in config.catalog.actions)
    assert config.max_horizon_days == 90


def _write(tmp_path: Path, config: dict[str, object], actions: object = None) -> Path:
    (tmp_path / "actions.yaml").write_text(yaml.safe_dump(actions or DEMO_ACTIONS))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _demo(**changes: object) -> dict[str, object]:
    """A deep copy of the demo config with dotted-path changes (None value: delete the key)."""
    config = yaml.safe_load(yaml.safe_dump(DEMO))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return config


def _action_changes(index: int, **changes: object) -> dict[str, object]:
    actions = yaml.safe_load(yaml.safe_dump(DEMO_ACTIONS))
    for key, value in changes.items():
        if value is None:
            del actions["actions"][index][key]
        else:
            actions["actions"][index][key] = value
    return actions


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"objective__curency": "EUR"}, "config.yaml: objective.curency: unknown field"),
        (
            {"outcomes__churn__kind": "avg"},
            "config.yaml: outcomes.churn.kind: must be one of any, ",
        ),
        ({"objective__value_outcome": "revenue"}, "config.yaml: objective.value_outcome: names no"),
        ({"outcomes__visit__role": "churn"}, "config.yaml: outcomes.visit.role: role 'churn' is"),
        (
            {"outcomes__visit__horizon_days": 0},
            "config.yaml: outcomes.visit.horizon_days: must be >",
        ),
        (
            {"outcomes__visit__event_types": []},
            "config.yaml: outcomes.visit.event_types: must have",
        ),
        ({"objective__retention_value": "clv"}, "config.yaml: objective.retention_value: must be"),
        (
            {"objective__outcome_values": {"clicks": 1.0}},
            "config.yaml: objective.outcome_values.clicks: names no outcome",
        ),
        (
            {"objective__outcome_values": {"value": 1.0}},
            "config.yaml: objective.outcome_values.value: is the value_outcome already",
        ),
        (
            {"objective__outcome_values": {"visit": float("nan")}},
            "config.yaml: objective.outcome_values: must be finite numbers (got nan for 'visit')",
        ),
        ({"objective__lifetime_months": 0}, "config.yaml: objective.lifetime_months: must be >= 1"),
        ({"objective__discount_rate": 1.5}, "config.yaml: objective.discount_rate: must be < 1"),
        (
            {"objective__lifetime_months": 12, "outcomes__value__role": None},
            "config.yaml: objective.lifetime_months: needs an outcome with role 'value'",
        ),
        ({"snapshots__as_of": "soon"}, "config.yaml: snapshots.as_of: must be a non-empty list"),
        ({"snapshots__as_of": ["2026-13-01"]}, "config.yaml: snapshots.as_of: not a date"),
        ({"outcomes__churn__horizon": 3}, "config.yaml: outcomes.churn.horizon: unknown field"),
        ({"features__windows": "x"}, "config.yaml: features.windows: must be a list"),
        ({"catalog": {"actions": []}}, "config.yaml: catalog: unknown field"),
        ({"actions": "missing.yaml"}, "config.yaml: actions: file not found"),
        (
            {"contact_policy__max_contacts_per_month": 3},
            "config.yaml: contact_policy.max_contacts_per_month: unknown field (expected "
            "max_contacts_per_<N>_days",
        ),
        (
            {"contact_policy__max_contacts_per_0_days": 3},
            "config.yaml: contact_policy.max_contacts_per_0_days: unknown field",
        ),
        (
            {"contact_policy__max_contacts_per_30_days": 0},
            "config.yaml: contact_policy.max_contacts_per_30_days: must be an integer >= 1 (got 0)",
        ),
        (
            {"contact_policy__channels__email__max_per_week": 1},
            "config.yaml: contact_policy.channels.email.max_per_week: unknown field (expected "
            "max_per_<N>_days",
        ),
        (
            {"contact_policy__channels__email__max_per_7_days": "one"},
            "config.yaml: contact_policy.channels.email.max_per_7_days: must be an integer >= 1",
        ),
        (
            {"contact_policy__channels__email": [1]},
            "config.yaml: contact_policy.channels.email: must be a mapping",
        ),
        (
            {"contact_policy__channels__e-mail": {"max_per_7_days": 1}},
            "config.yaml: contact_policy.channels.e-mail: channel names use only",
        ),
        (
            {"contact_policy__channel": {"email": {"max_per_7_days": 1}}},
            "config.yaml: contact_policy.channel: unknown field",
        ),
        ({"consent": ["email"]}, "config.yaml: consent: must be a mapping"),
        (
            {"consent__email": "may we?"},
            "config.yaml: consent.email: must name a customer attribute",
        ),
    ],
)
def test_bad_config_gives_one_line_naming_file_and_field(
    tmp_path: Path, changes: dict[str, object], expected: str
) -> None:
    assert expected in _error(_write(tmp_path, _demo(**changes)))


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (_action_changes(2, eligibility="complaints_30d >"),
         "actions.yaml: actions[2].eligibility: cannot parse 'complaints_30d >' (invalid syntax)"),
        (_action_changes(2, eligibility="x.__class__"), "actions[2].eligibility: cannot use"),
        (_action_changes(1, cost=-1), "actions.yaml: actions[1].cost: must be >= 0 (got -1)"),
        (_action_changes(3, id="retention_discount"), "actions[3].id: duplicate id"),
        (_action_changes(0, name=None), "actions.yaml: actions[0].name: required field is missing"),
        (_action_changes(0, id="Retention Discount"), "actions[0].id: must use only a-z, 0-9"),
        (_action_changes(0, id="control"), "actions[0].id: 'control' is reserved"),
        (_action_changes(0, channel=["web"]), "actions[0].channel: unknown field (did you mean"),
        (_action_changes(0, channels=[]), "actions[0].channels: must have at least 1"),
        (_action_changes(0, suppress_after_declines={"count": 0, "days": 30}),
         "actions[0].suppress_after_declines.count: must be >= 1"),
        (_action_changes(0, suppress_after_declines={"count": 2}),
         "actions[0].suppress_after_declines.days: required field is missing"),
        (_action_changes(0, trigger="event_type ==="),
         "actions.yaml: actions[0].trigger: cannot parse"),
        (_action_changes(0, trigger_cooldown_minutes=5), "actions[0].trigger_cooldown_minutes: unknown"),
        (_action_changes(0, suppress_after_declines=3),
         "actions[0].suppress_after_declines"),
        ([{"id": "a"}], "actions.yaml: the top level must be a mapping"),
    ],
)  # fmt: skip
def test_bad_catalog_gives_one_line_naming_file_and_field(
    tmp_path: Path, actions: object, expected: str
) -> None:
    assert expected in _error(_write(tmp_path, _demo(), actions))


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("snapshots:\n  as_of: [2026-01-01\noutcomes: {}\n")
    assert _error(path).startswith(f"{path}: line ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("outcomes:\n  a: {kind: any}\n  a: {kind: sum}\n",
         "line 3: invalid YAML (duplicate key 'a')"),
        ("snapshots: {as_of: [2026-02-31]}\n", "line 1: invalid YAML (invalid date '2026-02-31'"),
        ("- just a list\n", "the top level must be a mapping of fields (got a list)"),
        ("", "(got an empty file)"),
    ],
)  # fmt: skip
def test_yaml_traps(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert expected in _error(path)


def test_missing_config_file(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.yaml").endswith("nope.yaml: file not found")


def test_empty_catalog_and_no_catalog_mean_scores_only(tmp_path: Path) -> None:
    assert len(load_config(_write(tmp_path, _demo(), {"actions": []})).catalog) == 0
    assert load_config(_write(tmp_path, _demo(actions=None))).catalog.ids == ()


def test_only_id_name_and_cost_are_required(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text("actions:\n  - {id: call_back, name: Call back, cost: 0}\n")
    action = load_catalog(path)["call_back"]
    assert action.rule is None and action.channels is None and action.offered_on("store")


def test_catalog_version_is_stable_and_content_sensitive() -> None:
    catalog = load_config().catalog
    same = Catalog.model_validate(yaml.safe_load(yaml.safe_dump(DEMO_ACTIONS)))
    assert catalog.version == same.version and len(catalog.version) == 12
    cheaper = Catalog.model_validate(_action_changes(0, cost=14))
    assert cheaper.version != catalog.version


def test_config_round_trips_through_a_dump() -> None:
    config = load_config()
    again = Config.model_validate(config.model_dump())
    assert again == config and again.catalog.version == config.catalog.version


def test_check_exposure_actions_names_the_missing_action() -> None:
    catalog = load_config().catalog
    check_exposure_actions(catalog, {"control", "apology_credit"})
    with pytest.raises(ConfigError, match="'winback_call'") as caught:
        check_exposure_actions(catalog, {"control", "winback_call", "apology_credit"})
    assert "apology_credit" not in str(caught.value) and "control" not in str(caught.value)


def test_check_eligibility_names_suggests_the_feature() -> None:
    catalog = load_config().catalog
    names = {"churn_probability", "contacts_90d", "complaints_90d", "complaints_30d", "plan"}
    names |= {"unresolved_contacts_30d", "days_since_signup_date"}
    check_eligibility_names(catalog, names)
    with pytest.raises(ConfigError, match="'apology_credit'.*'complaints_30d'"):
        check_eligibility_names(catalog, (names - {"complaints_30d"}) | {"complaints_7d"})


def test_rules_may_read_the_request_channel_and_any_context_key() -> None:
    rule = "context_call_reason == 'billing' and channel == 'call_center' and x > 1"
    catalog = Catalog(actions=(Action(id="a", name="A", cost=1, eligibility=rule),))
    check_eligibility_names(catalog, {"x"})
    with pytest.raises(ConfigError, match="unknown name 'x'"):
        check_eligibility_names(catalog, {"y"})


def test_triggers_read_the_event_and_the_customer() -> None:
    rule = "event_type == 'complaint' and channel == 'chat' and value < 5 and x > 1"
    catalog = Catalog(actions=(Action(id="a", name="A", cost=1, trigger=rule),))
    check_eligibility_names(catalog, {"x"})
    with pytest.raises(ConfigError, match="'a': trigger reads unknown name 'x'"):
        check_eligibility_names(catalog, {"y"})
    with pytest.raises(ConfigError, match="context"):  # request names are not an event's
        check_eligibility_names(
            Catalog(actions=(Action(id="b", name="B", cost=1, trigger="context_a == 1"),)), {"x"}
        )


def test_objective_may_omit_the_value_outcome(tmp_path: Path) -> None:
    """A churn-only data set (Telco) has no outcome that is money."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "outcomes:\n  churn: {role: churn, kind: any, event_types: [churn], horizon_days: 90}\n"
        "objective: {currency: USD}\n"
    )
    assert load_config(path).objective.value_outcome is None


def test_contact_policy_and_consent_load_typed_and_round_trip(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _demo(
            contact_policy__max_contacts_per_30_days=3,
            contact_policy__channels__email__max_per_7_days=1,
            contact_policy__channels__email__max_per_30_days=2,
            consent__email="paperless",
        ),
    )
    config = load_config(path)
    caps = config.contact_policy.channels["email"].caps
    assert [(c.days, c.limit) for c in caps] == [(7, 1), (30, 2)]
    assert [(c.days, c.limit) for c in config.contact_policy.total_caps] == [(30, 3)]
    assert config.consent == {"email": "paperless"}
    assert "consent_email" in config.consent_rule_names
    assert Config.model_validate(config.model_dump(mode="json", warnings=False)) == config
    assert load_config().contact_policy.empty and not load_config().consent
