"""Online feature store: every active customer's model-ready features as of a date, in one SQLite file.

`nextbest materialize` computes the bundle's features (the one FeatureBuilder definition) for every
customer active at the as-of date and writes one row per customer: the float32 model vector as a
blob (what LightGBM reads, so the request path needs no pandas) and, as JSON, the exact values the
catalog's eligibility rules read (float64 numbers and category text, as batch scoring sees them, so
online and batch agree at rule thresholds). The file is written beside its target and renamed onto
it, so a service never opens half a store; `OnlineStore` reads it read-only and immutable.

Each row also holds the bundle's *model outputs* for that customer (the scores, then every
uplift outcome's value per catalog action, float64), computed in one vectorised pass. No model reads
the request context, so for the bundle that materialized the store they are exactly what the
request path would compute; the service uses them while it serves that bundle (`Decider`,
`stored_outputs`) and calls the models live for cold starts and for any other bundle.

A `history` table holds each stored customer's raw journey (serving.online.history): with it the
service recomputes the features of a customer with live events as of the request time.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.online.history import CREATE as HISTORY_TABLE
from serving.online.history import TABLE as HISTORY
from serving.online.history import History, has_history, history_rows, read_history
from serving.online.model_cells import OutputsMemo
from training.atomic import atomic_file, check_writable
from training.config import SCORE_COLUMNS
from training.data.contract import open_dataset, validate_dataset
from training.data.snapshots import check_scoring_date, data_span
from training.errors import NextbestError
from training.features.definition import to_matrix
from training.features.text_cache import TextScoreCache
from training.registry.bundle import Bundle
from training.registry.mlflow_models import load_bundle

FORMAT = 3  # 2: model outputs beside the features; 3: four scores (ltv and window_value)
DEFAULT_PATH = Path("out/online_store.sqlite")
Namespace = dict[str, float | str | None]


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds: the feature definition it was built with, its date and size."""

    path: Path
    feature_version: str
    feature_names: tuple[str, ...]
    as_of: date
    customers: int
    model_version: str
    created_at: str


@dataclass(frozen=True)
class FeatureRow:
    """One customer's stored features: the model vector and the rule inputs by name."""

    vector: np.ndarray  # (p,) float32, in `feature_names` order
    namespace: Namespace
    outputs: np.ndarray | None = None  # float64: scores, then uplift per outcome x action
    memo: OutputsMemo | None = None  # a live row's: the customer's last outputs, while they hold


# --- writing ----------------------------------------------------------------------------------


def rule_names(bundle: Bundle) -> list[str]:
    """The features the catalog's eligibility rules and triggers read (scores are added at
    decision time)."""
    names = {n for a in bundle.config.catalog.actions for n in a.names_read}
    return sorted(names & set(bundle.builder.feature_names_))


