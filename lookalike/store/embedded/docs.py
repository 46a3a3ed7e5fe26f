"""Stored documents of an embedded collection, read from SQLite and kept per vector slot.

A search formats ten hits, and reading their metadata from SQLite (ten B-tree lookups on pages
the graph walk has just pushed out of the CPU caches) cost 60-85 us of a 250 us search. A slot
is written once and never changes within a generation of the collection's files: an update or
upsert takes a new slot, a delete takes the id's slot away, and only compaction renumbers
slots (it starts a new generation, and empties the cache). So a slot's row can be kept under
its number and is exact for as long as the collection's in-memory view maps an id to that
slot; an id whose slot changed simply misses.

A "flat" document (every value a string, number, boolean or null) is kept parsed: its values
are immutable, so a shallow copy is a full one. `get` hands out such copies (`copies`), and a
search hands the kept dict itself to its hit builder (`documents`), which copies it into each
hit (query/search.py `hit_items`): a caller changing what it got never changes what later
reads return (tests/test_quick_search.py). Other documents are kept as their JSON texts and
parsed on every read (about a microsecond each with orjson), for the same reason.

A read-only store does not follow the writer's commits in memory, while its reads of
documents do go to the database (as ever); there the cache is emptied whenever SQLite's
`data_version` says another connection committed (store.py `changed_elsewhere`).
"""
from __future__ import annotations

import threading
from typing import Sequence

from ...jsontext import load_json, load_json_many
from .sqlite import chunks, marks

#: Bytes kept per collection (a 300-byte document and its overhead: ~150k slots).
CACHE_BYTES = 64 * 2**20
#: Bytes counted per entry besides its texts (the tuple, the dict slot, the string headers).
ENTRY_OVERHEAD = 200
#: A flat document is counted as this many times its text plus ENTRY_OVERHEAD (its dict and
#: value objects: 42 bytes of text parse to ~300 bytes, 120 to ~570).
PARSED_FACTOR = 3
#: Types of the values of a flat document: immutable, so sharing them is as good as a copy.
SCALARS = frozenset({str, int, float, bool, type(None)})

#: A kept slot: (doc text, computed text, None, bytes) or, for a flat document, (None, None,
#: the parsed document, bytes).
Entry = tuple["str | None", "str | None", "dict | None", int]


def entry(texts: tuple[str, str]) -> Entry:
    """The entry kept for a row's (doc, computed) texts."""
    doc = parse([texts])[0]
    size = len(texts[0]) + len(texts[1])
    if set(map(type, doc.values())) <= SCALARS:
        return None, None, doc, PARSED_FACTOR * size + ENTRY_OVERHEAD
    return texts[0], texts[1], None, size + ENTRY_OVERHEAD


class DocCache:
    """An `Entry` per slot, bounded in bytes, oldest kept first out.

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
        self._items: dict[int, Entry] = {}
        self._flat: dict[int, dict] = {}  # the flat documents among them, by slot: a search's one lookup
        self._bytes = 0
        self._lock = threading.Lock()  # writers: store and clear

    def __len__(self) -> int:
        return len(self._items)

    def lookup(self, slots: Sequence[int | None]) -> list[Entry | None]:
        """The kept entry per slot (None: not kept, or no slot)."""
        get = self._items.get
        return [get(slot) if slot is not None else None for slot in slots]

    def flat(self, slots: Sequence[int]) -> list[dict | None]:
        """The kept flat document per slot (None: not kept, or not flat), to read, not change."""
        get = self._flat.get
        return [get(slot) for slot in slots]

    def store(self, epoch: int, entries: list[tuple[int, Entry]]) -> None:
        """Keep `entries` (slot, entry) read while `epoch` was current; nothing if it has passed."""
        if not entries or self.limit <= 0:
            return
        with self._lock:
            if epoch != self.epoch:
                return
            items, flat = self._items, self._flat
            for slot, kept in entries:
                if slot in items:
                    continue
                size = kept[3]
                if size > self.limit:
                    continue
                items[slot] = kept
                if kept[2] is not None:
                    flat[slot] = kept[2]
                self._bytes += size
            while self._bytes > self.limit:
                slot = next(iter(items))
                flat.pop(slot, None)
                self._bytes -= items.pop(slot)[3]

    def clear(self) -> None:
        """Forget every slot (commits this process did not make: a read-only store's)."""
        with self._lock:
            self._items, self._flat = {}, {}
            self._bytes = 0
            self.epoch += 1


def parse(texts: Sequence[tuple]) -> list[dict]:
    """New documents from their (doc, computed) texts (or entries holding texts): the metadata
    with the computed fields merged in."""
    docs = load_json_many([t[0] for t in texts])
    return [doc if t[1] == "{}" else {**doc, **load_json(t[1])}  # most records have none
            for doc, t in zip(docs, texts)]


def documents(kept: list[Entry]) -> list[dict]:
    """The documents of kept entries for a caller that only reads them (a search building its
    hits): a flat one's kept dict itself, the others parsed again."""
    docs = [e[2] for e in kept]
    if None in docs:  # lists or objects among the values: fresh copies
        fresh = iter(parse([e for e in kept if e[2] is None]))
        docs = [doc if doc is not None else next(fresh) for doc in docs]
    return docs  # type: ignore[return-value]


def copies(kept: list[Entry]) -> list[dict]:
    """New documents of kept entries, the caller's to change: a flat one's dict copied, the
    others parsed."""
    docs = [dict(e[2]) if e[2] is not None else None for e in kept]
    if None in docs:
        fresh = iter(parse([e for e in kept if e[2] is None]))
        docs = [doc if doc is not None else next(fresh) for doc in docs]
    return docs  # type: ignore[return-value]


def read_docs(cache: DocCache, con, name: str, ids: Sequence[str]) -> list[dict | None]:
    """The stored documents of `ids` (None for an id without a row), from the cache where the
    slot its view gives an id is kept, else from the database (`con`), keeping each row read
    whose slot is the one the view gives its id after the read."""
    ids = list(ids)
    epoch = cache.epoch
    current = cache.view
    kept = cache.lookup([current.get(i) for i in ids])
    if None not in kept:  # every one kept: a search's hits read again
        return copies(kept)  # type: ignore[arg-type]
    entries: dict[str, Entry] = {i: e for i, e in zip(ids, kept) if e is not None}
    missing = [i for i in dict.fromkeys(ids) if i not in entries]
    if missing:
        fresh: list[tuple[int, str, Entry]] = []
        for chunk in chunks(missing, 500):
            q = f"SELECT id, slot, doc, computed FROM records WHERE collection=? AND id IN ({marks(chunk)})"
            for rid, slot, doc, computed in con.execute(q, (name, *chunk)).fetchall():
                entries[rid] = made = entry((doc, computed))
                fresh.append((slot, rid, made))
        # an id written or deleted meanwhile keeps nothing (its slot in the view moved or went)
        cache.store(epoch, [(slot, e) for slot, rid, e in fresh if current.get(rid) == slot])
    found = [entries.get(i) for i in ids]
    docs = iter(copies([e for e in found if e is not None]))
    return [next(docs) if e is not None else None for e in found]
