"""Fault injection against the real service over HTTP on 127.0.0.1 (issue 16): corrupt artifacts,
store swaps by rename and by copying over the live file, unknown-path floods, oversized chunked
bodies, control characters, concurrent acceptances, kill -9 of every worker under load, an empty
API key. Each test does to the service what production would and asserts what it must survive.

The suite has a world of its own (registry and store can be broken without touching `world`) and
one server, polled every 0.5 s, whose API key travels in a renamed header; tests run in file
order, the ones that restart or break things last.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.serving.conftest import AS_OF, Server, World, start_server, stop_server
from tests.serving.online.faults import (
    HEADER,
    deleted_handles,
    get,
    load,
    logged_by_rid,
    post,
    readyz,
    status_of,
    swap_by_rename,
    wait_for,
    worker_pids,
)
from training.registry.bundle import Bundle

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.xdist_group("faults")]


@dataclass(frozen=True)
class FaultWorld:
    world: World
    champion: str
    bundle: Bundle

    @contextmanager
    def registry(self) -> Iterator[None]:
        """MLflow pointed at this world's store (artifacts beside it) for the block."""
        import mlflow

        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", self.world.tracking_uri)
            patch.chdir(self.world.root)
            yield
        mlflow.set_tracking_uri(None)

    def register(self) -> str:
        """Register the bundle again as a new version (not the champion); returns the version."""
        from tests.training.registry.test_bundle import register, train_all

        with self.registry():
            return register(train_all(self.world.data), self.bundle)

    def promote(self, version: str) -> None:
        import mlflow

        from training.registry.mlflow_models import CHAMPION, REGISTERED_MODEL

        with self.registry():
            mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)

    def bundle_dir(self, version: str) -> Path:
        """The folder the registry holds the version's bundle files in."""
        from training.registry.mlflow_models import bundle_folder

        with self.registry():
            folder = bundle_folder(version)
        assert folder is not None
        return folder


