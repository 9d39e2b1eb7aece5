"""Helpers of the fault-injection suite: a world of its own (its registry and store can be broken
without touching the shared `world`), the service's worker processes, their open files, a load
generator that remembers what each client received, and artifact corruption."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.serving.conftest import API_KEY, Server

HEADER = "X-Agent-Token"  # the fault server's renamed API-key header


def worker_pids(server: Server) -> set[int]:
    """PIDs of the service's worker processes: descendants of the server running a worker."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {server.process.pid}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    pids = set()
    for pid in family - {server.process.pid}:
        try:
            if b"_bentoml_impl.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.add(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def deleted_handles(pids: set[int], name: str) -> int:
    """Open descriptors of these processes to deleted files called `name` (replaced stores)."""
    count = 0
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except (FileNotFoundError, ProcessLookupError):
            continue
        count += sum(1 for link in links if name in link and link.endswith("(deleted)"))
    return count


def post(
    server: Server,
    path: str,
    body: object,
    header: str = HEADER,
    timeout: float = 10,
    extra: dict[str, str] | None = None,
) -> tuple[int, dict]:
    """One POST with a fresh connection and `extra` headers; (status, JSON body or {"text": ...})."""
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", header: API_KEY} | (extra or {})
        conn.request("POST", path, json.dumps(body).encode(), headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, {"text": raw.decode(errors="replace")}


def get(server: Server, path: str, header: str = HEADER) -> tuple[int, str]:
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", path, headers={header: API_KEY})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def status_of(server: Server, path: str) -> int:
    """The status of a GET, or 0 when nothing answers (workers restarting)."""
    try:
        return get(server, path)[0]
    except OSError:
        return 0


def readyz(server: Server) -> tuple[int, dict]:
    status, text = get(server, "/readyz")
    return status, json.loads(text)


@dataclass
class Load:
    """Requests sent by a few client threads, each tagged with a unique context id."""

    statuses: list[int] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)  # request id -> decision_id
    sent_at: dict[str, float] = field(default_factory=dict)  # request id -> wall time
    gave_up: set[str] = field(default_factory=set)  # request ids whose client timed out
    errors: list[str] = field(default_factory=list)


@contextmanager
def load(
    server: Server,
    customers: list[str],
    threads: int = 4,
    timeout: float = 10,
    tag: str = "r",
) -> Iterator[Load]:
    """Keep `threads` clients asking /recommend until the block ends; request ids `<tag><k>-<n>`.
    Each request carries its deadline (X-Request-Deadline): sent + `timeout`, when its client
    gives up."""
    result, stop, lock = Load(), threading.Event(), threading.Lock()
    counter = iter(range(10**9))

    def client(k: int) -> None:
        while not stop.is_set():
            n = next(counter)
            rid = f"{tag}{k}-{n}"
            body = {
                "customer_id": customers[n % len(customers)],
                "channel": "call_center",
                "context": {"rid": rid},
            }
            with lock:
                result.sent_at[rid] = sent = time.time()
            deadline = {"X-Request-Deadline": f"{sent + timeout:.6f}"}
            try:
                status, answer = post(server, "/recommend", body, timeout=timeout, extra=deadline)
            except (OSError, http.client.HTTPException) as exc:  # timed out, cut off by a kill
                with lock:
                    result.gave_up.add(rid)
                    result.errors.append(type(exc).__name__)
                continue
            with lock:
                result.statuses.append(status)
                if status == 200:
                    result.answered[rid] = answer["decision_id"]

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield result
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def logged_by_rid(log: Path) -> dict[str, tuple[str, str]]:
    """Request id -> (decision_id, ts) of every logged decision that carries one."""
    with sqlite3.connect(log) as con:
        rows = con.execute("SELECT decision_id, ts, context FROM decisions").fetchall()
    out = {}
    for decision_id, ts, context in rows:
        rid = json.loads(context).get("rid")
        if rid is not None:
            out[rid] = (decision_id, ts)
    return out


def swap_by_rename(source: Path, live: Path) -> None:
    """What `nextbest materialize` does: a complete copy beside the live file, renamed onto it."""
    tmp = live.with_name(f".{live.name}.swap")
    shutil.copyfile(source, tmp)
    os.replace(tmp, live)


def wait_for(predicate: object, seconds: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(step)
    return False
