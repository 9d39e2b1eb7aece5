"""Drift of a batch run: its features, scores and decision mix against the bundle's training
reference and against the previous kept run (docs/batch.md#drift).

`RunWatch` profiles the run as it goes: each chunk's features on the way to scoring (one pass of
binned counts, training.drift), then the written scores and selected actions. `finish` writes the
run's profile (`_profile.json`, what the next run compares with) and the report (`_drift.json`).
Thresholds are the bundle's `drift` config unless the command line names another config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from serving.batch.chunks import SELECTED_COLUMN
from serving.batch.output import ACTIONS_FILE, SCORES_FILE
from training.config import DriftSettings
from training.drift.compare import ColumnDrift, MixShift, compare, mix_shift
from training.drift.profile import Profile, ProfileBuilder, Reference, fit_binning
from training.errors import NextbestError
from training.features.definition import to_matrix
from training.registry.bundle import Bundle

PROFILE_FILE = "_profile.json"
DRIFT_FILE = "_drift.json"
NO_ACTION = "none"


@dataclass(frozen=True)
class RunProfile:
    """What one run looked like: its features, scores and decision mix (`_profile.json`)."""

    as_of: date
    model_version: str
    features: Profile
    scores: Profile
    decision_mix: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "model_version": self.model_version,
            "features": self.features.to_dict(),
            "scores": self.scores.to_dict(),
            "decision_mix": self.decision_mix,
        }

    @classmethod
    def read(cls, path: Path) -> RunProfile:
        try:
            data = json.loads(path.read_text())
            mix = data["decision_mix"]
            return cls(
                date.fromisoformat(data["as_of"]),
                str(data["model_version"]),
                Profile.from_dict(data["features"]),
                Profile.from_dict(data["scores"]),
                None if mix is None else {str(k): float(v) for k, v in mix.items()},
            )
        except (OSError, KeyError, TypeError, ValueError, NextbestError) as exc:
            raise NextbestError(f"{path}: not a readable run profile ({exc})") from None


@dataclass(frozen=True)
class Comparison:
    """Features and scores of this run against one base (the reference or a previous run)."""

    against: str  # "reference" or the previous run's as-of date
    features: list[ColumnDrift]
    scores: list[ColumnDrift]

    @property
    def flagged(self) -> list[str]:
        return [c.name for c in (*self.scores, *self.features) if c.flagged]

    def to_dict(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "flagged": self.flagged,
            "scores": {c.name: c.to_dict() for c in self.scores},
            "features": {c.name: c.to_dict() for c in self.features},
        }


@dataclass(frozen=True)
class DriftReport:
    """The drift of one run: against the training reference, the previous run and its mix."""

    thresholds: DriftSettings
    reference: Comparison | None  # None: the bundle has no training reference
    previous: Comparison | None  # None: no earlier run kept
    mix: MixShift | None  # None: no earlier run with actions, or no actions now

    @property
    def flagged(self) -> bool:
        comparisons = (self.reference, self.previous)
        return any(c is not None and c.flagged for c in comparisons) or bool(
            self.mix is not None and self.mix.flagged
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "thresholds": self.thresholds.model_dump(),
            "reference": None if self.reference is None else self.reference.to_dict(),
            "previous": None if self.previous is None else self.previous.to_dict(),
            "decision_mix": None if self.mix is None else self.mix.to_dict(),
        }

    def manifest(self) -> dict[str, Any]:
        """The compact form the run's manifest carries (the details are in `_drift.json`)."""
        return {
            "flagged": self.flagged,
            "against_reference": None if self.reference is None else self.reference.flagged,
            "against_previous": None if self.previous is None else self.previous.flagged,
            "previous_as_of": None if self.previous is None else self.previous.against,
            "decision_mix": None if self.mix is None else self.mix.flagged,
            "details": DRIFT_FILE,
        }

    def lines(self) -> list[str]:
        """One line per comparison, for the command line."""
        out = []
        for comparison in (self.reference, self.previous):
            if comparison is None:
                continue
            what = "the training reference" if comparison.against == "reference" else (
                f"the run of {comparison.against}"
            )  # fmt: skip
            out.append(_line(what, comparison, self.thresholds))
        if self.mix is not None and self.mix.flagged:
            moved = ", ".join(f"{n} {self.mix.change[n]:+.1%}" for n in self.mix.flagged)
            out.append(
                f"drift: decision mix moved beyond {self.thresholds.decision_mix:.0%}: {moved}"
            )
        return out

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: per score PSI/KS, counts of flagged features, the largest feature PSI."""
        out: dict[str, float] = {"drift.flagged": float(self.flagged)}
        for key, comparison in (("reference", self.reference), ("previous", self.previous)):
            if comparison is None:
                continue
            for column in comparison.scores:
                out[f"drift.{key}.score.{column.name}.psi"] = column.psi
                if column.ks is not None:
                    out[f"drift.{key}.score.{column.name}.ks"] = column.ks
            flagged = sum(c.flagged for c in comparison.features)
            out[f"drift.{key}.features_flagged"] = float(flagged)
            out[f"drift.{key}.features_psi_max"] = max(
                (c.psi for c in comparison.features), default=0.0
            )
        if self.mix is not None:
            for name, share in self.mix.after.items():
                out[f"drift.decision_mix.{name}"] = share
        return out


def _line(what: str, comparison: Comparison, thresholds: DriftSettings) -> str:
    flagged = comparison.flagged
    if not flagged:
        return f"drift: none against {what} (PSI <= {thresholds.psi}, KS <= {thresholds.ks})"
    scores = [c for c in comparison.scores if c.flagged]
    features = sorted((c for c in comparison.features if c.flagged), key=lambda c: -c.psi)
    shown = [f"{c.name} (PSI {c.psi:.2f})" for c in [*scores, *features][:5]]
    more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
    return (
        f"drift against {what}: {len(scores)} score(s), {len(features)} feature(s) flagged: "
        f"{', '.join(shown)}{more}"
    )


class RunWatch:
    """Profiles a batch run: `features` per chunk during the run, `finish` once it is written."""

    def __init__(
        self,
        bundle: Bundle,
        as_of: date,
        thresholds: DriftSettings,
        previous: RunProfile | None = None,
    ) -> None:
        self.bundle = bundle
        self.as_of = as_of
        self.thresholds = thresholds
        self.previous = previous
        self.names = bundle.builder.feature_names_
        self._own: ProfileBuilder | None = None  # the run's bins (the reference's if any)
        self._theirs: ProfileBuilder | None = None  # the previous run's bins where they differ
        if bundle.reference is not None:
            self._own = bundle.reference.builders()[0]
        self._categories = {
            s.name: len(s.categories) for s in bundle.builder.static_ if s.kind == "categorical"
        }

    def features(self, frame: pd.DataFrame) -> None:
        """Count one chunk of FeatureBuilder rows."""
        X = to_matrix(self.bundle.prepare(frame), self.names)
        if self._own is None:  # no reference: the first chunk sets the bins
            self._own = ProfileBuilder(self._bins(X))
        if self._theirs is None and self.previous is not None:
            own, old = self._own.binnings, self.previous.features.binnings
            self._theirs = ProfileBuilder({n: b for n, b in old.items() if own.get(n) != b})
        self._own.add_matrix(X, self.names)
        if self._theirs is not None and self._theirs.binnings:
            self._theirs.add_matrix(X, self.names)

    def _bins(self, X: np.ndarray) -> dict[str, Any]:
        bins = self.thresholds.bins
        return {
            n: fit_binning(
                X[:, j],
                "categorical" if n in self._categories else "numeric",
                bins,
                self._categories.get(n, 0),
            )
            for j, n in enumerate(self.names)
        }

    def finish(self, folder: Path, model_version: str) -> DriftReport:
        """Profile the written scores and actions in `folder`, compare, write the profile and the
        report there, and return the report."""
        if self._own is None:
            raise NextbestError("drift: no chunk of features was profiled")
        features = self._own.profile()
        scores_table = pq.read_table(folder / SCORES_FILE, columns=list(self.bundle.trained_scores))
        columns = {
            n: scores_table[n].to_numpy(zero_copy_only=False) for n in scores_table.column_names
        }
        reference = self.bundle.reference
        scores = _score_profile(columns, reference, self.thresholds.bins)
        mix = _decision_mix(folder, features.rows)
        run = RunProfile(self.as_of, model_version, features, scores, mix)
        report = DriftReport(
            self.thresholds,
            None
            if reference is None
            else self._against("reference", reference.features, reference.scores, run),
            self._against_previous(run, columns),
            self._mix_shift(mix),
        )
        (folder / PROFILE_FILE).write_text(json.dumps(run.to_dict(), separators=(",", ":")))
        (folder / DRIFT_FILE).write_text(json.dumps(report.to_dict(), indent=1))
        return report

    def _against(
        self, label: str, features: Profile, scores: Profile, run: RunProfile
    ) -> Comparison:
        psi, ks = self.thresholds.psi, self.thresholds.ks
        return Comparison(
            label, compare(features, run.features, psi, ks), compare(scores, run.scores, psi, ks)
        )

    def _against_previous(
        self, run: RunProfile, columns: dict[str, np.ndarray]
    ) -> Comparison | None:
        previous = self.previous
        if previous is None:
            return None
        features = run.features
        if self._theirs is not None and self._theirs.binnings:  # re-binned on the previous bins
            theirs = self._theirs.profile()
            features = Profile(
                features.binnings | theirs.binnings, features.counts | theirs.counts, features.rows
            )
        scores = _rebinned(columns, previous.scores)
        return self._against(
            previous.as_of.isoformat(),
            previous.features,
            previous.scores,
            RunProfile(run.as_of, run.model_version, features, scores, run.decision_mix),
        )

    def _mix_shift(self, mix: dict[str, float] | None) -> MixShift | None:
        if mix is None or self.previous is None or self.previous.decision_mix is None:
            return None
        return mix_shift(self.previous.decision_mix, mix, self.thresholds.decision_mix)


def _score_profile(
    columns: dict[str, np.ndarray], reference: Reference | None, bins: int
) -> Profile:
    """The scores' profile on the reference's bins (or bins of their own without a reference)."""
    if reference is not None:
        binnings = {n: b for n, b in reference.scores.binnings.items() if n in columns}
    else:
        binnings = {n: fit_binning(v, "numeric", bins) for n, v in columns.items()}
    builder = ProfileBuilder(binnings)
    builder.add(columns, len(next(iter(columns.values()))) if columns else 0)
    return builder.profile()


def _rebinned(columns: dict[str, np.ndarray], base: Profile) -> Profile:
    builder = ProfileBuilder({n: b for n, b in base.binnings.items() if n in columns})
    builder.add(columns, len(next(iter(columns.values()))) if columns else 0)
    return builder.profile()


def _decision_mix(folder: Path, customers: int) -> dict[str, float] | None:
    """Each action's share of the run's customers among the selected rows; "none" for the rest."""
    path = folder / ACTIONS_FILE
    if not path.is_file() or customers == 0:
        return None
    table = pq.read_table(path, columns=["action_id", SELECTED_COLUMN])
    frame = table.to_pandas()
    chosen = frame.loc[frame[SELECTED_COLUMN], "action_id"].value_counts()
    mix = {str(a): int(n) / customers for a, n in sorted(chosen.items())}
    mix[NO_ACTION] = 1.0 - sum(mix.values())
    return mix


def read_previous(path: Path | None) -> RunProfile | None:
    """The previous run's profile in its partition, if it left one (runs before drift did not)."""
    if path is None or not (path / PROFILE_FILE).is_file():
        return None
    try:
        return RunProfile.read(path / PROFILE_FILE)
    except NextbestError:
        if not (path / PROFILE_FILE).exists():  # replaced by a run finishing meanwhile
            return None
        raise
