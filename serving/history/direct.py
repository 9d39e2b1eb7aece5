"""One SQLite connection for a decision's own statements, past SQLAlchemy.

A decision reads one customer's history and inserts one row. Through SQLAlchemy's connection,
transaction and statement machinery each costs several times what the statement itself costs on
SQLite. `DirectSqlite` keeps one of the engine's connections out of its pool (so the engine's
pragmas are set on it: WAL, synchronous, busy timeout) and runs single statements on it in
autocommit, each its own transaction, as `DecisionLog` runs them through the engine. The
statements are SQLAlchemy `text` with `:name` parameters, which sqlite3 takes as they are.
PostgreSQL does not use it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine


class DirectSqlite:
    """Single statements on one connection of an SQLite engine; thread-safe (one at a time)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._con: Any = None  # the engine's connection, detached from its pool

    def run(self, sql: str, params: Mapping[str, object]) -> list[Any]:
        """The rows of one statement, committed (autocommit: the engine's connections run no
        BEGIN of their own). sqlite3's errors propagate; the connection is opened on first use."""
        with self._lock:
            if self._con is None:
                con = self._engine.raw_connection()
                con.detach()  # ours from now on: closed by `close`, never handed back
                self._con = con
            cursor = self._con.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchall()
            finally:
                cursor.close()

    def close(self) -> None:
        """Close the connection (a later `run` opens another)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
