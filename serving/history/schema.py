"""The contact history's schema as an ordered list of migrations, applied when a store is opened.

Why not Alembic: the history has three tables and a handful of changes, applied by every service
replica at start. An ordered list of plain functions with a one-row version table does that in one
transaction, with no script directory to ship inside the Bento, and every migration reads as the
SQL it runs. Replicas that start together take the write lock first (PostgreSQL: an advisory
transaction lock; SQLite: BEGIN IMMEDIATE), so exactly one applies each migration.

Tables: `decisions`, `feedback` (contacts and responses) and `consent` (consent events posted
live). Version 1 is the decision log as it was before migrations existed (one SQLite file per
host): a file written then holds these tables without a version table and is migrated from 1 in
place.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)

from training.errors import NextbestError

MIGRATION_LOCK = 0x6E657874  # the advisory lock key every replica's migration takes ("next")

metadata = MetaData()
decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", Text, primary_key=True),
    Column("ts", Text, nullable=False),  # UTC ISO-8601 with microseconds: sorts as time
    Column("customer_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("action_id", Text, nullable=False),
    Column("propensity", Float, nullable=False),
    Column("control_group", Integer, nullable=False),
    Column("explored", Integer, nullable=False),
    Column("cold_start", Integer, nullable=False),
    Column("actions", Text, nullable=False),  # JSON list, in the order shown
    Column("context", Text, nullable=False),  # JSON object
    Column("arm", Text, nullable=False, server_default="champion"),  # the bundle that decided
    Column("shadow", Integer, nullable=False, server_default="0"),  # logged, never shown
    # the greedy ranking's first action (or "control"), shown or not; NULL: not logged (before v4)
    Column("greedy_action", Text, nullable=True),
)
feedback = Table(
    "feedback",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("decision_id", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("action_id", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("ts", Text, nullable=False),
)
consent = Table(
    "consent",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("ts", Text, nullable=False),  # when the customer gave or withdrew it (UTC ISO-8601)
    Column("channel", Text, nullable=False),
    Column("event_type", Text, nullable=False),  # opt_in or opt_out
    Column("received_at", Text, nullable=False),
    UniqueConstraint("customer_id", "ts", "channel", "event_type", name="consent_event"),
)
VERSION_TABLE = "nextbest_schema"


class SchemaTooNewError(NextbestError):
    """The database was migrated by a newer nextbest than this one."""


def _v1_decision_log(con: Connection) -> None:
    """The decision log of one SQLite file per host, as every earlier version wrote it."""
    con.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS decisions (decision_id TEXT PRIMARY KEY, ts TEXT NOT NULL, "
        "customer_id TEXT NOT NULL, channel TEXT NOT NULL, model_version TEXT NOT NULL, "
        "action_id TEXT NOT NULL, propensity DOUBLE PRECISION NOT NULL, "
        "control_group INTEGER NOT NULL, explored INTEGER NOT NULL, cold_start INTEGER NOT NULL, "
        "actions TEXT NOT NULL, context TEXT NOT NULL)"
    )
    con.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, ts)"
    )
    con.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS feedback (decision_id TEXT NOT NULL REFERENCES decisions "
        "(decision_id), customer_id TEXT NOT NULL, action_id TEXT NOT NULL, "
        "outcome TEXT NOT NULL, ts TEXT NOT NULL)"
    )
    con.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS feedback_customer ON feedback (customer_id, outcome, ts)"
    )


def _v2_feedback_order(con: Connection) -> None:
    """Feedback gets an explicit insertion order (`seq`): "the latest feedback wins" broke ties on
    SQLite's rowid, which PostgreSQL has no equivalent of; and an index by decision."""
    if con.dialect.name == "sqlite":
        con.exec_driver_sql(
            "CREATE TABLE feedback_v2 (seq INTEGER PRIMARY KEY, decision_id TEXT NOT NULL "
            "REFERENCES decisions (decision_id), customer_id TEXT NOT NULL, "
            "action_id TEXT NOT NULL, outcome TEXT NOT NULL, ts TEXT NOT NULL)"
        )
        con.exec_driver_sql(
            "INSERT INTO feedback_v2 (seq, decision_id, customer_id, action_id, outcome, ts) "
            "SELECT rowid, decision_id, customer_id, action_id, outcome, ts FROM feedback"
        )
        con.exec_driver_sql("DROP TABLE feedback")
        con.exec_driver_sql("ALTER TABLE feedback_v2 RENAME TO feedback")
        con.exec_driver_sql("CREATE INDEX feedback_customer ON feedback (customer_id, outcome, ts)")
    else:
        con.exec_driver_sql("ALTER TABLE feedback ADD COLUMN seq BIGSERIAL PRIMARY KEY")
    con.exec_driver_sql("CREATE INDEX feedback_decision ON feedback (decision_id)")


