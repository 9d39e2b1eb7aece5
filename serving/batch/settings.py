"""How a batch job runs (`nextbest score` options): engine, chunk size, budget, Dask cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.errors import NextbestError

Engine = Literal["local", "dask"]


@dataclass(frozen=True)
class BatchSettings:
    """How a batch job runs; none of it changes what it writes.

    `chunk_customers` bounds memory (one chunk's features and candidates at a time: ~1 KiB per
    customer with the demo's ~150 features). `scheduler` is a Dask scheduler address (None: a
    LocalCluster of `workers` single-threaded processes). `keep_runs` as-of partitions stay in the
    output, this run's counted (serving.batch.partitions). `text_cache` is the folder that keeps
    the text model's scores between runs (training.features.text_cache; None: every text is
    scored each run).
    """

    engine: Engine = "local"
    chunk_customers: int = 200_000
    budget: float | None = None
    scheduler: str | None = None
    workers: int = 2
    keep_runs: int = 7
    text_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.chunk_customers < 1:
            raise NextbestError(f"--chunk-size: {self.chunk_customers}; needs at least 1 customer")
        if self.budget is not None and self.budget < 0:
            raise NextbestError(f"--budget: {self.budget}; a budget cannot be negative")
        if self.workers < 1:
            raise NextbestError(f"--workers: {self.workers}; needs at least 1")
        if self.keep_runs < 1:
            raise NextbestError(f"--keep-runs: {self.keep_runs}; needs at least 1 (this run)")
