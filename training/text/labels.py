"""Survey answers as text labels: each answer is negative, neutral or positive on its own scale.

The scales are the surveys' usual reading: NPS detractors (0-6), passives (7-8) and promoters
(9-10); CSAT 1-2, 3 and 4-5. A text paired with an answer learns that answer's class.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("negative", "neutral", "positive")
# survey type -> (largest negative answer, largest neutral answer)
SURVEY_CUTS: dict[str, tuple[float, float]] = {"nps": (6.0, 8.0), "csat": (2.0, 3.0)}


def answer_classes(answers: np.ndarray, survey_type: str) -> np.ndarray:
    """Class index (0 negative, 1 neutral, 2 positive) of each answer; -1 where it is missing."""
    if survey_type not in SURVEY_CUTS:
        raise ValueError(
            f"no answer scale for survey type {survey_type!r}: one of {list(SURVEY_CUTS)}"
        )
    low, mid = SURVEY_CUTS[survey_type]
    values = np.asarray(answers, dtype=np.float64)
    out = np.where(values <= low, 0, np.where(values <= mid, 1, 2))
    return np.where(np.isnan(values), -1, out).astype(np.int64)
