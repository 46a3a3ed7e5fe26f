"""The field index saved beside the vector file, so opening a big collection skips re-parsing
every record's JSON (measured in bench/open.py: the rebuild is most of a cold start).

The snapshot covers slots `0..covered-1`. Slots are written once (an update takes a new slot),
so what it says about them never goes stale; records written after it are read from SQLite
and added on open. It is trusted only if, for every live record below `covered`, the record's
content hash (first 8 bytes) equals the one the snapshot saw at that slot: a snapshot from
another database, a re-created collection or a restored folder is rebuilt, never used.
Like the ANN graph it is derived data: missing, torn or foreign means "rebuild".
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from .field_index import FieldIndex

FORMAT = 2  # bump when store.field_index.flatten changes what is indexed
log = logging.getLogger(__name__)


def hash64(content_hashes: list[str]) -> np.ndarray:
    """First 8 bytes of each hex content hash, as uint64 (vectorised: 1M hashes in ~0.2 s)."""
    if not content_hashes:
        return np.empty(0, dtype=np.uint64)
    return np.frombuffer(bytes.fromhex("".join(h[:16] for h in content_hashes)), dtype=">u8").astype(np.uint64)


def take(index: FieldIndex, slot_hashes: np.ndarray, covered: int) -> dict[str, np.ndarray]:
    """What `write` saves, copied (call it while writers are held off; writing can happen later)."""
    paths, keys, rows, vids, offsets = index.to_arrays()
    meta = json.dumps({"format": FORMAT, "covered": covered, "paths": paths, "keys": keys})
    return {"meta": np.frombuffer(meta.encode(), dtype=np.uint8), "rows": rows.astype(np.int32), "vids": vids,
            "offsets": offsets, "hashes": np.array(slot_hashes[:covered], dtype=np.uint64)}


def write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old snapshot or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path, live_slots: np.ndarray, live_hashes: np.ndarray, n_rows: int) -> tuple[FieldIndex, int] | None:
    """(index, covered) if the snapshot at `path` matches the live records, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            covered = int(meta["covered"])
            if meta.get("format") != FORMAT or not 0 <= covered <= n_rows:
                return None
            hashes = data["hashes"]
            below = live_slots < covered
            if len(hashes) != covered or not np.array_equal(hashes[live_slots[below]], live_hashes[below]):
                log.warning("field index snapshot %s does not match the records: rebuilding", path.name)
                return None
            index = FieldIndex.from_arrays(meta["paths"], meta["keys"], data["rows"], data["vids"], data["offsets"])
            return index, covered
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("field index snapshot %s unreadable (%s): rebuilding", path.name, exc)
        return None
