"""Text scores kept between runs, so a nightly run scores only the texts it has not seen.

A folder holds Parquet segments of (k1, k2, polarity, negative, topic) rows, keyed by the MD5 of
the text (two unsigned 64-bit halves, computed by DuckDB as the texts are read), and a manifest
naming the text model the scores came from and the live segments. Every write is atomic: a
segment is complete before it is renamed into place, and only the manifest (renamed too) makes it
count, so a run killed mid-write leaves the previous table. The manifest is changed under a lock,
so runs that finish together both keep their scores and never list a text twice.

A table kept for another text model (its digest) is never read: the first write replaces it. A
manifest or segment that cannot be read is an error naming the folder, not a silent rebuild: a
rebuild rescores every text (hours at 10M texts), which the operator should decide on.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.atomic import atomic_file, output_lock
from training.errors import NextbestError
from training.text.model import TextScorer, TextScores

FORMAT = 1
MANIFEST = "manifest.json"
MAX_SEGMENTS = 16  # more: merged into one on the next write (each read opens every segment)
_DUCK_TYPES = ("UBIGINT", "UBIGINT", "FLOAT", "BOOLEAN", "SMALLINT")  # SCHEMA's, in DuckDB
PROBE = "nextbest text key probe"  # its key is recorded: a changed key function drops the table
SCHEMA = pa.schema(
    [
        ("k1", pa.uint64()),
        ("k2", pa.uint64()),
        ("polarity", pa.float32()),
        ("negative", pa.bool_()),
        ("topic", pa.int16()),
    ]
)


def key_sql(text: str) -> str:
    """SQL columns k1, k2: the two halves of the MD5 of the VARCHAR expression `text` (one MD5:
    DuckDB computes the repeated expression once; md5_number_lower/upper would hash twice)."""
    md5 = f"md5_number({text})"
    return (
        f"CAST({md5} & {2**64 - 1}::UHUGEINT AS UBIGINT) AS k1, CAST({md5} >> 64 AS UBIGINT) AS k2"
    )


def _probe_key() -> list[int]:
    con = duckdb.connect()
    try:
        row = con.execute(f"SELECT {key_sql(repr(PROBE))}").fetchall()[0]
    finally:
        con.close()
    return [int(row[0]), int(row[1])]


@dataclass
class TextScoreCache:
    """The kept scores of one text model in `folder` (created on the first write)."""

    folder: Path
    model_digest: str
    segments: list[str] = field(default_factory=list)
    probe: list[int] = field(default_factory=_probe_key)

    @classmethod
    def open(cls, folder: Path | str, model: TextScorer) -> TextScoreCache:
        """The table of `model` in `folder`: empty when the folder is new or holds another
        model's scores. Refuses a model whose scores depend on the writer (cross-fitted)."""
        if model.per_customer:
            raise NextbestError(
                "text score cache: a cross-fitted text model scores a text per writer; "
                "only a bundle's text model can keep its scores"
            )
        cache = cls(Path(folder), model.digest)
        manifest = cache._read_manifest()
        if manifest is not None and cache._same_model(manifest):
            cache.segments = list(manifest["segments"])
        return cache

    @classmethod
    def of(cls, folder: Path | str | None, model: TextScorer | None) -> TextScoreCache | None:
        """`open`, or None without a folder or a text model (nothing to keep)."""
        return None if folder is None or model is None else cls.open(folder, model)

    @property
    def texts(self) -> int:
        """Texts whose scores are kept (rows of the live segments)."""
        return sum(pq.read_metadata(self.folder / s).num_rows for s in self.segments)

    def relation(self) -> str:
        """A SQL relation of the kept rows (k1, k2, polarity, negative, topic)."""
        if not self.segments:
            nulls = (
                f"CAST(NULL AS {t}) AS {n}" for n, t in zip(SCHEMA.names, _DUCK_TYPES, strict=True)
            )
            return f"(SELECT {', '.join(nulls)} WHERE false)"
        return _read_sql([self.folder / s for s in self.segments])

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Turn a DuckDB failure on the kept segments (damaged after they were opened) into an
        error naming the folder."""
        try:
            yield
        except duckdb.Error as exc:
            if self.folder.as_posix() not in str(exc):
                raise
            raise self._corrupt(f"a segment cannot be read ({exc})") from None

    def scores(self, texts: list[str], model: TextScorer) -> TextScores:
        """Scores of distinct `texts` by `model` (this table's): the kept ones read, the others
        scored and kept."""
        con = duckdb.connect()
        try:
            con.register("_nextbest_texts", pa.table({"i": pa.array(range(len(texts)), pa.int64()),
                                                      "text": pa.array(texts, pa.string())}))  # fmt: skip
            with self.reading():
                found = con.sql(
                    f"SELECT t.i, k1, k2, c.polarity, c.negative, c.topic FROM (SELECT i, "  # noqa: S608
                    f"{key_sql('text')} FROM _nextbest_texts) t "
                    f"LEFT JOIN {self.relation()} c USING (k1, k2) ORDER BY t.i"
                ).to_arrow_table()
        finally:
            con.close()
        missing = found.filter(pc.is_null(found.column("polarity")))
        if missing.num_rows:
            new = model.score([texts[i] for i in missing.column("i").to_pylist()])
            self.add(pa.table({"k1": missing.column("k1"), "k2": missing.column("k2"),
                               "polarity": new.polarity, "negative": new.negative,
                               "topic": new.topic}))  # fmt: skip
            found = pa.concat_tables([
                found.filter(pc.is_valid(found.column("polarity"))),
                missing.drop_columns(["polarity", "negative", "topic"]).append_column(
                    "polarity", pa.array(new.polarity, pa.float32())
                ).append_column("negative", pa.array(new.negative, pa.bool_())).append_column(
                    "topic", pa.array(new.topic, pa.int16())),
            ]).sort_by("i")  # fmt: skip
        return TextScores(
            polarity=found.column("polarity").to_numpy().astype("float32"),
            negative=found.column("negative").to_numpy(zero_copy_only=False).astype(bool),
            topic=found.column("topic").to_numpy().astype("int64"),
        )

    def add(self, scores: pa.Table) -> None:
        """Keep new scores (rows of SCHEMA, keys not kept yet): one atomic segment, then the
        manifest. Rows another run kept meanwhile are dropped, so no key is ever listed twice."""
        scores = scores.select(SCHEMA.names).cast(SCHEMA)
        if scores.num_rows == 0:
            return
        self._mkdir()
        with output_lock(self.folder / MANIFEST):
            manifest = self._read_manifest()
            live = list(manifest["segments"]) if manifest and self._same_model(manifest) else []
            added = [s for s in live if s not in self.segments]
            if added:
                scores = _without(scores, [self.folder / s for s in added])
            self.segments = live
            if scores.num_rows:
                self.segments.append(self._write_segment(scores))
            if len(self.segments) > MAX_SEGMENTS:
                self.segments = [self._merged()]
            self._write_manifest()
            self._remove_unlisted()

    # -- files -----------------------------------------------------------------------------
    def _mkdir(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NextbestError(
                f"{self.folder}: cannot create the text score cache ({exc.strerror})"
            ) from None

    def _same_model(self, manifest: dict[str, Any]) -> bool:
        """Whether a manifest's scores are this model's, under this key function."""
        return manifest.get("text_model") == self.model_digest and manifest.get("key") == self.probe

    def _read_manifest(self) -> dict[str, Any] | None:
        """The manifest, None when there is none; an error naming the folder when unreadable."""
        path = self.folder / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._corrupt(f"{MANIFEST} is unreadable ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise self._corrupt(f"{MANIFEST} is not a format-{FORMAT} manifest")
        segments = manifest.get("segments")
        if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
            raise self._corrupt(f"{MANIFEST} has no list of segments")
        if self._same_model(manifest):
            for name in segments:
                self._check_segment(name)
        return manifest

    def _check_segment(self, name: str) -> None:
        """A listed segment must be a readable Parquet file of SCHEMA (its footer is read)."""
        if "/" in name or name.startswith("."):
            raise self._corrupt(f"{MANIFEST} lists {name!r}, not a segment of this folder")
        try:
            schema = pq.read_schema(self.folder / name)
        except (OSError, pa.ArrowException) as exc:
            raise self._corrupt(f"segment {name} is unreadable ({exc})") from None
        if not schema.equals(SCHEMA, check_metadata=False):
            raise self._corrupt(f"segment {name} has columns {schema.names}, not {SCHEMA.names}")

    def _corrupt(self, what: str) -> NextbestError:
        return NextbestError(
            f"{self.folder}: text score cache: {what}; remove the folder to rebuild it "
            "(every text is then scored again)"
        )

    def _write_segment(self, table: pa.Table) -> str:
        name = f"scores-{uuid.uuid4().hex}.parquet"
        with atomic_file(self.folder / name) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return name

    def _merged(self) -> str:
        """One segment holding every live row (replaces the many small ones)."""
        files = [str(self.folder / s) for s in self.segments]
        return self._write_segment(pq.read_table(files, schema=SCHEMA))

    def _write_manifest(self) -> None:
        manifest = {"format": FORMAT, "text_model": self.model_digest, "key": self.probe,
                    "segments": self.segments}  # fmt: skip
        with atomic_file(self.folder / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")

    def _remove_unlisted(self) -> None:
        """Segments no manifest lists (another model's, merged ones) and the temporary files of a
        killed run: every write happens under the lock, so none of them is anyone's work now."""
        for path in _leftovers(self.folder, set(self.segments)):
            path.unlink(missing_ok=True)


def _leftovers(folder: Path, live: set[str]) -> Iterator[Path]:
    for entry in os.scandir(folder):
        name = entry.name
        unlisted = name.startswith("scores-") and name.endswith(".parquet") and name not in live
        if unlisted or name.startswith((".scores-", f".{MANIFEST}.tmp-")):
            yield Path(entry.path)


def _read_sql(files: list[Path]) -> str:
    """DuckDB's reader of some Parquet files, paths quoted."""
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}])"


def _without(scores: pa.Table, files: list[Path]) -> pa.Table:
    """`scores` without the keys that `files` already hold."""
    con = duckdb.connect()
    try:
        con.register("new_scores", scores)
        return con.sql(
            f"SELECT * FROM new_scores n ANTI JOIN {_read_sql(files)} k "
            "ON n.k1 = k.k1 AND n.k2 = k.k2"
        ).to_arrow_table()
    finally:
        con.close()
