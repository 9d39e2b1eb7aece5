"""`nextbest synth`: simulate the world chunk by chunk and write a contract data set plus its ground truth.

Chunks of customers are simulated independently (seeded by (seed, chunk)) and streamed to Parquet, so
memory stays flat in the number of customers and the output is deterministic by seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.atomic import atomic_directory
from training.synth.actions import (
    ACTION_COSTS,
    ACTION_IDS,
    ARMS,
    EFFECT_NOTES,
    harm_logits,
    start_action,
)
from training.synth.campaigns import assign
from training.synth.dynamics import State, initial_state
from training.synth.journey import CHANNELS, EVENT_TYPES, WEEK_S, EventBatch, simulate_week
from training.synth.text import ISSUES, LANGUAGES, Writers, dictionary, draw_writers, text_codes
from training.synth.truth import LIFETIME_MONTHS, lifetime_revenue, potential_outcomes
from training.synth.world import (
    AGE_BANDS,
    CONTRACTS,
    PAYMENT_METHODS,
    PLANS,
    REGIONS,
    Population,
    WorldConfig,
    draw_population,
)

Progress = Callable[[int], None]


@dataclass
class SynthSummary:
    customers: int = 0
    events: int = 0
    exposures: int = 0
    truth_rows: int = 0
    churned: int = 0
    data_dir: str = ""
    truth_dir: str = ""
    files: list[str] = field(default_factory=list)


@dataclass
class _ChunkResult:
    customers: pa.Table
    events: pa.Table
    exposures: pa.Table
    truth: list[pa.Table]
    exposure_truth: list[pa.Table]
    churned: int


def default_truth_dir(out: Path) -> Path:
    """Ground truth lives beside the data set, never inside it: `<out>_truth`."""
    return out.with_name(out.name + "_truth")


def synthesize(
    customers: int,
    out: Path,
    seed: int = 7,
    truth_dir: Path | None = None,
    cfg: WorldConfig | None = None,
    progress: Progress | None = None,
) -> SynthSummary:
    """Simulate `customers` customers and write `out/{customers,events,exposures}.parquet` atomically."""
    cfg = cfg or WorldConfig()
    harm_logits(cfg)  # an unknown action in cfg.harm fails before anything is written
    truth_dir = truth_dir or default_truth_dir(out)
    summary = SynthSummary(data_dir=str(out), truth_dir=str(truth_dir))
    with atomic_directory(out) as data_tmp, atomic_directory(truth_dir) as truth_tmp:
        writers: dict[str, pq.ParquetWriter] = {}
        try:
            for first in range(0, customers, cfg.chunk_size):
                n = min(cfg.chunk_size, customers - first)
                res = simulate_chunk(seed, first // cfg.chunk_size, first, n, cfg)
                tables = {
                    (data_tmp, "customers"): [res.customers],
                    (data_tmp, "events"): [res.events],
                    (data_tmp, "exposures"): [res.exposures],
                    (truth_tmp, "customers_truth"): res.truth,
                    (truth_tmp, "exposures_truth"): res.exposure_truth,
                }
                for (folder, name), parts in tables.items():
                    for table in parts:
                        if name not in writers:
                            writers[name] = pq.ParquetWriter(
                                folder / f"{name}.parquet", table.schema
                            )
                        writers[name].write_table(table)
                summary.customers += n
                summary.events += res.events.num_rows
                summary.exposures += res.exposures.num_rows
                summary.truth_rows += sum(t.num_rows for t in res.truth)
                summary.churned += res.churned
                if progress:
                    progress(n)
        finally:
            for w in writers.values():
                w.close()
        _write_manifest(truth_tmp, customers, seed, cfg)
        summary.files = sorted(p.name for p in data_tmp.iterdir())
    return summary


def simulate_chunk(seed: int, chunk: int, first: int, n: int, cfg: WorldConfig) -> _ChunkResult:
    """Simulate one chunk of customers over the whole calendar."""
    rng = np.random.default_rng([seed, chunk, 0])
    assign_rng = np.random.default_rng([seed, chunk, 1])
    text_rng = np.random.default_rng([seed, chunk, 2])  # its own stream: texts change no event
    pop = draw_population(rng, first, n, cfg)
    writers = draw_writers(text_rng, n)
    st = initial_state(pop)
    harm = harm_logits(cfg)
    n_eval = max(0, min(n, cfg.truth_customers - first))
    campaigns = {c.week: c for c in cfg.campaigns}
    batches: list[EventBatch] = []
    texts: list[np.ndarray] = []
    exposures: list[pa.Table] = []
    truth: list[pa.Table] = []
    exposure_truth: list[pa.Table] = []
    for week in range(cfg.weeks + 1):
        if week in cfg.truth_weeks and n_eval:
            idx = np.flatnonzero(st.alive[:n_eval] & (pop.signup_week[:n_eval] < week))
            po = potential_outcomes(
                pop.take(idx),
                st.take(idx),
                week,
                cfg.truth_reps,
                seed + 7919 * week,
                cfg.effect_weeks,
                harm,
            )
            long = lifetime_revenue(
                pop.take(idx),
                st.take(idx),
                week,
                max(cfg.truth_reps // 4, 2),
                seed + 6007 * week,
                LIFETIME_MONTHS,
            )
            truth.append(_truth_table(pop, st, idx, cfg.week_start(week), po | long, writers))
        if week == cfg.weeks:
            break
        if week in campaigns:
            eligible = st.alive & (pop.signup_week <= week - 4)
            reached, arm, prop = assign(assign_rng, campaigns[week], pop, st, eligible)
            ev = reached < n_eval
            if ev.any():
                idx = reached[ev]
                po = potential_outcomes(
                    pop.take(idx),
                    st.take(idx),
                    week,
                    max(cfg.truth_reps // 2, 4),
                    seed + 31 * week,
                    cfg.effect_weeks,
                    harm,
                )
                long = lifetime_revenue(
                    pop.take(idx),
                    st.take(idx),
                    week,
                    max(cfg.truth_reps // 4, 2),
                    seed + 6007 * week + 1,
                    (12,),
                )
                po["value_12m_control"] = long["value_12m"]
                rows = _exposure_table(pop, idx, arm[ev], prop[ev], week, cfg)
                exposure_truth.append(_with_columns(rows, po))
            for a in range(1, len(ARMS)):
                mask = np.zeros(n, dtype=bool)
                mask[reached[arm == a]] = True
                start_action(pop, st, mask, a - 1, week, cfg.effect_weeks, harm)
            exposures.append(_exposure_table(pop, reached, arm, prop, week, cfg))
        sat, failures = st.sat.copy(), st.recent_fail.copy()
        batches.append(simulate_week(pop, st, week, rng, week * WEEK_S))
        texts.append(_week_texts(text_rng, writers, batches[-1], sat, failures))
    return _ChunkResult(
        customers=_customers_table(pop, cfg),
        events=_events_table(pop, EventBatch.concat(batches), cfg, np.concatenate(texts)),
        exposures=pa.concat_tables(exposures)
        if exposures
        else _exposure_table(pop, *_NONE, 0, cfg),
        truth=truth,
        exposure_truth=exposure_truth,
        churned=int((~st.alive).sum()),
    )


_TEXTS = dictionary()
_NONE = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))


def _timestamps(cfg: WorldConfig, seconds: np.ndarray) -> pa.Array:
    epoch_us = _epoch_us(cfg)
    return pa.array(epoch_us + seconds.astype(np.int64) * 1_000_000, type=pa.timestamp("us"))


def _epoch_us(cfg: WorldConfig) -> int:
    """Microseconds from 1970-01-01 to the simulation start (naive timestamps, no time zone)."""
    return (cfg.start.toordinal() - 719_163) * 86_400 * 1_000_000


def _labels(codes: np.ndarray, names: tuple[str, ...] | np.ndarray) -> pa.Array:
    """Strings from integer codes, via a dictionary (fast), stored as plain strings."""
    dictionary = pa.array(list(names), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(
        pa.string()
    )


def _customers_table(pop: Population, cfg: WorldConfig) -> pa.Table:
    signup = np.datetime64(cfg.start) + (pop.signup_week * 7).astype("timedelta64[D]")
    return pa.table(
        {
            "customer_id": pa.array(pop.ids.tolist(), type=pa.string()),
            "plan": _labels(pop.plan, PLANS),
            "contract": _labels(pop.contract, CONTRACTS),
            "region": _labels(pop.region, REGIONS),
            "age_band": _labels(pop.age_band, AGE_BANDS),
            "payment_method": _labels(pop.payment, PAYMENT_METHODS),
            "paperless": pa.array(pop.paperless),
            "monthly_fee": pa.array(pop.fee),
            "signup_date": pa.array(signup.astype("datetime64[D]"), type=pa.date32()),
        }
    )


def _week_texts(
    rng: np.random.Generator,
    writers: Writers,
    b: EventBatch,
    sat: np.ndarray,
    failures: np.ndarray,
) -> np.ndarray:
    """Text codes of one week's events, from the satisfaction and failures before the week."""
    names = np.asarray(EVENT_TYPES)[b.event_type]
    trouble = (b.resolved == 0) | (names == "complaint") | (failures[b.cust] > 1.0)
    return text_codes(rng, writers, b.cust, names, sat[b.cust], trouble)


