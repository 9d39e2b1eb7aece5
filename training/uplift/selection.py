"""The uplift model a bundle serves for one outcome: per action, the learner that won on held-out
exposures, with a calibration of its predictions.

Meta-learners differ by action: an S-learner may rank a frequent action best while an X-learner
wins on a rare one. `SelectedUplift` keeps, for every action, the chosen learner's column and a
linear calibration `intercept + slope * prediction`, fitted on held-out exposures against
doubly-robust pseudo-outcomes (`calibration_line`). Raw meta-learner effects are mostly
over-dispersed (noise reads as heterogeneity), which makes a net-value policy act on noise; the
slope shrinks them towards their average by as much as the held-out data says, and never
stretches them (`MAX_SLOPE`): a slope above 1 fitted on a few thousand noisy pseudo-outcomes
mostly amplifies the noise of one fit.

Persistence is pickle-free like the learners': `to_dict` nests their `to_dict`s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from training.errors import NextbestError
from training.uplift.learners import UpliftLearner

FORMAT_VERSION = 1
SLOPE_PRIOR_SD = 0.5  # prior sd of the calibration slope around 1: data must speak to shrink
MAX_SLOPE = 1.0  # shrink only: the README's peer panel says why


class Line(NamedTuple):
    """Calibration of one action's predicted uplift: calibrated = intercept + slope * predicted."""

    intercept: float
    slope: float


def ols_slope(predicted: np.ndarray, pseudo: np.ndarray) -> tuple[float, float]:
    """(least-squares slope of `pseudo` on `predicted`, its standard error); (0, inf) when the
    predictions do not vary or the rows are too few."""
    predicted = np.asarray(predicted, dtype=np.float64)
    pseudo = np.asarray(pseudo, dtype=np.float64)
    centre, variance = float(predicted.mean()), float(np.var(predicted))
    if variance <= 0 or len(predicted) < 3:
        return 0.0, float("inf")
    slope = float(np.cov(predicted, pseudo, bias=True)[0, 1] / variance)
    residual = pseudo - pseudo.mean() - slope * (predicted - centre)
    se2 = float(np.var(residual)) / (variance * (len(predicted) - 2))
    return slope, float(np.sqrt(se2))


def calibration_line(
    predicted: np.ndarray, pseudo: np.ndarray, prior_sd: float = SLOPE_PRIOR_SD
) -> Line:
    """Shrink predictions towards their mean by the slope of DR pseudo-outcomes on them
    (`calibration_fit`'s line)."""
    return calibration_fit(predicted, pseudo, prior_sd)[0]


