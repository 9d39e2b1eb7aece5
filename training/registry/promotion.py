"""Champion/challenger gate: move the `champion` alias to a bundle version only if it is not worse.

The candidate (a given version, else the latest) is compared with the current champion role by
role on each score model's main metric, read from the model-version tags `log_bundle` wrote (no
download). It is refused when, for any role both have, it is worse by more than `tolerance`
(absolute, in the metric's own unit), or when it lacks a role the champion has. When a `judge` is
given (the pipeline's: both policies valued on the same held-out exposures), it is also refused
when its policy's value is below the champion's by more than `max_value_loss` per customer with 95%
confidence. `force` moves the alias anyway. With no champion yet, the candidate becomes champion.
The candidate gets the `challenger` alias either way, and the comparison is logged on its run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from training.errors import NextbestError
from training.registry.mlflow_models import (
    CHALLENGER,
    CHAMPION,
    METRICS_TAG,
    REGISTERED_MODEL,
    resolve_version,
)

DEFAULT_TOLERANCE = 0.01


@dataclass(frozen=True)
class Comparison:
    """One role: the main metric of champion and candidate, candidate - champion, and the verdict."""

    role: str
    metric: str
    champion: float | None
    candidate: float | None
    delta: float | None
    ok: bool
    greater_is_better: bool = True
    note: str = ""


@dataclass(frozen=True)
class ValueCheck:
    """The candidate's policy value minus the champion's, per customer, paired on the same held-out
    rows, with its 95% half-width; the check fails when even the interval's upper end is below
    `-max_loss` (the candidate is worse beyond the tolerance with 95% confidence)."""

    difference: float
    half_width: float
    candidate: float
    champion: float
    exposures: int
    max_loss: float
    currency: str = ""
    metrics: tuple[tuple[str, float], ...] = ()  # extra MLflow metrics of the comparison

    @property
    def ok(self) -> bool:
        return bool(self.difference + self.half_width >= -self.max_loss)

    def line(self) -> str:
        """The comparison in one line."""
        unit = f" {self.currency}" if self.currency else ""
        return (
            f"policy value (DR, {self.exposures:,} held-out exposures): candidate "
            f"{self.candidate:+.2f}, champion {self.champion:+.2f}{unit}/customer; difference "
            f"{self.difference:+.2f} ± {self.half_width:.2f} (95%), tolerance {self.max_loss:g}"
        )


class Judge(Protocol):
    """Values candidate and champion (MLflow ModelVersions) on the same rows."""

    def __call__(self, candidate: Any, champion: Any) -> ValueCheck | None: ...


@dataclass(frozen=True)
class PromotionResult:
    """What `promote` compared and did."""

    candidate: str
    champion: str | None  # the champion before promotion (None: there was none)
    rows: tuple[Comparison, ...]
    promoted: bool  # whether the alias moved (or was set) to the candidate
    forced: bool
    tolerance: float
    reason: str
    value: ValueCheck | None = None  # the decision-value comparison (None: not judged)

    @property
    def passed(self) -> bool:
        """Whether the candidate passed the gate on its own (without `force`)."""
        return all(row.ok for row in self.rows) and (self.value is None or self.value.ok)


def promote(
    ref: str | None = None,
    force: bool = False,
    tolerance: float | None = None,
    judge: Judge | None = None,
) -> PromotionResult:
    """Compare a candidate version with the champion and move `@champion` if it passes (or `force`).

    `ref`: a version number or models:/nextbest/N (default: the latest version). `judge`: values
    both policies on the same held-out rows (without it only the score metrics are compared).
    """
    from mlflow import MlflowClient

    tol = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
    if not math.isfinite(tol) or tol < 0:
        raise NextbestError(f"promotion tolerance must be a number >= 0 (got {tolerance!r})")
    candidate = resolve_version(ref) if ref is not None else _latest_version()
    champion = _champion()
    client = MlflowClient()
    if champion is None:
        _move_alias(client, candidate.version, None)
        client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, str(candidate.version))
        reason = (
            f"no champion yet: version {candidate.version} becomes champion "
            "(nothing to compare its decisions with)"
        )
        return PromotionResult(str(candidate.version), None, (), True, force, tol, reason)
    if str(champion.version) == str(candidate.version):
        reason = f"version {candidate.version} is already the champion"
        return PromotionResult(
            str(candidate.version), str(champion.version), (), False, force, tol, reason
        )
    rows = compare(_main_metrics(champion), _main_metrics(candidate), tol)
    value = judge(candidate, champion) if judge is not None else None
    passed = all(row.ok for row in rows) and (value is None or value.ok)
    client.set_registered_model_alias(REGISTERED_MODEL, CHALLENGER, str(candidate.version))
    if passed or force:
        _move_alias(client, candidate.version, champion.version)
    reason = _reason(rows, value, passed, force, str(candidate.version), str(champion.version))
    result = PromotionResult(
        str(candidate.version), str(champion.version), rows, passed or force, force, tol, reason,
        value,
    )  # fmt: skip
    _log_comparison(client, candidate, result)
    return result


def compare(
    champion: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]], tolerance: float
) -> tuple[Comparison, ...]:
    """One row per role of either side: ok when the candidate is at most `tolerance` worse."""
    roles = sorted(set(champion) | set(candidate))
    return tuple(_compare_role(r, champion.get(r), candidate.get(r), tolerance) for r in roles)


def _compare_role(
    role: str, old: dict[str, Any] | None, new: dict[str, Any] | None, tolerance: float
) -> Comparison:
    """One role's verdict. Fails: a role the candidate lacks, a changed metric, a NaN candidate."""
    if new is None:
        assert old is not None
        higher, value = bool(old["greater_is_better"]), float(old["value"])
        return Comparison(role, old["metric"], value, None, None, False, higher, "missing")
    higher, b = bool(new["greater_is_better"]), float(new["value"])
    if old is None:
        return Comparison(role, new["metric"], None, b, None, True, higher, "new role")
    if old["metric"] != new["metric"]:
        note = f"metric changed from {old['metric']}: not comparable"
        return Comparison(role, new["metric"], None, b, None, False, higher, note)
    a = float(old["value"])
    if not math.isfinite(b):
        return Comparison(role, new["metric"], a, b, None, False, higher, "candidate has no value")
    if not math.isfinite(a):
        return Comparison(role, new["metric"], a, b, None, True, higher, "champion has no value")
    delta = b - a
    worse_by = -delta if higher else delta
    ok = worse_by <= tolerance
    note = "" if ok else f"worse by {worse_by:.4g} > {tolerance:g}"
    return Comparison(role, new["metric"], a, b, delta, ok, higher, note)


