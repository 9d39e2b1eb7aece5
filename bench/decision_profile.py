"""In-process profile of one decision (issues 17 and 19): where the time of `Decider.evaluate`
goes for a customer whose model outputs are stored vs one decided live (ingested events: features
as of now, every model run on one row) on the first request after an event, and on a later one
(the row kept from the first moved to the later time, the uplift reused while it holds). No HTTP, no logging: the serving code's own parts.

The world is the serving bench's (bench/serve_bench.py: 20 actions, all models), kept in
`--workdir` and reused on the next run. Prints a table of per-component medians and p99s, then
(`--cprofile`) the functions that take the most time on the live path.

    .venv/bin/python bench/decision_profile.py --workdir /tmp/nextbest-profile [--cprofile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve_bench import AS_OF, bench_workdir, prepare  # noqa: E402

if TYPE_CHECKING:
    from serving.online.live_features import LiveFeatures
    from serving.online.store import OnlineStore

REPEATS = 2000


def timed(call: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """(median, p99) of `call` in microseconds, after a short warm-up."""
    for _ in range(50):
        call()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        call()
        times[i] = time.perf_counter() - t0
    return float(np.median(times) * 1e6), float(np.percentile(times, 99) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, required=True, help="kept and reused")
    parser.add_argument("--cprofile", action="store_true", help="also profile the live path")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    workdir, env = bench_workdir(args.workdir, "nextbest-profile-")
    store_path = workdir / "online_store.sqlite"
    if not (workdir / "bare_model.txt").exists():
        prepare(workdir, env)
    os.environ.update(env)

    from serving.online.decision import Decider, DecisionRequest
    from serving.online.events import Event
    from serving.online.fast_predict import accelerate
    from serving.online.live_features import LiveFeatures
    from serving.online.reasons import Explainer
    from serving.online.store import OnlineStore
    from training.policy.value import net_value
    from training.registry.mlflow_models import load_bundle

    bundle = accelerate(load_bundle(None))
    store = OnlineStore(store_path)
    decider = Decider(bundle, stored_outputs=store.info.model_version == bundle.version).warm()
    live = LiveFeatures(bundle)
    explainer = Explainer(bundle)
    customer = next(c for (c,) in store._con.execute("SELECT customer_id FROM features LIMIT 1"))
    stored = store.get(customer)
    history = store.history(customer)
    assert stored is not None and history is not None and stored.outputs is not None
    now = datetime.fromisoformat(AS_OF) + timedelta(days=1)
    kinds = [("complaint", None), ("nps", 3.0), ("call", 4.0), ("purchase", 25.0), ("call", 2.0)]
    events = [
        Event(customer, now - timedelta(hours=5 - i), "call_center", kind, value)
        for i, (kind, value) in enumerate(kinds)
    ]
    row = live.row(history, events, now)  # the first request after an event: nothing kept
    live.row(history, events, now, (customer, 1))  # kept for the later requests
    poster = f"{customer} (posts)"  # a post's key: its kept row is not the later requests' one
    live.extended(poster, history, None, list(enumerate(events, 1)), now)
    base = live.journey(poster)  # the journey a worker keeps: a post adds only its events
    posted = [(len(events) + 1 + i, e) for i, e in enumerate(events + events)]
    clock = iter(now + timedelta(seconds=i) for i in range(10**7))  # later requests: 1 s apart
    recomputed, computed, later_uplift = [0], [0], [0]
    uplift_matrix = bundle.uplift_matrix

    def counted(X: np.ndarray, outcomes: list[str] | None = None) -> dict[str, np.ndarray]:
        computed[0] += 1
        return uplift_matrix(X, outcomes)

    bundle.uplift_matrix = counted  # type: ignore[method-assign]

    def later() -> object:
        """A later request's evaluation, counting the uplift computed anew for it."""
        before = computed[0]
        out = decider.evaluate(kept(), "call_center", inputs)  # type: ignore[arg-type]
        later_uplift[0] += computed[0] - before
        return out

    def kept() -> object:
        """The customer's row on a later request, as the service finds it: the kept row moved
        to then (LiveFeatures.kept), else (its span ended) computed anew and kept."""
        when = next(clock)
        found = live.kept(customer, 1, when)
        if found is None:
            recomputed[0] += 1
            found = live.row(history, events, when, (customer, 1))
        return found

    X = row.vector[None, :]
    inputs = {"channel": "call_center"}
    scores, uplift = decider.model_outputs(row)
    known = {name: scores[name] for name in decider.trained_scores}
    config = bundle.config
    ask, rng = DecisionRequest(customer, "call_center"), np.random.default_rng(0)
    decision = decider.decide(row, ask, None, rng)

    parts: list[tuple[str, Callable[[], object]]] = [
        ("evaluate, stored outputs", lambda: decider.evaluate(stored, "call_center", inputs)),
        ("evaluate, live row", lambda: decider.evaluate(row, "call_center", inputs)),
        ("  live features (LiveFeatures.row)", lambda: live.row(history, events, now)),
        (
            "  a post's features: 10 events onto a kept journey (LiveFeatures.extended)",
            lambda: live.extended(poster, history, base, posted, now),
        ),
        ("  store.history (the customer's journey)", lambda: store.history(customer)),
        ("evaluate, kept live row (a later request)", later),
        ("  kept row (LiveFeatures.kept)", kept),
        ("  model outputs, all", lambda: decider.model_outputs(row)),
        ("    score_matrix", lambda: bundle.score_matrix(X)),
        ("    uplift_matrix", lambda: bundle.uplift_matrix(X)),
    ]
    for outcome, model in bundle.uplift.items():
        parts.append((f"      uplift {outcome}: {_shape(model)}", lambda m=model: m.predict(X)))
    parts += [
        (
            "  net_value",
            lambda: net_value(uplift, known, decider.cost, config.objective, config.outcomes),
        ),
        ("  rule namespace", lambda: decider.namespace(row, scores, inputs)),
        ("decide, live row", lambda: decider.decide(row, ask, None, rng)),
        (
            "reasons (Explainer.explain, 3 actions)",
            lambda: explainer.explain(
                row.vector, decision.actions, scores["churn_probability"], False
            ),
        ),
    ]
    print(f"{'component':58s} {'median us':>10s} {'p99 us':>10s}")
    for name, call in parts:
        median, p99 = timed(call, args.repeats)
        print(f"{name:58s} {median:10.0f} {p99:10.0f}", flush=True)
    print(
        f"later requests 1 s apart: {next(clock) - now} of clock, rows computed anew "
        f"{recomputed[0]} times, uplift computed anew {later_uplift[0]} times"
    )
    customers = [c for (c,) in store._con.execute("SELECT customer_id FROM features LIMIT 200")]
    when = now + timedelta(hours=10, minutes=13, seconds=7)  # a time of day between midnights
    spans = [_span_left(live, store, c, kinds, when) for c in customers]
    print(
        f"time a kept row holds from {when:%H:%M:%S} (200 customers, each with 5 new events): "
        f"median {np.median(spans) / 60:.1f} min, 10th percentile "
        f"{np.percentile(spans, 10) / 60:.1f} min"
    )
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(500):
            decider.evaluate(row, "call_center", inputs)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def _span_left(
    live: LiveFeatures, store: OnlineStore, customer: str, kinds: list, now: datetime
) -> float:
    """Seconds from `now` until the customer's live row (their journey and 5 new events of the
    5 hours before) must be computed anew (`OneRow.valid`)."""
    from serving.online.events import Event
    from serving.online.live_features import events_table
    from training.features.one_customer import instant

    history = store.history(customer)
    assert history is not None
    events = [
        Event(customer, now - timedelta(hours=5 - i), "call_center", kind, value)
        for i, (kind, value) in enumerate(kinds)
    ]
    table = pa.concat_tables([history.events, events_table(events, history.events.schema)])
    found = live.fast.row(history.customers, table, history.exposures, now)
    return (found.valid[1] - instant(now)) / 1e6


def _shape(model: object) -> str:
    """Which learners predict how many actions: `SelectedUplift(S x17, X x3)`."""
    choice = getattr(model, "choice_", None)
    if choice is None:
        return type(model).__name__
    counts: dict[str, int] = {}
    for name in choice.values():
        counts[name] = counts.get(name, 0) + 1
    used = ", ".join(f"{n} x{c}" for n, c in sorted(counts.items()))
    return f"{type(model).__name__}({used})"


if __name__ == "__main__":
    main()