def calibration_fit(
    predicted: np.ndarray, pseudo: np.ndarray, prior_sd: float = SLOPE_PRIOR_SD
) -> tuple[Line, float]:
    """(the calibration line, the standard error of the raw least-squares slope behind it).

    E[pseudo | x] is the true effect, so the least-squares slope says how much of the
    predictions' spread is real. On few or very noisy rows that slope is itself noise, so it is
    combined with a prior centred on 1 ("trust the learner", sd `prior_sd`) by precision, then
    clipped to [0, MAX_SLOPE]: never inverted, never stretched. The mean prediction is kept (the
    held-out mean of pseudo-outcomes is too noisy to move it).
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    centre, variance = float(predicted.mean()), float(np.var(predicted))
    slope, se = ols_slope(predicted, pseudo)
    if variance <= 0 or len(predicted) < 3:
        return Line(centre, 0.0 if variance <= 0 else 1.0), se
    se2 = se**2
    posterior = (
        (slope / se2 + 1.0 / prior_sd**2) / (1.0 / se2 + 1.0 / prior_sd**2) if se2 > 0 else slope
    )
    slope = float(np.clip(posterior, 0.0, MAX_SLOPE))
    return Line(centre * (1.0 - slope), slope), se


class SelectedUplift:
    """Per action: which fitted learner predicts it and the calibration line; `predict` has the
    learners' interface (one column per action in `actions_`)."""

    def __init__(
        self,
        learners: dict[str, UpliftLearner],
        choice: dict[str, str],
        lines: dict[str, Line] | None = None,
    ) -> None:
        actions = sorted(choice)
        unknown = sorted(set(choice.values()) - set(learners))
        if unknown:
            raise NextbestError(f"SelectedUplift: no learner named {', '.join(unknown)}")
        for action, name in choice.items():
            if action not in learners[name].actions_:
                raise NextbestError(f"SelectedUplift: {name} never saw action '{action}'")
        used = set(choice.values())
        self.learners_ = {name: m for name, m in learners.items() if name in used}
        self.choice_ = dict(choice)
        self.lines_ = {
            a: Line(*lines[a]) if lines and a in lines else Line(0.0, 1.0) for a in actions
        }
        self.actions_ = actions
        self._columns = _columns_by_learner(actions, self.choice_)
        self._intercept = np.array([self.lines_[a].intercept for a in actions])
        self._slope = np.array([self.lines_[a].slope for a in actions])

    @property
    def n_features_in_(self) -> int:
        return next(iter(self.learners_.values())).n_features_in_

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated uplift: the chosen learner's column for every action (each learner
        predicts only the actions it was chosen for)."""
        raw = np.empty((len(X), len(self.actions_)), dtype=np.float64)
        for name, (actions, positions) in self._columns.items():
            raw[:, positions] = self.learners_[name].predict_actions(X, actions)
        return raw

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated uplift of each action vs control, (n, len(actions_))."""
        return self._intercept + self._slope * self.predict_raw(X)

    def predict_learners(self, X: np.ndarray, names: Sequence[str]) -> tuple[list[int], np.ndarray]:
        """`predict`'s columns of the actions the named learners predict, computed by those
        learners alone (the same numbers, bit for bit): (their columns in `actions_`, (n, len))."""
        positions: list[int] = []
        parts = []
        for name in names:
            chosen, at = self._columns[name]
            positions += at
            parts.append(self.learners_[name].predict_actions(X, chosen))
        raw = np.concatenate(parts, axis=1) if parts else np.empty((len(X), 0))
        return positions, self._intercept[positions] + self._slope[positions] * raw

    def describe(self) -> dict[str, str]:
        """Action -> "XLearner (slope 0.62)", for logs and reports."""
        return {a: f"{self.choice_[a]} (slope {self.lines_[a].slope:.2f})" for a in self.actions_}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "learners": {name: m.to_dict() for name, m in self.learners_.items()},
            "choice": self.choice_,
            "lines": {a: list(line) for a, line in self.lines_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectedUplift:
        if data.get("format_version") != FORMAT_VERSION or data.get("class") != cls.__name__:
            raise NextbestError(f"cannot load {data.get('class')} as {cls.__name__}")
        learners = {n: UpliftLearner.from_dict(d) for n, d in data["learners"].items()}
        lines = {a: Line(*v) for a, v in data["lines"].items()}
        return cls(learners, data["choice"], lines)


def _columns_by_learner(
    actions: list[str], choice: dict[str, str]
) -> dict[str, tuple[list[str], list[int]]]:
    """Learner name -> (the actions it predicts, their positions in `actions`)."""
    out: dict[str, tuple[list[str], list[int]]] = {}
    for position, action in enumerate(actions):
        chosen, positions = out.setdefault(choice[action], ([], []))
        chosen.append(action)
        positions.append(position)
    return out


UpliftModel = UpliftLearner | SelectedUplift


def base_learners(model: UpliftModel, action_id: str | None = None) -> list[UpliftLearner]:
    """The meta-learners behind a served uplift model (for one action: the one predicting it),
    for code that reaches into their boosters (fast one-row prediction, explanations)."""
    if isinstance(model, SelectedUplift):
        if action_id is not None and action_id in model.choice_:
            return [model.learners_[model.choice_[action_id]]]
        return list(model.learners_.values())
    return [model]


def load_uplift(data: dict[str, Any]) -> UpliftModel:
    """A served uplift model from its `to_dict` form, whichever class it is."""
    if data.get("class") == SelectedUplift.__name__:
        return SelectedUplift.from_dict(data)
    return UpliftLearner.from_dict(data)