@pytest.fixture(scope="module")
def faults(
    small_world: Path, uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> FaultWorld:
    """The small world in a registry and a store of its own: champion registered, store
    materialized into `live/` (the directory store swaps happen in)."""
    import mlflow

    from serving.online.store import materialize
    from tests.training.registry.test_bundle import migrated_store, register, train_all
    from training.registry.mlflow_models import CHAMPION, REGISTERED_MODEL

    root = tmp_path_factory.mktemp("faults")
    db = root / "mlflow.db"
    shutil.copy(migrated_store(tmp_path_factory), db)
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        version = register(train_all(small_world), uplift_bundle)
        mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
        (root / "live").mkdir()
        store = materialize(small_world, AS_OF, root / "live" / "online_store.sqlite").path
    mlflow.set_tracking_uri(None)
    shutil.copy(store, root / "spare.sqlite")  # an identical store to swap in
    return FaultWorld(World(small_world, uri, store, root), version, uplift_bundle)


@pytest.fixture(scope="module")
def fault_server(faults: FaultWorld) -> Iterator[Server]:
    """The service on the fault world: 2 workers, reload poll 0.5 s, API key in `HEADER`."""
    running = start_server(
        faults.world,
        faults.world.root / "decision_log.sqlite",
        wait_for="/healthz",
        NEXTBEST_RELOAD_SECONDS="0.5",
        NEXTBEST_API_KEY_HEADER=HEADER,
    )
    assert wait_for(lambda: get(running, "/readyz")[0] == 200, 120)
    yield running
    stop_server(running)


def customers(world: World, n: int) -> list[str]:
    with sqlite3.connect(world.store) as con:
        rows = con.execute("SELECT customer_id FROM features ORDER BY customer_id LIMIT ?", (n,))
        return [r[0] for r in rows]


def service_log(server: Server) -> str:
    return server.log.with_suffix(".out").read_text(errors="replace")


# --- visibility -----------------------------------------------------------------------------------


def test_model_loads_are_logged_at_info(fault_server: Server) -> None:
    assert wait_for(lambda: service_log(fault_server).count("event=loaded") >= 2, 10)


def test_the_agent_page_sends_the_configured_header(
    fault_server: Server, faults: FaultWorld
) -> None:
    status, page = get(fault_server, "/")
    assert status == 200
    assert f'const API_KEY_HEADER = "{HEADER}";' in page and '"X-API-Key"' not in page
    body = {"customer_id": customers(faults.world, 1)[0], "channel": "call_center"}
    assert post(fault_server, "/recommend", body)[0] == 200
    assert post(fault_server, "/recommend", body, header="X-API-Key")[0] == 401


# --- hostile traffic ------------------------------------------------------------------------------


def test_a_flood_of_unknown_paths_does_not_grow_the_metrics(fault_server: Server) -> None:
    get(fault_server, "/metrics")
    for n in range(1500):
        status, _ = get(fault_server, f"/r-{n}", header="X-Unrelated" if n % 2 else HEADER)
        assert status in (401, 404)
    started = time.perf_counter()
    status, text = get(fault_server, "/metrics")
    scrape = time.perf_counter() - started
    assert status == 200
    assert "/r-1" not in text and 'endpoint="/_unknown"' in text
    assert len(text.encode()) < 100_000, len(text)
    assert scrape < 1.0  # generous on a loaded CI machine; bench measures it


def chunked_post(server: Server, chunks: Iterator[bytes]) -> tuple[int, dict]:
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Content-Type": "application/json", HEADER: "test-key-not-a-secret"}
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered before the end
            conn.request("POST", "/recommend", chunks, headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chunked_bodies_are_limited_and_aborted_uploads_log_nothing(
    fault_server: Server, faults: FaultWorld
) -> None:
    before = service_log(fault_server)
    body = json.dumps({"customer_id": customers(faults.world, 1)[0], "channel": "call_center"})
    small = iter([body[:10].encode(), body[10:].encode()])
    assert chunked_post(fault_server, small)[0] == 200
    huge = (b" " * 16384 for _ in range(64))  # 1 MiB of whitespace, never announced
    status, answer = chunked_post(fault_server, huge)
    assert status == 413 and "larger than" in answer["error"]
    url = urllib.parse.urlsplit(fault_server.url)
    for _ in range(5):  # uploads that stop half-way
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.putrequest("POST", "/recommend")
        conn.putheader("Content-Length", "5000")
        conn.putheader("Content-Type", "application/json")
        conn.putheader(HEADER, "test-key-not-a-secret")
        conn.endheaders(b'{"customer_id": "')
        conn.close()
    time.sleep(1.0)
    new = service_log(fault_server)[len(before) :]
    assert "Traceback" not in new and "ERROR" not in new, new[-3000:]


def test_control_characters_cannot_forge_log_lines(fault_server: Server) -> None:
    marker = "FORGED-7731"
    bad = [
        {"customer_id": "C1", "channel": "call_center", "exclude": [f"x\n{marker} event=loaded"]},
        {"customer_id": "C1", "channel": f"chat\n{marker}"},
        {"customer_id": "C1", "channel": "call_center", "context": {f"k\n{marker}" * 9: 1}},
        {"customer_id": f"C1\n{marker}", "channel": "call_center", "max_actions": "x"},
    ]
    for body in bad:
        assert post(fault_server, "/recommend", body)[0] == 400
    assert wait_for(lambda: service_log(fault_server).count("rejected /recommend") >= 4, 10)
    text = service_log(fault_server)
    assert marker not in text  # no request content at all, escaped or not
    assert not any(line.startswith(marker) for line in text.splitlines())
    from serving.online.log_safety import escape_controls

    assert escape_controls("a\nb\r\x1b[31m\u2028") == "a\\nb\\r\\x1b[31m\\u2028"


def test_two_concurrent_acceptances_inside_a_cool_down_one_is_refused(
    fault_server: Server, faults: FaultWorld
) -> None:
    ask = {"channel": "call_center"}
    for customer in customers(faults.world, 200)[100:]:
        first = post(fault_server, "/recommend", ask | {"customer_id": customer})[1]
        second = post(fault_server, "/recommend", ask | {"customer_id": customer})[1]
        shown = {a["action_id"] for a in first["actions"]}
        shared = [a["action_id"] for a in second["actions"] if a["action_id"] in shown]
        if shared:
            break
    else:
        pytest.fail("no customer shown the same action twice among 100")
    action = shared[0]
    bodies = [
        {"decision_id": d["decision_id"], "action_id": action, "outcome": "accepted"}
        for d in (first, second)
    ]
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda b=b: results.append(post(fault_server, "/feedback", b)[0]))
        for b in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409]
    for body in bodies:  # a retry of either is answered as before, never a 5xx
        assert post(fault_server, "/feedback", body)[0] in (200, 409)
    _, later = post(fault_server, "/recommend", ask | {"customer_id": customer})
    assert action not in {a["action_id"] for a in later["actions"]}  # inside its cool-down now


# --- store swaps ------------------------------------------------------------------------------------


