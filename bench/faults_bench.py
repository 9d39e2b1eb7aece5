"""Fault figures (issue 16): what the service and the batch job survive, measured on a real server.

Set-up: a 3,000-customer synthetic world trained twice (versions 1 and 2), version 1 the champion,
its store materialized; the service on 2 workers polling every 0.5 s. Then:
- /metrics size and scrape time after 10,000 requests to distinct unknown paths;
- 20 store swaps by rename under an open loop of 200 req/s: errors, and descriptors the workers
  still hold on replaced (deleted) store files afterwards;
- kill -9 of every worker under load (4 clients, 3 s client timeout): answered decisions missing
  from the log, and logged decisions no client received (of which: decided after the client left);
- a corrupt champion (version 2 with a truncated model file promoted): does the running service
  stay ready on version 1, does a fresh one stay alive and unready, do worker processes restart,
  and what `nextbest score` answers.

Prints one JSON object per figure; `bench/run.py --faults-only` turns them into table rows.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import (  # noqa: E402
    AS_OF,
    NEXTBEST,
    Client,
    Served,
    bench_workdir,
    open_loop,
    run,
    start,
    stop,
)

CUSTOMERS = 3000


def prepare(workdir: Path, env: dict[str, str]) -> Path:
    data = workdir / "data"
    run([NEXTBEST, "synth", "--customers", str(CUSTOMERS), "--out", str(data)], env, workdir)
    for _ in range(2):
        run([NEXTBEST, "train", "--data", str(data)], env, workdir)
    set_champion("1", env, workdir)
    store = workdir / "live" / "online_store.sqlite"
    run(
        [NEXTBEST, "materialize", "--data", str(data), "--as-of", AS_OF, "--out", str(store)],
        env,
        workdir,
    )
    shutil.copy(store, workdir / "spare.sqlite")
    return store


def set_champion(version: str, env: dict[str, str], cwd: Path) -> None:
    script = (
        "import mlflow; from training.registry.tracking import configure_tracking; configure_tracking(); "
        f"mlflow.MlflowClient().set_registered_model_alias('nextbest', 'champion', '{version}')"
    )
    run([sys.executable, "-c", script], env, cwd)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def workers(served: Served) -> set[int]:
    """Worker processes of the server: its descendants running a BentoML worker."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {served.process.pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    pids = set()
    for pid in family - {served.process.pid}:
        try:
            if b"_bentoml_impl.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.add(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def deleted_handles(pids: set[int], name: str) -> int:
    count = 0
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except (FileNotFoundError, ProcessLookupError):
            continue
        count += sum(1 for link in links if name in link and link.endswith("(deleted)"))
    return count


def customers(store: Path, n: int) -> list[str]:
    with sqlite3.connect(store) as con:
        return [r[0] for r in con.execute("SELECT customer_id FROM features LIMIT ?", (n,))]


def metrics_flood(served: Served) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    for n in range(10_000):
        conn.request("GET", f"/scan-{n}")
        conn.getresponse().read()
    conn.close()
    times, size = [], 0
    for _ in range(5):
        started = time.perf_counter()
        status, body = get(served.port, "/metrics")
        times.append((time.perf_counter() - started) * 1000)
        size = len(body)
    times.sort()
    return {"figure": "metrics", "kb": round(size / 1024, 1), "scrape_ms": round(times[2], 1)}


def rename_swaps(served: Served, store: Path, spare: Path) -> dict[str, object]:
    body = {"customer_id": customers(store, 1)[0], "channel": "call_center"}
    done = threading.Event()

    def swapper() -> None:
        for _ in range(20):
            time.sleep(0.6)
            tmp = store.with_name(".swap")
            shutil.copyfile(spare, tmp)
            os.replace(tmp, store)
        done.set()

    thread = threading.Thread(target=swapper)
    thread.start()
    result = open_loop(lambda: Client(served.port, "/recommend", body), 200.0, 14.0)
    thread.join()
    time.sleep(3.5)  # replaced runtimes close 2 s after their swap, at the next poll
    return {
        "figure": "swaps",
        "requests": int(len(result.latencies_ms)),
        "errors": result.errors,
        "deleted_handles": deleted_handles(workers(served), store.name),
    }


