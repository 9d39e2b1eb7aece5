"""Contact-history bench (issue 18): `/recommend` with the history on SQLite and on a local
PostgreSQL side by side, and two replicas sharing one PostgreSQL under an open loop.

Set-up: serve_bench's world (4,000 customers, 20 actions, all models), a PostgreSQL started for the
run (tests/postgres.py; fsync on, as deployed). Then:
- `/recommend` c=1 for one known customer, 20 s, history on SQLite (WAL, synchronous=NORMAL), then
  on PostgreSQL (every decision committed before its answer, synchronous_commit on);
- two `nextbest serve` processes (one worker each) on one PostgreSQL database, an open loop of
  200 requests/s split between them over 300 customers in turn; the first action of 2 answers in
  10 (40/s: the same 60 customers, each asked again every 1.5 s through either replica) is
  accepted through the *other* replica meanwhile (4 feedback senders), so both replicas write and
  check the same customers' caps.
  Reported: p99 (from each request's scheduled send time), errors, answered decisions missing
  from the history (lost), and (customer, action) pairs over their cap (cool-down 60+ days or
  max_per_90_days: two acceptances within the run are one violation).

Prints one JSON object per figure; `bench/run.py --history-only` turns them into table rows.
"""

from __future__ import annotations

import json
import queue
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from serve_bench import (  # noqa: E402
    CLOSED_SECONDS,
    OPEN_RATE,
    Client,
    bench_arguments,
    bench_workdir,
    closed_loop,
    known_customer,
    open_loop,
    prepare,
    start,
    stop,
    stored_customers,
)

from tests.postgres import remove, start_local_postgres  # noqa: E402

OPEN_CUSTOMERS = 300
FEEDBACK_SENDERS = 4
ACCEPT_EVERY = 10  # 2 answers in 10 are accepted: agents act on some offers, not all


def c1(port: int, body: dict[str, object], backend: str) -> dict[str, object]:
    make = lambda: Client(port, "/recommend", body)  # noqa: E731
    closed_loop(make, 1, 2.0)  # warm-up
    result = closed_loop(make, 1, CLOSED_SECONDS)
    return result.figure(f"recommend c=1, history on {backend}", kind=f"c1_{backend}")


class Rotating(Client):
    """A keep-alive connection to one of the replicas, posting /recommend for the next customer
    of a shared rotation; each answer is queued for acceptance through the other replica."""

    def __init__(self, ports: list[int], customers: list[str], state: dict, out: queue.Queue):
        with state["lock"]:
            state["clients"] += 1
            self.which = state["clients"] % len(ports)
        super().__init__(ports[self.which], "/recommend", {})
        self.other = ports[1 - self.which]
        self.customers, self.state, self.out = customers, state, out

    def post(self) -> tuple[int, bytes]:
        with self.state["lock"]:
            self.state["next"] += 1
            turn = self.state["next"]
        customer = self.customers[turn % len(self.customers)]
        self.body = json.dumps({"customer_id": customer, "channel": "call_center"})
        status, body = super().post()
        if status == 200:
            answer = json.loads(body)
            if answer["actions"] and turn % ACCEPT_EVERY < 2:  # both replicas' answers, in turn
                self.out.put((self.other, answer["decision_id"], answer["actions"][0]["action_id"]))
        return status, body


def accept_all(jobs: queue.Queue, outcomes: dict[str, int], lock: threading.Lock) -> None:
    clients: dict[int, Client] = {}
    while (job := jobs.get()) is not None:
        port, decision_id, action = job
        client = clients.setdefault(port, Client(port, "/feedback", {}))
        client.body = json.dumps(
            {"decision_id": decision_id, "action_id": action, "outcome": "accepted"}
        )
        try:
            status, _ = client.post()
        except OSError:  # a keep-alive connection the server closed while this sender was idle
            client = clients[port] = Client(port, "/feedback", {})
            client.body = json.dumps(
                {"decision_id": decision_id, "action_id": action, "outcome": "accepted"}
            )
            try:
                status, _ = client.post()
            except OSError:
                status, clients[port] = 0, Client(port, "/feedback", {})
        with lock:
            outcomes[str(status)] = outcomes.get(str(status), 0) + 1


