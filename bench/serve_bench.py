"""Serving bench (issue 5): `POST /recommend` for stored customers in turn with a 20-action catalog
and all models, beside a bare one-model BentoML service, on this machine (client on the same
cores). Each decision figure gives the share of decisions that offered an action.

Set-up: a synthetic world whose exposures are split into 20 actions (each demo action in four
variants, propensities divided accordingly), trained, promoted and materialized in a temporary
directory. Then, for each service: concurrency 1 (p50/p99), saturation at concurrency 8 (throughput,
p99), and for nextbest an open loop at 200 requests/s (latency from each request's scheduled send
time, so a stalled server cannot hide its queue), with errors and decision records lost, and the
service's CPU over the loop (milliseconds a request; the cores each of its processes used, which
shows a worker that holds most of the client's keep-alive connections).

Then live events: `POST /events` with 100 events a request at concurrency 1, and `/recommend` at
concurrency 1 for customers with ingested events: the first request after their events (features
computed as of now, models live) and later requests of one customer (the row its worker kept,
moved to now; the uplift and scores reused while they hold), each followed on the same connection
by a request for a customer without events, whose figures are the reference of the same moments
and worker on a shared machine. Then an
event that fires the catalog's trigger (the bench gives one action a trigger on an event type no
other phase sends) until its decision is readable from `GET /outbox`, and an open loop of half
`/events` (10 events of a stored customer), half `/recommend` for those customers, with lost
events and decisions.

Prints one JSON object per figure; `bench/run.py` turns them into table rows.
`--open-seconds` (or SERVE_BENCH_OPEN_SECONDS) shortens the 2-minute open loop for a quick run.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
NEXTBEST = str(Path(sys.executable).with_name("nextbest"))
AS_OF = "2026-11-02"
VARIANTS = 4  # 5 demo actions x 4 = 20 catalog actions
CUSTOMERS = 12_000  # stored: ~8,000, so that loops can ask customers in rotation
OPEN_RATE = 200.0
TRIGGER_EVENT = "cancellation_request"  # fires the bench catalog's one trigger
CLOSED_SECONDS = 20.0
WARMUP_REQUESTS = 300
READY_SECONDS = 180


# --- set-up ------------------------------------------------------------------------------------


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-3000:]}")


def twenty_actions(config_dir: Path) -> Path:
    """The demo config with a catalog of 20 actions: each demo action in four cost variants."""
    demo = REPO / "training" / "demo"
    config = yaml.safe_load((demo / "config.yaml").read_text())
    actions = yaml.safe_load((demo / "actions.yaml").read_text())["actions"]
    variants = []
    for action in actions:
        for v in range(VARIANTS):
            variant = dict(action, id=f"{action['id']}_v{v}", name=f"{action['name']} ({v})")
            variant["cost"] = round(action["cost"] * (0.7 + 0.2 * v), 2)
            variants.append(variant)
    variants[0]["trigger"] = f"event_type == '{TRIGGER_EVENT}'"  # only the trigger figure's events
    config_dir.mkdir(parents=True)
    (config_dir / "actions.yaml").write_text(yaml.safe_dump({"actions": variants}))
    (config_dir / "config.yaml").write_text(yaml.safe_dump(config | {"actions": "actions.yaml"}))
    return config_dir / "config.yaml"


def split_exposures(data: Path) -> None:
    """Each exposure to a demo action becomes one of its four variants, at random."""
    path = data / "exposures.parquet"
    exposures = pd.read_parquet(path)
    rng = np.random.default_rng(0)
    acted = exposures["action_id"] != "control"
    variant = rng.integers(VARIANTS, size=int(acted.sum()))
    exposures.loc[acted, "action_id"] = exposures.loc[acted, "action_id"] + [
        f"_v{v}" for v in variant
    ]
    exposures.loc[acted, "propensity"] = exposures.loc[acted, "propensity"] / VARIANTS
    exposures.to_parquet(path, index=False)


def prepare(workdir: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """World, 20-action bundle (champion), online store; returns (store, bare model file)."""
    data = workdir / "data"
    run([NEXTBEST, "synth", "--customers", str(CUSTOMERS), "--out", str(data)], env, workdir)
    split_exposures(data)
    config = twenty_actions(workdir / "config")
    run([NEXTBEST, "train", "--data", str(data), "--config", str(config)], env, workdir)
    run([NEXTBEST, "promote"], env, workdir)
    store = workdir / "online_store.sqlite"
    run(
        [NEXTBEST, "materialize", "--data", str(data), "--as-of", AS_OF, "--out", str(store)],
        env,
        workdir,
    )
    bare = workdir / "bare_model.txt"
    script = (
        "from training.registry.mlflow_models import load_bundle; "
        f"load_bundle(None).models['churn'].booster_.save_model({str(bare)!r})"
    )
    run([sys.executable, "-c", script], env, workdir)
    return store, bare


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]


def start(target: str, env: dict[str, str], cwd: Path) -> Served:
    port = free_port()
    env = env | {"BENTOML_HOME": str(cwd / f"bentoml-{port}")}  # its own Prometheus directory
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    out = open(cwd / f"{target.split(':')[1]}.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return Served(port, process)
        except OSError:
            time.sleep(0.5)
    stop(Served(port, process))
    raise RuntimeError(f"{target} not ready; see {cwd}")


def service_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) each process of the service (its arbiter, its workers) has
    used so far, by pid."""
    root = psutil.Process(pid)
    used = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[process.pid] = times.user + times.system
    return used


