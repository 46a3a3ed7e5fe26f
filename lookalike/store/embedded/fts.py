"""Keyword index of the embedded store: SQLite FTS5 over each record's id and `text_fields`.

One FTS5 table per collection (`"kw_<name>"`, so BM25's document counts and lengths are the
collection's own), its rowid the record's vector slot, so scores come back as a per-slot
array that the store's ranking takes like colour or hybrid scores. Rows are written and
deleted in the same transaction as the records they describe (a crash never leaves them
apart); compaction renumbers slots, so it rebuilds the table in its own transaction.
`keyword_state` remembers which `text_fields` a table was built from: a collection opened
with other fields (changed settings, or written before this index existed) is rebuilt.
"""
from __future__ import annotations

import json
import sqlite3
import unicodedata
from typing import Iterable, Sequence

import numpy as np

from ...errors import BadRequest
from ...models.text import field_words

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS keyword_state (
    collection TEXT PRIMARY KEY,
    fields TEXT NOT NULL
);
"""
#: unicode61 folds case and (2) diacritics, so "Café" finds "cafe"; tokens are runs of letters/digits.
TOKENIZER = "unicode61 remove_diacritics 2"
#: At most this many matches are scored per query (the best by BM25); beyond them a term is too common to rank by.
MAX_MATCHES = 100_000
MAX_TERMS = 32


def table(collection: str) -> str:
    """The quoted FTS5 table name of a collection (names are [a-z0-9_-], see store/base.py)."""
    return '"kw_' + collection.replace('"', '""') + '"'


def ensure_state(con: sqlite3.Connection) -> None:
    con.executescript(STATE_SCHEMA)


def record_text(doc: dict, text_fields: Sequence[str]) -> str:
    """The searchable words of a record: the values at its `text_fields` (dotted paths)."""
    return " ".join(field_words(doc, text_fields))


def is_current(con: sqlite3.Connection, collection: str, text_fields: Sequence[str]) -> bool:
    """Whether the collection's keyword table exists and was built from these `text_fields`."""
    row = con.execute("SELECT fields FROM keyword_state WHERE collection=?", (collection,)).fetchone()
    return row is not None and json.loads(row[0]) == list(text_fields)


def rebuild(con: sqlite3.Connection, collection: str, text_fields: Sequence[str]) -> None:
    """Inside the caller's transaction: (re)make the table from the stored records."""
    drop(con, collection)
    con.execute(f"CREATE VIRTUAL TABLE {table(collection)} USING fts5(rid, body, tokenize='{TOKENIZER}')")
    rows = con.execute("SELECT slot, id, doc FROM records WHERE collection=?", (collection,))
    insert = f"INSERT INTO {table(collection)} (rowid, rid, body) VALUES (?,?,?)"
    while batch := rows.fetchmany(1000):
        con.executemany(insert, [(slot, rid, record_text(json.loads(doc), text_fields)) for slot, rid, doc in batch])
    con.execute("INSERT OR REPLACE INTO keyword_state VALUES (?,?)", (collection, json.dumps(list(text_fields))))


def drop(con: sqlite3.Connection, collection: str) -> None:
    """Inside the caller's transaction: remove the collection's table and its state."""
    con.execute(f"DROP TABLE IF EXISTS {table(collection)}")
    con.execute("DELETE FROM keyword_state WHERE collection=?", (collection,))


def write(con: sqlite3.Connection, collection: str, text_fields: Sequence[str], first: int,
          records: Sequence, old_slots: Iterable[int]) -> None:
    """Inside the caller's transaction: rows for records written at slots first.., minus the
    rows of the slots they replace. Does nothing while the table is not built (open rebuilds it)."""
    if not is_current(con, collection, text_fields):
        return
    delete(con, collection, old_slots)
    con.executemany(f"INSERT INTO {table(collection)} (rowid, rid, body) VALUES (?,?,?)",
                    [(first + i, r.id, record_text(r.doc, text_fields)) for i, r in enumerate(records)])


def delete(con: sqlite3.Connection, collection: str, slots: Iterable[int]) -> None:
    """Inside the caller's transaction: drop the rows of some slots (no-op without a table)."""
    slots = [(int(s),) for s in slots]
    exists = con.execute("SELECT 1 FROM keyword_state WHERE collection=?", (collection,)).fetchone()
    if slots and exists:
        con.executemany(f"DELETE FROM {table(collection)} WHERE rowid=?", slots)


def match_expression(keywords: str) -> str:
    """User words as an FTS5 query that can never be a syntax error: each whitespace-separated
    word becomes a quoted phrase ("AB-123" matches the tokens ab, 123 in that order), joined by
    OR so BM25 ranks records with more (and rarer) of the words first. Words without a letter or
    digit are dropped; BadRequest if none is left."""
    words = []
    for word in keywords.split():
        word = "".join(ch for ch in word if unicodedata.category(ch)[0] != "C")  # control, surrogate, private
        if any(unicodedata.category(ch)[0] in "LN" for ch in word):
            words.append('"' + word.replace('"', '""') + '"')
    if not words:
        raise BadRequest("'keywords' holds no word to search for (letters or digits)")
    if len(words) > MAX_TERMS:
        raise BadRequest(f"'keywords' has more than {MAX_TERMS} words")
    return " OR ".join(words)


def scores(con: sqlite3.Connection, collection: str, keywords: str, n_slots: int) -> np.ndarray:
    """BM25 score (higher is better) per slot for a keyword query; NaN where a record does not match."""
    expression = match_expression(keywords)
    out = np.full(n_slots, np.nan, dtype=np.float32)
    try:
        rows = con.execute(f"SELECT rowid, -bm25({table(collection)}) FROM {table(collection)} "
                           f"WHERE {table(collection)} MATCH ? ORDER BY rank LIMIT ?",
                           (expression, MAX_MATCHES)).fetchall()
    except sqlite3.OperationalError as exc:
        if not str(exc).startswith("fts5:"):  # locked, I/O: the store's problem, not the words'
            raise
        raise BadRequest(f"'keywords' could not be searched: {exc}") from None
    if rows:
        slots = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.array([r[1] for r in rows], dtype=np.float32)
        keep = slots < n_slots
        out[slots[keep]] = values[keep]
    return out
