"""`nextbest validate`: the data contract, the configuration, and how well the two fit together."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import duckdb

from training.config import LTV_SCORE, SCORE_NAMES, Config, check_eligibility_names, load_config
from training.data.contract import open_dataset, validate_dataset
from training.errors import ConfigError, NextbestError
from training.features.definition import FeatureBuilder

#: the scores eligibility rules may read besides the features, and the role that makes each
SCORE_ROLES: dict[str, str] = {name: role for role, name in SCORE_NAMES.items()} | {
    LTV_SCORE: "value"
}


def validate_all(data: Path | None, config_path: Path | None) -> list[str]:
    """Validate whatever was given and return report lines; raise on the first real problem."""
    if data is None and config_path is None:
        raise NextbestError("nothing to validate: give --data DIR, --config FILE or both")
    lines: list[str] = []
    config = load_config(config_path) if config_path is not None else None
    if config is not None:
        lines.append(
            f"config {config_path}: {len(config.outcomes)} outcomes, {len(config.catalog)} actions "
            f"(catalog version {config.catalog.version})"
        )
    if data is not None:
        known = config.catalog.ids if config is not None else None
        summary = validate_dataset(data, known_actions=known)
        lines += summary.lines()
        if config is not None:
            with open_dataset(data).connect() as con:
                check_rule_names(config, FeatureBuilder(config.features).fit(con).feature_names_)
                lines += outcome_notes(con, config)
    lines.append("OK: valid" + (" (data and config agree)" if data and config else ""))
    return lines


def check_rule_names(config: Config, features: Iterable[str]) -> None:
    """Every name an eligibility rule reads must be a feature of this data set, or a score whose
    role an outcome of the config has (a rule on a score that cannot exist is never true)."""
    roles = {spec.role for spec in config.outcomes.values()}
    for action, name, role in rule_scores(config):
        if role not in roles:
            raise ConfigError(
                f"{config.actions}: action '{action}': eligibility reads '{name}', but no "
                f"outcome has the {role} role"
            )
    try:
        check_eligibility_names(
            config.catalog, [*features, *SCORE_ROLES, *config.consent_rule_names]
        )
    except ConfigError as exc:
        raise ConfigError(f"{config.actions}: {exc}") from None
    check_consent_attributes(config, features)


def check_consent_attributes(config: Config, features: Iterable[str]) -> None:
    """Every `consent.<channel>` must name a customer attribute of the data (a boolean column of
    customers, a feature by the same name)."""
    known = set(features)
    for channel, attribute in config.consent.items():
        if attribute not in known:
            raise ConfigError(
                f"consent.{channel}: names '{attribute}', which is not a column of customers "
                "(a boolean: may the customer be contacted on this channel)"
            )


def check_rule_scores(config: Config, skipped: Mapping[str, str]) -> None:
    """No eligibility rule may read a score whose model training skipped (`skipped`: role ->
    why): the action would silently never be eligible."""
    for action, name, role in rule_scores(config):
        if role in skipped:
            raise ConfigError(
                f"{config.actions}: action '{action}': eligibility reads '{name}', but the "
                f"{role} score was not trained ({skipped[role]})"
            )


def rule_scores(config: Config) -> Iterator[tuple[str, str, str]]:
    """(action id, score name, its role) for every score an eligibility rule reads."""
    for action in config.catalog.actions:
        for name in sorted(action.rule.names if action.rule is not None else ()):
            if name in SCORE_ROLES:
                yield action.id, name, SCORE_ROLES[name]


def outcome_notes(con: duckdb.DuckDBPyConnection, config: Config) -> list[str]:
    """Say which outcomes have no events to learn from (their scores will be skipped)."""
    present = {t for (t,) in con.execute("SELECT DISTINCT event_type FROM events").fetchall()}
    notes = []
    for name, spec in config.outcomes.items():
        if not present & set(spec.event_types):
            what = f"the {spec.role} score" if spec.role else "its uplift"
            notes.append(
                f"note: outcome '{name}' has no {'/'.join(spec.event_types)} events; "
                f"training will skip {what}"
            )
    return notes
