"""Where the contact history lives: an SQLite file (the embedded default) or a PostgreSQL URL.

SQLAlchemy Core gives one set of statements for both, its connection pool (with a liveness check
on checkout, so a restarted PostgreSQL is reconnected to without restarting the service) and the
dialects' quirks; psycopg 3 is the PostgreSQL driver. On SQLite the connection runs in autocommit
mode and each transaction issues its own BEGIN, so DDL is transactional and a write transaction
takes SQLite's write lock at its start (BEGIN IMMEDIATE) across processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

from training.errors import ConfigError, NextbestError

BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 3  # a PostgreSQL that does not answer is a 503 this fast, not a hung request
STATEMENT_TIMEOUT_MS = 5_000
Synchronous = Literal["FULL", "NORMAL"]
WRITE = {"nextbest_begin": "IMMEDIATE"}  # execution options of a write transaction


class NoHistoryError(NextbestError):
    """An SQLite history file that does not exist was asked to be read."""


def history_url(source: str | Path) -> URL:
    """The SQLAlchemy URL of a history: a path is an SQLite file; `postgresql://` and
    `postgres://` URLs use psycopg 3; other schemes are refused by name."""
    if isinstance(source, Path) or "://" not in source:
        return URL.create("sqlite+pysqlite", database=str(Path(source)))
    try:
        url = make_url(source)
    except ArgumentError:
        raise ConfigError("database URL: not a URL (postgresql://user@host:5432/db)") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise ConfigError(
        f"database URL: scheme {backend!r} is not supported; use postgresql://... or an "
        "SQLite file path"
    )


def describe(url: URL) -> str:
    """The URL with its password hidden: safe to print and log."""
    return url.render_as_string(hide_password=True)


def open_engine(source: str | Path, synchronous: Synchronous = "NORMAL") -> Engine:
    """An engine on the history; an SQLite file (and its folder) is created when absent."""
    url = history_url(source)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, synchronous)
    # NORMAL: a committed decision survives a crash of the service (PostgreSQL holds it) but a
    # crash of PostgreSQL or of its machine may lose the last fraction of a second of commits,
    # as SQLite's NORMAL does on a machine crash; FULL: each commit waits for the WAL's fsync
    commit = "off" if synchronous == "NORMAL" else "on"
    return create_engine(
        url,
        isolation_level="AUTOCOMMIT",  # one statement, one transaction; see DecisionLog._write
        pool_size=2,
        max_overflow=4,
        pool_pre_ping=True,
        pool_timeout=CONNECT_TIMEOUT_S,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} "
            f"-c lock_timeout={STATEMENT_TIMEOUT_MS} -c synchronous_commit={commit}",
            "application_name": "nextbest",
        },
    )


def _sqlite_engine(url: URL, synchronous: Synchronous) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_con: Any, _record: Any) -> None:
        dbapi_con.isolation_level = None  # the driver issues no BEGIN of its own: ours below
        cursor = dbapi_con.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(con: Connection) -> None:
        options = con.get_execution_options()
        if options.get("isolation_level") != "AUTOCOMMIT":  # VACUUM runs outside a transaction
            con.exec_driver_sql(f"BEGIN {options.get('nextbest_begin', '')}")

    return engine
