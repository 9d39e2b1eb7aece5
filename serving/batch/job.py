"""Nightly batch scoring (`nextbest score`): every current customer's scores and ranked actions as
of a date, streamed in chunks and written atomically. Customers who churned before the date are not
scored: there is nobody left to act on.

The pipeline, the same for both engines:
    validate -> load bundle -> active customers -> chunks of customer ids (serving.batch.population)
    -> per chunk: DuckDB features -> serving.batch.chunks.score_chunk      (engine: local or Dask)
    -> in chunk order: scores, arbitration, campaign selection -> Parquet (serving.batch.output)

The output directory belongs to the job (docs/batch.md; checked writable before any work): each run
writes an `as_of=YYYY-MM-DD/` partition holding `scores.parquet` (with `control_group`), when the
bundle has uplift models and a non-empty catalog `actions.parquet` (with `selected`), a small
`_nextbest.json` manifest and its drift (`_drift.json`, `_profile.json`: serving.batch.drift); the
newest `keep_runs` partitions stay, and this run's files are also at the top level
(serving.batch.partitions). It is replaced whole, so a killed job leaves the previous complete
output or none, and readers never miss it (an atomic exchange, training.atomic); a directory with
other files is refused.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import pandas as pd

from serving.batch.chunks import has_actions, score_chunk
from serving.batch.contacts import ChunkPolicy, ContactSources, SendLog
from serving.batch.drift import DRIFT_FILE, PROFILE_FILE, DriftReport, RunWatch, read_previous
from serving.batch.output import (
    ACTIONS_FILE,
    SCORES_FILE,
    OutputSpec,
    OutputStats,
    Progress,
    write_outputs,
)
from serving.batch.partitions import (
    PARTITION,
    carry_over,
    partition_name,
    previous_partition,
    publish,
)
from serving.batch.population import Population, Watch, iter_features, plan_population, watched
from serving.batch.settings import BatchSettings
from training.atomic import atomic_directory, check_writable
from training.config import DriftSettings
from training.data.contract import open_dataset, validate_dataset
from training.data.snapshots import check_scoring_date, data_span
from training.errors import NextbestError
from training.features.text_cache import TextScoreCache
from training.policy.campaign import CampaignLimits
from training.policy.contact import OPT_IN, OPT_OUT
from training.registry.bundle import Bundle
from training.registry.mlflow_models import load_bundle

MANIFEST = "_nextbest.json"
OUTPUT_FILES = {SCORES_FILE, ACTIONS_FILE, MANIFEST, DRIFT_FILE, PROFILE_FILE}
T = TypeVar("T")
_DONE = object()


@dataclass(frozen=True)
class ScoreSummary:
    customers: int
    as_of: date
    model_version: str
    out: Path
    stats: OutputStats | None = None
    drift: DriftReport | None = None


def check_output_dir(out: Path) -> None:
    """Refuse, before any work, to replace a directory that holds anything but previous nextbest
    outputs (its files and `as_of=` partitions), or to write where the job cannot (an unwritable or
    missing parent)."""
    if out.exists() and (not out.is_dir() or any(not _ours(p) for p in out.iterdir())):
        raise NextbestError(
            f"{out}: exists and holds files nextbest did not write; choose an empty or new --out"
        )
    check_writable(out)


def _ours(path: Path) -> bool:
    """A file or partition a nextbest batch run writes."""
    if path.is_dir() and PARTITION.match(path.name):
        return all(p.name in OUTPUT_FILES for p in path.iterdir())
    return path.name in OUTPUT_FILES


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """`items`, with the next one computed in a background thread while the caller works on the
    current one. DuckDB (features) and LightGBM (scores) both release the GIL, so the two stages
    overlap on two cores; only the background thread touches the iterator (and its connection)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nextbest-prefetch") as pool:
        ahead = pool.submit(next, items, _DONE)
        while (item := ahead.result()) is not _DONE:
            ahead = pool.submit(next, items, _DONE)
            yield item  # type: ignore[misc]


def local_frames(
    con: duckdb.DuckDBPyConnection,
    bundle: Bundle,
    population: Population,
    policy: ChunkPolicy | None = None,
    watch: Watch | None = None,
    text_cache: TextScoreCache | None = None,
) -> Generator[pd.DataFrame]:
    """The local engine: each chunk's features (computed one chunk ahead, with consent when the
    policy has it, and shown to `watch`: the run's drift profile), then its candidates frame."""
    computed = iter_features(con, bundle.builder, population, policy, text_cache)
    chunks = watched(computed, watch)
    for _, features in prefetched(chunks):
        yield score_chunk(bundle, features)


def score(
    data: Path,
    as_of: date,
    out: Path,
    model_ref: str | None = None,
    settings: BatchSettings | None = None,
    progress: Progress | None = None,
    thresholds: DriftSettings | None = None,
    contacts: ContactSources | None = None,
) -> ScoreSummary:
    """Validate, load the bundle, score every active customer chunk by chunk and write the output
    with its drift (thresholds: the bundle's `drift` config unless given)."""
    check_output_dir(out)  # before the model: an unwritable output is the error, not the lookup
    bundle = load_bundle(model_ref)
    return score_bundle(data, as_of, out, bundle, settings, progress, contacts, thresholds)


