"""The field index saved beside the vector file, so opening a big collection skips re-parsing
every record's JSON (measured in bench/open.py: the rebuild is most of a cold start).

The snapshot covers slots `0..covered-1`. Slots are written once (an update takes a new slot),
so what it says about them never goes stale; records written after it are read from SQLite
and added on open. It is trusted only if, for every live record below `covered`, the record's
content hash (first 8 bytes) equals the one the snapshot saw at that slot: a snapshot from
another database, a re-created collection or a restored folder is rebuilt, never used.
Like the ANN graph it is derived data: missing, torn or foreign means "rebuild".

Checking those hashes means reading every record's row. A snapshot also keeps the slot table
(which id is in which slot, which slots are live) and the database's write state for the
collection (store/embedded/sqlite.py `write_state`: a count triggers keep of every change to
its rows); when the database still has that state, the table is the records' own and an
open reads it from here instead (store/embedded/opening.py): bench/open.py measures both.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from ..jsontext import load_json
from .field_index import FieldIndex

FORMAT = 3  # bump when store.field_index.flatten changes what is indexed
#: Formats whose field index reads the same (3 added the slot table and the write state).
READABLE = (2, 3)
log = logging.getLogger(__name__)


def hash64(content_hashes: list[str]) -> np.ndarray:
    """First 8 bytes of each hex content hash, as uint64 (vectorised: 1M hashes in ~0.2 s)."""
    if not content_hashes:
        return np.empty(0, dtype=np.uint64)
    return np.frombuffer(bytes.fromhex("".join(h[:16] for h in content_hashes)), dtype=">u8").astype(np.uint64)


def take(index: FieldIndex, slot_hashes: np.ndarray, covered: int, slot_ids: list[str | None] | None = None,
         alive: np.ndarray | None = None, state: tuple[str, int] | None = None) -> dict[str, np.ndarray]:
    """What `write` saves, copied (call it while writers are held off; writing can happen later).

    With `slot_ids`, `alive` and the database's write `state` it also saves the slot table, so
    an open that finds the same state skips reading every record (store/embedded/opening.py)."""
    paths, keys, rows, vids, offsets = index.to_arrays()
    meta: dict = {"format": FORMAT, "covered": covered, "paths": paths, "keys": keys}
    arrays = {"rows": rows.astype(np.int32), "vids": vids, "offsets": offsets,
              "hashes": np.array(slot_hashes[:covered], dtype=np.uint64)}
    if slot_ids is not None and alive is not None and state is not None:
        blob = "\n".join(rid or "" for rid in slot_ids[:covered]).encode()
        if blob.count(b"\n") == max(covered - 1, 0):  # ids hold no newline (check_id refuses them)
            meta["state"] = list(state)
            arrays["ids"] = np.frombuffer(blob, dtype=np.uint8)
            arrays["alive"] = np.array(alive[:covered], dtype=bool)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old snapshot or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Saved:
    """A snapshot read from disk: its field index, slot hashes and (format 3) slot table."""

    def __init__(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.covered = int(meta["covered"])
        state = meta.get("state")
        self.state: tuple[str, int] | None = (str(state[0]), int(state[1])) if state else None
        self.hashes = arrays["hashes"]
        self._meta, self._arrays = meta, arrays

    def index(self) -> FieldIndex:
        a = self._arrays
        return FieldIndex.from_arrays(self._meta["paths"], self._meta["keys"], a["rows"], a["vids"], a["offsets"])

    def matches(self, live_slots: np.ndarray, live_hashes: np.ndarray) -> bool:
        """Whether every live record below `covered` has the content hash the snapshot saw."""
        below = live_slots < self.covered
        return bool(np.array_equal(self.hashes[live_slots[below]], live_hashes[below]))

    def slot_table(self) -> tuple[list[str | None], np.ndarray] | None:
        """(id per slot, None where dead; liveness per slot) if saved, else None."""
        if "ids" not in self._arrays or self.state is None:
            return None
        ids: list[str | None] = [rid or None for rid in bytes(self._arrays["ids"]).decode().split("\n")]
        alive = self._arrays["alive"]
        if self.covered == 0:
            ids = []
        if len(ids) != self.covered or len(alive) != self.covered:
            raise ValueError("slot table of the wrong length")
        return ids, alive


def read(path: Path, n_rows: int) -> Saved | None:
    """The snapshot at `path` if it is whole, of a readable format and within `n_rows` slots."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = load_json(bytes(data["meta"]))
            covered = int(meta["covered"])
            if meta.get("format") not in READABLE or not 0 <= covered <= n_rows:
                return None
            arrays = {name: data[name] for name in data.files if name != "meta"}
        if len(arrays["hashes"]) != covered:
            return None
        return Saved(meta, arrays)
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("field index snapshot %s unreadable (%s): rebuilding", path.name, exc)
        return None