def _events_table(pop: Population, b: EventBatch, cfg: WorldConfig, texts: np.ndarray) -> pa.Table:
    order = np.lexsort((b.ts, b.cust))
    b = b.keep(order)
    texts = texts[order]
    return pa.table(
        {
            "customer_id": _labels(b.cust, pop.ids),
            "ts": _timestamps(cfg, b.ts),
            "channel": _labels(b.channel, CHANNELS),
            "event_type": _labels(b.event_type, EVENT_TYPES),
            "value": pa.array(b.value, from_pandas=True),
            "resolved": pa.array(b.resolved == 1, mask=b.resolved < 0),
            "text": pa.DictionaryArray.from_arrays(
                pa.array(texts.astype(np.int32), mask=texts < 0), pa.array(_TEXTS, pa.string())
            ).cast(pa.string()),
        }
    )


def _exposure_table(
    pop: Population, idx: np.ndarray, arm: np.ndarray, prop: np.ndarray, week: int, cfg: WorldConfig
) -> pa.Table:
    campaign = next((c for c in cfg.campaigns if c.week == week), None)
    name = f"w{week}_{'targeted' if campaign and campaign.targeted else 'randomized'}"
    return pa.table(
        {
            "customer_id": pa.array(pop.ids[idx].tolist(), type=pa.string()),
            "ts": _timestamps(cfg, np.full(len(idx), week * WEEK_S)),
            "action_id": _labels(arm, ARMS),
            "propensity": pa.array(np.round(prop, 6)),
            "campaign": pa.array([name] * len(idx), type=pa.string()),
        }
    )