def test_rename_swaps_under_load_lose_nothing_and_release_old_stores(
    fault_server: Server, faults: FaultWorld
) -> None:
    live, spare = faults.world.store, faults.world.root / "spare.sqlite"
    with load(fault_server, customers(faults.world, 50), threads=3) as traffic:
        for _ in range(10):  # the bench does 20 at 200 req/s
            loads = readyz(fault_server)[1]["loads"]
            swap_by_rename(spare, live)
            inode = os.stat(live).st_ino
            # both workers serve the new file (readyz answers from either worker)
            assert wait_for(
                lambda inode=inode: all(
                    readyz(fault_server)[1]["store_inode"] == inode for _ in range(4)
                ),
                20,
                0.1,
            ), loads
    assert traffic.statuses and set(traffic.statuses) == {200}, set(traffic.statuses)
    assert not traffic.errors
    pids = worker_pids(fault_server)
    assert len(pids) == 2
    # replaced runtimes are closed 2 s after the swap, at a worker's next poll: wait for it, with
    # room for a loaded machine, rather than sleep a fixed time
    assert wait_for(lambda: deleted_handles(pids, live.name) <= 1, 30, 0.5), deleted_handles(
        pids, live.name
    )
    assert "event=reloaded" in service_log(fault_server)


def test_copying_over_the_live_store_gives_no_500_and_logs_no_content(
    fault_server: Server, faults: FaultWorld
) -> None:
    live, spare = faults.world.store, faults.world.root / "spare.sqlite"
    ids = customers(faults.world, 50)
    before = service_log(fault_server)
    with load(fault_server, ids, threads=3) as traffic:
        time.sleep(0.5)
        for _ in range(3):
            shutil.copyfile(spare, live)  # same inode, new bytes: what the README says not to do
            time.sleep(0.7)
        time.sleep(1.5)
    assert 500 not in traffic.statuses and set(traffic.statuses) <= {200, 503}
    assert traffic.statuses[-20:] == [200] * 20  # served again once the copy is complete
    new = service_log(fault_server)[len(before) :]
    assert "Traceback" not in new
    assert not any(c in new for c in ids)


# --- corrupt artifacts ------------------------------------------------------------------------------


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_corrupt_champion_leaves_the_service_on_its_bundle(
    fault_server: Server, faults: FaultWorld
) -> None:
    pids = worker_pids(fault_server)
    serving = readyz(fault_server)[1]["model_version"]
    broken_uplift = faults.register()
    next(iter(sorted((faults.bundle_dir(broken_uplift) / "uplift").glob("*.json")))).write_text("{")
    faults.promote(broken_uplift)
    assert wait_for(lambda: "checksum" in str(readyz(fault_server)[1]["last_error"]), 20)
    broken_model = faults.register()
    cut_in_half(faults.bundle_dir(broken_model) / "models" / "churn" / "model.txt")
    faults.promote(broken_model)
    assert wait_for(lambda: "models/churn" in str(readyz(fault_server)[1]["last_error"]), 20)
    for _ in range(6):  # both workers: still ready, still the old bundle, same processes
        status, detail = readyz(fault_server)
        assert status == 200 and detail["model_version"] == serving and detail["failures"] > 0
    body = {"customer_id": customers(faults.world, 1)[0], "channel": "call_center"}
    status, answer = post(fault_server, "/recommend", body)
    assert status == 200 and answer["model_version"] == serving
    metrics = get(fault_server, "/metrics")[1]
    assert 'nextbest_reloads_total{outcome="load_failed"}' in metrics
    # one line per worker and reason (two each), not one per poll
    assert service_log(fault_server).count("event=load_failed") <= 4
    # the reload loop is alive after those failures: a store swap is still picked up
    swap_by_rename(faults.world.root / "spare.sqlite", faults.world.store)
    inode = os.stat(faults.world.store).st_ino
    assert wait_for(lambda: readyz(fault_server)[1]["store_inode"] == inode, 20)
    assert worker_pids(fault_server) == pids  # no worker died
    log = service_log(fault_server)
    # the swap may fail once mid-rename (a new reason) before the bundle's reason returns
    assert log.count("event=load_failed") <= 8
    # the batch job refuses the same bundles in one line, exit status 2
    for version, says in ((broken_uplift, "checksum"), (broken_model, "checksum")):
        assert score_refuses(faults, version, says)
    (faults.bundle_dir(broken_model) / "models" / "churn" / "model.txt").unlink()
    assert score_refuses(faults, broken_model, "missing")
    faults.promote(faults.champion)


