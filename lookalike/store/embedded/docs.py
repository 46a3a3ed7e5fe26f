"""Stored documents of an embedded collection, read from SQLite and kept per vector slot.

A search formats ten hits, and reading their metadata from SQLite (ten B-tree lookups on pages
the graph walk has just pushed out of the CPU caches) cost 60-85 us of a 250 us search. A slot
is written once and never changes within a generation of the collection's files: an update or
upsert takes a new slot, a delete takes the id's slot away, and only compaction renumbers
slots (it starts a new generation, and empties the cache). So the JSON texts of a slot's row
can be kept under its number and are exact for as long as the collection's in-memory view
maps an id to that slot; an id whose slot changed simply misses.

The texts are kept, not the parsed documents: every read parses them again (about a
microsecond each with orjson), so a caller changing a returned document never changes what
later reads return.

A read-only store does not follow the writer's commits in memory, while its reads of
documents do go to the database (as ever); there the cache is emptied whenever SQLite's
`data_version` says another connection committed (store.py `changed_elsewhere`).
"""
from __future__ import annotations

import threading
from typing import Sequence

from ...jsontext import load_json, load_json_many
from .sqlite import chunks, marks

#: Bytes of document text kept per collection (a 300-byte document and its overhead: ~150k slots).
CACHE_BYTES = 64 * 2**20
#: Bytes counted per entry besides its texts (the tuple, the dict slot, the string headers).
ENTRY_OVERHEAD = 200


class DocCache:
    """(doc text, computed text) per slot, bounded in bytes, oldest kept first out.

    One cache serves one generation of the collection's view, `view` (its id -> slot dict, which
    writes change in place and compaction replaces): a reader takes the cache object and uses its
    `view`, so slots and kept texts always come from the same generation.

    First in, first out rather than least recently used: a read then touches only the dict's
    table (no reordering, no lock: each `dict.get` is atomic), and a document still in demand
    after leaving is read and kept again. `epoch` changes with every `clear`: a reader notes it
    before its database read and stores what it read only if it is unchanged, so rows read
    before commits this process did not make never land after the clear they caused.
    """

    def __init__(self, view: dict[str, int], limit_bytes: int | None = None) -> None:
        self.view = view
        self.limit = CACHE_BYTES if limit_bytes is None else limit_bytes
        self.epoch = 0
        self._items: dict[int, tuple[str, str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # writers: store and clear

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, slots: Sequence[int | None]) -> list[tuple[str, str] | None]:
        """The kept texts per slot (None: not kept, or no slot)."""
        get = self._items.get
        return [get(slot) if slot is not None else None for slot in slots]

    def store(self, epoch: int, entries: list[tuple[int, tuple[str, str]]]) -> None:
        """Keep `entries` (slot, texts) read while `epoch` was current; nothing if it has passed."""
        if not entries or self.limit <= 0:
            return
        with self._lock:
            if epoch != self.epoch:
                return
            items = self._items
            for slot, texts in entries:
                if slot in items:
                    continue
                size = len(texts[0]) + len(texts[1]) + ENTRY_OVERHEAD
                if size > self.limit:
                    continue
                items[slot] = texts
                self._bytes += size
            while self._bytes > self.limit:
                doc, computed = items.pop(next(iter(items)))
                self._bytes -= len(doc) + len(computed) + ENTRY_OVERHEAD

    def clear(self) -> None:
        """Forget every slot (commits this process did not make: a read-only store's)."""
        with self._lock:
            self._items = {}
            self._bytes = 0
            self.epoch += 1


def parse(texts: list[tuple[str, str]]) -> list[dict]:
    """Documents from their (doc, computed) texts: the metadata with the computed fields merged in."""
    docs = load_json_many([doc for doc, _ in texts])
    return [doc if computed == "{}" else {**doc, **load_json(computed)}  # most records have none
            for doc, (_, computed) in zip(docs, texts)]


def read_docs(cache: DocCache, con, name: str, ids: Sequence[str]) -> list[dict | None]:
    """The stored documents of `ids` (None for an id without a row), from the cache where the
    slot its view gives an id is kept, else from the database (`con`), keeping each row read
    whose slot is the one the view gives its id after the read."""
    ids = list(ids)
    epoch = cache.epoch
    current = cache.view
    kept = cache.lookup([current.get(i) for i in ids])
    if None not in kept:  # every one kept: a search's hits read again
        return parse(kept)  # type: ignore[arg-type]
    texts: dict[str, tuple[str, str]] = {i: t for i, t in zip(ids, kept) if t is not None}
    missing = [i for i in dict.fromkeys(ids) if i not in texts]
    if missing:
        fresh: list[tuple[int, str, tuple[str, str]]] = []
        for chunk in chunks(missing, 500):
            q = f"SELECT id, slot, doc, computed FROM records WHERE collection=? AND id IN ({marks(chunk)})"
            for rid, slot, doc, computed in con.execute(q, (name, *chunk)).fetchall():
                texts[rid] = (doc, computed)
                fresh.append((slot, rid, (doc, computed)))
        # an id written or deleted meanwhile keeps nothing (its slot in the view moved or went)
        cache.store(epoch, [(slot, t) for slot, rid, t in fresh if current.get(rid) == slot])
    found = [texts.get(i) for i in ids]
    present = [t for t in found if t is not None]
    docs = iter(parse(present))
    return [next(docs) if t is not None else None for t in found]
