"""`nextbest validate`: the data contract, the configuration, and how well the two fit together."""

from __future__ import annotations

from pathlib import Path

import duckdb

from training.config import Config, check_eligibility_names, load_config
from training.contract import open_dataset, validate_dataset
from training.errors import ConfigError, NextbestError
from training.features import FeatureBuilder

#: the scores every eligibility rule may read besides the features
SCORE_NAMES = ("churn_probability", "satisfaction", "ltv")


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
                check_rule_names(con, config)
                lines += outcome_notes(con, config)
    lines.append("OK: valid" + (" (data and config agree)" if data and config else ""))
    return lines


def check_rule_names(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Every name an eligibility rule reads must be a feature of this data set or a score."""
    features = FeatureBuilder(config.features).fit(con).feature_names_
    try:
        check_eligibility_names(config.catalog, [*features, *SCORE_NAMES])
    except ConfigError as exc:
        raise ConfigError(f"{config.actions}: {exc}") from None


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
