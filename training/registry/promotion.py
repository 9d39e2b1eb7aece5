"""Champion/challenger gate: move the `champion` alias to a bundle version only if it is not worse.

The candidate (a given version, else the latest) is compared with the current champion role by
role on each score model's main metric, read from the model-version tags `log_bundle` wrote (no
download). It is refused when, for any role both have, it is worse by more than `tolerance`
(absolute, in the metric's own unit), or when it lacks a role the champion has. `force` moves the
alias anyway. With no champion yet, the candidate becomes champion.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from training.errors import NextbestError
from training.registry.mlflow_models import CHAMPION, METRICS_TAG, REGISTERED_MODEL, resolve_version

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
class PromotionResult:
    """What `promote` compared and did."""

    candidate: str
    champion: str | None  # the champion before promotion (None: there was none)
    rows: tuple[Comparison, ...]
    promoted: bool  # whether the alias moved (or was set) to the candidate
    forced: bool
    tolerance: float
    reason: str

    @property
    def passed(self) -> bool:
        """Whether the candidate passed the gate on its own (without `force`)."""
        return all(row.ok for row in self.rows)


def promote(
    ref: str | None = None, force: bool = False, tolerance: float | None = None
) -> PromotionResult:
    """Compare a candidate version with the champion and move `@champion` if it passes (or `force`).

    `ref`: a version number or models:/nextbest/N (default: the latest version).
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
        reason = f"no champion yet: version {candidate.version} becomes champion"
        return PromotionResult(str(candidate.version), None, (), True, force, tol, reason)
    if str(champion.version) == str(candidate.version):
        reason = f"version {candidate.version} is already the champion"
        return PromotionResult(
            str(candidate.version), str(champion.version), (), False, force, tol, reason
        )
    rows = compare(_main_metrics(champion), _main_metrics(candidate), tol)
    passed = all(row.ok for row in rows)
    if passed or force:
        _move_alias(client, candidate.version, champion.version)
    reason = _reason(rows, passed, force, str(candidate.version), str(champion.version))
    return PromotionResult(
        str(candidate.version), str(champion.version), rows, passed or force, force, tol, reason
    )


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


def _reason(rows: tuple[Comparison, ...], passed: bool, force: bool, new: str, old: str) -> str:
    if passed:
        return f"version {new} is not worse than champion {old}: promoted"
    failed = ", ".join(f"{r.role} ({r.note})" for r in rows if not r.ok)
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
    """Print the comparison table (or, with nothing to compare, just the verdict)."""
    if result.rows:
        console.print(promotion_table(result))
    else:
        console.print(result.reason, highlight=False)