def kill_all_workers(served: Served, store: Path, log: Path) -> dict[str, object]:
    ids, timeout = customers(store, 200), 3.0
    answered: dict[str, str] = {}
    sent: dict[str, float] = {}
    lock, stop_event = threading.Lock(), threading.Event()
    counter = iter(range(10**9))

    def client(k: int) -> None:
        while not stop_event.is_set():
            n = next(counter)
            rid = f"k{k}-{n}"
            body = {
                "customer_id": ids[n % len(ids)],
                "channel": "call_center",
                "context": {"rid": rid},
            }
            with lock:
                sent[rid] = time.time()
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=timeout)
            try:
                conn.request(
                    "POST", "/recommend", json.dumps(body), {"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                payload = response.read()
                if response.status == 200:
                    with lock:
                        answered[rid] = json.loads(payload)["decision_id"]
            except OSError:
                pass
            finally:
                conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    for pid in workers(served):
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    time.sleep(timeout + 1)
    while get_status(served.port, "/readyz") != 200 and time.monotonic() - started < 180:
        time.sleep(0.5)
    restart = time.monotonic() - started
    time.sleep(2.0)
    stop_event.set()
    for t in threads:
        t.join()
    with sqlite3.connect(log) as con:
        rows = con.execute("SELECT decision_id, ts, context FROM decisions").fetchall()
    logged = {}
    for decision_id, ts, context in rows:
        rid = json.loads(context).get("rid")
        if rid is not None and rid.startswith("k"):
            logged[rid] = (decision_id, ts)
    missing = sum(1 for rid, d in answered.items() if logged.get(rid, ("",))[0] != d)
    unseen = [rid for rid in logged if rid not in answered]
    late = [
        rid
        for rid in unseen
        if datetime.fromisoformat(logged[rid][1]).timestamp() - sent[rid] > timeout
    ]
    return {
        "figure": "kill9",
        "answered": len(answered),
        "missing": missing,
        "unseen": len(unseen),
        "late": len(late),
        "restart_s": round(restart, 1),
    }


def get_status(port: int, path: str) -> int:
    try:
        return get(port, path)[0]
    except OSError:
        return 0


def corrupt_champion(
    served: Served, workdir: Path, env: dict[str, str], service_env: dict[str, str]
) -> dict[str, object]:
    script = "from training.registry.mlflow_models import bundle_folder; print(bundle_folder('2'))"
    folder = Path(
        subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=workdir, capture_output=True, text=True
        ).stdout.strip()
    )
    model = folder / "models" / "churn" / "model.txt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    pids = workers(served)
    set_champion("2", env, workdir)
    time.sleep(5)
    ready = all(
        get_status(served.port, "/readyz") == 200
        and json.loads(get(served.port, "/readyz")[1])["model_version"] == "1"
        for _ in range(6)
    )
    restarted = workers(served) != pids
    fresh = start_unready(service_env, workdir)
    done = subprocess.run(
        [NEXTBEST, "score", "--data", str(workdir / "data"), "--as-of", AS_OF,
         "--out", str(workdir / "score")],
        env=env, cwd=workdir, capture_output=True, text=True,
    )  # fmt: skip
    set_champion("1", env, workdir)
    return {
        "figure": "corrupt",
        "running_ready_on_v1": ready,
        "running_restarted": restarted,
        "fresh_never_ready": fresh["never_ready"],
        "fresh_restarts": fresh["restarts"],
        "score_exit": done.returncode,
        "score_lines": len(done.stderr.strip().splitlines()),
    }


def start_unready(service_env: dict[str, str], workdir: Path) -> dict[str, object]:
    """A fresh server on the corrupt champion, watched for 15 s."""
    from serve_bench import free_port

    port = free_port()
    env = service_env | {"BENTOML_HOME": str(workdir / f"bentoml-{port}")}
    out = open(workdir / "unready.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.online.service:Nextbest",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    served = Served(port, process)
    try:
        deadline = time.monotonic() + 120
        while get_status(port, "/healthz") != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        seen: set[int] = set()
        never_ready = True
        for _ in range(30):
            seen |= workers(served)
            never_ready &= get_status(port, "/readyz") == 503
            time.sleep(0.5)
        return {"never_ready": never_ready, "restarts": len(seen) - 2}
    finally:
        stop(served)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, help="keep the set-up here and reuse it next time")
    args = parser.parse_args()
    workdir, env = bench_workdir(args.workdir, "nextbest-faults-bench-")
    try:
        store = workdir / "live" / "online_store.sqlite"
        if not store.exists():
            store = prepare(workdir, env)
        log = workdir / "decision_log.sqlite"
        service_env = env | {
            "NEXTBEST_ONLINE_STORE": str(store),
            "NEXTBEST_DECISION_LOG": str(log),
            "NEXTBEST_RELOAD_SECONDS": "0.5",
        }
        served = start("serving.online.service:Nextbest", service_env, workdir)
        try:
            print(json.dumps(metrics_flood(served)), flush=True)
            print(json.dumps(rename_swaps(served, store, workdir / "spare.sqlite")), flush=True)
            print(json.dumps(kill_all_workers(served, store, log)), flush=True)
            print(json.dumps(corrupt_champion(served, workdir, env, service_env)), flush=True)
        finally:
            stop(served)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
