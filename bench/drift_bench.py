"""Drift and shadow bench (issue 19): the batch drift check at 1M customers and `/recommend` with
shadow mode on and off, on this machine. Prints one JSON object per figure.

Drift: two synthetic worlds of the same parameters (seeds 7 and 8) and a shifted copy of the second
(purchase values doubled, channel 'web' renamed 'website'); the demo feature definition is fitted on
the first, whose customers as of the scoring date are the reference (quantile bins, as a bundle's).
The second world's feature rows, repeated to 1M rows (the same distribution at the size of the
issue), are profiled in 200k-row chunks as `nextbest score` does and compared: wall time, peak
memory (this process), flags. The exact peer: scipy's two-sample KS on the raw columns (what a
library computing KS per column does), on the same rows.

Shadow: the serving bench's 20-action world (bench/serve_bench.py), its champion also aliased
@challenger, `/recommend` at concurrency 1 for a known customer with NEXTBEST_SHADOW off, then on.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AS_OF = date(2026, 11, 2)
ROWS = 1_000_000
CHUNK = 200_000


def world(out: Path, customers: int, seed: int) -> Path:
    from training.synth.generate import synthesize

    synthesize(customers, out, seed=seed)
    return out


def shifted(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    events = pd.read_parquet(out / "events.parquet")
    purchase = events["event_type"] == "purchase"
    events.loc[purchase, "value"] = events.loc[purchase, "value"] * 2
    events["channel"] = events["channel"].replace({"web": "website"})
    events.to_parquet(out / "events.parquet", index=False)
    return out


def matrix(data: Path, builder, config) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The model matrix of the world's active customers as of AS_OF."""
    from serving.batch.population import iter_features, plan_population
    from training.data.contract import open_dataset
    from training.features.definition import to_matrix

    with open_dataset(data).connect() as con:
        population = plan_population(con, config, AS_OF, 10**9)
        [(_, features)] = list(iter_features(con, builder, population))
    return to_matrix(features, builder.feature_names_)


