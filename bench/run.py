"""`make bench`: measure the figures the issues name and print them as one table.

Every step runs as its own child process, so its wall time and peak RSS (from `os.wait4`) are its own.
Sizes default to the issues' figures (100k, 1M and, for batch memory, 5M customers); the bundle
trained on the smallest size scores the larger ones. `--sizes 20000` gives a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
NEXTBEST = str(Path(sys.executable).with_name("nextbest"))
ENV = os.environ | {
    "OMP_NUM_THREADS": "1",
    # idle OpenMP threads wait passively: spinning ones starve the other jobs of a shared machine
    "OMP_WAIT_POLICY": "PASSIVE",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
}


@dataclass
class Row:
    figure: str
    seconds: float
    peak_gib: float
    target: str
    ok: bool | None
    detail: str = ""


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS in GiB of that process, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        output = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed: {errors.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024**2, output.strip()


def bench_synth(
    n: int, workdir: Path, limit_s: float, limit_gib: float | None, seed: int | None = None
) -> tuple[Row, Path]:
    """Simulate `n` customers (the CLI's default seed, or `seed`: another world)."""
    out = workdir / (f"synth_{n}" if seed is None else f"synth_{n}_seed{seed}")
    cmd = [NEXTBEST, "synth", "--customers", str(n), "--out", str(out)]
    seconds, gib, _ = run_measured(cmd if seed is None else [*cmd, "--seed", str(seed)])
    ok = seconds < limit_s and (limit_gib is None or gib < limit_gib)
    target = f"< {limit_s / 60:.0f} min" + (f", < {limit_gib:.0f} GiB" if limit_gib else "")
    events = _rows(out / "events.parquet")
    return Row(f"synth {n:,} customers", seconds, gib, target, ok, f"{events:,} events"), out


def bench_features(data: Path, n: int, limit_s: float, limit_gib: float) -> Row:
    out = data.parent / f"features_{n}.parquet"
    seconds, gib, msg = run_measured(
        [NEXTBEST, "features", "--data", str(data), "--out", str(out), "--as-of", "2026-11-02"]
    )
    ok = seconds < limit_s and gib < limit_gib
    target = f"< {limit_s / 60:.0f} min, < {limit_gib:.0f} GiB"
    detail = msg.split(":")[-1].split(" to ")[0].strip() if msg else ""
    return Row(
        f"features as of one date, {n:,} customers (validate + fit + transform + write)",
        seconds,
        gib,
        target,
        ok,
        detail,
    )


def bench_train_quality(data: Path, n: int, limit_s: float) -> list[Row]:
    """Train all scores (timed inside), then churn AUC/ECE against the simulator's Bayes limit."""
    store = data.parent / f"store_{n}"
    store.mkdir()
    _, gib, out = run_measured(
        [sys.executable, "bench/train_quality.py", "--data", str(data), "--store", str(store)]
    )
    q = json.loads(out.splitlines()[-1])
    gap = q["auc_bayes_limit"] - q["auc_model"]
    return [
        Row(
            f"train all three scores, {n:,} customers",
            q["train_seconds"],
            gib,
            f"< {limit_s / 60:.0f} min",
            q["train_seconds"] < limit_s,
            "incl. MLflow logging",
        ),
        Row(
            f"churn ROC-AUC at 2026-08-03 ({q['customers']:,} eval customers)",
            0,
            0,
            "within 0.03 of Bayes",
            gap <= 0.03,
            f"model {q['auc_model']:.4f} vs truth {q['auc_bayes_limit']:.4f} (gap {gap:.4f})",
        ),
        Row(
            "churn expected calibration error",
            0,
            0,
            "< 0.02",
            q["ece_model"] < 0.02,
            f"model {q['ece_model']:.4f} (truth itself {q['ece_truth']:.4f})",
        ),
    ]


def bench_train(data: Path, n: int, limit_s: float, limit_gib: float) -> Row:
    store = data.parent / f"store_{n}"
    store.mkdir(exist_ok=True)
    env_uri = f"sqlite:///{store / 'mlflow.db'}"
    ENV["MLFLOW_TRACKING_URI"] = env_uri
    try:
        seconds, gib, _ = run_measured([NEXTBEST, "train", "--data", str(data)])
    finally:
        ENV.pop("MLFLOW_TRACKING_URI", None)
    return Row(
        f"train all three scores, {n:,} customers",
        seconds,
        gib,
        f"< {limit_s / 60:.0f} min, < {limit_gib:.0f} GiB",
        seconds < limit_s and gib < limit_gib,
        "nextbest train, end to end",
    )


def bench_uplift(data: Path, n: int, limit_s: float) -> list[Row]:
    """Issue 4: uplift training time and the learned policy's value against the simulator's truth."""
    store = data.parent / f"uplift_store_{n}"
    store.mkdir()
    _, gib, out = run_measured(
        [sys.executable, "bench/uplift_policy.py", "--data", str(data), "--store", str(store)]
    )
    q = json.loads(out.splitlines()[-1])
    p = q["policies"]
    learned, oracle, churn = p["learned"], p["oracle"], p["churn_targeting"]
    share = learned["true_value"] / oracle["true_value"]
    ratio = learned["true_value"] / churn["true_value"] if churn["true_value"] > 0 else float("inf")
    # the truth covers only the first customers: compare it with the DR over those same rows
    dr, ci = learned["truth_rows_dr_value"], learned["truth_rows_dr_ci"]
    covered = abs(dr - learned["true_value"]) <= ci
    baselines = ", ".join(
        f"{name} {p[name]['oracle_share']:.2f}"
        for name in ("nothing", "random", "best_single", "churn_targeting")
    )
    return [
        Row(
            f"uplift training, {q['exposures']:,} exposures, 5 actions, 4 outcomes",
            q["uplift_seconds"],
            gib,
            f"< {limit_s / 60:.0f} min",
            q["uplift_seconds"] < limit_s,
            "5 learners each, per-action choice",
        ),  # fmt: skip
        Row(
            "learned policy true value / oracle's",
            0,
            0,
            ">= 0.85",
            share >= 0.85,
            f"{share:.2f} (EUR {learned['true_value']:.2f} vs {oracle['true_value']:.2f}); baselines: {baselines}",
        ),  # fmt: skip
        Row(
            "feature ceiling: true net value regressed on features / oracle's",
            0,
            0,
            "(context)",
            None,
            f"{q['feature_ceiling']:.2f}: what noise-free labels would reach from these features",
        ),  # fmt: skip
        Row(
            "policy share with one outcome's true uplift swapped in",
            0,
            0,
            "(context)",
            None,
            ", ".join(f"{o} {v:.2f}" for o, v in q["truth_swaps"].items())
            + ": the outcome whose uplift model limits the policy most has the highest",
        ),  # fmt: skip
        Row(
            "learned policy vs target highest churn",
            0,
            0,
            ">= 2x",
            ratio >= 2,
            f"{ratio:.1f}x (EUR {churn['true_value']:.2f})",
        ),  # fmt: skip
        Row(
            "DR estimate vs true value",
            0,
            0,
            "within 95% CI",
            covered,
            f"DR {dr:.2f} ± {ci:.2f} vs true {learned['true_value']:.2f} on the {learned['truth_rows']:,} "
            f"rows with truth (all {q['held_out']:,} evaluation rows: DR {learned['dr_value']:.2f} ± {learned['dr_ci']:.2f})",
        ),  # fmt: skip
    ]


AS_OF = "2026-11-02"


def _with_store(store: Path) -> dict[str, str]:
    """ENV pointed at an MLflow store (the bundle trained by bench_train_quality)."""
    return ENV | {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}"}


def score_measured(data: Path, store: Path, engine: str) -> tuple[float, float, str]:
    """`nextbest score` of a data set with version 1 of `store`; (seconds, peak GiB, stdout)."""
    out = data.parent / f"score_{data.name}_{engine}"
    cmd = [NEXTBEST, "score", "--data", str(data), "--as-of", AS_OF, "--out", str(out)]
    cmd += ["--model", "1", "--engine", engine]
    ENV.update(_with_store(store))
    try:
        return run_measured(cmd)
    finally:
        ENV.pop("MLFLOW_TRACKING_URI", None)
        shutil.rmtree(out, ignore_errors=True)


@dataclass
class BatchRun:
    customers: int
    seconds: float
    peak_gib: float


def bench_batch_local(data: Path, n: int, store: Path, actions: int) -> tuple[Row, BatchRun]:
    seconds, gib, msg = score_measured(data, store, "local")
    scored = int(msg.split("scored ")[1].split(" ")[0].replace(",", ""))
    row = Row(
        f"batch score, local engine, {n:,} customers x {actions} actions (end to end)",
        seconds,
        gib,
        "< 3 min, < 6 GiB" if n == 1_000_000 else "-",
        seconds < 180 and gib < 6 if n == 1_000_000 else None,
        f"{scored:,} active customers, {scored / seconds:,.0f}/s",
    )
    return row, BatchRun(scored, seconds, gib)


def bench_batch_dask(data: Path, n: int, store: Path, local: BatchRun) -> Row:
    seconds, gib, _ = score_measured(data, store, "dask")
    ratio = local.seconds / seconds
    return Row(
        f"batch score, Dask engine (2-worker LocalCluster), {n:,} customers",
        seconds,
        gib,
        ">= 0.7 of local throughput",
        ratio >= 0.7,
        f"{ratio:.2f} of the local engine ({local.seconds:.0f} s) in this run; client RSS",
    )


def bench_batch_inference(data: Path, store: Path) -> Row:
    cmd = [sys.executable, "bench/batch_inference.py", "--data", str(data), "--model", "1"]
    ENV.update(_with_store(store))
    try:
        seconds, gib, out = run_measured(cmd)
    finally:
        ENV.pop("MLFLOW_TRACKING_URI", None)
    q = json.loads(out.splitlines()[-1])
    return Row(
        f"batch inference alone vs raw LightGBM predict, {q['rows']:,} rows",
        q["inference_seconds"],
        gib,
        ">= 0.7 of raw",
        q["ratio"] >= 0.7,
        f"ratio {q['ratio']:.2f} (raw {q['raw_predict_seconds']:.1f} s, "
        f"{q['boosters_calls']} booster calls)",
    )


def bench_batch_memory(runs: dict[int, BatchRun]) -> Row | None:
    if 1_000_000 not in runs or len(runs) < 2:
        return None
    big = max(runs)
    ratio = runs[big].peak_gib / runs[1_000_000].peak_gib
    return Row(
        f"batch peak memory, {big:,} vs 1,000,000 customers",
        0,
        runs[big].peak_gib,
        "within 1.5x",
        ratio <= 1.5,
        f"{ratio:.2f}x ({runs[big].peak_gib:.2f} vs {runs[1_000_000].peak_gib:.2f} GiB)",
    )


def _ltv_detail(q: dict) -> str:
    def three(f: dict) -> str:
        return f"{f['pearson']:.3f}/{f['spearman']:.3f}/{f['normalized_gini']:.3f}"

    method = q["chosen"]["method"]
    if method == "blend":
        method += f", w = {q['chosen']['selection']['blend']['weight']:g}"
    return (
        f"nextbest ({method}) {three(q['nextbest'])}; BG/NBD x GG (lifetimes) "
        f"{three(q['bgnbd_gg'])}; window revenue scaled {three(q['window_scaled'])} "
        "(Pearson/Spearman/normalized Gini)"
    )


def _retention_row(worlds: dict[int, dict]) -> Row | None:
    """One row: the retention figure of every simulated world side by side, met only when the
    lifetime `ltv` beats the 90-day one on every world (one world's win can be its seed's luck)."""
    kept = {seed: sim["chosen"]["retention"] for seed, sim in worlds.items()
            if sim["chosen"].get("retention") is not None}  # fmt: skip
    if not kept:
        return None

    def pair(f: dict) -> str:
        return f"{f['pearson']:.3f}/{f['spearman']:.3f}"

    detail = "; ".join(
        f"seed {seed}: lifetime ltv {pair(k['lifetime ltv'])} vs 90-day ltv {pair(k['90-day ltv'])}"
        for seed, k in kept.items()
    )
    shape = ", ".join(f"{k['rows']:,}" for k in kept.values())
    return Row(
        f"retention: predicted vs true net value, worlds seed {', '.join(map(str, kept))} "
        f"({shape} held-out exposures x {next(iter(kept.values()))['actions']} actions)",
        0,
        0,
        "Pearson above the 90-day ltv's on every world",
        all(k["lifetime ltv"]["pearson"] > k["90-day ltv"]["pearson"] for k in kept.values()),
        f"Pearson/Spearman, {detail} (truth counts the value kept beyond the window)",
    )


def bench_lifetime(workdir: Path, n: int = 20_000, seeds: tuple[int, ...] = (7, 3)) -> list[Row]:
    """Issue 21: 12-month LTV against the simulator's truth on each world (`nextbest synth
    --seed`) and on CDNOW, with both peers in the same run, the retention figure of every world
    side by side, and the repeat-purchase fit on 1M customers."""
    script = [sys.executable, "-W", "ignore", "bench/lifetime_value.py"]
    keys = ("pearson", "spearman", "normalized_gini")
    rows, worlds = [], {}
    for seed in seeds:
        _, data = bench_synth(n, workdir, 120, None, seed=seed)
        seconds, gib, out = run_measured([*script, "--sim", str(data)])
        sim = worlds[seed] = json.loads(out.splitlines()[-1])
        best_peer = {k: max(sim["bgnbd_gg"][k], sim["window_scaled"][k]) for k in keys}
        rows.append(
            Row(
                f"LTV 12 months vs simulator truth value_12m, world seed {seed} "
                f"({sim['customers']:,} customers)",
                seconds,
                gib,
                ">= both peers on all three",
                all(sim["nextbest"][k] >= best_peer[k] for k in keys),
                _ltv_detail(sim),
            )
        )
        for folder in (data, data.with_name(data.name + "_truth")):  # one world on disk at a time
            shutil.rmtree(folder, ignore_errors=True)
    retention = _retention_row(worlds)
    if retention is not None:
        rows.append(retention)
    seconds, gib, out = run_measured([*script, "--cdnow"])
    cd = json.loads(out.splitlines()[-1])
    rows.append(
        Row(
            "LTV on CDNOW (calibration to 1997-09-30, 39-week holdout revenue)",
            seconds,
            gib,
            ">= BG/NBD x GG, Pearson and Spearman",
            all(cd["nextbest"][k] >= cd["bgnbd_gg"][k] for k in ("pearson", "spearman")),
            _ltv_detail(cd),
        )
    )
    seconds, gib, out = run_measured([*script, "--fit-rows", "1000000"])
    fit = json.loads(out.splitlines()[-1])
    rows.append(
        Row(
            "LTV repeat-purchase fit + 12-month values, 1M customers",
            fit["seconds"],
            gib,
            "< 5 min, < 8 GiB",
            fit["seconds"] < 300 and gib < 8,
            f"BG/NBD x Gamma-Gamma fit {fit['fit_seconds']:.1f} s (survival fits nothing)",
        )
    )
    return rows


def bench_hillstrom() -> list[Row]:
    """Issue 15: Qini on Hillstrom's randomized e-mail test, nextbest beside same-split peers."""
    src = REPO.parent / "shared" / "datasets" / "hillstrom.csv"
    if not src.exists():
        return []
    seconds, gib, out = run_measured([sys.executable, "bench/hillstrom_qini.py", "--src", str(src)])
    q = json.loads(out.splitlines()[-1])
    rows = []
    for name, models in q["comparisons"].items():
        mean = {m: f["mean"] for m, f in models.items()}
        best_peer = max((m for m in mean if m != "nextbest"), key=lambda m: mean[m])
        detail = "; ".join(f"{m} {f['mean']:.4f} ± {f['sd']:.4f}" for m, f in models.items())
        label = {"any_email": "any e-mail", "womens": "womens e-mail"}.get(name, name)
        rows.append(Row(
            f"Qini, Hillstrom ({label} vs none, visit, 70/30 stratified, {len(q['seeds'])} splits)",
            seconds, gib, f">= best peer ({best_peer})", mean["nextbest"] >= mean[best_peer],
            f"mean ± sd: {detail}",
        ))  # fmt: skip
    return rows


def bench_telco() -> Row | None:
    src = REPO.parent / "shared" / "datasets" / "Telco-Customer-Churn.csv"
    if not src.exists():
        return None
    seconds, gib, out = run_measured([sys.executable, "bench/telco_cv.py", "--src", str(src)])
    line = next(x for x in out.splitlines() if "ChurnModel" in x or "nextbest" in x.lower())
    auc = float(line.split("AUC")[1].split()[0])
    return Row(
        "churn ROC-AUC, IBM Telco, 5-fold CV",
        seconds,
        gib,
        ">= 0.845",
        auc >= 0.845,
        " ".join(line.split()[:6]),
    )


def bench_text(customers: int) -> list[Row]:
    """Issue 20: bench/text_quality.py (airline tweets vs same-run peers; the simulator's texts)."""
    cmd = [sys.executable, "bench/text_quality.py", "--customers", str(customers)]
    seconds, gib, output = run_measured(cmd)
    lines = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    rows = []
    sentiment = {f["model"]: f for f in lines if f["figure"] == "airline_sentiment"}
    if sentiment:
        ours = next(f for name, f in sentiment.items() if name.startswith("text model"))
        peers = [f for f in sentiment.values() if f is not ours]
        ok = all(ours[m] >= max(p[m] for p in peers) for m in ("macro_f1", "roc_auc_negative"))
        detail = "; ".join(f"{n}: F1 {f['macro_f1']:.3f}, AUC {f['roc_auc_negative']:.3f}"
                           for n, f in sentiment.items())  # fmt: skip
        rows.append(Row("airline tweets sentiment, held-out 30%: macro-F1, ROC-AUC (negative vs "
                        "rest)", seconds, gib, ">= best same-run peer", ok, detail))  # fmt: skip
        topics = next(f for f in lines if f["figure"] == "airline_topics")
        rows.append(Row("airline tweets: 10 topics vs the human reasons of held-out negatives",
                        0, 0, "reported", None, f"NMI {topics['nmi']:.3f} (n {topics['n']:,})"))  # fmt: skip
    sat = {f["features"]: f for f in lines if f["figure"] == "sim_satisfaction"}
    ok = sat["with text"]["mae"] < sat["without text"]["mae"] and (
        sat["with text"]["spearman"] > sat["without text"]["spearman"]
    )
    detail = "; ".join(f"{k}: MAE {f['mae']:.3f}, Spearman {f['spearman']:.3f}"
                       for k, f in sat.items()) + f" (n test {sat['with text']['n_test']})"  # fmt: skip
    name = f"simulator ({customers:,} customers): satisfaction model with vs without text"
    rows.append(Row(name, 0, 0, "MAE lower, Spearman higher", ok, detail))
    churn = {f["features"]: f["auc"] for f in lines if f["figure"] == "sim_churn"}
    detail = "; ".join(f"{k}: AUC {v:.3f}" for k, v in churn.items())
    ok = churn["with text"] >= churn["without text"]
    rows.append(Row("simulator: churn with vs without text", 0, 0, "AUC not lower", ok, detail))
    per_language = {f["language"]: f["spearman"] for f in lines if f["figure"] == "sim_text_vs_hidden"
                    and f["feature"] == "text_score_mean_90d"}  # fmt: skip
    detail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(per_language.items()))
    ok = min(per_language.values()) >= 0.5
    rows.append(Row("simulator: text_score_mean_90d vs hidden satisfaction, Spearman per language",
                    0, 0, ">= 0.5 in each", ok, detail))  # fmt: skip
    return rows