def score_refuses(faults: FaultWorld, version: str, says: str) -> bool:
    """`nextbest score --model version` ends with one line saying `says` and exit status 2."""
    from typer.testing import CliRunner

    from training.cli import app

    args = ["score", "--data", str(faults.world.data), "--as-of", AS_OF.isoformat()]
    args += ["--out", str(faults.world.root / "score"), "--model", version]
    env = {"MLFLOW_TRACKING_URI": faults.world.tracking_uri}
    result = CliRunner().invoke(app, args, env=env)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and says in lines[0], result.output[-2000:]
    return True


def test_a_corrupt_champion_at_start_is_never_ready_and_never_crash_loops(
    faults: FaultWorld, tmp_path: Path
) -> None:
    broken = faults.register()
    cut_in_half(faults.bundle_dir(broken) / "models" / "satisfaction" / "model.txt")
    faults.promote(broken)
    server = start_server(faults.world, tmp_path / "log.sqlite", wait_for="/healthz")
    try:
        time.sleep(3)
        pids = worker_pids(server)
        for _ in range(10):
            status, detail = readyz(server)
            assert status == 503 and detail["last_error"] and detail["model_version"] is None
            time.sleep(0.3)
        assert worker_pids(server) == pids and len(pids) == 2
        faults.promote(faults.champion)  # a good champion again: ready without a restart
        assert wait_for(lambda: readyz(server)[0] == 200, 30)
        assert worker_pids(server) == pids
    finally:
        stop_server(server)


def test_an_event_store_held_by_another_writer_is_a_503_not_a_500(
    fault_server: Server, faults: FaultWorld
) -> None:
    """Another process holds the event file's write lock past the busy timeout (a stuck
    export, a backup tool): /events answers 503 saying so and stores nothing, decisions go on
    reading it, and once the lock is gone the same batch is stored."""
    path = faults.world.root / "out" / "event_store.sqlite"
    event = {"customer_id": "locked-1", "ts": "2026-11-01T10:00:00", "channel": "web",
             "event_type": "visit", "event_id": "locked-1"}  # fmt: skip
    body = {"customer_id": customers(faults.world, 1)[0], "channel": "call_center"}
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        status, answer = post(fault_server, "/events", {"events": [event]}, timeout=30)
        assert status == 503 and "event store cannot be read or written" in answer["error"]
        assert post(fault_server, "/recommend", body)[0] == 200  # readers go on (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, answer = post(fault_server, "/events", {"events": [event]})
    assert status == 200 and answer == {"accepted": 1, "duplicates": 0}
    assert "Traceback" not in service_log(fault_server)


def test_stores_that_cannot_be_opened_keep_workers_up_not_ready_and_recover(
    faults: FaultWorld, tmp_path: Path
) -> None:
    """A decision log and an event store that are not databases (a bad restore, a disk error):
    the workers stay up and not ready, every API answers 503 naming the store, nothing crash
    loops; once the files are moved aside, the same workers become ready and decide."""
    faults.promote(faults.champion)
    log, events = tmp_path / "log.sqlite", tmp_path / "events.sqlite"
    for path in (log, events):
        path.write_bytes(os.urandom(8192))
    server = start_server(
        faults.world, log, wait_for="/healthz",
        NEXTBEST_EVENT_STORE=str(events), NEXTBEST_RELOAD_SECONDS="0.5",
    )  # fmt: skip
    try:
        assert wait_for(lambda: readyz(server)[1].get("model_version") is not None, 120)
        pids = worker_pids(server)
        status, detail = readyz(server)
        assert status == 503 and "not a database" in detail["history_error"]
        assert "not a database" in detail["events_error"]
        body = {"customer_id": customers(faults.world, 1)[0], "channel": "call_center"}
        status, answer = post(server, "/recommend", body, header="X-API-Key")
        assert status == 503 and "cannot be opened" in answer["error"]
        event = {"customer_id": "x", "ts": "2026-11-01T10:00:00", "channel": "web",
                 "event_type": "visit"}  # fmt: skip
        status, answer = post(server, "/events", {"events": [event]}, header="X-API-Key")
        assert status == 503 and "event store cannot be opened" in answer["error"]
        assert get(server, "/outbox", header="X-API-Key")[0] == 503
        time.sleep(2)
        assert worker_pids(server) == pids and len(pids) == 2  # no crash loop
        log.rename(tmp_path / "log.bad")
        events.rename(tmp_path / "events.bad")
        assert wait_for(lambda: all(readyz(server)[0] == 200 for _ in range(4)), 60)
        assert post(server, "/recommend", body, header="X-API-Key")[0] == 200
        assert post(server, "/events", {"events": [event]}, header="X-API-Key")[0] == 200
        assert worker_pids(server) == pids
        assert "Traceback" not in server.log.with_suffix(".out").read_text(errors="replace")
    finally:
        stop_server(server)