def profile_1m(reference, X: np.ndarray, names: list[str]):  # type: ignore[no-untyped-def]
    """Profile ROWS rows (X repeated) chunk by chunk on the reference's bins."""
    from training.drift.profile import ProfileBuilder

    builder = ProfileBuilder(reference.binnings)
    reps = int(np.ceil(CHUNK / len(X)))
    chunk = np.tile(X, (reps, 1))[:CHUNK]  # one chunk in memory at a time, as in a batch run
    for _ in range(ROWS // CHUNK):
        builder.add_matrix(chunk, names)
    return builder.profile()


def drift_setup(workdir: Path, customers: int) -> None:
    """Worlds, feature definition, reference; the rows to profile saved as .npy files."""
    from training.config import load_config
    from training.data.contract import open_dataset
    from training.drift.profile import fit_profile
    from training.features.definition import FeatureBuilder

    config = load_config()
    a = world(workdir / "a", customers, 7)
    b = world(workdir / "b", customers, 8)
    c = shifted(b, workdir / "shifted")
    with open_dataset(a).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
    names = builder.feature_names_
    categories = {s.name: len(s.categories) for s in builder.static_ if s.kind == "categorical"}
    Xa, Xb, Xc = (matrix(d, builder, config) for d in (a, b, c))
    reference = fit_profile(
        {n: Xa[:, j] for j, n in enumerate(names)}, categories, config.drift.bins
    )
    (workdir / "reference.json").write_text(json.dumps(reference.to_dict()))
    (workdir / "meta.json").write_text(json.dumps({"names": names, "categories": categories}))
    for name, X in (("a", Xa), ("unshifted", Xb), ("shifted", Xc)):
        np.save(workdir / f"{name}.npy", X)


def drift_check(workdir: Path, which: str) -> dict:
    """Profile 1M rows of `which` on the reference's bins and compare (this process measured)."""
    from training.config import load_config
    from training.drift.compare import compare
    from training.drift.profile import Profile

    config = load_config()
    meta = json.loads((workdir / "meta.json").read_text())
    reference = Profile.from_dict(json.loads((workdir / "reference.json").read_text()))
    X = np.load(workdir / f"{which}.npy")
    start = time.perf_counter()
    current = profile_1m(reference, X, meta["names"])
    drift = compare(reference, current, config.drift.psi, config.drift.ks)
    seconds = time.perf_counter() - start
    return {
        "figure": f"drift check, {ROWS:,} customers x {len(meta['names'])} features, {which}",
        "kind": which,
        "seconds": round(seconds, 2),
        "features": len(meta["names"]),
        "flagged": sorted(c.name for c in drift if c.flagged),
        "max_psi": round(max(c.psi for c in drift), 4),
    }


def exact_ks_peer(workdir: Path) -> dict:
    """scipy.stats.ks_2samp per numeric column on raw values: the reference sample against ROWS
    rows of the fresh sample."""
    from scipy.stats import ks_2samp

    from training.config import load_config

    limit = load_config().drift.ks
    meta = json.loads((workdir / "meta.json").read_text())
    names, categories = meta["names"], meta["categories"]
    Xa, Xb = np.load(workdir / "a.npy"), np.load(workdir / "unshifted.npy")
    reps = int(np.ceil(ROWS / len(Xb)))
    start = time.perf_counter()
    flagged = []
    for j, name in enumerate(names):
        if name in categories:
            continue
        column = np.tile(Xb[:, j], reps)[:ROWS]
        ref = Xa[:, j]
        stat = ks_2samp(ref[~np.isnan(ref)], column[~np.isnan(column)]).statistic
        if stat > limit:
            flagged.append(name)
    seconds = time.perf_counter() - start
    return {
        "figure": f"peer: exact KS (scipy ks_2samp), {ROWS:,} x {len(names) - len(categories)} "
        "numeric features, unshifted",
        "kind": "exact_ks",
        "seconds": round(seconds, 2),
        "flagged": flagged,
    }


def bench_shadow(workdir: Path) -> list[dict]:
    from bench import serve_bench as sb

    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    store, _ = sb.prepare(workdir, env)
    script = (
        "import mlflow; c = mlflow.MlflowClient(); "
        "v = c.get_model_version_by_alias('nextbest', 'champion').version; "
        "c.set_registered_model_alias('nextbest', 'challenger', v)"
    )
    sb.run([sys.executable, "-c", script], env, workdir)
    figures = []
    for shadow in ("false", "true"):
        log = workdir / f"decision_log_{shadow}.sqlite"
        service_env = env | {
            "NEXTBEST_ONLINE_STORE": str(store),
            "NEXTBEST_DECISION_LOG": str(log),
            "NEXTBEST_SHADOW": shadow,
        }
        served = sb.start("serving.online.service:Nextbest", service_env, workdir)
        try:
            body = {
                "customer_id": sb.known_customer(sb.stored_customers(store), served.port),
                "channel": "call_center",
            }
            make = functools.partial(sb.Client, served.port, "/recommend", body)
            sb.closed_loop(make, 1, sb.WARMUP_REQUESTS / 500)
            result = sb.closed_loop(make, 1, sb.CLOSED_SECONDS)
            label = "on" if shadow == "true" else "off"
            figure = result.figure(f"recommend c=1, shadow {label}", kind=f"shadow_{label}")
            import sqlite3

            with sqlite3.connect(log) as con:
                rows = con.execute("SELECT shadow, count(*) FROM decisions GROUP BY shadow")
                figure["logged"] = {str(k): n for k, n in rows}
            figures.append(figure)
        finally:
            sb.stop(served)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parts = ["drift-setup", "unshifted", "shifted", "exact-ks", "shadow"]
    parser.add_argument("--part", choices=parts, required=True)
    parser.add_argument("--workdir", type=Path, help="drift parts: the set-up's directory")
    parser.add_argument("--customers", type=int, default=20_000, help="each drift world's size")
    args = parser.parse_args()
    if args.part == "drift-setup":
        drift_setup(args.workdir, args.customers)
    elif args.part in ("unshifted", "shifted"):
        print(json.dumps(drift_check(args.workdir, args.part)), flush=True)
    elif args.part == "exact-ks":
        print(json.dumps(exact_ks_peer(args.workdir)), flush=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="nextbest-shadow-bench-"))
        try:
            for figure in bench_shadow(workdir):
                print(json.dumps(figure), flush=True)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