def _v3_arms(con: Connection) -> None:
    """Decisions name the arm that made them (champion or challenger) and whether they were made
    in shadow (logged beside the shown decision, never shown, never a contact); rows written
    before are the champion's, shown."""
    con.exec_driver_sql("ALTER TABLE decisions ADD COLUMN arm TEXT NOT NULL DEFAULT 'champion'")
    con.exec_driver_sql("ALTER TABLE decisions ADD COLUMN shadow INTEGER NOT NULL DEFAULT 0")


def _v4_greedy_action(con: Connection) -> None:
    """Decisions keep the action the policy's greedy ranking put first (`control` when it was
    empty), whether shown or not: for a control-group customer, what they would have received,
    which the impact's effect per greedy action compares against. Rows written before did not
    log it: NULL."""
    con.exec_driver_sql("ALTER TABLE decisions ADD COLUMN greedy_action TEXT DEFAULT NULL")


def _v5_consent(con: Connection) -> None:
    """Consent events posted to any replica (`opt_in` / `opt_out` through /events) are kept in
    the shared history, so every replica and the next batch apply them; one row per event (a
    retried post is the same row)."""
    serial = "INTEGER" if con.dialect.name == "sqlite" else "BIGSERIAL"
    con.exec_driver_sql(
        f"CREATE TABLE consent (seq {serial} PRIMARY KEY, customer_id TEXT NOT NULL, "
        "ts TEXT NOT NULL, channel TEXT NOT NULL, event_type TEXT NOT NULL, "
        "received_at TEXT NOT NULL, CONSTRAINT consent_event "
        "UNIQUE (customer_id, ts, channel, event_type))"
    )


MIGRATIONS: tuple[Callable[[Connection], None], ...] = (
    _v1_decision_log,
    _v2_feedback_order,
    _v3_arms,
    _v4_greedy_action,
    _v5_consent,
)
LATEST = len(MIGRATIONS)


def migrate(con: Connection) -> tuple[int, int]:
    """Bring the schema to LATEST inside the caller's write transaction; returns (from, to).

    A database without the version table is at 0 (empty) or 1 (a decision log written before
    migrations existed); one at a version above LATEST is refused rather than misread."""
    if con.dialect.name == "postgresql":
        con.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    tables = set(inspect(con).get_table_names())
    if VERSION_TABLE in tables:
        found = con.exec_driver_sql(f"SELECT version FROM {VERSION_TABLE}").scalar_one()  # noqa: S608
    else:
        found = 1 if "decisions" in tables else 0
        con.exec_driver_sql(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
        con.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({found})")  # noqa: S608
    if found > LATEST:
        raise SchemaTooNewError(
            f"the contact history is at schema version {found}, newer than this nextbest "
            f"knows ({LATEST}): upgrade nextbest before opening it"
        )
    for version in range(found, LATEST):
        MIGRATIONS[version](con)
    if found != LATEST:
        con.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version = {LATEST}")  # noqa: S608
    return found, LATEST
