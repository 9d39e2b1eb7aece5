"""The served scores against the bundle's training reference, on /metrics: the same per-score
summaries as a batch run's drift (training.drift), for the decisions this service makes.

Per score and model version: `nextbest_score_bin_total` counts decisions per reference bin (a
counter: summed over workers it is the whole service's histogram), `nextbest_score_reference_share`
is the reference's share of each bin, and `nextbest_score_psi` / `nextbest_score_ks` /
`nextbest_score_drift` are the PSI, KS and flag (the bundle's `drift` thresholds) of this worker's
decisions since its bundle was loaded; across workers the worst live one is exported. They are
recomputed every `EVERY` decisions (a few microseconds of numpy), not on each.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping

import bentoml
import numpy as np

from training.config import DriftSettings
from training.drift.compare import ks, psi
from training.drift.profile import Reference, bin_of

EVERY = 16  # decisions between two recomputations of the gauges
MIN_DECISIONS = 100  # fewer decisions than this: no PSI/KS yet (too noisy to flag)

with warnings.catch_warnings():  # bentoml.metrics warns on the first use of each name (this
    # module is the service's first); its classes are the ones BentoML's multiprocess /metrics collects
    warnings.simplefilter("ignore", DeprecationWarning)
    Counter, Gauge = bentoml.metrics.Counter, bentoml.metrics.Gauge

BINS = Counter(
    name="nextbest_score_bin",
    documentation="Decisions per score and bin of the bundle's training reference",
    labelnames=["score", "bin", "model_version"],
)
REFERENCE = Gauge(
    name="nextbest_score_reference_share",
    documentation="The training reference's share of each score bin",
    labelnames=["score", "bin", "model_version"],
    multiprocess_mode="livemax",
)
PSI = Gauge(
    name="nextbest_score_psi",
    documentation="Population stability index of the served scores against the training "
    "reference (worst worker, since its bundle was loaded)",
    labelnames=["score", "model_version"],
    multiprocess_mode="livemax",
)
KS = Gauge(
    name="nextbest_score_ks",
    documentation="Kolmogorov-Smirnov distance of the served scores from the training reference",
    labelnames=["score", "model_version"],
    multiprocess_mode="livemax",
)
DRIFT = Gauge(
    name="nextbest_score_drift",
    documentation="1 when a score's PSI or KS crosses the bundle's drift thresholds",
    labelnames=["score", "model_version"],
    multiprocess_mode="livemax",
)


class ScoreWatch:
    """One worker's served-score histograms for one bundle (a new bundle gets a new watch)."""

    def __init__(self, reference: Reference | None, thresholds: DriftSettings, version: str):
        self.version = version
        self.thresholds = thresholds
        profile = reference.scores if reference is not None else None
        self._bins = dict(profile.binnings) if profile is not None else {}
        self._expected = {n: profile.shares(n) for n in self._bins} if profile else {}
        self._counts = {n: np.zeros(b.size, dtype=np.int64) for n, b in self._bins.items()}
        self._seen = 0
        self._lock = threading.Lock()
        for name, shares in self._expected.items():
            for i, share in enumerate(shares):
                REFERENCE.labels(score=name, bin=str(i), model_version=version).set(share)

    def observe(self, scores: Mapping[str, float | None]) -> None:
        """Count one decision's scores (the ones the reference bins)."""
        if not self._bins:
            return
        with self._lock:
            for name, binning in self._bins.items():
                index = bin_of(binning, scores.get(name))
                self._counts[name][index] += 1
                BINS.labels(score=name, bin=str(index), model_version=self.version).inc()
            self._seen += 1
            if self._seen >= MIN_DECISIONS and self._seen % EVERY == 0:
                self._publish()

    def summary(self) -> dict[str, tuple[float, float]]:
        """(PSI, KS) per score of the decisions counted so far."""
        with self._lock:
            return {n: self._distance(n) for n in self._bins}

    def _distance(self, name: str) -> tuple[float, float]:
        counts = self._counts[name]
        actual = counts / max(int(counts.sum()), 1)
        return psi(self._expected[name], actual), ks(self._expected[name], actual)

    def _publish(self) -> None:
        for name in self._bins:
            stability, distance = self._distance(name)
            labels = {"score": name, "model_version": self.version}
            PSI.labels(**labels).set(stability)
            KS.labels(**labels).set(distance)
            flagged = stability > self.thresholds.psi or distance > self.thresholds.ks
            DRIFT.labels(**labels).set(float(flagged))