def namespace_rows(features: pd.DataFrame, names: Iterable[str]) -> list[Namespace]:
    """Per customer, the rule inputs as JSON-safe values: float, category text or None."""
    names = list(names)
    if not names:
        return [{} for _ in range(len(features))]
    columns = [_json_values(features[name]) for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _json_values(col: pd.Series) -> list[float | str | None]:
    """A feature column as batch eligibility reads it: float64 numbers or category text; None = NaN."""
    if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object:
        return [None if pd.isna(v) else str(v) for v in col.astype(object)]
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    return [None if math.isnan(v) else float(v) for v in values]


def model_outputs(bundle: Bundle, matrix: np.ndarray) -> np.ndarray:
    """(n, scores + outcomes x actions) float64: the SCORE_COLUMNS in order, then each uplift
    outcome of `bundle.uplift` (in its order) over the catalog's actions; the layout
    `serving.online.decision.Decider` unpacks."""

    scores = bundle.score_matrix(matrix)
    uplift = bundle.uplift_matrix(matrix)
    parts = [np.column_stack([scores[c] for c in SCORE_COLUMNS])]
    parts += [uplift[o] for o in bundle.uplift]
    return np.ascontiguousarray(np.hstack(parts), dtype=np.float64)


def write_store(
    out: Path,
    customer_ids: Iterable[str],
    matrix: np.ndarray,
    namespaces: list[Namespace],
    meta: Mapping[str, Any],
    outputs: np.ndarray,
    history: Iterable[tuple[str, bytes, bytes, bytes]] | None = None,
) -> None:
    """Write the store atomically: a temporary file beside `out`, renamed onto it when complete.
    `history`: each customer's journey (serving.online.history), for features at decision time."""
    with atomic_file(out) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.execute(
                "PRAGMA journal_mode=OFF"
            )  # a fresh file that is renamed only when complete
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            con.execute(
                "CREATE TABLE features (customer_id TEXT PRIMARY KEY, vector BLOB NOT NULL, "
                "namespace TEXT NOT NULL, outputs BLOB NOT NULL) WITHOUT ROWID"
            )
            meta_rows = [(key, json.dumps(value)) for key, value in meta.items()]
            con.executemany("INSERT INTO meta VALUES (?, ?)", meta_rows)
            vectors = np.asarray(matrix, dtype=np.float32)
            rows = zip(customer_ids, vectors, namespaces, outputs, strict=True)
            con.executemany(
                "INSERT INTO features VALUES (?, ?, ?, ?)",
                ((str(c), v.tobytes(), json.dumps(ns), o.tobytes()) for c, v, ns, o in rows),
            )
            if history is not None:
                con.execute(HISTORY_TABLE)
                con.executemany(f"INSERT INTO {HISTORY} VALUES (?, ?, ?, ?)", history)  # noqa: S608
            con.commit()
        finally:
            con.close()


def active_features(bundle: Bundle, data: Path, as_of: date) -> pd.DataFrame:
    """FeatureBuilder rows of every customer active at `as_of` (the customers batch scoring scores)."""

    features, _ = active_features_and_history(bundle, data, as_of, with_history=False)
    return features


def active_features_and_history(
    bundle: Bundle,
    data: Path,
    as_of: date,
    with_history: bool = True,
    text_cache: Path | None = None,
) -> tuple[pd.DataFrame, list[tuple[str, bytes, bytes, bytes]]]:
    """`active_features`, and those customers' journeys for the store's history table (texts
    scored through the cache in `text_cache`, when given)."""
    from serving.batch.population import ACTIVE, create_active

    validate_dataset(data, known_actions=bundle.config.catalog.ids)
    cache = TextScoreCache.of(text_cache, bundle.builder.text_model_)
    with open_dataset(data).connect() as con:
        span = data_span(con, bundle.config)
        check_scoring_date(as_of, span, bundle.metadata.as_of)
        create_active(con, bundle.config, as_of)
        features = bundle.builder.transform(con, spine=ACTIVE, text_cache=cache)
        ids = features["customer_id"].astype(str).tolist()
        model = bundle.builder.text_model_
        history = list(history_rows(con, ids, model, cache)) if with_history else []
    return features, history


def materialize(
    data: Path,
    as_of: date,
    out: Path,
    model_ref: str | None = None,
    text_cache: Path | None = None,
) -> StoreInfo:
    """Compute the bundle's features of every active customer as of `as_of` into the store `out`
    (texts scored through the cache in `text_cache`: only the ones it does not hold)."""

    check_writable(out)
    bundle = load_bundle(model_ref)
    features, history = active_features_and_history(bundle, data, as_of, text_cache=text_cache)
    names = bundle.builder.feature_names_
    matrix = to_matrix(bundle.prepare(features), names)
    meta = {
        "format": FORMAT,
        "feature_version": bundle.builder.version,
        "feature_names": list(names),
        "as_of": as_of.isoformat(),
        "customers": len(features),
        "model_version": bundle.version or "",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ids = features["customer_id"].astype(str)
    spaces = namespace_rows(features, rule_names(bundle))
    write_store(out, ids, matrix, spaces, meta, model_outputs(bundle, matrix), history)
    store = OnlineStore(out)
    store.close()
    return store.info


# --- reading ----------------------------------------------------------------------------------


class StoreChangedError(NextbestError):
    """The store file was overwritten in place while open: its rows cannot be trusted any more."""


class OnlineStore:
    """Read-only access to a materialized store; one instance per worker process.

    The file is held by a descriptor that SQLite's own handle is checked against (the path still names
    the same inode after SQLite opened it, else the open is retried), so a newer `materialize` that
    replaces the file by rename never changes what this instance reads, and the inode the service
    compares on reload is the one it actually reads. A file copied over in place (same inode, new
    bytes) is detected on every read by its size and modification time and refused
    (`StoreChangedError`) instead of read half old, half new.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise NextbestError(
                f"{self.path}: no online store (run `nextbest materialize` first)"
            ) from None
        except OSError as exc:
            raise NextbestError(
                f"{self.path}: cannot open the online store ({exc.strerror})"
            ) from None
        self._con: sqlite3.Connection | None = None
        self.has_history = False
        try:
            self._opened = _signature(os.fstat(self._fd))
            self.identity = (self._opened[0], self._opened[2])  # inode, mtime: what reload compares
            self.info = self._open_same_inode()
            assert self._con is not None
            self.has_history = has_history(self._con)
        except BaseException:
            self.close()
            raise

    def _open_same_inode(self, attempts: int = 3) -> StoreInfo:
        """Open SQLite on the path and make sure it read the descriptor's inode (a rename between
        the two opens would give it another file)."""
        uri = f"file:{self.path.resolve()}?mode=ro&immutable=1"
        for _ in range(attempts):
            self._con = sqlite3.connect(uri, uri=True, check_same_thread=False)
            info = self._read_info()  # SQLite opens the file here at the latest
            if os.stat(self.path).st_ino == self._opened[0]:
                return info
            self._con.close()
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_RDONLY)
            self._opened = _signature(os.fstat(self._fd))
            self.identity = (self._opened[0], self._opened[2])
        raise NextbestError(f"{self.path}: the online store is being replaced too often to open")

    def _read_info(self) -> StoreInfo:
        assert self._con is not None
        try:
            meta = {k: json.loads(v) for k, v in self._con.execute("SELECT key, value FROM meta")}
            if meta.get("format") != FORMAT:
                raise NextbestError(
                    f"{self.path}: store format {meta.get('format')} is not {FORMAT}"
                )
            return StoreInfo(
                path=self.path,
                feature_version=str(meta["feature_version"]),
                feature_names=tuple(meta["feature_names"]),
                as_of=date.fromisoformat(meta["as_of"]),
                customers=int(meta["customers"]),
                model_version=str(meta["model_version"]),
                created_at=str(meta["created_at"]),
            )
        except (sqlite3.DatabaseError, KeyError, TypeError, ValueError) as exc:
            what = type(exc).__name__
            raise NextbestError(
                f"{self.path}: not a readable nextbest online store ({what})"
            ) from None

    def get(self, customer_id: str) -> FeatureRow | None:
        """The customer's stored features, or None for a customer the store does not hold."""
        self.check_unchanged()
        assert self._con is not None
        try:
            row = self._con.execute(
                "SELECT vector, namespace, outputs FROM features WHERE customer_id = ?",
                (customer_id,),
            ).fetchone()
            if row is None:
                return None
            vector = np.frombuffer(row[0], dtype=np.float32)
            return FeatureRow(vector, json.loads(row[1]), np.frombuffer(row[2], dtype=np.float64))
        except (sqlite3.Error, ValueError, TypeError):
            self.check_unchanged()  # a read broken by an in-place copy says so; no row content
            raise StoreChangedError(f"{self.path}: the online store could not be read") from None

    def history(self, customer_id: str) -> History | None:
        """The customer's stored journey (None: not stored, or a store written without them)."""
        self.check_unchanged()
        if not self.has_history:
            return None
        assert self._con is not None
        try:
            return read_history(self._con, customer_id)
        except (sqlite3.Error, ValueError, TypeError, OSError):
            self.check_unchanged()
            raise StoreChangedError(f"{self.path}: the online store could not be read") from None

    def known(self, customer_ids: list[str]) -> list[str]:
        """The ones of `customer_ids` whose journey the store holds, in the order given."""
        self.check_unchanged()
        if not self.has_history or not customer_ids:
            return []
        assert self._con is not None
        try:
            found = {r[0] for r in self._con.execute(
                f"SELECT customer_id FROM {HISTORY} WHERE customer_id IN "  # noqa: S608
                f"({','.join('?' * len(customer_ids))})", customer_ids)}  # fmt: skip
        except sqlite3.Error:
            self.check_unchanged()
            raise StoreChangedError(f"{self.path}: the online store could not be read") from None
        return [c for c in customer_ids if c in found]

    def check_unchanged(self) -> None:
        """Refuse to read a file that was written in place since it was opened."""
        if _signature(os.fstat(self._fd)) != self._opened:
            raise StoreChangedError(
                f"{self.path}: the online store was overwritten in place; replace it by rename "
                "(nextbest materialize does) and the service reloads it"
            )

    def check_compatible(self, feature_version: str) -> None:
        """Refuse a store built with another feature definition than the bundle's."""
        if self.info.feature_version != feature_version:
            raise NextbestError(
                f"{self.path}: built for feature version {self.info.feature_version}, the bundle "
                f"uses {feature_version}; run `nextbest materialize` with this bundle"
            )

    def close(self) -> None:
        """Close the connection and the descriptor (a replaced store's space is freed only then)."""
        con, fd = getattr(self, "_con", None), getattr(self, "_fd", -1)
        if con is not None:
            con.close()
            self._con = None
        if fd >= 0:
            os.close(fd)
            self._fd = -1


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    """Inode, size and modification time: an in-place copy changes the last two."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
