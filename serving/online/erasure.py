"""Erasure (`nextbest forget`): a customer removed from every store that holds them, and the
erasure logged under a salted hash of the identifier, never the identifier itself.

The stores: the online store (rewritten to a new file and swapped in atomically, so the service
reloads it and no free page keeps the id), the contact history and decision log (SQLite or
PostgreSQL, serving.history), the live event store with its outbox, trigger claims and shared
live rows (deleted with `secure_delete`, vacuumed, its WAL truncated) and the Parquet files of a folder of exports
(exposures, feedback, events: each file holding a `customer_id` column is rewritten without them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from serving.history.log import DecisionLog
from serving.online.history import TABLE as HISTORY_TABLE
from training.atomic import atomic_file
from training.errors import NextbestError

logger = logging.getLogger("nextbest.erasure")
EVENT_TABLES = ("events", "outbox", "trigger_claims", "live_rows")
SALT_ENV = "NEXTBEST_ERASURE_SALT"


@dataclass
class Erased:
    """What one erasure removed, store by store (row counts; files rewritten)."""

    customers: int
    removed: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def read_ids(ids: Sequence[str], file: Path | None) -> list[str]:
    """The ids given one by one and those of `file` (one per line, blank lines skipped)."""
    out = [i.strip() for i in ids if i.strip()]
    if file is not None:
        if not file.is_file():
            raise NextbestError(f"{file}: no such file of customer ids")
        out += [line.strip() for line in file.read_text("utf-8").splitlines() if line.strip()]
    if not out:
        raise NextbestError("no customer to forget: give --customer ID or --customers-file FILE")
    return sorted(set(out))


def salt(salt_file: Path) -> bytes:
    """The erasure log's salt: NEXTBEST_ERASURE_SALT, else `salt_file` (created once, 0600), so
    the same customer always hashes alike and an auditor holding the salt can check an erasure."""
    if os.environ.get(SALT_ENV):
        return os.environ[SALT_ENV].encode()
    if not salt_file.is_file():
        salt_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as sink:
            sink.write(secrets.token_hex(32))
    return salt_file.read_text().strip().encode()


def hashed(customer_id: str, key: bytes) -> str:
    return hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


def forget_online_store(path: Path, ids: Sequence[str]) -> int:
    """Rewrite the online store without these customers and swap it in; rows removed."""
    if not path.is_file():
        return 0
    with sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True) as source:
        scratch = sqlite3.connect(":memory:")
        source.backup(scratch)
    source.close()
    tables = {r[0] for r in scratch.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    marks = ",".join("?" * len(ids))
    removed = 0
    for table in ("features", HISTORY_TABLE):
        if table in tables:
            removed += scratch.execute(
                f"DELETE FROM {table} WHERE customer_id IN ({marks})",  # noqa: S608
                list(ids),
            ).rowcount
    scratch.commit()
    with atomic_file(path) as tmp:
        scratch.execute("VACUUM INTO ?", (str(tmp),))  # a fresh file: no free page keeps an id
    scratch.close()
    return removed


def forget_event_store(path: Path, ids: Sequence[str]) -> int:
    """Delete the customers' live events, outbox items, trigger claims and shared live rows in
    place; rows removed."""
    if not path.is_file():
        return 0
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        con.execute("PRAGMA secure_delete=ON")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        marks = ",".join("?" * len(ids))
        removed = 0
        con.execute("BEGIN IMMEDIATE")
        for table in EVENT_TABLES:
            if table in tables:
                removed += con.execute(
                    f"DELETE FROM {table} WHERE customer_id IN ({marks})",  # noqa: S608
                    list(ids),
                ).rowcount
        con.execute("COMMIT")
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return removed


def forget_exports(folder: Path, ids: Sequence[str]) -> tuple[int, list[str]]:
    """Rewrite every Parquet file under `folder` that holds these customers, atomically; returns
    (rows removed, files rewritten)."""
    if not folder.is_dir():
        raise NextbestError(f"{folder}: no such folder of exports")
    removed, files = 0, []
    wanted = set(ids)
    for file in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(file)
        if "customer_id" not in table.column_names:
            continue
        keep = [str(c) not in wanted for c in table.column("customer_id").to_pylist()]
        if all(keep):
            continue
        frame = table.to_pandas()
        with atomic_file(file) as tmp:
            frame[keep].to_parquet(tmp, index=False)
        removed += len(keep) - sum(keep)
        files.append(str(file))
    return removed, files


def forget(
    ids: Sequence[str],
    history: str | Path,
    online_store: Path,
    event_store: Path,
    exports: Iterable[Path] = (),
) -> Erased:
    """Remove the customers from every store; returns the counts (no identifier in them)."""
    done = Erased(customers=len(ids))
    done.removed["online_store"] = forget_online_store(online_store, ids)
    log = DecisionLog(history)
    try:
        gone = log.forget(ids)
        done.removed["decisions"], done.removed["feedback"], done.removed["consent"] = gone
    finally:
        log.close()
    done.removed["event_store"] = forget_event_store(event_store, ids)
    for folder in exports:
        rows, files = forget_exports(folder, ids)
        done.removed["exports"] = done.removed.get("exports", 0) + rows
        done.files += files
    return done


def log_erasure(done: Erased, ids: Sequence[str], key: bytes, erasure_log: Path) -> None:
    """Append one JSON line to the erasure log: when, the salted hashes, what was removed."""
    entry = {
        "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        "customers_hmac_sha256": [hashed(i, key) for i in ids],
        "removed": done.removed,
        "files_rewritten": len(done.files),
    }
    erasure_log.parent.mkdir(parents=True, exist_ok=True)
    with open(erasure_log, "a", encoding="utf-8") as sink:
        sink.write(json.dumps(entry, sort_keys=True) + "\n")
        sink.flush()
        os.fsync(sink.fileno())
    logger.info("event=erasure customers=%d removed=%s", done.customers, done.removed)
