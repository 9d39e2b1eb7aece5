"""Benchmark of features with text at scale, through the text score cache (issue 20): a cold run, and
nightly runs with a warm cache and 1% new texts.

Steps, each its own process (bench/run.py measures its wall time and peak RSS):
  prepare  write two data sets of `--customers` customers whose events carry `--texts` texts (half of
           the events): `dup/`, drawn from a vocabulary of `--distinct` texts (simulator phrases with a
           reference number), and `distinct/`, every text different; the newest 1% of texts (the
           last day) are the night's new ones. Fit the text model and the feature builder once.
  run      transform as of a date through the cache, print seconds, texts scored and their rate.
  fill     warm the all-distinct cache without scoring 10M texts (hours): the keys of every text
           before the night, with made-up scores (timing only: nothing reads their values).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.features_bench import SPAN_DAYS, START, make_synthetic  # noqa: E402
from training.data.contract import open_dataset  # noqa: E402
from training.features.definition import FeatureBuilder  # noqa: E402
from training.features.text_cache import SCHEMA, TextScoreCache, key_sql  # noqa: E402
from training.synth.text import _ISSUE_SLOTS, NOTE_KINDS, PHRASES, dictionary  # noqa: E402
from training.text.model import TextModel, TextScores  # noqa: E402
from training.text.sentiment import TextSentiment  # noqa: E402
from training.text.topics import TextTopics  # noqa: E402

DAY_US = 86_400_000_000
NIGHT = np.datetime64(START, "us") + np.timedelta64(SPAN_DAYS - 1, "D")  # the last day's start
COLD_AS_OF = str(NIGHT.astype("datetime64[D]"))  # yesterday's run: texts before the last day
NIGHTLY_AS_OF = str((NIGHT + np.timedelta64(1, "D")).astype("datetime64[D]"))
NEW_SHARE = 0.01
NEW_UNSEEN = 0.1  # share of the night's texts (dup data) that are not in the vocabulary yet


def _texts(ids: np.ndarray) -> pa.Array:
    """Text number k: a simulator phrase (k mod phrases) and a reference number (k div phrases)."""
    phrases = pa.array(dictionary())
    n = len(phrases)
    base = phrases.take(pa.array(ids % n))
    return pc.binary_join_element_wise(base, pc.cast(pa.array(ids // n), pa.string()), " #")


def _with_texts(events: pa.Table, text: pa.Array, has: np.ndarray, ts: np.ndarray) -> pa.Table:
    """`events` with a `text` column (null where `has` is False) and the moved timestamps."""
    full = np.zeros(len(has), dtype=np.int64)
    full[has] = np.arange(int(has.sum()))
    column = text.take(pa.array(full, mask=~has))
    out = events.set_column(events.schema.get_field_index("ts"), "ts", pa.array(ts))
    return out.append_column("text", column)


def prepare(workdir: Path, customers: int, texts: int, distinct: int, seed: int = 0) -> dict:
    """Write dup/ and distinct/, fit the text model and the builder; their sizes."""
    rng = np.random.default_rng(seed)
    base = make_synthetic(
        workdir / "dup", customers, events_per_customer=max(2 * texts // customers, 1)
    )
    events = pq.read_table(base / "events.parquet")
    n = events.num_rows
    order = rng.permutation(n)
    has = np.zeros(n, dtype=bool)
    has[order[:texts]] = True
    new = np.zeros(n, dtype=bool)
    new[order[: int(texts * NEW_SHARE)]] = True
    ts = events["ts"].to_numpy().astype("datetime64[us]")
    old_late = has & ~new & (ts >= NIGHT)
    ts[old_late] -= np.timedelta64(1, "D")  # yesterday's texts all come before the night
    ts[new] = NIGHT + rng.integers(0, DAY_US, int(new.sum())).astype("timedelta64[us]")
    is_new = new[has]  # per text, in text order
    vocab = rng.integers(0, distinct, texts)
    unseen = is_new & (rng.random(texts) < NEW_UNSEEN)
    vocab[unseen] = distinct + np.arange(int(unseen.sum()))
    pq.write_table(_with_texts(events, _texts(vocab), has, ts), base / "events.parquet",
                   row_group_size=1_000_000)  # fmt: skip
    out = workdir / "distinct"
    out.mkdir()
    for name in ("customers.parquet", "exposures.parquet"):
        (out / name).symlink_to(base / name)
    unique = _texts(np.arange(texts, dtype=np.int64))
    pq.write_table(_with_texts(events, unique, has, ts), out / "events.parquet",
                   row_group_size=1_000_000)  # fmt: skip
    del events
    fit_seconds = _fit(base, workdir / "model", rng)
    return {"events": n, "texts": texts, "distinct_dup": int(distinct + unseen.sum()),
            "new_texts": int(new.sum()), "fit_seconds": fit_seconds}  # fmt: skip


def _fit(data: Path, folder: Path, rng: np.random.Generator) -> float:
    """Fit the text model on simulator phrases labelled by their tone, then the builder."""
    t0 = time.perf_counter()
    codes = rng.integers(0, len(dictionary()), 20_000)
    tone = (codes // (len(NOTE_KINDS) * _ISSUE_SLOTS * PHRASES)) % 5
    texts = _texts(codes + len(dictionary()) * rng.integers(0, 50, len(codes))).to_pylist()
    y = np.select([tone <= 1, tone == 2], [0, 1], 2)
    model = TextModel(TextSentiment().fit(texts, y), TextTopics(n_topics=8).fit(texts))
    folder.mkdir()
    model.save(folder)
    with open_dataset(data).connect() as con:
        builder = FeatureBuilder().fit(con).with_text(model)
    (folder / "builder.json").write_text(json.dumps(builder.to_dict()))
    return round(time.perf_counter() - t0, 1)


class Timed(TextModel):
    """The real model, adding up the texts it scores and the time it takes."""

    def __init__(self, model: TextModel) -> None:
        super().__init__(model.sentiment, model.topics)
        self.texts, self.seconds = 0, 0.0

    def score(self, texts: Sequence[str], customer_ids: Sequence[str] | None = None) -> TextScores:
        t0 = time.perf_counter()
        out = super().score(texts, customer_ids)
        self.seconds += time.perf_counter() - t0
        self.texts += len(texts)
        return out


def _load(folder: Path) -> tuple[FeatureBuilder, Timed]:
    model = Timed(TextModel.load(folder))
    state = json.loads((folder / "builder.json").read_text())
    return FeatureBuilder.from_dict(state, model), model


def run(data: Path, model_dir: Path, cache_dir: Path | None, as_of: str, text: bool = True) -> dict:
    """Transform every customer as of `as_of` through the cache (or without the text features);
    seconds and texts scored."""
    builder, model = _load(model_dir)
    if not text:
        builder.with_text(None)
    cache = TextScoreCache.of(cache_dir, model if text else None)
    with open_dataset(data).connect() as con:
        t0 = time.perf_counter()
        frame = builder.transform(con, as_of=as_of, text_cache=cache)
        seconds = time.perf_counter() - t0
    rate = model.texts / model.seconds if model.seconds else None
    return {"seconds": round(seconds, 1), "rows": len(frame), "scored": model.texts,
            "score_seconds": round(model.seconds, 1), "texts_per_s": rate and round(rate),
            "kept": cache.texts if cache else 0,
            "with_text": int((frame["texts_365d"] > 0).sum()) if text else 0}  # fmt: skip


def fill(data: Path, model_dir: Path, cache_dir: Path, before: str) -> dict:
    """Keep made-up scores for every distinct text before `before` (keys as the cache computes them)."""
    model = TextModel.load(model_dir)
    con = duckdb.connect()
    events = str(data / "events.parquet").replace("'", "''")
    keys = con.sql(
        f"SELECT DISTINCT {key_sql('CAST(text AS VARCHAR)')} FROM read_parquet('{events}') "
        f"WHERE text IS NOT NULL AND ts < TIMESTAMP '{before}'"
    ).to_arrow_table()
    rng = np.random.default_rng(1)
    n = keys.num_rows
    made_up = pa.table({"k1": keys["k1"], "k2": keys["k2"],
                        "polarity": pa.array(rng.uniform(-1, 1, n).astype(np.float32)),
                        "negative": pa.array(rng.random(n) < 0.3),
                        "topic": pa.array(rng.integers(-1, 8, n).astype(np.int16))}, schema=SCHEMA)  # fmt: skip
    TextScoreCache.open(cache_dir, model).add(made_up)
    return {"kept": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--texts", type=int, default=10_000_000)
    p.add_argument("--distinct", type=int, default=200_000)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--cache", type=Path)
    r.add_argument("--night", choices=("yesterday", "tonight"), required=True)
    r.add_argument("--no-text", action="store_true", help="the builder without its text model")
    f = sub.add_parser("fill")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--model", type=Path, required=True)
    f.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "prepare":
        out = prepare(args.workdir, args.customers, args.texts, args.distinct)
    elif args.step == "run":
        as_of = COLD_AS_OF if args.night == "yesterday" else NIGHTLY_AS_OF
        out = run(args.data, args.model, args.cache, as_of, text=not args.no_text)
    else:
        out = fill(args.data, args.model, args.cache, COLD_AS_OF)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
