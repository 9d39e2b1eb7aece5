"""`make bench`: measure the figures the issues name and print them as one table.

Every step runs as its own child process, so its wall time and peak RSS (from `os.wait4`) are its own.
Sizes default to the issue's figures (100k and 1M customers); `--sizes 20000` gives a quick run.
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

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
NEXTBEST = str(Path(sys.executable).with_name("nextbest"))
ENV = os.environ | {
    "OMP_NUM_THREADS": "1",
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


def bench_synth(n: int, workdir: Path, limit_s: float, limit_gib: float | None) -> tuple[Row, Path]:
    out = workdir / f"synth_{n}"
    seconds, gib, _ = run_measured([NEXTBEST, "synth", "--customers", str(n), "--out", str(out)])
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


def _serve_row(f: dict, target: str, ok: bool | None) -> Row:
    detail = (
        f"{f['rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms, "
        f"max {f['max_ms']:.1f} ms, {f['errors']} errors"
    )
    if "lost" in f:
        detail += f", {f['lost']} lost records"
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
    return rows


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def render(rows: list[Row]) -> None:
    table = Table(title="nextbest bench (2 cores, this machine)")
    for col in ("figure", "wall s", "peak RSS GiB", "target", "met", "detail"):
        table.add_column(col)
    for r in rows:
        met = "-" if r.ok is None else ("yes" if r.ok else "NO")
        table.add_row(r.figure, f"{r.seconds:.1f}", f"{r.peak_gib:.2f}", r.target, met, r.detail)
    Console(width=160).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="100000,1000000", help="customer counts, comma-separated"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated data sets")
    parser.add_argument(
        "--serve-only", action="store_true", help="only the serving figures (bench/serve_bench.py)"
    )
    parser.add_argument(
        "--open-seconds", type=float, default=120, help="duration of the serving open loop"
    )
    args = parser.parse_args()
    if args.serve_only:
        render(bench_serve(args.open_seconds))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="nextbest-bench-"))
    rows: list[Row] = []
    try:
        for n in sizes:
            big = n >= 1_000_000
            row, data = bench_synth(n, workdir, 600 if big else 60, 8 if big else None)
            rows.append(row)
            if n == max(sizes):
                rows.append(bench_features(data, n, 120, 8))
            if n == min(sizes):
                rows += bench_train_quality(data, n, 180)
            elif big:
                rows.append(bench_train(data, n, 1200, 12))
            render(rows)
        telco = bench_telco()
        if telco is not None:
            rows.append(telco)
        rows += bench_serve(args.open_seconds)
        render(rows)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"data kept in {workdir}")


if __name__ == "__main__":
    main()