# --- crashes (last: the workers restart) --------------------------------------------------------------


def test_requests_queued_while_every_worker_is_stopped_are_refused_after_their_deadline(
    fault_server: Server, faults: FaultWorld
) -> None:
    """Every worker stopped (SIGSTOP: how a restart or a long pause looks from the socket) while
    clients send requests whose deadline (X-Request-Deadline) is 1 s away and keep waiting: the
    requests wait in the kernel's backlog, and the workers, once they go on, read them after their
    deadline. Each is answered 408 naming the header and counted, none decided or logged (without
    the header they were decided and logged 2 s late: the connection was still open)."""
    faults.promote(faults.champion)
    assert wait_for(lambda: all(readyz(fault_server)[0] == 200 for _ in range(4)), 30)
    ids, before = customers(faults.world, 8), expired_on_arrival(fault_server)
    answers: dict[str, tuple[int, dict]] = {}

    def ask(rid: str, customer: str) -> None:
        body = {"customer_id": customer, "channel": "call_center", "context": {"rid": rid}}
        deadline = {"X-Request-Deadline": f"{time.time() + 1.0:.6f}"}
        answers[rid] = post(fault_server, "/recommend", body, timeout=30, extra=deadline)

    clients = [threading.Thread(target=ask, args=(f"stop-{n}", c)) for n, c in enumerate(ids)]
    pids = worker_pids(fault_server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for client in clients:
            client.start()
        time.sleep(2.0)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    for client in clients:
        client.join()
    assert {status for status, _ in answers.values()} == {408}, answers
    assert all(a["error"].startswith("X-Request-Deadline passed ") for _, a in answers.values())
    assert not [rid for rid in logged_by_rid(fault_server.log) if rid.startswith("stop")]
    assert expired_on_arrival(fault_server) == before + len(ids)


def expired_on_arrival(server: Server) -> float:
    """nextbest_requests_expired_total of /recommend, stage arrival (0 before the first)."""
    status, text = get(server, "/metrics")
    assert status == 200
    prefix = 'nextbest_requests_expired_total{endpoint="/recommend",stage="arrival"}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))  # fmt: skip


def test_kill_9_of_every_worker_under_load(fault_server: Server, faults: FaultWorld) -> None:
    """No answered decision missing from the log; no decision logged after its client gave up."""
    faults.promote(faults.champion)
    assert wait_for(lambda: all(readyz(fault_server)[0] == 200 for _ in range(4)), 30)
    timeout = 3.0
    ids = customers(faults.world, 200)
    with load(fault_server, ids, threads=4, timeout=timeout, tag="kill") as traffic:
        time.sleep(1.5)
        for pid in worker_pids(fault_server):
            os.kill(pid, signal.SIGKILL)
        time.sleep(timeout + 1)
        assert wait_for(lambda: status_of(fault_server, "/readyz") == 200, 120)
        time.sleep(1.5)
    logged = {r: d for r, d in logged_by_rid(fault_server.log).items() if r.startswith("kill")}
    missing = [
        rid for rid, decision in traffic.answered.items() if logged.get(rid, ("",))[0] != decision
    ]
    assert traffic.answered and not missing
    unseen = {rid: ts for rid, (_, ts) in logged.items() if rid not in traffic.answered}
    late = [
        rid
        for rid, ts in unseen.items()
        if datetime.fromisoformat(ts).timestamp() - traffic.sent_at[rid] > timeout
    ]
    assert not late, late  # queued while workers restarted, decided after the client left
    assert len(unseen) <= 4  # at most the requests in flight at the kill (one per client)
    assert traffic.gave_up  # the kill did cut requests off


def test_an_empty_api_key_is_refused_at_start(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(
        app, ["serve", "--store", str(tmp_path / "store.sqlite")], env={"NEXTBEST_API_KEY": " "}
    )
    assert result.exit_code == 2 and "NEXTBEST_API_KEY is set but empty" in result.output
    # the service module reads its settings at import, in every worker: the same refusal
    from serving.online.settings import ServingSettings
    from training.errors import ConfigError

    with pytest.raises(ConfigError, match="NEXTBEST_API_KEY is set but empty"):
        ServingSettings.from_env({"NEXTBEST_API_KEY": ""})