def _with_columns(table: pa.Table, columns: dict[str, np.ndarray]) -> pa.Table:
    for name, values in columns.items():
        table = table.append_column(name, pa.array(values))
    return table


def _truth_table(
    pop: Population,
    st: State,
    idx: np.ndarray,
    as_of: date,
    po: dict[str, np.ndarray],
    writers: Writers,
) -> pa.Table:
    """Ground truth rows: identity, latent state (for analysis) and potential outcomes per arm."""
    table = pa.table(
        {
            "customer_id": pa.array(pop.ids[idx].tolist(), type=pa.string()),
            "as_of": pa.array([as_of] * len(idx), type=pa.date32()),
            "satisfaction_latent": pa.array(st.sat[idx]),
            "satisfaction_baseline": pa.array(pop.sat0[idx]),
            "price_sensitivity": pa.array(pop.price_sens[idx]),
            "engagement": pa.array(pop.engagement[idx]),
            "service_need": pa.array(pop.service_need[idx]),
            "recent_failures": pa.array(st.recent_fail[idx]),
            "action_in_force": _labels(st.action[idx] + 1, ARMS),
            "language": _labels(writers.language[idx], LANGUAGES),
            "text_issue": _labels(writers.issue[idx], ISSUES),
        }
    )
    return _with_columns(table, po)


def _write_manifest(folder: Path, customers: int, seed: int, cfg: WorldConfig) -> None:
    manifest = {
        "customers": customers,
        "seed": seed,
        "start": cfg.start.isoformat(),
        "end": cfg.end.isoformat(),
        "truth_dates": [cfg.week_start(w).isoformat() for w in cfg.truth_weeks],
        "truth_customers": min(customers, cfg.truth_customers),
        "arms": list(ARMS),
        "costs": dict(zip(ACTION_IDS, ACTION_COSTS, strict=True)),
        "effects": EFFECT_NOTES,
        "outcomes": {
            "churn": "P(churn event within 90 days)",
            "value": "expected revenue (purchase events incl. bills) within 90 days",
            **{
                f"value_{m}m": f"customers_truth: expected revenue within {m} months "
                "(30.4375-day months), under control (exposures_truth: value_12m_control)"
                for m in LIFETIME_MONTHS
            },
            "satisfaction": "expected NPS answer (0-10) at the end of the 90 days",
        },
        "world": {k: v for k, v in asdict(cfg).items() if k not in ("campaigns", "extra")}
        | {"campaigns": [asdict(c) for c in cfg.campaigns]},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