def history_checks(url: str, answers: list[bytes], caps: set[str]) -> tuple[int, int]:
    """(answered decisions missing from the history, (customer, action) pairs over their cap)."""
    import psycopg

    answered = {json.loads(a)["decision_id"] for a in answers}
    with psycopg.connect(url) as con:
        stored = {r[0] for r in con.execute("SELECT decision_id FROM decisions")}
        over = con.execute(
            "SELECT action_id, count(*) FROM (SELECT customer_id, action_id, outcome, "
            "row_number() OVER (PARTITION BY decision_id, action_id ORDER BY ts DESC, seq DESC) "
            "AS k FROM feedback) AS latest WHERE k = 1 AND outcome = 'accepted' "
            "GROUP BY customer_id, action_id HAVING count(*) > 1"
        ).fetchall()
    return len(answered - stored), sum(1 for action, _ in over if action in caps)


def capped_actions(config_dir: Path) -> set[str]:
    from training.config import load_config

    catalog = load_config(config_dir / "config.yaml").catalog
    return {a.id for a in catalog.actions if a.cooldown_days or a.max_per_90_days}


def replicas(
    env: dict[str, str], workdir: Path, url: str, store: Path, seconds: float, caps: set[str]
) -> dict[str, object]:
    shared = env | {"NEXTBEST_DATABASE_URL": url, "NEXTBEST_WORKERS": "1"}
    served = [start("serving.online.service:Nextbest", shared, workdir) for _ in range(2)]
    try:
        with sqlite3.connect(store) as con:
            rows = con.execute("SELECT customer_id FROM features LIMIT ?", (OPEN_CUSTOMERS,))
            customers = [r[0] for r in rows]
        ports = [s.port for s in served]
        state: dict = {"lock": threading.Lock(), "clients": 0, "next": 0}
        jobs: queue.Queue = queue.Queue()
        outcomes: dict[str, int] = {}
        lock = threading.Lock()
        senders = [
            threading.Thread(target=accept_all, args=(jobs, outcomes, lock))
            for _ in range(FEEDBACK_SENDERS)
        ]
        for sender in senders:
            sender.start()
        result = open_loop(lambda: Rotating(ports, customers, state, jobs), OPEN_RATE, seconds)
        for _ in senders:
            jobs.put(None)
        for sender in senders:
            sender.join()
        lost, violations = history_checks(url, result.answers, caps)
        return result.figure(
            f"2 replicas, one PostgreSQL, open loop {OPEN_RATE:.0f}/s, {seconds:.0f} s",
            kind="replicas",
            lost=lost,
            violations=violations,
            feedback=outcomes,
        )
    finally:
        for s in served:
            stop(s)


def main() -> None:
    args = bench_arguments(__doc__)
    workdir, env = bench_workdir(args.workdir, "nextbest-history-bench-")
    postgres = start_local_postgres(durable=True)
    try:
        store = workdir / "online_store.sqlite"
        if not (workdir / "bare_model.txt").exists():
            store, _ = prepare(workdir, env)
        base = env | {"NEXTBEST_ONLINE_STORE": str(store)}
        sqlite_env = base | {"NEXTBEST_DECISION_LOG": str(workdir / "decision_log.sqlite")}
        pg_env = base | {"NEXTBEST_DATABASE_URL": postgres.new_database()}
        body: dict[str, object] = {}
        for backend, service_env in (("sqlite", sqlite_env), ("postgresql", pg_env)):
            served = start("serving.online.service:Nextbest", service_env, workdir)
            try:
                if not body:
                    body = {"customer_id": known_customer(stored_customers(store), served.port)}
                    body["channel"] = "call_center"
                print(json.dumps(c1(served.port, body, backend)), flush=True)
            finally:
                stop(served)
        caps = capped_actions(workdir / "config")
        figure = replicas(base, workdir, postgres.new_database(), store, args.open_seconds, caps)
        print(json.dumps(figure), flush=True)
    finally:
        remove(postgres)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
