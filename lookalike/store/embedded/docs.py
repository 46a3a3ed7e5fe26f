"""Stored documents of an embedded collection, read from SQLite and kept per vector slot.

A search formats ten hits, and reading their metadata from SQLite (ten B-tree lookups on pages
the graph walk has just pushed out of the CPU caches) cost 60-85 us of a 250 us search. A slot
is written once and never changes within a generation of the collection's files: an update or
upsert takes a new slot, a delete takes the id's slot away, and only compaction renumbers
slots (it starts a new generation, and empties the cache). So the JSON texts of a slot's row
can be kept under its number and are exact for as long as the collection's in-memory view
maps an id to that slot; an id whose slot changed simply misses.

The texts are kept, and beside them the parsed document when all its values are scalars (a
"flat" document: strings, numbers, booleans, null). `get` parses the texts again (about a
microsecond a document with orjson), so a caller changing what it returns never changes what
later reads return. A search's hits are copied into new dicts anyway (query/search.py
`hit_items`), and for a flat document that shallow copy is a full one: `documents` hands such
a search the kept dict itself (read, never changed) and parses only the others again.

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
#: A kept parsed document is counted as this many times its text plus ENTRY_OVERHEAD (its dict
#: and value objects: 42 bytes of text parse to ~300 bytes, 120 to ~570).
PARSED_FACTOR = 3
#: Types of the values of a flat document: immutable, so sharing them is as good as a copy.
SCALARS = frozenset({str, int, float, bool, type(None)})

#: A kept slot: (doc text, computed text, the parsed document if flat else None).
Entry = tuple[str, str, "dict | None"]


def entry_bytes(entry: Entry) -> int:
    """Bytes an entry counts against the cache's limit."""
    doc, computed, flat = entry
    size = len(doc) + len(computed) + ENTRY_OVERHEAD
    return size if flat is None else size + PARSED_FACTOR * (len(doc) + len(computed)) + ENTRY_OVERHEAD


def entry(texts: tuple[str, str]) -> Entry:
    """The entry kept for a row's (doc, computed) texts."""
    doc = parse([texts])[0]
    return texts[0], texts[1], doc if set(map(type, doc.values())) <= SCALARS else None


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

    def store(self, epoch: int, entries: list[tuple[int, tuple[str, str]]]) -> None:
        """Keep `entries` (slot, (doc, computed) texts) read while `epoch` was current; nothing if
        it has passed."""
        if not entries or self.limit <= 0 or epoch != self.epoch:
            return
        made = [(slot, entry(texts)) for slot, texts in entries if slot not in self._items]  # parsed unlocked
        with self._lock:
            if epoch != self.epoch:
                return
            items, flat = self._items, self._flat
            for slot, kept in made:
                if slot in items:
                    continue
                size = entry_bytes(kept)
                if size > self.limit:
                    continue
                items[slot] = kept
                if kept[2] is not None:
                    flat[slot] = kept[2]
                self._bytes += size
            while self._bytes > self.limit:
                slot = next(iter(items))
                flat.pop(slot, None)
                self._bytes -= entry_bytes(items.pop(slot))

    def clear(self) -> None:
        """Forget every slot (commits this process did not make: a read-only store's)."""
        with self._lock:
            self._items, self._flat = {}, {}
            self._bytes = 0
            self.epoch += 1


def parse(texts: Sequence[tuple[str, ...]]) -> list[dict]:
    """New documents from their (doc, computed) texts (or entries): the metadata with the
    computed fields merged in."""
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
    texts: dict[str, tuple[str, ...]] = {i: t for i, t in zip(ids, kept) if t is not None}
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
