"""The Dask batch engine (`nextbest score --engine dask`): the same chunk scoring on a cluster.

1. Features: DuckDB computes each chunk's features here (the same chunks as the local engine) and
   writes them as one Parquet part per chunk in a staging folder inside the job's temporary output
   directory — workers must see it (a LocalCluster does; on a real cluster put `--out` on shared
   storage).
2. Scoring: as soon as a part is written, `dask.dataframe.read_parquet` of it and
   `map_partitions(score_partition)` go to the cluster (so features of the next chunk overlap the
   scoring of this one); score_partition runs serving.batch.chunks.score_chunk with the bundle that a
   WorkerPlugin loaded once per worker.
   The bundle travels as the bytes of its folder (JSON + LightGBM text; no pickled model) and is
   read with `Bundle.load`, exactly as the service reads it; the code must already be installed on
   the workers (same nextbest version: checked before anything runs).
3. Results come back in partition order, at most `IN_FLIGHT_PER_WORKER` per worker at a time, to the
   same writer as the local engine (serving.batch.output), so the two engines write the same bytes.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
from distributed.diagnostics.plugin import WorkerPlugin

from serving.batch.chunks import empty_candidates, score_chunk
from serving.batch.population import AddsConsent, Population, Watch, iter_features, watched
from serving.batch.settings import BatchSettings
from training.errors import NextbestError
from training.features.text_cache import TextScoreCache
from training.registry.bundle import Bundle
from training.scores.distributed import dask_client

if TYPE_CHECKING:
    from distributed import Client


STAGING_DIR = "_features"
IN_FLIGHT_PER_WORKER = 2  # partitions computed ahead per worker: keeps workers busy, memory bounded
_LOADED: dict[str, Bundle] = {}  # digest -> bundle, per worker process (filled by BundlePlugin)


@dataclass(frozen=True)
class BundleFiles:
    """A bundle folder as bytes (relative path -> content) with a digest naming it."""

    files: dict[str, bytes] = field(repr=False)
    digest: str

    @classmethod
    def of(cls, bundle: Bundle) -> BundleFiles:
        with tempfile.TemporaryDirectory(prefix="nextbest-ship-") as tmp:
            folder = bundle.save(Path(tmp) / "bundle")
            paths = sorted(p for p in folder.rglob("*") if p.is_file())
            files = {str(p.relative_to(folder)): p.read_bytes() for p in paths}
        digest = hashlib.sha256()
        for name, content in files.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        return cls(files, digest.hexdigest()[:16])

    def load(self) -> Bundle:
        """Write the folder to a temporary directory and read it with Bundle.load."""

        with tempfile.TemporaryDirectory(prefix="nextbest-bundle-") as tmp:
            for name, content in self.files.items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            return Bundle.load(tmp)


class BundlePlugin(WorkerPlugin):
    """A Dask WorkerPlugin: loads the bundle once when a worker starts (or joins later)."""

    def __init__(self, files: BundleFiles) -> None:
        self.files = files
        self.name = f"nextbest-bundle-{files.digest}"

    def setup(self, worker: Any) -> None:
        _LOADED[self.files.digest] = self.files.load()

    def teardown(self, worker: Any) -> None:
        _LOADED.pop(self.files.digest, None)


def score_partition(features: pd.DataFrame, digest: str) -> pd.DataFrame:
    """map_partitions' function: serving.batch.chunks.score_chunk with this worker's loaded bundle."""
    bundle = _LOADED.get(digest)
    if bundle is None:
        raise RuntimeError(f"bundle {digest} is not loaded on this worker (plugin missing)")
    return score_chunk(bundle, features.reset_index(drop=True))


def loaded_bundles() -> list[str]:
    """Digests of the bundles loaded in this process (for tests and diagnostics via client.run)."""
    return sorted(_LOADED)


def check_workers(client: Client) -> None:
    """Every worker must run the same nextbest version as this process (the code is not shipped)."""
    mine = metadata.version("nextbest")
    theirs = client.run(metadata.version, "nextbest")
    wrong = {w: v for w, v in theirs.items() if v != mine}
    if wrong:
        raise NextbestError(
            f"Dask workers run another nextbest version than this client ({mine}): {wrong}; "
            "install the same version on the workers"
        )


def staged_features(
    con: duckdb.DuckDBPyConnection,
    bundle: Bundle,
    population: Population,
    staging: Path,
    policy: AddsConsent | None = None,
    watch: Watch | None = None,
    text_cache: TextScoreCache | None = None,
) -> Iterator[Path]:
    """Each chunk's features written as one Parquet part, in chunk order, as they are computed
    (and shown to `watch` first: the run's drift profile)."""
    staging.mkdir(parents=True)
    computed = iter_features(con, bundle.builder, population, policy, text_cache)
    for chunk, features in watched(computed, watch):
        part = staging / f"part-{chunk.index:05d}.parquet"
        features.to_parquet(part, index=False)
        yield part


def _scored(
    client: Client, parts: Iterator[Path], digest: str, meta: pd.DataFrame, window: int
) -> Iterator[pd.DataFrame]:
    """Score each staged part on the cluster as soon as it is written (DuckDB computes the next
    chunk's features here meanwhile), at most `window` in flight; yield results in chunk order."""
    import dask.dataframe as dd

    pending: deque[tuple[Path, Any]] = deque()

    def oldest() -> pd.DataFrame:
        part, future = pending.popleft()
        frame: pd.DataFrame = future.result()
        part.unlink()
        return frame

    for part in parts:
        features = dd.read_parquet(str(part), split_row_groups=False)
        scored = features.map_partitions(score_partition, digest, meta=meta)
        pending.append((part, client.compute(scored)))
        if len(pending) >= window:
            yield oldest()
    while pending:
        yield oldest()


@contextmanager
def dask_frames(
    con: duckdb.DuckDBPyConnection,
    bundle: Bundle,
    population: Population,
    settings: BatchSettings,
    tmp: Path,
    policy: AddsConsent | None = None,
    watch: Watch | None = None,
    text_cache: TextScoreCache | None = None,
) -> Iterator[Iterator[pd.DataFrame]]:
    """The candidates frames of every chunk, scored on Dask workers, in chunk order."""
    files = BundleFiles.of(bundle)
    staging = tmp / STAGING_DIR
    with dask_client(settings.scheduler, settings.workers) as client:
        check_workers(client)
        plugin = BundlePlugin(files)
        client.register_plugin(plugin)
        try:
            window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
            parts = staged_features(con, bundle, population, staging, policy, watch, text_cache)
            yield _scored(client, parts, files.digest, empty_candidates(bundle), window)
        finally:
            client.unregister_worker_plugin(plugin.name)
            shutil.rmtree(staging, ignore_errors=True)