def _reason(
    rows: tuple[Comparison, ...], value: ValueCheck | None, passed: bool, force: bool, new: str,
    old: str,
) -> str:  # fmt: skip
    if passed:
        return f"version {new} is not worse than champion {old}: promoted"
    failures = [f"{r.role} ({r.note})" for r in rows if not r.ok]
    if value is not None and not value.ok:
        worse = f"{value.difference:+.2f} ± {value.half_width:.2f}{' ' + value.currency if value.currency else ''}"
        failures.insert(0, f"policy value ({worse}/customer vs the champion, "
                        f"beyond the tolerance {value.max_loss:g})")  # fmt: skip
    failed = ", ".join(failures)
    if force:
        return f"version {new} failed on {failed}; promoted anyway (--force)"
    return f"version {new} refused, champion stays {old}: {failed}"


# ------------------------------------------------------------------------------ registry
def _latest_version() -> Any:
    """The highest version of the registered model; none is a one-line NextbestError."""
    from mlflow import MlflowClient

    from training.registry.tracking import configure_tracking

    configure_tracking()
    versions = MlflowClient().search_model_versions(f"name = '{REGISTERED_MODEL}'")
    if not versions:
        raise NextbestError("no registered bundle yet: run `make train` first")
    return max(versions, key=lambda mv: int(mv.version))


def _champion() -> Any | None:
    """The champion's ModelVersion, or None when there is no champion."""
    try:
        return resolve_version(f"models:/{REGISTERED_MODEL}@{CHAMPION}")
    except NextbestError:
        return None


def _main_metrics(mv: Any) -> dict[str, dict[str, Any]]:
    """role -> {metric, value, greater_is_better} from a version's tags."""
    text = (mv.tags or {}).get(METRICS_TAG)
    if text is None:
        raise NextbestError(
            f"version {mv.version} of '{mv.name}' has no tag {METRICS_TAG}: not logged by nextbest"
        )
    metrics: dict[str, dict[str, Any]] = json.loads(text)
    return metrics


def _move_alias(client: Any, version: str, previous: str | None) -> None:
    """Point @champion at `version`, recording when and which version it replaced."""
    name = REGISTERED_MODEL
    client.set_registered_model_alias(name, CHAMPION, str(version))
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(version), "nextbest.promoted_at", now)
    if previous is not None:
        client.set_model_version_tag(name, str(version), "nextbest.replaced", str(previous))


def _log_comparison(client: Any, candidate: Any, result: PromotionResult) -> None:
    """The comparison as metrics and tags on the candidate's training run (when it has one)."""
    run_id = getattr(candidate, "run_id", None)
    if not run_id:
        return
    metrics = {
        "promotion.passed": float(result.passed),
        "promotion.promoted": float(result.promoted),
    }
    for row in result.rows:
        if row.delta is not None and math.isfinite(row.delta):
            metrics[f"promotion.{row.role}.{row.metric}_delta"] = row.delta
    if result.value is not None:
        metrics |= dict(result.value.metrics)
    for key, value in metrics.items():
        if math.isfinite(value):
            client.log_metric(run_id, key, value)
    client.set_tag(run_id, "promotion.champion_version", result.champion or "")
    client.set_tag(run_id, "promotion.reason", result.reason[:5000])


# -------------------------------------------------------------------------------- output
def promotion_table(result: PromotionResult) -> Table:
    """The comparison as a Rich table, its verdict in the caption."""
    title = f"candidate v{result.candidate} vs champion " + (
        f"v{result.champion}" if result.champion else "(none)"
    )
    table = Table(title=title, caption=result.reason)
    for column in ("role", "metric", "champion", "candidate", "delta", "ok", "note"):
        justify = "right" if column in ("champion", "candidate", "delta") else "left"
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in result.rows:
        arrow = "↑" if row.greater_is_better else "↓"
        table.add_row(
            row.role,
            f"{row.metric} {arrow}",
            _number(row.champion),
            _number(row.candidate),
            _number(row.delta, signed=True),
            "[green]yes[/]" if row.ok else "[red]no[/]",
            row.note,
        )
    return table


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def render(result: PromotionResult, console: Console) -> None:
    """Print the comparison table and the policy-value line (or, with nothing to compare, just
    the verdict)."""
    if result.rows:
        console.print(promotion_table(result))
    if result.value is not None:
        console.print(result.value.line(), highlight=False)
    if not result.rows:
        console.print(result.reason, highlight=False)