def score_bundle(
    data: Path,
    as_of: date,
    out: Path,
    bundle: Bundle,
    settings: BatchSettings | None = None,
    progress: Progress | None = None,
    contacts: ContactSources | None = None,
    thresholds: DriftSettings | None = None,
) -> ScoreSummary:
    """`score` with a loaded bundle. With `contacts`, the contact policy and consent apply as of
    `contacts.now`, and with `contacts.record` the run's sends are recorded once the output is
    complete, inside its atomic write (a failed run records nothing)."""
    settings = settings or BatchSettings()
    check_output_dir(out)
    previous = previous_partition(out, as_of)
    watch = RunWatch(
        bundle,
        as_of,
        thresholds or bundle.config.drift,
        read_previous(previous[1] if previous else None),
    )
    validate_dataset(data, known_actions=bundle.config.catalog.ids)
    text_cache = TextScoreCache.of(settings.text_cache, bundle.builder.text_model_)
    contacts = contacts or ContactSources(now=datetime.now(UTC))
    with open_dataset(data).connect() as con:
        span = data_span(con, bundle.config)
        check_scoring_date(as_of, span, bundle.metadata.as_of)
        population = plan_population(con, bundle.config, as_of, settings.chunk_customers)
        spec = OutputSpec(
            config=bundle.config,
            model_version=bundle.version or "",
            as_of=as_of,
            customers=population.customers,
            with_actions=has_actions(bundle),
            limits=CampaignLimits.of(bundle.config.catalog, settings.budget),
        )
        policy = None
        if spec.with_actions:
            events = consent_events(con, contacts) if bundle.config.consent else None
            policy = ChunkPolicy(bundle.config, contacts, events)
        sends = None
        if policy is not None and contacts.record:
            if contacts.history is None:
                raise NextbestError("recording contacts needs a contact history to record them in")
            sends = SendLog(bundle.config, policy.channels, spec.model_version, contacts.now)

        def history(tmp: Path) -> None:  # under the output lock: no partition vanishes meanwhile
            carry_over(out, tmp, as_of, settings.keep_runs)
            publish(tmp, as_of)

        with atomic_directory(out, before_swap=history) as tmp:
            run = tmp / partition_name(as_of)
            run.mkdir()
            stats = _run_engine(
                con,
                bundle,
                population,
                settings,
                spec,
                tmp,
                progress,
                watch,
                policy,
                sends,
                text_cache,
            )
            drift = watch.finish(run, spec.model_version)
            record = None if sends is None else sends.batch(as_of.isoformat())
            if record is not None:
                stats = replace(stats, recorded=len(record))
            _write_manifest(run / MANIFEST, spec, stats, drift)
            if record is not None and contacts.history is not None:
                # the last step: a failure leaves no output either
                contacts.history.record_contacts(record)
    return ScoreSummary(stats.customers, as_of, spec.model_version, out, stats, drift)


def consent_events(con: duckdb.DuckDBPyConnection, contacts: ContactSources) -> pd.DataFrame:
    """Every opt_in / opt_out event up to the run: the data set's, those posted to any replica
    (the contact history's) and those of a given event store (`--event-store`)."""
    found = con.execute(
        "SELECT customer_id, ts, channel, event_type FROM events "
        "WHERE event_type IN (?, ?) AND ts <= ?",
        [OPT_IN, OPT_OUT, contacts.now.astimezone(UTC).replace(tzinfo=None)],
    ).fetchdf()
    more = [contacts.events] if contacts.events is not None else []
    if contacts.history is not None:
        more.append(contacts.history.consent_frame(until=contacts.now))
    more = [frame[list(found.columns)] for frame in more if len(frame)]
    if not more:
        return found
    return pd.concat([found, *more], ignore_index=True)


def _run_engine(
    con: duckdb.DuckDBPyConnection,
    bundle: Bundle,
    population: Population,
    settings: BatchSettings,
    spec: OutputSpec,
    tmp: Path,
    progress: Progress | None,
    watch: RunWatch,
    policy: ChunkPolicy | None = None,
    sends: SendLog | None = None,
    text_cache: TextScoreCache | None = None,
) -> OutputStats:
    """Feed the chosen engine's candidates frames, under the contact policy, to the writer (into
    this run's partition)."""
    run = tmp / partition_name(spec.as_of)
    if settings.engine == "local":
        local = local_frames(con, bundle, population, policy, watch.features, text_cache)
        with closing(local):  # joins the prefetch
            return write_outputs(run, _policed(local, policy, population), spec, progress, sends)
    from serving.batch.dask_engine import dask_frames

    with dask_frames(
        con, bundle, population, settings, tmp, policy, watch.features, text_cache
    ) as frames:
        return write_outputs(run, _policed(frames, policy, population), spec, progress, sends)


def _policed(
    frames: Iterator[pd.DataFrame], policy: ChunkPolicy | None, population: Population
) -> Iterator[pd.DataFrame]:
    return frames if policy is None else policy.frames(frames, population.chunks)


def _write_manifest(path: Path, spec: OutputSpec, stats: OutputStats, drift: DriftReport) -> None:
    """A small JSON summary of the run (no timestamp: re-runs write the same bytes)."""
    manifest: dict[str, object] = {
        "as_of": spec.as_of.isoformat(),
        "model_version": spec.model_version,
        "customers": stats.customers,
        "control_group": stats.control,
    }
    if stats.action_rows is not None:
        manifest |= {"actions": stats.action_rows, "selected": stats.selected}
    if stats.recorded is not None:
        manifest["contacts_recorded"] = stats.recorded
    if stats.allocation is not None:
        manifest["campaign"] = {
            "budget": spec.limits.budget,
            "volume_caps": {
                a: c
                for a, c in zip(spec.config.catalog.ids, spec.limits.volume_caps, strict=True)
                if c != float("inf")
            },
            "spend": round(stats.allocation.spend, 6),
            "expected_value": round(stats.allocation.value, 6),
        }
    manifest["drift"] = drift.manifest()
    path.write_text(json.dumps(manifest, indent=2))
