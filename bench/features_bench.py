"""Benchmark of the point-in-time feature builder: fit + transform as of the day after the last event.

`bench_features(data_dir)` runs in a child process so that its peak RSS is the builder's alone;
`python bench/features_bench.py --customers 200000` writes a quick synthetic data set and times it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EVENT_TYPES = {
    "visit": 0.40,
    "email_open": 0.20,
    "purchase": 0.10,
    "call": 0.08,
    "chat": 0.08,
    "complaint": 0.03,
    "nps": 0.03,
    "csat": 0.03,
    "app_login": 0.04,
    "churn": 0.01,
}
CHANNELS = ("web", "app", "call_center", "chat", "email", "store")
ACTIONS = ("control", "discount_10", "proactive_call", "apology_credit", "loyalty_upgrade")
START = datetime(2024, 1, 1)
SPAN_DAYS = 730


def _values(types: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Event values by type: revenue, survey scores and contact minutes; NaN (null) elsewhere."""
    n = len(types)
    value = np.full(n, np.nan)
    value = np.where(types == "purchase", np.round(rng.gamma(2.0, 30.0, n), 2), value)
    value = np.where(types == "nps", rng.integers(0, 11, n).astype(float), value)
    value = np.where(types == "csat", rng.integers(1, 6, n).astype(float), value)
    contact = np.isin(types, ["call", "chat"])
    return np.where(contact, np.round(rng.exponential(8.0, n), 1), value)


def _vocab(base: dict[str, float], n: int, prefix: str) -> tuple[list[str], np.ndarray]:
    """`base` plus rare extra entries up to `n` names, with probabilities summing to one."""
    names = list(base) + [f"{prefix}_{k}" for k in range(max(0, n - len(base)))]
    p = np.array(list(base.values()) + [0.2 / max(1, n - len(base))] * (len(names) - len(base)))
    return names, p / p.sum()


def make_synthetic(
    out: Path,
    customers: int,
    events_per_customer: int = 60,
    seed: int = 0,
    *,
    n_types: int = len(EVENT_TYPES),
    n_channels: int = len(CHANNELS),
) -> Path:
    """Write customers/events/exposures Parquet files of the docs/data.md shape; return `out`."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.char.add("c", np.char.zfill(np.arange(customers).astype(str), 8))
    signup = np.datetime64(START.date()) - rng.integers(0, 2000, customers).astype("timedelta64[D]")
    pq.write_table(
        pa.table(
            {
                "customer_id": ids,
                "age": rng.integers(18, 90, customers),
                "plan": rng.choice(["basic", "plus", "premium"], customers),
                "is_business": rng.random(customers) < 0.2,
                "signup_date": signup,
            }
        ),
        out / "customers.parquet",
    )
    n = customers * events_per_customer
    start_us = np.datetime64(START, "us")
    ts = start_us + rng.integers(0, SPAN_DAYS * 86_400_000_000, n).astype("timedelta64[us]")
    type_names, type_p = _vocab(EVENT_TYPES, n_types, "type")
    types = rng.choice(type_names, n, p=type_p)
    channel_names, channel_p = _vocab(dict.fromkeys(CHANNELS, 1.0), n_channels, "channel")
    contact = np.isin(types, ["call", "chat"])
    resolved = pa.array(rng.random(n) < 0.7, mask=~contact)
    events = pa.table(
        {
            "customer_id": ids[rng.integers(0, customers, n)],
            "ts": ts,
            "channel": rng.choice(channel_names, n, p=channel_p),
            "event_type": types,
            "value": pa.array(_values(types, rng), from_pandas=True),
            "resolved": resolved,
        }
    )
    pq.write_table(events, out / "events.parquet", row_group_size=1_000_000)
    m = customers * 2
    pq.write_table(
        pa.table(
            {
                "customer_id": ids[rng.integers(0, customers, m)],
                "ts": start_us + rng.integers(0, SPAN_DAYS * 86_400_000_000, m).astype("m8[us]"),
                "action_id": rng.choice(ACTIONS, m),
                "propensity": rng.uniform(0.1, 0.9, m),
            }
        ),
        out / "exposures.parquet",
    )
    return out


def _run(data_dir: Path, queue: mp.Queue) -> None:
    """Child process: fit + transform, report timings and peak RSS."""
    from training.data.contract import open_dataset
    from training.features.definition import FeatureBuilder

    con = open_dataset(data_dir).connect()
    last = con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
    as_of = (last or START).date() + timedelta(days=1)
    t0 = time.perf_counter()
    builder = FeatureBuilder().fit(con)
    t1 = time.perf_counter()
    frame = builder.transform(con, as_of=as_of)
    t2 = time.perf_counter()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "fit_seconds": round(t1 - t0, 2),
            "transform_seconds": round(t2 - t1, 2),
            "seconds": round(t2 - t0, 2),
            "rows": len(frame),
            "n_features": len(builder.feature_names_),
            "peak_rss_mib": round(rss_kib / 1024, 1),
        }
    )


def bench_features(data_dir: Path) -> dict:
    """Fit + transform the features of `data_dir` in a child process; seconds, rows, peak RSS."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(Path(data_dir), queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"feature benchmark on {data_dir} failed (exit code {proc.exitcode})")
    return dict(queue.get(timeout=10))


def main() -> None:
    """Command line: time the builder on DIR, or on a fresh synthetic data set."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, help="data set directory (default: synthetic)")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--events-per-customer", type=int, default=60)
    parser.add_argument("--types", type=int, default=len(EVENT_TYPES), help="event types")
    parser.add_argument("--channels", type=int, default=len(CHANNELS))
    args = parser.parse_args()
    if args.data:
        print(json.dumps(bench_features(args.data)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_synthetic(
            Path(tmp),
            args.customers,
            args.events_per_customer,
            n_types=args.types,
            n_channels=args.channels,
        )
        print(f"synthetic data written in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        print(json.dumps(bench_features(Path(tmp))))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
