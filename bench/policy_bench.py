"""Issue 18's batch figure: `nextbest score` of every customer × every demo action with the contact
policy applied from a contact history of millions of contacts, beside the same batch without
history, in the same run.

    python bench/policy_bench.py history --data DIR --log FILE --contacts 5000000 --now ISO

writes a decision log of random contacts (sends, acceptances and declines of catalog actions on
their channels over the last 180 days) of the data set's customers; bench/run.py does the rest.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from serving.history.log import DecisionLog
from training.config import load_config

#: the bench's config: the demo's, with caps per channel and across actions and e-mail consent
POLICY = {
    "contact_policy": {
        "max_contacts_per_30_days": 3,
        "channels": {"email": {"max_per_7_days": 1}},
    },
    "consent": {"email": "paperless"},
}
OUTCOMES = np.array(["sent", "accepted", "declined"], dtype=object)
BLOCK = 500_000


def write_history(data: Path, log: Path, contacts: int, now: datetime, seed: int = 7) -> int:
    """`contacts` random contacts of the data set's customers, each a decision and its feedback,
    inserted in one transaction; returns the rows written."""
    rng = np.random.default_rng(seed)
    ids = pq.read_table(data / "customers.parquet", columns=["customer_id"])["customer_id"]
    customers = np.asarray(ids.to_pylist(), dtype=object)
    catalog = load_config().catalog
    actions = np.asarray(catalog.ids, dtype=object)
    channels = [np.asarray(a.channels or ("call_center",), dtype=object) for a in catalog.actions]
    DecisionLog(log).close()  # the schema
    con = sqlite3.connect(log, isolation_level=None)
    con.execute("PRAGMA journal_mode=DELETE")  # one bulk load: no WAL, indexes built after
    con.execute("PRAGMA synchronous=OFF")
    indexes = con.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    built = [sql for (sql,) in indexes.fetchall()]
    for (name,) in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall():
        con.execute(f"DROP INDEX {name}")
    con.execute("BEGIN")
    end = np.datetime64(now.replace(tzinfo=None), "us")
    for start in range(0, contacts, BLOCK):
        n = min(BLOCK, contacts - start)
        who = customers[rng.integers(len(customers), size=n)]
        what = rng.integers(len(actions), size=n)
        where = np.array([channels[j][rng.integers(len(channels[j]))] for j in what], dtype=object)
        age = rng.integers(0, 180 * 86_400_000_000, size=n).astype("timedelta64[us]")
        ts = np.char.add(np.datetime_as_string(end - age, unit="us"), "+00:00")
        outcome = OUTCOMES[rng.choice(3, size=n, p=[0.6, 0.25, 0.15])]
        decision = [f"h{start + i}" for i in range(n)]
        action = actions[what]
        con.executemany(
            "INSERT INTO decisions (decision_id, ts, customer_id, channel, model_version, "
            "action_id, propensity, control_group, explored, cold_start, actions, context) "
            "VALUES (?, ?, ?, ?, '0', ?, 1.0, 0, 0, 0, ?, '{}')",
            zip(
                decision,
                ts.tolist(),
                who,
                where,
                action,
                (json.dumps([a]) for a in action),
                strict=True,
            ),  # fmt: skip
        )
        con.executemany(
            "INSERT INTO feedback (decision_id, customer_id, action_id, outcome, ts) "
            "VALUES (?, ?, ?, ?, ?)",
            zip(decision, who, action, outcome, ts.tolist(), strict=True),
        )
    con.execute("COMMIT")
    for sql in built:
        con.execute(sql)
    con.execute("PRAGMA journal_mode=WAL")  # as the service keeps it
    con.close()
    return contacts


def write_config(folder: Path) -> Path:
    """The demo config and catalog with POLICY, in `folder`."""
    import yaml

    from training.config import DEMO_CONFIG

    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(DEMO_CONFIG.read_text()) | POLICY
    (folder / "actions.yaml").write_text((DEMO_CONFIG.parent / "actions.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "config.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("history", "config"))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--contacts", type=int, default=5_000_000)
    parser.add_argument("--now", default="2026-11-02T09:00:00+00:00")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.what == "config":
        print(write_config(args.out))
        return
    rows = write_history(args.data, args.log, args.contacts, datetime.fromisoformat(args.now))
    print(json.dumps({"contacts": rows}))


if __name__ == "__main__":
    main()
