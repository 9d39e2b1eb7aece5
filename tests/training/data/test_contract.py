"""The data contract (docs/data.md): every rule breaks a valid data set in exactly one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.contract import (
    MAX_TEXT_CHARS,
    TABLES,
    column_types,
    open_dataset,
    static_columns,
    validate_dataset,
)
from training.errors import ContractError

Frames = dict[str, pd.DataFrame]
Edit = Callable[[Frames], None]
KNOWN_ACTIONS = {"apology_credit"}


def valid_frames() -> Frames:
    """A small valid data set: 3 customers (one id with leading zeros), 4 events, 2 exposures."""
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ["0042", "C2", "C3"],
                "age": [30, 41, 55],
                "plan": ["gold", "silver", "gold"],
                "vip": [True, False, False],
            }
        ),
        "events": pd.DataFrame(
            {
                "customer_id": ["0042", "C2", "C3", "C2"],
                "ts": ["2026-03-01", "2026-03-02 10:00:00", "2026-03-03T08:30:00", "2026-03-04"],
                "channel": ["web", "call_center", "email", None],
                "event_type": ["visit", "purchase", "nps", "complaint"],
                "value": [None, 12.5, 9.0, None],
            }
        ),
        "exposures": pd.DataFrame(
            {
                "customer_id": ["0042", "C2"],
                "ts": ["2026-02-01", "2026-02-01 09:00:00"],
                "action_id": ["apology_credit", "control"],
                "propensity": [0.5, 1.0],
            }
        ),
    }


def write(root: Path, fmt: str, frames: Frames) -> Path:
    """Write frames as NAME.csv or NAME.parquet; Parquet gets real timestamps when they parse."""
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        if fmt == "csv":
            frame.to_csv(root / f"{name}.csv", index=False)
            continue
        frame = frame.copy()
        if "ts" in frame and frame["ts"].dtype == "str":
            parsed = pd.to_datetime(frame["ts"], format="ISO8601", errors="coerce")
            if parsed.notna().all():
                frame["ts"] = parsed
        frame.to_parquet(root / f"{name}.parquet", index=False)
    return root


def broken(tmp_path: Path, fmt: str, edit: Edit) -> Path:
    frames = valid_frames()
    edit(frames)
    return write(tmp_path / "data", fmt, frames)


def set_cell(table: str, row: int, column: str, value: object) -> Edit:
    def edit(frames: Frames) -> None:
        frame = frames[table]
        if value is not None and not isinstance(value, type(frame[column].dropna().iloc[0])):
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return edit


def append_row(table: str, **values: object) -> Edit:
    def edit(frames: Frames) -> None:
        frames[table] = pd.concat([frames[table], pd.DataFrame([values])], ignore_index=True)

    return edit


def expect_error(path: Path, file: str, column: str | None, example: str, **kwargs: object) -> str:
    """validate_dataset must fail naming the file, the column and an example from the bad row."""
    with pytest.raises(ContractError) as info:
        validate_dataset(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(file), message
    if column is not None:
        assert f"column '{column}'" in message, message
    assert "example row:" in message and example in message, message
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# valid data


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_valid_dataset_passes_with_a_summary(tmp_path: Path, fmt: str) -> None:
    root = write(tmp_path / "data", fmt, valid_frames())
    summary = validate_dataset(root, known_actions=KNOWN_ACTIONS)
    assert summary.rows == {"customers": 3, "events": 4, "exposures": 2}
    assert summary.n_customers == 3 and summary.customers_with_events == 3
    assert summary.event_types == {"complaint": 1, "nps": 1, "purchase": 1, "visit": 1}
    assert summary.channels["(none)"] == 1
    assert summary.actions == {"apology_credit": 1, "control": 1}
    assert summary.event_start == datetime(2026, 3, 1)
    assert summary.event_end == datetime(2026, 3, 4)
    assert list(summary.static_columns) == ["age", "plan", "vip"]
    lines = summary.lines()
    assert any("events: 4 rows" in line for line in lines)
    assert all("\n" not in line for line in lines)


def test_customers_only_with_header_only_events_passes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    valid_frames()["customers"].to_csv(root / "customers.csv", index=False)
    (root / "events.csv").write_text("customer_id,ts,channel,event_type,value\n")
    summary = validate_dataset(root)
    assert summary.rows == {"customers": 3, "events": 0, "exposures": 0}
    assert summary.event_start is None and summary.files["exposures"] is None
    with open_dataset(root).connect() as con:
        assert column_types(con, "exposures") == {
            "customer_id": "VARCHAR",
            "ts": "TIMESTAMP",
            "action_id": "VARCHAR",
            "propensity": "DOUBLE",
        }
        assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_csv_customer_id_keeps_leading_zeros(tmp_path: Path) -> None:
    root = write(tmp_path / "data", "csv", valid_frames())
    with open_dataset(root).connect() as con:
        ids = con.execute("SELECT customer_id FROM customers ORDER BY 1").fetchall()
        joined = con.execute("SELECT count(*) FROM events JOIN customers USING (customer_id)")
        assert ids == [("0042",), ("C2",), ("C3",)]
        assert joined.fetchone() == (4,)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_typed_views_have_contract_types(tmp_path: Path, fmt: str) -> None:
    frames = valid_frames()
    frames["events"]["resolved"] = [True, False, True, True]
    root = write(tmp_path / "data", fmt, frames)
    with open_dataset(root).connect() as con:
        assert column_types(con, "events") == {
            "customer_id": "VARCHAR",
            "ts": "TIMESTAMP",
            "channel": "VARCHAR",
            "event_type": "VARCHAR",
            "value": "DOUBLE",
            "resolved": "BOOLEAN",
        }
        assert static_columns(con) == {"age": "numeric", "plan": "categorical", "vip": "boolean"}
        values = con.execute("SELECT value FROM events ORDER BY ts").fetchall()
        assert values == [(None,), (12.5,), (9.0,), (None,)]


def test_csv_timestamp_forms_and_offsets(tmp_path: Path) -> None:
    frames = valid_frames()
    frames["events"]["ts"] = [
        "2026-03-01",
        "2026-03-01 10:00:00",
        "2026-03-01T10:00:00",
        "2026-03-01T10:00:00+02:00",
    ]
    root = write(tmp_path / "data", "csv", frames)
    validate_dataset(root)
    with open_dataset(root).connect() as con:
        got = [r[0] for r in con.execute("SELECT ts FROM events").fetchall()]
    assert got == [datetime(2026, 3, 1), datetime(2026, 3, 1, 10), datetime(2026, 3, 1, 10)] + [
        datetime(2026, 3, 1, 8)  # an explicit offset becomes UTC
    ]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_validation_writes_nothing(tmp_path: Path, fmt: str) -> None:
    root = write(tmp_path / "data", fmt, valid_frames())
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir())
    validate_dataset(root)
    with pytest.raises(ContractError):
        validate_dataset(root, known_actions=set())
    after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir())
    assert after == before


# --------------------------------------------------------------------------------------------
# tables


@pytest.mark.parametrize("table", ["customers", "events"])
def test_missing_required_table(tmp_path: Path, table: str) -> None:
    root = write(tmp_path / "data", "csv", valid_frames())
    (root / f"{table}.csv").unlink()
    with pytest.raises(ContractError, match=f"{table}.*required table is missing"):
        validate_dataset(root)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="does not exist"):
        validate_dataset(tmp_path / "nowhere")


def test_csv_and_parquet_of_one_table_is_ambiguous(tmp_path: Path) -> None:
    root = write(tmp_path / "data", "csv", valid_frames())
    valid_frames()["events"].to_parquet(root / "events.parquet")
    with pytest.raises(ContractError, match="events.*ambiguous"):
        open_dataset(root)


def test_empty_customers_table(tmp_path: Path) -> None:
    root = write(tmp_path / "data", "csv", valid_frames())
    (root / "customers.csv").write_text("customer_id,age\n")
    with pytest.raises(ContractError, match=r"^customers.csv: has no rows"):
        validate_dataset(root)


def test_empty_csv_file_without_header(tmp_path: Path) -> None:
    root = write(tmp_path / "data", "csv", valid_frames())
    (root / "events.csv").write_text("")
    with pytest.raises(ContractError, match=r"^events.csv: file is empty"):
        validate_dataset(root)


# --------------------------------------------------------------------------------------------
# columns and types


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("customers", "customer_id"),
        ("events", "customer_id"),
        ("events", "ts"),
        ("events", "channel"),
        ("events", "event_type"),
        ("events", "value"),
        ("exposures", "customer_id"),
        ("exposures", "ts"),
        ("exposures", "action_id"),
        ("exposures", "propensity"),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_missing_required_column(tmp_path: Path, fmt: str, table: str, column: str) -> None:
    def drop(frames: Frames) -> None:
        frames[table] = frames[table].drop(columns=column)

    position = "line 2" if fmt == "csv" else "row_index 0"
    example = position if column == "customer_id" else "0042"
    message = expect_error(broken(tmp_path, fmt, drop), f"{table}.{fmt}", column, example)
    assert "required column is missing" in message


def test_missing_column_hints_at_case(tmp_path: Path) -> None:
    def rename(frames: Frames) -> None:
        frames["events"] = frames["events"].rename(columns={"ts": "TS"})

    message = expect_error(broken(tmp_path, "csv", rename), "events.csv", "ts", "0042")
    assert "case-sensitive" in message


@pytest.mark.parametrize("table", ["events", "exposures"])
def test_csv_timestamp_that_does_not_parse(tmp_path: Path, table: str) -> None:
    root = broken(tmp_path, "csv", set_cell(table, 1, "ts", "yesterday"))
    message = expect_error(root, f"{table}.csv", "ts", "C2")
    assert "not a timestamp" in message and "line 3" in message


def test_parquet_timestamp_of_wrong_type(tmp_path: Path) -> None:
    def epoch(frames: Frames) -> None:
        frames["events"]["ts"] = np.arange(4) + 1_770_000_000

    message = expect_error(broken(tmp_path, "parquet", epoch), "events.parquet", "ts", "0042")
    assert "has type BIGINT" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("table", ["events", "exposures"])
def test_missing_timestamp(tmp_path: Path, fmt: str, table: str) -> None:
    root = broken(tmp_path, fmt, set_cell(table, 1, "ts", None))
    message = expect_error(root, f"{table}.{fmt}", "ts", "C2")
    assert "ts is missing" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_value_not_numeric(tmp_path: Path, fmt: str) -> None:
    def text(frames: Frames) -> None:  # in Parquet: a text column with one non-number
        frames["events"]["value"] = pd.Series(["", "12.5", "lots", None], dtype="str")

    root = broken(tmp_path, fmt, text)
    message = expect_error(root, f"events.{fmt}", "value", "C3")
    assert "not a number" in message


def test_parquet_value_of_wrong_type(tmp_path: Path) -> None:
    def dates(frames: Frames) -> None:
        frames["events"]["value"] = pd.to_datetime(["2026-01-01"] * 4)

    message = expect_error(broken(tmp_path, "parquet", dates), "events.parquet", "value", "0042")
    assert "expected a number" in message


def test_propensity_not_numeric(tmp_path: Path) -> None:
    root = broken(tmp_path, "csv", set_cell("exposures", 1, "propensity", "half"))
    message = expect_error(root, "exposures.csv", "propensity", "C2")
    assert "not a number" in message


@pytest.mark.parametrize("propensity", [0.0, -0.2, 1.5, None, float("nan")])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_propensity_outside_unit_interval(tmp_path: Path, fmt: str, propensity: object) -> None:
    root = broken(tmp_path, fmt, set_cell("exposures", 1, "propensity", propensity))
    message = expect_error(root, f"exposures.{fmt}", "propensity", "C2")
    assert "(0, 1]" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("table", ["customers", "events", "exposures"])
@pytest.mark.parametrize("empty", [None, " "])
def test_customer_id_missing_or_empty(tmp_path: Path, fmt: str, table: str, empty: object) -> None:
    root = broken(tmp_path, fmt, set_cell(table, 1, "customer_id", empty))
    where = "line 3" if fmt == "csv" else "row_index 1"
    message = expect_error(root, f"{table}.{fmt}", "customer_id", where)
    assert "missing or empty" in message


def test_parquet_float_customer_id_is_a_wrong_type(tmp_path: Path) -> None:
    def floats(frames: Frames) -> None:
        frames["customers"]["customer_id"] = [1.0, 2.0, 3.0]

    message = expect_error(
        broken(tmp_path, "parquet", floats), "customers.parquet", "customer_id", "customer_id=1.0"
    )
    assert "expected a string" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_duplicate_customer_id(tmp_path: Path, fmt: str) -> None:
    root = broken(
        tmp_path, fmt, append_row("customers", customer_id="C2", age=1, plan="x", vip=True)
    )
    message = expect_error(root, f"customers.{fmt}", "customer_id", "'C2'")
    assert "duplicate" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_event_for_unknown_customer(tmp_path: Path, fmt: str) -> None:
    root = broken(tmp_path, fmt, set_cell("events", 3, "customer_id", "GHOST"))
    message = expect_error(root, f"events.{fmt}", "customer_id", "'GHOST'")
    assert "not in the customers table" in message


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_exposure_for_unknown_customer(tmp_path: Path, fmt: str) -> None:
    root = broken(tmp_path, fmt, set_cell("exposures", 0, "customer_id", "GHOST"))
    expect_error(root, f"exposures.{fmt}", "customer_id", "'GHOST'")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_event_type_missing(tmp_path: Path, fmt: str) -> None:
    root = broken(tmp_path, fmt, set_cell("events", 2, "event_type", None))
    expect_error(root, f"events.{fmt}", "event_type", "C3")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("empty", [None, ""])
def test_action_id_missing_or_empty(tmp_path: Path, fmt: str, empty: object) -> None:
    root = broken(tmp_path, fmt, set_cell("exposures", 1, "action_id", empty))
    expect_error(root, f"exposures.{fmt}", "action_id", "C2")


def test_action_missing_from_catalog(tmp_path: Path) -> None:
    root = broken(tmp_path, "csv", set_cell("exposures", 1, "action_id", "free_phone"))
    validate_dataset(root)  # without a catalog any action id is accepted
    message = expect_error(
        root, "exposures.csv", "action_id", "'free_phone'", known_actions=KNOWN_ACTIONS
    )
    assert "missing from the action catalog" in message


def test_control_needs_no_catalog_entry(tmp_path: Path) -> None:
    root = broken(tmp_path, "csv", set_cell("exposures", 0, "action_id", "control"))
    assert validate_dataset(root, known_actions=set()).actions == {"control": 2}


@pytest.mark.parametrize(
    ("values", "kind"),
    [([[1], [2], []], "LIST"), ([{"a": 1}, {"a": 2}, {"a": 3}], "STRUCT")],
)
def test_nested_static_attribute_is_unsupported(tmp_path: Path, values: list, kind: str) -> None:
    def nest(frames: Frames) -> None:
        frames["customers"]["tags"] = values

    message = expect_error(broken(tmp_path, "parquet", nest), "customers.parquet", "tags", "0042")
    assert f"unsupported type {kind}" in message


def test_date_static_attribute_is_accepted_as_a_date(tmp_path: Path) -> None:
    def dated(frames: Frames) -> None:
        frames["customers"]["since"] = ["2020-01-01", "2021-05-01", "2022-07-01"]

    root = broken(tmp_path, "csv", dated)
    validate_dataset(root)
    with open_dataset(root).connect() as con:
        assert static_columns(con)["since"] == "date"


def test_csv_extra_column_changing_type_late_is_reported(tmp_path: Path) -> None:
    n = 25_000  # past DuckDB's type-sniffing sample
    resolved = np.full(n, "true", dtype=object)
    resolved[-1] = "maybe"
    frames = valid_frames()
    frames["events"] = pd.DataFrame(
        {
            "customer_id": "C2",
            "ts": "2026-03-01",
            "channel": "web",
            "event_type": "call",
            "value": 1.0,
            "resolved": resolved,
        }
    )
    root = write(tmp_path / "data", "csv", frames)
    with pytest.raises(ContractError, match=r"^events.csv: cannot be read: .*maybe"):
        validate_dataset(root)


def test_tables_constant_matches_contract() -> None:
    assert TABLES == ("customers", "events", "exposures")


# --------------------------------------------------------------------------------------------
# the optional `text` column


def with_text(texts: list[object]) -> Edit:
    def edit(frames: Frames) -> None:
        frames["events"]["text"] = pd.Series(texts, dtype=object)

    return edit


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_text_column_is_optional_and_typed_as_text(tmp_path: Path, fmt: str) -> None:
    texts = [None, "Il rimborso non è mai arrivato", "1234", ""]
    root = broken(tmp_path, fmt, with_text(texts))
    validate_dataset(root)
    with open_dataset(root).connect() as con:
        assert column_types(con, "events")["text"] == "VARCHAR"
        got = con.execute("SELECT text FROM events ORDER BY ts").fetchall()
    # a number-like comment stays text; an empty one is no text
    assert [r[0] for r in got] == [None, "Il rimborso non è mai arrivato", "1234", None]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_text_over_the_per_event_limit_is_refused(tmp_path: Path, fmt: str) -> None:
    bomb = "a" * (MAX_TEXT_CHARS + 1)
    root = broken(tmp_path, fmt, with_text([None, "ok", bomb, "x" * MAX_TEXT_CHARS]))
    before = sorted(p.name for p in root.iterdir())
    message = expect_error(root, f"events.{fmt}", "text", "C3")
    assert f"longer than {MAX_TEXT_CHARS:,} characters" in message and "1 of 4 rows" in message
    assert len(message) < 400  # the example is cut, the bomb is not echoed
    assert sorted(p.name for p in root.iterdir()) == before


def test_parquet_text_of_wrong_type(tmp_path: Path) -> None:
    root = broken(tmp_path, "parquet", with_text([1, 2, 3, 4]))  # an int64 column
    message = expect_error(root, "events.parquet", "text", "0042")
    assert "expected a string" in message
