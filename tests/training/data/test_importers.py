"""Importers of real public data sets: their output passes the contract and keeps the source's facts."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SHARED_DATASETS
from training.data.contract import validate_dataset
from training.data.importers import (
    airline_tweets_tables,
    import_airline_tweets,
    import_hillstrom,
    import_telco,
)
from training.errors import NextbestError

DATASETS = SHARED_DATASETS
TELCO = DATASETS / "Telco-Customer-Churn.csv"
HILLSTROM = DATASETS / "hillstrom.csv"
TWEETS = DATASETS / "airline_tweets.csv"


def _catalog(out: Path) -> set[str]:
    config = yaml.safe_load((out / "config.yaml").read_text())
    actions = yaml.safe_load((out / config["actions"]).read_text())["actions"]
    return {a["id"] for a in actions}


# --------------------------------------------------------------------------------------------
# real files


@pytest.mark.skipif(not TELCO.exists(), reason=f"public data set not present: {TELCO}")
def test_real_telco_import_passes_the_contract(tmp_path: Path) -> None:
    snapshot = date(2026, 1, 1)
    out = tmp_path / "telco"
    ds = import_telco(TELCO, out, snapshot=snapshot)
    summary = validate_dataset(out, known_actions=_catalog(out))
    assert summary.rows == {"customers": 7043, "events": 1869, "exposures": 0}
    assert summary.event_types == {"churn": 1869}
    assert summary.channels == {"account": 1869}
    start = datetime(2026, 1, 1)
    assert summary.event_start is not None and summary.event_start > start
    assert summary.event_end is not None and summary.event_end < start + timedelta(days=90)
    assert len(summary.static_columns) == 19 and "Churn" not in summary.static_columns
    with ds.connect() as con:
        blanks = con.execute("SELECT count(*) FROM customers WHERE TotalCharges IS NULL")
        assert blanks.fetchone() == (11,)
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE customers)").fetchall()
        )
    assert types["TotalCharges"] == "DOUBLE" and types["tenure"] == "BIGINT"


@pytest.mark.skipif(not HILLSTROM.exists(), reason=f"public data set not present: {HILLSTROM}")
def test_real_hillstrom_import_passes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "hillstrom"
    ds = import_hillstrom(HILLSTROM, out, campaign_date=date(2008, 3, 1))
    summary = validate_dataset(out, known_actions=_catalog(out))
    assert summary.rows["customers"] == 64000 and summary.rows["exposures"] == 64000
    assert summary.actions == {"womens_email": 21387, "mens_email": 21307, "control": 21306}
    raw = pd.read_csv(HILLSTROM)
    assert summary.event_types == {
        "visit": int(raw["visit"].sum()),
        "purchase": int(raw["conversion"].sum()),
    }
    with ds.connect() as con:
        outside = con.execute(
            "SELECT count(*) FROM events e JOIN exposures x USING (customer_id) "
            "WHERE e.ts <= x.ts OR e.ts >= x.ts + INTERVAL 14 DAY"
        ).fetchone()
        spend = con.execute("SELECT sum(value) FROM events WHERE event_type = 'purchase'")
        assert outside == (0,)
        assert spend.fetchone()[0] == pytest.approx(raw["spend"].sum())  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# small hand-made sources


def _hillstrom_source(path: Path, segments: list[str] | None = None) -> Path:
    segments = segments or ["Mens E-Mail", "Womens E-Mail", "No E-Mail", "No E-Mail"]
    n = len(segments)
    pd.DataFrame(
        {
            "recency": [10, 6, 7, 9][:n],
            "history_segment": ["2) $100 - $200"] * n,
            "history": [142.44, 329.08, 180.65, 675.83][:n],
            "mens": [1, 1, 0, 1][:n],
            "womens": [0, 1, 1, 0][:n],
            "zip_code": ["Surburban", "Rural", "Urban", "Rural"][:n],
            "newbie": [0, 1, 1, 0][:n],
            "channel": ["Phone", "Web", "Web", "Multichannel"][:n],
            "segment": segments,
            "visit": [1, 0, 1, 1][:n],
            "conversion": [1, 0, 0, 0][:n],
            "spend": [29.99, 0, 0, 0][:n],
        }
    ).to_csv(path, index=False)
    return path


def _telco_source(path: Path) -> Path:
    raw = pd.read_csv(TELCO, dtype="str", nrows=20) if TELCO.exists() else None
    if raw is None:
        pytest.skip(f"public data set not present: {TELCO}")
    raw.to_csv(path, index=False)
    return path


def test_hillstrom_tables_and_config(tmp_path: Path) -> None:
    out = tmp_path / "h"
    ds = import_hillstrom(_hillstrom_source(tmp_path / "src.csv"), out, date(2008, 3, 1))
    validate_dataset(out, known_actions={"mens_email", "womens_email"})
    with ds.connect() as con:
        ids = [r[0] for r in con.execute("SELECT customer_id FROM customers").fetchall()]
        arms = dict(con.execute("SELECT customer_id, action_id FROM exposures").fetchall())
        events = con.execute(
            "SELECT customer_id, event_type, value FROM events ORDER BY customer_id, ts"
        ).fetchall()
        columns = [r[0] for r in con.execute("DESCRIBE customers").fetchall()]
    assert ids == ["H1", "H2", "H3", "H4"]
    assert arms == {"H1": "mens_email", "H2": "womens_email", "H3": "control", "H4": "control"}
    assert events == [
        ("H1", "visit", None),
        ("H1", "purchase", 29.99),
        ("H3", "visit", None),
        ("H4", "visit", None),
    ]
    assert "purchase_channel" in columns and "segment" not in columns and "spend" not in columns
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["snapshots"]["as_of"] == [date(2008, 3, 1)]
    assert config["outcomes"]["value"] == {
        "role": "value",
        "kind": "sum",
        "event_types": ["purchase"],
        "horizon_days": 14,
    }
    assert config["objective"]["value_outcome"] == "value"
    assert _catalog(out) == {"mens_email", "womens_email"}


def test_import_is_deterministic(tmp_path: Path) -> None:
    src = _hillstrom_source(tmp_path / "src.csv")
    import_hillstrom(src, tmp_path / "a")
    import_hillstrom(src, tmp_path / "b")
    for table in ("customers", "events", "exposures"):
        a = pd.read_parquet(tmp_path / "a" / f"{table}.parquet")
        b = pd.read_parquet(tmp_path / "b" / f"{table}.parquet")
        pd.testing.assert_frame_equal(a, b)


def test_telco_small_sample(tmp_path: Path) -> None:
    src = _telco_source(tmp_path / "telco.csv")
    out = tmp_path / "t"
    ds = import_telco(src, out, snapshot=date(2026, 1, 1))
    validate_dataset(out)
    raw = pd.read_csv(src, dtype="str")
    with ds.connect() as con:
        churned = {r[0] for r in con.execute("SELECT customer_id FROM events").fetchall()}
    assert churned == set(raw.loc[raw["Churn"] == "Yes", "customerID"])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["outcomes"] == {
        "churn": {"role": "churn", "kind": "any", "event_types": ["churn"], "horizon_days": 90}
    }
    assert yaml.safe_load((out / "actions.yaml").read_text()) == {"actions": []}


def test_reimport_replaces_a_previous_import_and_leaves_no_temp_dirs(tmp_path: Path) -> None:
    src = _hillstrom_source(tmp_path / "src.csv")
    out = tmp_path / "data" / "h"
    import_hillstrom(src, out)
    import_hillstrom(_hillstrom_source(src, ["No E-Mail"] * 4), out)
    exposures = pd.read_parquet(out / "exposures.parquet")
    assert set(exposures["action_id"]) == {"control"}
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["h"]


def test_refuses_to_replace_a_directory_with_other_files(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(NextbestError, match="refusing to replace"):
        import_hillstrom(_hillstrom_source(tmp_path / "src.csv"), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "src.csv"]


def test_refuses_to_replace_another_import_or_an_edited_config(tmp_path: Path) -> None:
    out = tmp_path / "h"
    import_hillstrom(_hillstrom_source(tmp_path / "src.csv"), out)
    before = (out / "exposures.parquet").read_bytes()
    telco = _telco_source(tmp_path / "telco.csv")
    with pytest.raises(NextbestError, match="its config.yaml is not the one this import writes"):
        import_telco(telco, out)
    assert (out / "exposures.parquet").read_bytes() == before
    (out / "actions.yaml").write_text((out / "actions.yaml").read_text() + "# my note\n")
    with pytest.raises(NextbestError, match="its actions.yaml is not the one"):
        import_hillstrom(tmp_path / "src.csv", out)
    assert "# my note" in (out / "actions.yaml").read_text()


def test_wrong_source_file_is_a_user_error(tmp_path: Path) -> None:
    src = _hillstrom_source(tmp_path / "src.csv")
    with pytest.raises(NextbestError, match="not the IBM Telco churn file"):
        import_telco(src, tmp_path / "out")
    with pytest.raises(NextbestError, match="source file not found"):
        import_hillstrom(tmp_path / "nope.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_hillstrom_segment_is_reported(tmp_path: Path) -> None:
    src = _hillstrom_source(tmp_path / "src.csv", ["Mens E-Mail", "SMS", "No E-Mail", "No E-Mail"])
    with pytest.raises(NextbestError, match=r"segment.*'SMS'.*row 3"):
        import_hillstrom(src, tmp_path / "out")


@pytest.mark.skipif(not TWEETS.exists(), reason=f"public data set not present: {TWEETS}")
def test_real_airline_tweets_import_passes_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "tweets"
    ds = import_airline_tweets(TWEETS, out)
    summary = validate_dataset(out, known_actions=_catalog(out))
    assert summary.rows == {"customers": 14640, "events": 14640, "exposures": 0}
    assert summary.event_types == {"csat": 14640} and summary.static_columns == {
        "airline": "VARCHAR"
    }
    with ds.connect() as con:
        answers = dict(con.execute("SELECT value, count(*) FROM events GROUP BY 1").fetchall())
        texts = con.execute("SELECT count(text), max(length(text)) FROM events").fetchone()
    assert answers == {1.0: 9178, 3.0: 3099, 5.0: 2363}  # the README's sentiment counts
    assert texts is not None and texts[0] == 14640 and texts[1] < 200


def test_airline_tweets_bad_time_is_reported() -> None:
    raw = pd.DataFrame(
        {
            "tweet_id": ["1", "2"],
            "airline_sentiment": ["negative", "positive"],
            "negativereason": ["Late Flight", ""],
            "airline": ["United", "Delta"],
            "text": ["@united late again", "@delta thanks!"],
            "tweet_created": ["2/24/2015 11:35", "yesterday"],
        }  # fmt: skip
    )
    with pytest.raises(NextbestError, match="tweet_created.*'yesterday', row 3"):
        airline_tweets_tables(raw)
    raw.loc[1, "tweet_created"] = "2/24/2015 11:36"
    tables = airline_tweets_tables(raw)
    assert tables["events"]["value"].tolist() == [1.0, 5.0]
    assert tables["events"]["text"].tolist() == ["@united late again", "@delta thanks!"]