def bench_text_scale(customers: int, texts: int, distinct: int) -> list[Row]:
    """Issue 20: features with text through the text score cache (bench/text_cache_bench.py): a
    cold run, nightly runs with a warm cache and 1% new texts, and the all-distinct cold run
    extrapolated from the measured scoring rate."""
    tool = [sys.executable, "bench/text_cache_bench.py"]
    work = Path(tempfile.mkdtemp(prefix="nextbest-text-"))
    try:
        _, _, out = run_measured([*tool, "prepare", "--workdir", str(work), "--customers",
                                  str(customers), "--texts", str(texts), "--distinct", str(distinct)])  # fmt: skip
        data = json.loads(out.splitlines()[-1])
        model = ["--model", str(work / "model")]

        def measured(kind: str, cache: str, night: str) -> tuple[float, float, dict]:
            cmd = [*tool, "run", "--data", str(work / kind), *model,
                   "--cache", str(work / cache), "--night", night]  # fmt: skip
            seconds, gib, line = run_measured(cmd)
            return seconds, gib, json.loads(line.splitlines()[-1])

        size = f"{customers:,} customers × {texts:,} texts ({data['events']:,} events)"
        cold_s, cold_gib, cold = measured("dup", "cache_dup", "yesterday")
        dup_s, dup_gib, dup = measured("dup", "cache_dup", "tonight")
        run_measured([*tool, "fill", "--data", str(work / "distinct"), *model, "--cache",
                      str(work / "cache_distinct")])  # fmt: skip
        new_s, new_gib, new = measured("distinct", "cache_distinct", "tonight")
        plain_s, plain_gib, _ = run_measured(
            [*tool, "run", "--data", str(work / "dup"), *model, "--night", "tonight", "--no-text"]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = cold["texts_per_s"]
    limit = "< 3 min, < 8 GiB"
    rows = [
        Row(f"features with text, {size}: cold cache, {data['distinct_dup']:,} distinct texts",
            cold_s, cold_gib, "reported", None,
            f"{cold['scored']:,} texts scored at {rate:,}/s in {cold['score_seconds']:.0f} s; "
            "without the cache every night costs this"),
        Row(f"  nightly, warm cache, {data['new_texts']:,} new texts (1%) from the vocabulary",
            dup_s, dup_gib, limit, dup_s < 180 and dup_gib < 8,
            f"{dup['scored']:,} distinct new texts scored in {dup['score_seconds']:.0f} s; "
            f"{dup['kept']:,} kept"),
        Row(f"  nightly, warm cache, {data['new_texts']:,} new texts (1%), all distinct",
            new_s, new_gib, limit, new_s < 180 and new_gib < 8,
            f"{new['scored']:,} scored in {new['score_seconds']:.0f} s; {new['kept']:,} kept "
            "(the warm table's scores made up by the bench)"),
    ]  # fmt: skip
    rows.append(Row("  the same night without the text features (context)", plain_s, plain_gib,
                    "(context)", None, "the rest of the features: what the text adds is the "
                    "difference"))  # fmt: skip
    cold_all = new_s - new["score_seconds"] + texts / rate
    rows.append(Row(f"  cold cache, all {texts:,} texts distinct (extrapolated)", cold_all, 0,
                    "reported", None, f"the nightly run's other work + {texts:,} texts at "
                    f"{rate:,}/s on one core: {cold_all / 3600:.1f} h, once per text model"))  # fmt: skip
    return rows


def _serve_row(f: dict, target: str, ok: bool | None) -> Row:
    detail = (
        f"{f['rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, "
        f"max {f['max_ms']:.1f} ms, {f['errors']} errors"
    )
    if "lost" in f:
        detail += f", {f['lost']} lost records"
    if "offered" in f:
        detail += f", {f['offered']:.0%} of decisions offered an action"
    if "server_cpu_ms_per_request" in f:
        cores = " + ".join(f"{c:.2f}" for c in f["process_cores"])
        detail += f", server CPU {f['server_cpu_ms_per_request']:.2f} ms a request (cores {cores})"
    return Row(f"{f['service']}: {f['figure']}", 0, 0, target, ok, detail)


def bench_serve(open_seconds: float) -> list[Row]:
    """bench/serve_bench.py: /recommend (20 actions, all models) beside a bare one-model service."""
    cmd = [sys.executable, "bench/serve_bench.py", "--open-seconds", str(open_seconds)]
    _, _, output = run_measured(cmd)
    figures = {(f["service"], f["kind"]): f for f in map(json.loads, output.splitlines())}
    bare8 = figures[("bare", "c8")]
    rows = [_serve_row(f, "reference", None) for (svc, _), f in figures.items() if svc == "bare"]
    one, eight = figures[("nextbest", "c1")], figures[("nextbest", "c8")]
    rows.append(
        _serve_row(one, "p50 <= 3 ms, p99 <= 8 ms", one["p50_ms"] <= 3 and one["p99_ms"] <= 8)
    )
    ok8 = eight["rps"] >= bare8["rps"] and eight["p99_ms"] <= 30
    rows.append(_serve_row(eight, f">= bare ({bare8['rps']:.0f}/s), p99 <= 30 ms", ok8))
    loop = figures[("nextbest", "open")]
    ok_loop = (
        loop["p99_ms"] <= 20 and loop["max_ms"] <= 100 and not loop["errors"] and not loop["lost"]
    )
    rows.append(_serve_row(loop, "p99 <= 20 ms, max <= 100 ms, 0 errors, 0 lost", ok_loop))
    ingest = figures[("nextbest", "events")]
    ok_ingest = ingest["events_per_s"] >= 5000 and ingest["p99_ms"] <= 50 and not ingest["errors"]
    row = _serve_row(ingest, ">= 5,000 events/s, p99 <= 50 ms", ok_ingest)
    row.detail = f"{ingest['events_per_s']:,.0f} events/s, {row.detail}"
    rows.append(row)
    stored = figures[("nextbest", "events_stored")]
    rows.append(_serve_row(stored, "p99 <= 50 ms (computes and shares the customer's row)",
                           stored["p99_ms"] <= 50 and not stored["errors"]))  # fmt: skip
    for f, plain in (("c1_events_first", "c1_first_plain"), ("c1_events", "c1_later_plain")):
        live = figures[("nextbest", f)]
        rows.append(
            _serve_row(
                live, "p50 <= 3 ms, p99 <= 8 ms", live["p50_ms"] <= 3 and live["p99_ms"] <= 8
            )
        )
        rows.append(_serve_row(figures[("nextbest", plain)], "reference (same moments)", None))
    trigger = figures[("nextbest", "trigger")]
    rows.append(
        _serve_row(trigger, "<= 20 ms until readable from /outbox", trigger["p99_ms"] <= 20)
    )
    mixed = figures[("nextbest", "open_mixed")]
    ok_mixed = (
        mixed["p99_ms"] <= 20
        and mixed["max_ms"] <= 100
        and not mixed["errors"]
        and not mixed["lost"]
    )
    rows.append(_serve_row(mixed, "p99 <= 20 ms, max <= 100 ms, 0 errors, 0 lost", ok_mixed))
    return rows


def bench_drift(customers: int = 20_000) -> list[Row]:
    """bench/drift_bench.py (issue 19): the batch drift check at 1M customers (each part its own
    process: its wall time and peak RSS), the exact-KS peer, and /recommend with shadow on/off."""
    script = [sys.executable, "bench/drift_bench.py"]
    workdir = Path(tempfile.mkdtemp(prefix="nextbest-drift-bench-"))
    rows = []
    try:
        run_measured([*script, "--part", "drift-setup", "--workdir", str(workdir),
                      "--customers", str(customers)])  # fmt: skip
        for part in ("unshifted", "shifted", "exact-ks"):
            seconds, gib, output = run_measured(
                [*script, "--part", part, "--workdir", str(workdir)]
            )
            f = json.loads(output)
            flagged = f["flagged"]
            shown = ", ".join(flagged[:4]) + (
                f" and {len(flagged) - 4} more" if len(flagged) > 4 else ""
            )
            detail = f"{f['seconds']:.1f} s in the check; {len(flagged)} flagged" + (
                f": {shown}" if flagged else ""
            )
            if part == "unshifted":
                target, ok = (
                    "< 30 s, < 2 GiB, 0 false alarms",
                    seconds < 30 and gib < 2 and not flagged,
                )
            elif part == "shifted":
                moved = all(any(w in n for w in ("web", "purchase", "revenue")) for n in flagged)
                target, ok = "flags the purchase and web features only", bool(flagged) and moved
            else:
                target, ok = "reference (binned check above)", None
            rows.append(
                Row(
                    f["figure"],
                    seconds,
                    gib,
                    target,
                    ok,
                    detail + f"; max PSI {f.get('max_psi', '-')}",
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _, _, output = run_measured([*script, "--part", "shadow"])
    figures = {f["kind"]: f for f in map(json.loads, output.splitlines())}
    for kind in ("shadow_off", "shadow_on"):
        f = figures[kind]
        ok = f["p99_ms"] <= 12 if kind == "shadow_on" else None
        row = _serve_row(
            f | {"service": "nextbest"}, "p99 <= 12 ms" if ok is not None else "reference", ok
        )
        row.detail += f", logged {f['logged']} (shadow flag: rows)"
        rows.append(row)
    return rows


def bench_history(open_seconds: float) -> list[Row]:
    """bench/history_bench.py: the contact history on SQLite vs PostgreSQL, two replicas on one."""
    cmd = [sys.executable, "bench/history_bench.py", "--open-seconds", str(open_seconds)]
    _, _, output = run_measured(cmd)
    f = {x["kind"]: x | {"service": "nextbest"} for x in map(json.loads, output.splitlines())}
    lite, pg, two = f["c1_sqlite"], f["c1_postgresql"], f["replicas"]
    rows = [
        _serve_row(lite, "reference", None),
        _serve_row(pg, "p50 <= 4 ms, p99 <= 10 ms", pg["p50_ms"] <= 4 and pg["p99_ms"] <= 10),
    ]
    ok = two["p99_ms"] <= 25 and not two["errors"] and not two["lost"] and not two["violations"]
    row = _serve_row(two, "p99 <= 25 ms, 0 errors, 0 lost, 0 cap violations", ok)
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(two["feedback"].items()))
    row.detail += f", {two['violations']} cap violations (acceptances by status: {answers})"
    return [*rows, row]


def bench_faults() -> list[Row]:
    """bench/faults_bench.py: what the service and the batch job survive (issue 16)."""
    _, _, output = run_measured([sys.executable, "bench/faults_bench.py"])
    f = {x["figure"]: x for x in map(json.loads, output.splitlines())}
    metrics, swaps, kill, bad = f["metrics"], f["swaps"], f["kill9"], f["corrupt"]
    return [
        Row(
            "/metrics after 10,000 distinct unknown paths",
            0,
            0,
            "< 100 kB, scrape < 50 ms",
            metrics["kb"] < 100 and metrics["scrape_ms"] < 50,
            f"{metrics['kb']} kB, scrape {metrics['scrape_ms']} ms (median of 5)",
        ),
        Row(
            "20 store swaps by rename under 200 req/s",
            0,
            0,
            "0 errors; <= 1 handle to replaced stores",
            swaps["errors"] == 0 and swaps["deleted_handles"] <= 1,
            f"{swaps['requests']} requests, {swaps['errors']} errors, "
            f"{swaps['deleted_handles']} handles to replaced stores after the swaps",
        ),
        Row(
            "kill -9 of every worker under load",
            0,
            0,
            "0 answered missing; 0 logged unseen",
            kill["missing"] == 0 and kill["unseen"] == 0,
            f"{kill['answered']} answered, {kill['missing']} missing from the log, "
            f"{kill['unseen']} logged but not received ({kill['late']} decided after the client "
            f"left), back in {kill['restart_s']} s",
        ),
        Row(
            "corrupt champion (truncated model file)",
            0,
            0,
            "ready on previous or never ready; 0 restarts; score exit 2, 1 line",
            bad["running_ready_on_v1"]
            and not bad["running_restarted"]
            and bad["fresh_never_ready"]
            and bad["fresh_restarts"] == 0
            and bad["score_exit"] == 2
            and bad["score_lines"] == 1,
            f"running: ready on v1 {bad['running_ready_on_v1']}, restarted "
            f"{bad['running_restarted']}; fresh: never ready {bad['fresh_never_ready']}, "
            f"{bad['fresh_restarts']} restarts; score exit {bad['score_exit']}, "
            f"{bad['score_lines']} line(s)",
        ),
    ]


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def bench_batch(data: Path, n: int, store: Path, runs: dict[int, BatchRun]) -> list[Row]:
    """Batch rows of one big data set: the local engine, and at 1M the inference ratio and the
    Dask engine measured in the same run."""
    actions = len(_catalog_ids())
    row, runs[n] = bench_batch_local(data, n, store, actions)
    if n != 1_000_000:
        return [row]
    return [row, bench_batch_inference(data, store), bench_batch_dask(data, n, store, runs[n])]


def _catalog_ids() -> list[str]:
    from training.config import load_config

    return list(load_config().catalog.ids)


def render(rows: list[Row]) -> None:
    table = Table(title="nextbest bench (2 cores, this machine)")
    for col in ("figure", "wall s", "peak RSS GiB", "target", "met", "detail"):
        table.add_column(col)
    for r in rows:
        met = "-" if r.ok is None else ("yes" if r.ok else "NO")
        table.add_row(r.figure, f"{r.seconds:.1f}", f"{r.peak_gib:.2f}", r.target, met, r.detail)
    Console(width=160).print(table)


def bench_loop(customers: int = 8000, impact_customers: int = 6000) -> list[Row]:
    """Issue 19: the closed loop on the simulator (4 rounds) and impact estimates against their
    truth over 10 simulated production months."""
    script = [sys.executable, "-W", "ignore", "bench/loop_bench.py"]
    seconds, gib, out = run_measured(
        [*script, "--loop", "--rounds", "4", "--customers", str(customers)]
    )
    loop = json.loads(out.splitlines()[-1])
    shares = [r["value_share"] for r in loop["rounds"]]
    learned = shares[1:]
    rising = all(b > a for a, b in zip(shares, shares[1:], strict=False))
    verdicts = [
        "promoted" if "refused" not in r["promotion"] else "refused" for r in loop["rounds"][1:]
    ]
    impacts = [(r["impact"], r["impact_ci"], r["impact_truth"]) for r in loop["rounds"][1:]]
    impacts.append(tuple(loop["last_impact"]))
    inside = sum(abs(e - t) <= c for e, c, t in impacts)
    rows = [
        Row(
            f"closed loop, 4 rounds after round 0 ({customers:,} customers, simulator)",
            seconds,
            gib,
            "true value share rises round over round, ends >= 0.85",
            rising and learned[-1] >= 0.85,
            "share of the oracle by round: "
            + ", ".join(f"{s:.2f}" for s in shares)
            + "; what the features allow (a model fitted to the true values, cross-fitted): "
            + ", ".join(f"{r['ceiling_share']:.2f}" for r in loop["rounds"][1:])
            + f"; gate: {', '.join(verdicts)}; impact intervals covering the truth: "
            f"{inside}/{len(impacts)}",
        )
    ]
    seconds, gib, out = run_measured(
        [*script, "--impact", "--draws", "10", "--customers", str(impact_customers)]
    )
    draws = json.loads(out.splitlines()[-1])["draws"]
    covered = sum(d["covered"] for d in draws)
    errors = [d["estimate"] - d["truth"] for d in draws]
    rows.append(
        Row(
            f"impact vs truth, 10 simulated production months ({impact_customers:,} customers each)",
            seconds,
            gib,
            "95% interval covers the truth in >= 9 of 10",
            covered >= 9,
            f"covered {covered}/10; mean half-width {np.mean([d['ci'] for d in draws]):.2f} EUR, "
            f"mean error {np.mean(errors):+.2f}, truth {np.mean([d['truth'] for d in draws]):+.2f} "
            "EUR per decision",
        )
    )
    greedy = [g for d in draws for g in d["greedy"]]
    inside = sum(abs(g["estimate"] - g["truth"]) <= g["ci"] for g in greedy)
    actions = sorted({g["action"] for g in greedy})
    rows.append(
        Row(
            "impact per greedy action vs truth, the same 10 months (policy vs control group on the "
            "customers it wanted each action for)",
            seconds,
            gib,
            "",
            None,
            f"covered {inside}/{len(greedy)} ({', '.join(actions)}: the greedy actions with >= 20 "
            f"control-group decisions); mean half-width {np.mean([g['ci'] for g in greedy]):.2f} "
            f"EUR, mean error {np.mean([g['estimate'] - g['truth'] for g in greedy]):+.2f}",
        )
    )
    return rows


def bench_uplift_only(n: int, keep: bool = False) -> list[Row]:
    """Issue 4's rows alone: the uplift world of n customers and Hillstrom."""
    workdir = Path(tempfile.mkdtemp(prefix="nextbest-bench-"))
    try:
        _, data = bench_synth(n, workdir, 600, None)
        rows = bench_uplift(data, n, 300)
        return rows + bench_hillstrom()
    finally:
        if keep:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def bench_peers(mode: str, keep: bool = False, workers: int = 3) -> list[Row]:
    """Issue 15's peer panel over the shapes of `uplift_peers.PANEL[mode]`, then Hillstrom.

    Jobs (one shape x seed each, and Hillstrom) run `workers` at a time, each its own child
    process; every finished job's figures are appended to `<workdir>/peers.jsonl` as they come."""
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(REPO / "bench"))
    from uplift_peers import PANEL, peer_rows, run_shape

    workdir = Path(tempfile.mkdtemp(prefix="nextbest-peers-"))
    log = workdir / "peers.jsonl"
    shapes = PANEL[mode]
    jobs = sorted(
        ((i, seed) for i, shape in enumerate(shapes) for seed in shape.seeds),
        key=lambda job: (shapes[job[0]].seeds.index(job[1]), job[0]),
    )  # every shape's first seed first

    def run(job: tuple[int, int]) -> dict[str, object]:
        try:
            result = run_shape(shapes[job[0]], job[1], workdir, run_measured)
        except RuntimeError as failed:  # a job's error must not wait for the whole panel
            with (workdir / "peers_failed.txt").open("a") as out:
                out.write(f"shape {job[0]} seed {job[1]}: {failed}\n")
            raise
        with log.open("a") as out:
            out.write(json.dumps({"shape": job[0], "seed": job[1]} | result) + "\n")
        return result

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {job: pool.submit(run, job) for job in jobs[: workers - 1]}
            hillstrom = pool.submit(bench_hillstrom)
            futures |= {job: pool.submit(run, job) for job in jobs[workers - 1 :]}
            results = {job: future.result() for job, future in futures.items()}
            rows: list[Row] = []
            for i, shape in enumerate(shapes):
                done = [results[(i, seed)] for seed in shape.seeds]
                rows += [Row(**r) for r in peer_rows(shape, done)]
            return rows + hillstrom.result()
    finally:
        if keep:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


POLICY_NOW = "2026-11-02T09:00:00+00:00"  # the batch's "now": its contact history as of then


def bench_policy(n: int, contacts: int, keep: bool = False) -> list[Row]:
    """Issue 18: batch of n customers x every demo action with the contact policy (caps per
    action, per channel, across actions, e-mail consent) applied from a history of `contacts`
    contacts, beside the same batch without history; the bundle is trained on 10k customers
    with the policy in its config (bench/policy_bench.py)."""
    workdir = Path(tempfile.mkdtemp(prefix="nextbest-bench-"))
    bench = [sys.executable, "bench/policy_bench.py"]
    try:
        config = workdir / "config"
        run_measured([*bench, "config", "--out", str(config)])
        _, small = bench_synth(10_000, workdir, 600, None)
        ENV.update(_with_store(workdir))
        run_measured(
            [NEXTBEST, "train", "--data", str(small), "--config", str(config / "config.yaml")]
        )
        synth, data = bench_synth(n, workdir, 900, None)
        log = workdir / "history.sqlite"
        built, _, _ = run_measured(
            [*bench, "history", "--data", str(data), "--log", str(log),
             "--contacts", str(contacts), "--now", POLICY_NOW]
        )  # fmt: skip
        ENV["NEXTBEST_NOW"] = POLICY_NOW
        score = [NEXTBEST, "score", "--data", str(data), "--as-of", AS_OF, "--model", "1"]
        plain_s, plain_gib, plain_out = run_measured([*score, "--out", str(workdir / "plain")])
        policed = [*score, "--out", str(workdir / "policed"), "--decision-log", str(log)]
        seconds, gib, out = run_measured(policed)
        selected = [_selected(workdir / name) for name in ("plain", "policed")]
        actions = len(_catalog_ids())
        return [
            synth,
            Row(
                f"batch, {n:,} customers x {actions} actions, no contact history",
                plain_s,
                plain_gib,
                "-",
                None,
                f"{selected[0]:,} selected (consent applies)",
            ),
            Row(
                f"batch, {n:,} customers x {actions} actions, contact policy from "
                f"{contacts:,} contacts",
                seconds,
                gib,
                "< 4 min, < 6 GiB" if n >= 1_000_000 else "-",
                seconds < 240 and gib < 6 if n >= 1_000_000 else None,
                f"{selected[1]:,} selected; {seconds - plain_s:+.0f} s vs no history "
                f"(history written in {built:.0f} s, not counted)",
            ),
            bench_s_learner(data),
        ]
    finally:
        ENV.pop("NEXTBEST_NOW", None)
        ENV.pop("MLFLOW_TRACKING_URI", None)
        if keep:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def bench_s_learner(data: Path, customers: int = 100_000) -> Row:
    """The bundle's uplift S-learners' predictions on ~`customers` rows, every arm down each tree
    at once (ArmForest) vs LightGBM's predict once per arm, in one process
    (bench/slearner_predict.py)."""
    cmd = [sys.executable, "bench/slearner_predict.py", "--data", str(data), "--model", "1"]
    _, gib, out = run_measured([*cmd, "--customers", str(customers)])
    q = json.loads(out.splitlines()[-1])
    if "whole_model_seconds" not in q:
        return Row("uplift S-learner predictions", q["seconds"], gib, "-", None, "no forest")
    bound = sum(b for _, b in q["trees"].values())
    trees = sum(f + b for f, b in q["trees"].values())
    return Row(
        f"uplift S-learner predictions, {q['rows']:,} rows x {q['arms_predicted']} arms "
        f"({q['s_learners']} learners), all arms down each tree at once",
        q["seconds"],
        gib,
        "-",
        None,
        f"LightGBM once per arm (same run) {q['whole_model_seconds']:.1f} s = "
        f"{q['whole_model_seconds'] / q['seconds']:.1f}x (CPU {q['whole_model_cpu_seconds']:.1f} "
        f"vs {q['cpu_seconds']:.1f} s); {bound} of {trees} trees read the arm; "
        f"largest difference {q['max_difference_of_scale']:.0e} of the largest uplift; "
        f"first call of a process (numba) {q.get('first_call_seconds', 0.0):.1f} s, not counted",
    )


def _selected(out: Path) -> int:
    return int(json.loads((out / "_nextbest.json").read_text()).get("selected", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="100000,1000000,5000000", help="customer counts, comma-separated"
    )
    parser.add_argument(
        "--uplift-size", type=int, default=200_000, help="customers of the uplift world (0: skip)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated data sets")
    parser.add_argument(
        "--uplift-only",
        action="store_true",
        help="only issue 4's figures (uplift world, Hillstrom)",
    )
    parser.add_argument(
        "--serve-only", action="store_true", help="only the serving figures (bench/serve_bench.py)"
    )
    parser.add_argument(
        "--peers-only",
        choices=("quick", "full"),
        help="only issue 15's peer panel (bench/uplift_peers.py) and Hillstrom: quick (20k "
        "customers) or full (also 50k and 200k)",
    )
    parser.add_argument(
        "--peer-jobs", type=int, default=3, help="peer-panel jobs at a time (each uses 2 threads)"
    )
    parser.add_argument(
        "--open-seconds", type=float, default=120, help="duration of the serving open loop"
    )
    parser.add_argument(
        "--faults-only", action="store_true", help="only the fault figures (bench/faults_bench.py)"
    )
    parser.add_argument(
        "--text-only", action="store_true", help="only the text figures (bench/text_quality.py)"
    )
    parser.add_argument(
        "--history-only",
        action="store_true",
        help="only the contact-history figures (bench/history_bench.py): SQLite vs PostgreSQL",
    )
    parser.add_argument(
        "--text-customers", type=int, default=12_000, help="customers of the text simulator world"
    )
    parser.add_argument(
        "--text-scale-only",
        action="store_true",
        help="only the text-at-scale figures (bench/text_cache_bench.py)",
    )
    parser.add_argument(
        "--text-scale",
        default="1000000,10000000,200000",
        help="customers,texts,distinct texts of the text-at-scale data",
    )
    parser.add_argument(
        "--lifetime-only", action="store_true", help="only issue 21's lifetime-value figures"
    )
    parser.add_argument(
        "--lifetime-seeds",
        default="7,3",
        help="simulator worlds (synth seeds) of the lifetime figures; one seed saves a world's time",
    )
    parser.add_argument(
        "--loop-only", action="store_true", help="only issue 19's closed loop and impact figures"
    )
    parser.add_argument(
        "--drift-only", action="store_true", help="only issue 19's drift and shadow figures"
    )
    parser.add_argument(
        "--policy-only",
        action="store_true",
        help="only issue 18's batch figure: the contact policy from a large history",
    )
    parser.add_argument(
        "--policy-size", type=int, default=1_000_000, help="customers of the policy batch"
    )
    parser.add_argument(
        "--policy-contacts", type=int, default=5_000_000, help="contacts in its history"
    )
    args = parser.parse_args()
    if args.drift_only:
        render(bench_drift())
        return
    if args.loop_only:
        render(bench_loop())
        return
    if args.policy_only:
        render(bench_policy(args.policy_size, args.policy_contacts, args.keep))
        return
    if args.text_only:
        render(bench_text(args.text_customers))
        return
    text_scale = [int(x) for x in args.text_scale.split(",")]
    if args.text_scale_only:
        render(bench_text_scale(*text_scale))
        return
    if args.lifetime_only:
        workdir = Path(tempfile.mkdtemp(prefix="nextbest-bench-"))
        try:
            seeds = tuple(int(x) for x in args.lifetime_seeds.split(","))
            render(bench_lifetime(workdir, seeds=seeds))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    if args.faults_only:
        render(bench_faults())
        return
    if args.history_only:
        render(bench_history(args.open_seconds))
        return
    if args.serve_only:
        render(bench_serve(args.open_seconds))
        return
    if args.peers_only:
        render(bench_peers(args.peers_only, args.keep, args.peer_jobs))
        return
    if args.uplift_only:
        render(bench_uplift_only(args.uplift_size, args.keep))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="nextbest-bench-"))
    rows: list[Row] = []
    batch: dict[int, BatchRun] = {}
    store = workdir / f"store_{min(sizes)}"  # the bundle every batch row scores with
    try:
        for n in sizes:
            big, huge = n >= 1_000_000, n > 1_000_000
            row, data = bench_synth(n, workdir, 600 if big else 60, 8 if big else None)
            rows.append(row)
            if n == max(s for s in sizes if s <= 1_000_000):
                rows.append(bench_features(data, n, 120, 8))
            if n == min(sizes):
                rows += bench_train_quality(data, n, 180)
            elif big and not huge:
                rows.append(bench_train(data, n, 1200, 12))
            if big:
                rows += bench_batch(data, n, store, batch)
            if huge:
                shutil.rmtree(data, ignore_errors=True)  # 5M: several GiB of events
            render(rows)
        if args.uplift_size:
            _, data = bench_synth(args.uplift_size, workdir, 600, None)
            rows += bench_uplift(data, args.uplift_size, 300)
            render(rows)

        rows += bench_lifetime(workdir, seeds=tuple(int(x) for x in args.lifetime_seeds.split(",")))
        render(rows)
        rows += bench_hillstrom()
        memory = bench_batch_memory(batch)
        if memory is not None:
            rows.append(memory)
        telco = bench_telco()
        if telco is not None:
            rows.append(telco)
        rows += bench_text(args.text_customers)
        rows += bench_text_scale(*text_scale)
        rows += bench_serve(args.open_seconds)
        rows += bench_drift()
        rows += bench_faults()
        rows += bench_history(args.open_seconds)
        rows += bench_loop()
        render(rows)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data kept in {workdir}")


if __name__ == "__main__":
    main()
