"""Writing batch output: candidates frames in chunk order -> `scores.parquet` and `actions.parquet`.

Both engines hand this module the same stream of candidates frames (serving.batch.chunks), so their
output is the same bytes. Each table is one Parquet file written a row group per chunk, with no
timestamps or run ids in it, so re-runs are byte-identical.

Without campaign constraints one pass suffices. With a budget or volume caps (training.policy.campaign)
the selection needs every customer first: pass 1 writes scores, keeps the compact allocation input
and spools each candidates frame to Parquet beside the output; pass 2 ranks each spooled chunk with
its slice of the allocation and writes `actions`. The spool lives inside the job's temporary
directory, so it disappears with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serving.batch.chunks import (
    CONTROL_COLUMN,
    SELECTED_COLUMN,
    actions_table,
    scores_table,
    unpack,
)
from training.config import Config
from training.policy.campaign import Allocation, AllocationInput, CampaignLimits

if TYPE_CHECKING:
    from serving.batch.contacts import SendLog

SCORES_FILE = "scores.parquet"
ACTIONS_FILE = "actions.parquet"
SPOOL_DIR = "_spool"


class Progress(Protocol):
    """Where a batch job reports progress (the CLI draws a Rich bar; None reports nothing)."""

    def phase(self, name: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class ParquetSink:
    """One Parquet file written frame by frame (a row group each), every frame cast to the first
    frame's schema so chunks of different content still share one schema."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._empty: pd.DataFrame | None = None

    def write(self, frame: pd.DataFrame) -> None:
        if len(frame) == 0:
            self._empty = frame if self._empty is None else self._empty
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table.cast(self._writer.schema))
        self.rows += len(frame)

    def close(self) -> None:
        """Finish the file; a sink that only saw empty frames writes an empty table."""
        if self._writer is not None:
            self._writer.close()
        elif self._empty is not None:
            self._empty.to_parquet(self.path, index=False)


@dataclass(frozen=True)
class OutputStats:
    """What a batch job wrote: customers scored, in the control group, action rows and selection."""

    customers: int
    control: int
    action_rows: int | None  # None: no actions table (no uplift models or an empty catalog)
    selected: int
    allocation: Allocation | None  # None: unconstrained
    recorded: int | None = None  # decisions recorded as contacts (None: not asked)


@dataclass(frozen=True)
class OutputSpec:
    """Everything the writer needs besides the frames."""

    config: Config
    model_version: str
    as_of: date
    customers: int  # the population's size (the allocation matrix is sized by it)
    with_actions: bool
    limits: CampaignLimits


def write_outputs(
    folder: Path,
    frames: Iterable[pd.DataFrame],
    spec: OutputSpec,
    progress: Progress | None = None,
    sends: SendLog | None = None,
) -> OutputStats:
    """Write scores (and actions) of every candidates frame into `folder`, in frame order;
    `sends` collects the decisions `--record-contacts` records."""
    progress = progress or _Silent()
    progress.phase("scoring", spec.customers)
    if spec.with_actions and spec.limits.binding:
        return _two_pass(folder, frames, spec, progress, sends)
    scores, actions = ParquetSink(folder / SCORES_FILE), ParquetSink(folder / ACTIONS_FILE)
    control = selected = 0
    for frame in frames:
        scores.write(scores_table(frame, spec.model_version, spec.as_of))
        control += int(frame[CONTROL_COLUMN].sum())
        if spec.with_actions:
            table = actions_table(unpack(frame, spec.config))
            actions.write(table)
            if sends is not None:
                sends.add(frame, table)
            selected += int(table[SELECTED_COLUMN].sum())
        progress.advance(len(frame))
    scores.close()
    if spec.with_actions:
        actions.close()
    rows = actions.rows if spec.with_actions else None
    return OutputStats(scores.rows, control, rows, selected, None)


def _two_pass(
    folder: Path,
    frames: Iterable[pd.DataFrame],
    spec: OutputSpec,
    progress: Progress,
    sends: SendLog | None,
) -> OutputStats:
    """Scores and the spool first, then the allocation, then actions from the spool."""
    spool = folder / SPOOL_DIR
    spool.mkdir()
    cost = np.array([a.cost for a in spec.config.catalog.actions], dtype=np.float64)
    values = AllocationInput(spec.customers, len(cost))
    scores = ParquetSink(folder / SCORES_FILE)
    control, parts = 0, []
    for i, frame in enumerate(frames):
        scores.write(scores_table(frame, spec.model_version, spec.as_of))
        control += int(frame[CONTROL_COLUMN].sum())
        values.add(unpack(frame, spec.config).allocatable())
        parts.append(spool / f"chunk-{i:05d}.parquet")
        frame.to_parquet(parts[-1], index=False)
        progress.advance(len(frame))
    scores.close()
    allocation = values.allocate(cost, spec.limits)
    del values
    progress.phase("allocating and ranking", spec.customers)
    actions, offset = ParquetSink(folder / ACTIONS_FILE), 0
    for part in parts:
        frame = pd.read_parquet(part)
        chunk = unpack(frame, spec.config)
        n = len(chunk.customer_id)
        table = actions_table(chunk, allocation.chosen[offset : offset + n])
        actions.write(table)
        if sends is not None:
            sends.add(frame, table)
        offset += n
        part.unlink()
        progress.advance(n)
    actions.close()
    shutil.rmtree(spool)
    return OutputStats(scores.rows, control, actions.rows, allocation.customers, allocation)
