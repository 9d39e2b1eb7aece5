"""`nextbest promote`: the registry's gate, with both policies valued on the same held-out exposures.

The data judged on is `--data`, else the data set the candidate was trained on (its fingerprint's
root). A bundle without uplift models (scores only) is judged on its score metrics alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.config import load_config
from training.data.contract import open_dataset, validate_dataset
from training.errors import NextbestError
from training.evaluation.compare import compare_policies
from training.registry.mlflow_models import load_bundle
from training.registry.promotion import PromotionResult, ValueCheck
from training.registry.promotion import promote as gate


def promote(
    ref: str | None = None,
    force: bool = False,
    config_path: Path | None = None,
    data: Path | None = None,
) -> PromotionResult:
    """Run the gate: score metrics (`promotion.tolerance`) and the paired policy value
    (`promotion.max_value_loss`) of the candidate against `@champion`."""
    settings = load_config(config_path).promotion

    def judge(candidate: Any, champion: Any) -> ValueCheck | None:
        return value_check(candidate, champion, data, settings.max_value_loss)

    return gate(ref, force=force, tolerance=settings.tolerance, judge=judge)


def value_check(
    candidate: Any, champion: Any, data: Path | None, max_loss: float
) -> ValueCheck | None:
    """The paired value comparison of two registered versions, or None when either bundle has
    no policy to value (scores only)."""
    new = load_bundle(f"models:/{candidate.name}/{candidate.version}")
    old = load_bundle(f"models:/{champion.name}/{champion.version}")
    if not (
        new.uplift and new.config.catalog.actions and old.uplift and old.config.catalog.actions
    ):
        return None
    folder = data if data is not None else _trained_on(new.metadata.data, candidate.version)
    validate_dataset(folder, known_actions=new.config.catalog.ids)
    with open_dataset(folder).connect() as con:
        c = compare_policies(con, new, old)
    return ValueCheck(
        c.difference, c.difference_ci, c.candidate, c.champion, c.exposures, max_loss,
        c.currency, tuple(c.metrics().items()),
    )  # fmt: skip


def _trained_on(fingerprint: dict[str, Any], version: str) -> Path:
    root = fingerprint.get("root")
    if not root or not Path(root).is_dir():
        raise NextbestError(
            f"promote: the data version {version} was trained on ({root or 'unknown'}) is not "
            "here; give it with --data DIR"
        )
    return Path(root)