def with_cpu(figure: dict, before: dict[int, float], after: dict[int, float]) -> dict:
    """`figure` with the service's CPU over its run: milliseconds a request, and the cores each
    busy process used (a worker holding most of the client's keep-alive connections shows)."""
    used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    seconds = figure["requests"] / figure["rps"]
    cores = sorted((round(u / seconds, 2) for u in used.values() if u / seconds >= 0.01),
                   reverse=True)  # fmt: skip
    cpu_ms = round(sum(used.values()) / figure["requests"] * 1000, 2)
    return figure | {"server_cpu_ms_per_request": cpu_ms, "process_cores": cores}


def stop(served: Served) -> None:
    os.killpg(served.process.pid, signal.SIGTERM)
    try:
        served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(served.process.pid, signal.SIGKILL)


# --- load ----------------------------------------------------------------------------------------


class Rotation:
    """JSON bodies taken in turn by every client that shares it (thread-safe)."""

    def __init__(self, bodies: list[dict[str, object]]) -> None:
        self.bodies, self.turn = [json.dumps(b) for b in bodies], itertools.count()

    def next(self) -> str:
        return self.bodies[next(self.turn) % len(self.bodies)]  # count's next: atomic


class Client:
    """One keep-alive connection posting one fixed JSON body, or the next of `rotation` (shared
    by a loop's clients: customers in turn, as an agent desktop asks for each caller, each with
    their own row, outputs and actions; `offered` shows how many decisions offered any)."""

    def __init__(
        self, port: int, path: str, body: dict[str, object], rotation: Rotation | None = None
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path, self.body = path, json.dumps(body)
        self.headers = {"Content-Type": "application/json"}
        self.rotation = rotation
        self.offered: list[bool] = []  # per decision answered: whether it offered an action

    def post(self) -> tuple[int, bytes]:
        if self.rotation is not None:
            self.body = self.rotation.next()
        self.conn.request("POST", self.path, self.body, self.headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def note(self, status: int, answer: bytes) -> None:
        """Note whether an answered decision offered an action (after its timing)."""
        if status == 200 and self.path == "/recommend":
            self.offered.append(bool(json.loads(answer)["actions"]))


@dataclass
class Result:
    latencies_ms: np.ndarray
    errors: int
    seconds: float
    answers: list[bytes]
    offered: float | None = None  # the share of decisions that offered an action

    def figure(self, name: str, **extra: object) -> dict[str, object]:
        lat = self.latencies_ms
        figure: dict[str, object] = {
            "figure": name,
            "requests": int(len(lat)),
            "rps": round(len(lat) / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2),
            "errors": self.errors,
        }
        if self.offered is not None:
            figure["offered"] = round(self.offered, 3)
        return figure | extra


def offered_share(clients: Iterable[Client]) -> float | None:
    """The share of the clients' answered decisions that offered an action (None: none)."""
    return share([offered for client in clients for offered in client.offered])


def share(offered: list[bool]) -> float | None:
    """The share of True (None: nothing to count)."""
    return sum(offered) / len(offered) if offered else None


def closed_loop(make: Callable[[], Client], concurrency: int, seconds: float) -> Result:
    """`concurrency` clients, each sending its next request as soon as the last is answered."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    end = time.perf_counter() + seconds

    clients = [make() for _ in range(concurrency)]

    def worker(i: int) -> None:
        client = clients[i]
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            status, answer = client.post()
            latencies[i].append((time.perf_counter() - t0) * 1000)
            errors[i] += status != 200
            client.note(status, answer)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_latencies = np.array([x for per in latencies for x in per])
    took = time.perf_counter() - started
    return Result(all_latencies, sum(errors), took, [], offered_share(clients))


def open_loop(make: Callable[[], Client], rate: float, seconds: float, senders: int = 24) -> Result:
    """Request i is due at start + i / rate; its latency runs from that time to its answer."""
    total = int(rate * seconds)
    next_index = iter(range(total))
    lock = threading.Lock()
    latencies = np.full(total, np.nan)
    answers: list[bytes] = []
    errors = [0]
    start_at = time.perf_counter() + 0.5

    def worker() -> None:
        client = make()
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            due = start_at + i / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            try:
                status, body = client.post()
            except OSError:
                status, body, client = 0, b"", make()
            latencies[i] = (time.perf_counter() - due) * 1000
            with lock:
                errors[0] += status != 200
                if status == 200:
                    answers.append(body)

    threads = [threading.Thread(target=worker) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = [json.loads(a) for a in answers]
    offered = share([bool(d["actions"]) for d in decisions if "actions" in d])
    return Result(latencies, errors[0], seconds, answers, offered)


def lost_records(log: Path, answers: list[bytes]) -> int:
    """Answered decisions the log does not hold."""
    ids = [json.loads(a)["decision_id"] for a in answers]
    with sqlite3.connect(log) as con:
        con.execute("CREATE TEMP TABLE answered (id TEXT)")
        con.executemany("INSERT INTO answered VALUES (?)", [(i,) for i in ids])
        found = con.execute(
            "SELECT count(*) FROM decisions WHERE decision_id IN (SELECT id FROM answered)"
        )
        return len(ids) - int(found.fetchone()[0])


def known_customer(customers: list[str], port: int) -> str:
    """One of `customers` outside the control group who gets recommended actions."""
    for customer in customers[:500]:
        status, body = Client(
            port, "/recommend", {"customer_id": customer, "channel": "call_center"}
        ).post()
        answer = json.loads(body)
        if status == 200 and len(answer["actions"]) >= 2 and not answer["control_group"]:
            return customer
    raise RuntimeError("no stored customer gets two actions")


def measure(
    served: Served,
    path: str,
    bodies: list[dict[str, object]],
    open_seconds: float,
    log: Path | None,
) -> list[dict]:
    """c=1 and c=8 for CLOSED_SECONDS each, then (with the decision `log`) the open loop; the
    loops take `bodies` in turn (one rotation for all of them)."""
    rotation = Rotation(bodies)
    make = lambda: Client(served.port, path, {}, rotation)  # noqa: E731
    closed_loop(make, 1, WARMUP_REQUESTS / 500)
    name = path.strip("/")
    figures = [closed_loop(make, 1, CLOSED_SECONDS).figure(f"{name} c=1", kind="c1")]
    figures.append(closed_loop(make, 8, CLOSED_SECONDS).figure(f"{name} c=8", kind="c8"))
    if log is not None:
        before = service_cpu(served.process.pid)
        result = open_loop(make, OPEN_RATE, open_seconds)
        figure = result.figure(
            f"{name} open loop {OPEN_RATE:.0f}/s, {open_seconds:.0f} s",
            kind="open",
            lost=lost_records(log, result.answers),
        )
        figures.append(with_cpu(figure, before, service_cpu(served.process.pid)))
    return figures


EVENTS_PER_REQUEST = 100


def live_events(customer: str, n: int, prefix: str) -> list[dict[str, object]]:
    """`n` contract events; with a customer, a few of theirs (a complaint, a survey answer)."""
    kinds = [("complaint", None), ("nps", 3.0), ("call", 4.0), ("purchase", 25.0)]
    return [
        {
            "customer_id": customer or f"{prefix}-{i}",
            "ts": f"2026-11-01T{i % 24:02d}:{i % 60:02d}:00Z",
            "channel": "call_center",
            "event_type": kinds[i % len(kinds)][0],
            "value": kinds[i % len(kinds)][1],
        }
        for i in range(n)
    ]


def timed(client: Client, into: list[float]) -> int:
    """One request of `client`, its latency appended to `into`; 1 if it failed."""
    t0 = time.perf_counter()
    status, answer = client.post()
    into.append((time.perf_counter() - t0) * 1000)
    client.note(status, answer)
    return int(status != 200)


def recommend_client(port: int, customer: str) -> Client:
    return Client(port, "/recommend", {"customer_id": customer, "channel": "call_center"})


def first_after_events(
    port: int, customers: list[str], peers: list[str]
) -> tuple[Result, Result, Result]:
    """/recommend at c=1, each the first request after new events of its customer (5 events
    posted just before, timed apart: the post computes the customer's row and shares it with
    every worker, serving.online.live_rows), so no worker has the row of its own (what an agent
    sees on the first request after a complaint). Each is followed by the first request for one
    of `peers`, stored customers without events, on the same connection (so the same
    worker) and just after a post as well (5 events of a customer the store lacks: nothing to
    compute), so that both figures share the machine's moments and a worker's state (an idle
    worker answers slower than one that has just worked). The peers are as many customers as
    the first requests' (one customer with nothing eligible would make a cheaper peer)."""
    first: list[float] = []
    reference: list[float] = []
    posts: list[float] = []
    offered: tuple[list[bool], list[bool]] = ([], [])
    errors, started = [0, 0, 0], time.perf_counter()
    ingest, recommend = Client(port, "/events", {}), recommend_client(port, "")
    for n, (customer, peer) in enumerate(zip(customers, peers, strict=True)):
        ingest.body = json.dumps({"events": live_events(customer, 5, "")})
        errors[2] += timed(ingest, posts)
        errors[0] += ask(recommend, customer, first, offered[0])
        ingest.body = json.dumps({"events": live_events("", 5, f"first-peer-{n}")})
        errors[2] += int(ingest.post()[0] != 200)
        errors[1] += ask(recommend, peer, reference, offered[1])
    seconds = time.perf_counter() - started
    if errors[2]:
        raise RuntimeError(f"POST /events failed {errors[2]} times")
    return (
        Result(np.array(first), errors[0], seconds, [], share(offered[0])),
        Result(np.array(reference), errors[1], seconds, [], share(offered[1])),
        Result(np.array(posts), errors[2], seconds, []),
    )


def ask(client: Client, customer: str, into: list[float], offered: list[bool]) -> int:
    """/recommend for `customer` on `client`'s connection, timed into `into` (and whether it
    offered an action into `offered`); 1 if it failed."""
    client.body = json.dumps({"customer_id": customer, "channel": "call_center"})
    before = len(client.offered)
    failed = timed(client, into)
    offered += client.offered[before:]
    return failed


def later_requests(port: int, customer: str, stored: str, seconds: float) -> tuple[Result, Result]:
    """/recommend at c=1 for `customer` (with ingested events: after the first, the row kept by
    the worker), each followed by one for `stored` (without events) on the same connection (the
    same worker), for `seconds`."""
    client = recommend_client(port, "")
    latencies: tuple[list[float], list[float]] = ([], [])
    offered: tuple[list[bool], list[bool]] = ([], [])
    errors, started = [0, 0], time.perf_counter()
    while time.perf_counter() < started + seconds:
        errors[0] += ask(client, customer, latencies[0], offered[0])
        errors[1] += ask(client, stored, latencies[1], offered[1])
    took = time.perf_counter() - started
    return (
        Result(np.array(latencies[0]), errors[0], took, [], share(offered[0])),
        Result(np.array(latencies[1]), errors[1], took, [], share(offered[1])),
    )


class Mixed(Client):
    """The mixed open loop's client: alternately `POST /events` with 10 events of one of
    `customers` (event ids unique to this client) and `POST /recommend` for the next of them."""

    def __init__(self, port: int, customers: list[str], prefix: str) -> None:
        super().__init__(port, "/recommend", {})
        self.customers, self.prefix, self.sent = customers, prefix, 0

    def post(self) -> tuple[int, bytes]:
        customer = self.customers[(self.sent // 2) % len(self.customers)]
        if self.sent % 2 == 0:
            events = live_events(customer, 10, "")
            for j, event in enumerate(events):
                event["event_id"] = f"{self.prefix}-{self.sent}-{j}"
            self.path, body = "/events", {"events": events}
        else:
            self.path, body = "/recommend", {"customer_id": customer, "channel": "call_center"}
        self.body, self.sent = json.dumps(body), self.sent + 1
        return super().post()


def mixed_open_loop(
    served: Served, customers: list[str], seconds: float, log: Path, events: Path
) -> dict[str, object]:
    """Half `/events` (10 events of a stored customer), half `/recommend` for those customers, at
    OPEN_RATE for `seconds`; lost: answered decisions not logged plus accepted events not stored."""
    senders = iter(range(1_000))
    make = lambda: Mixed(served.port, customers, f"mixed-{next(senders)}")  # noqa: E731
    before = service_cpu(served.process.pid)
    result = open_loop(make, OPEN_RATE, seconds)
    after = service_cpu(served.process.pid)
    answered = [json.loads(a) for a in result.answers]
    decisions = [a for a in answered if "decision_id" in a]
    accepted = sum(int(a["accepted"]) for a in answered if "accepted" in a)
    with sqlite3.connect(events) as con:
        stored = con.execute("SELECT count(*) FROM events WHERE event_id LIKE 'mixed-%'")
        lost_events = accepted - int(stored.fetchone()[0])
    lost = lost_records(log, [json.dumps(d).encode() for d in decisions]) + lost_events
    name = (
        f"open loop {OPEN_RATE:.0f}/s, {seconds:.0f} s, half /events (10 events), half /recommend"
    )
    return with_cpu(result.figure(name, kind="open_mixed", lost=lost), before, after)


def trigger_to_outbox(port: int, customers: list[str]) -> Result:
    """For each of `customers` (the trigger's cool-down is per customer), one event that fires
    the catalog's trigger: the time from its post until its decision is readable from
    `GET /outbox` (asked from the cursor before the post)."""
    ingest = Client(port, "/events", {})
    reader = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, cursor, started = [], "0", time.perf_counter()
    for n, customer in enumerate(customers):
        event = live_events(customer, 1, "")[0] | {"event_type": TRIGGER_EVENT, "event_id": f"t{n}"}
        ingest.body = json.dumps({"events": [event]})
        t0 = time.perf_counter()
        status, _ = ingest.post()
        found = False
        while status == 200 and not found and time.perf_counter() < t0 + 5:
            reader.request("GET", f"/outbox?after={cursor}&limit=100")
            page = json.loads(reader.getresponse().read())
            found = any(d["event_id"] == f"t{n}" for d in page["decisions"])
            cursor = page["cursor"]
        if not found:
            raise RuntimeError(f"event t{n} (status {status}): no decision in the outbox in 5 s")
        latencies.append((time.perf_counter() - t0) * 1000)
    return Result(np.array(latencies), 0, time.perf_counter() - started, [])


def stored_customers(store: Path) -> list[str]:
    """The store's customers, in its order."""
    with sqlite3.connect(store) as con:
        return [r[0] for r in con.execute("SELECT customer_id FROM features")]


FIRST_REQUESTS = 400  # customers of the first-request figure (each gets its events once)
TRIGGERS = 200  # customers of the trigger figure (one trigger each: the cool-down is per customer)
MIXED_CUSTOMERS = 200  # customers of the mixed open loop
# the live-event figures' customers (and the first-request figure's peers), not asked before them
RESERVED = 2 * FIRST_REQUESTS + TRIGGERS + MIXED_CUSTOMERS + 1


def measure_events(
    served: Served,
    customer: str,
    reserved: list[str],
    open_seconds: float,
    log: Path,
    events: Path,
) -> list[dict]:
    """POST /events (100 events a request, new customers: no feature work) at c=1, then
    /recommend at c=1 for customers with ingested events: the first request after their events,
    and later requests (a kept row, moved to now); each beside requests for a stored customer
    without events, interleaved with them. Then event to trigger to outbox, and the open loop
    of half events, half decisions."""
    port = served.port
    batch = {"events": live_events("", EVENTS_PER_REQUEST, "bench")}
    make = lambda: Client(port, "/events", batch)  # noqa: E731
    closed_loop(make, 1, 2.0)
    ingest = closed_loop(make, 1, CLOSED_SECONDS)
    figure = ingest.figure("events c=1, 100 events a request", kind="events")
    figure["events_per_s"] = round(figure["rps"] * EVENTS_PER_REQUEST, 0)
    mine = {"events": live_events(customer, 5, "")}
    status, _ = Client(port, "/events", mine).post()
    if status != 200:
        raise RuntimeError(f"POST /events answered {status}")
    firsts, peers = reserved[:FIRST_REQUESTS], reserved[FIRST_REQUESTS : 2 * FIRST_REQUESTS]
    triggered = reserved[2 * FIRST_REQUESTS : 2 * FIRST_REQUESTS + TRIGGERS]
    mixed, stored = reserved[2 * FIRST_REQUESTS + TRIGGERS : -1], reserved[-1]
    later_requests(port, customer, stored, 2.0)
    later, later_plain = later_requests(port, customer, stored, CLOSED_SECONDS)
    first, first_plain, posts = first_after_events(port, firsts, peers)
    return [
        figure,
        posts.figure("events c=1, 5 events of a stored customer", kind="events_stored"),
        first.figure("recommend c=1, first request after new events", kind="c1_events_first"),
        first_plain.figure("recommend c=1, no events, between those", kind="c1_first_plain"),
        later.figure("recommend c=1 with live events, later requests", kind="c1_events"),
        later_plain.figure("recommend c=1, no events, between those", kind="c1_later_plain"),
        trigger_to_outbox(port, triggered).figure("event -> trigger -> outbox", kind="trigger"),
        mixed_open_loop(served, mixed, open_seconds, log, events),
    ]


def bench_workdir(workdir: Path | None, prefix: str) -> tuple[Path, dict[str, str]]:
    """The bench's working folder (a new temporary one unless given) and the environment its
    commands and servers run in: one thread for LightGBM, no telemetry, MLflow in the folder."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    return workdir, env


def bench_arguments(description: str | None) -> argparse.Namespace:
    """The serving benches' options: the open loop's length and a work folder to keep."""
    parser = argparse.ArgumentParser(description=description)
    default_open = float(os.environ.get("SERVE_BENCH_OPEN_SECONDS", "120"))
    parser.add_argument("--open-seconds", type=float, default=default_open)
    parser.add_argument("--workdir", type=Path, help="keep the set-up here and reuse it next time")
    return parser.parse_args()


def main() -> None:
    args = bench_arguments(__doc__)
    workdir, env = bench_workdir(args.workdir, "nextbest-serve-bench-")
    try:
        store, bare_model = workdir / "online_store.sqlite", workdir / "bare_model.txt"
        if not bare_model.exists():
            store, bare_model = prepare(workdir, env)
        log, events = workdir / "decision_log.sqlite", workdir / "event_store.sqlite"
        for kept in (log, events):  # a kept work folder's previous run: fresh stores
            for path in (
                kept,
                kept.with_name(kept.name + "-wal"),
                kept.with_name(kept.name + "-shm"),
            ):
                path.unlink(missing_ok=True)
        service_env = env | {"NEXTBEST_ONLINE_STORE": str(store), "NEXTBEST_DECISION_LOG": str(log),
                             "NEXTBEST_EVENT_STORE": str(events)}  # fmt: skip
        bare = start(
            "bench.bare_service:Bare",
            env | {"BARE_MODEL": str(bare_model), "PYTHONPATH": str(REPO)},
            workdir,
        )
        try:
            for figure in measure(
                bare, "/predict", [{"customer_id": "x"}], args.open_seconds, None
            ):
                print(json.dumps(figure | {"service": "bare"}), flush=True)
        finally:
            stop(bare)
        served = start("serving.online.service:Nextbest", service_env, workdir)
        try:
            customers = stored_customers(store)
            reserved, rotation = customers[:RESERVED], customers[RESERVED:]
            if len(rotation) < len(reserved):
                raise RuntimeError(f"{len(customers)} stored customers: too few to rotate")
            bodies = [{"customer_id": c, "channel": "call_center"} for c in rotation]
            for figure in measure(served, "/recommend", bodies, args.open_seconds, log):
                print(json.dumps(figure | {"service": "nextbest"}), flush=True)
            customer = known_customer(rotation, served.port)  # asked again and again after
            for figure in measure_events(
                served, customer, reserved, args.open_seconds, log, events
            ):
                print(json.dumps(figure | {"service": "nextbest"}), flush=True)
        finally:
            stop(served)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
