"""`lookalike export`: a collection's records as JSON lines that `lookalike ingest` takes back.

Each line is `{"_id", ...metadata, "_vector": [...]}`: the stored vector makes the round trip
exact and needs no image. With `vectors=False` a line keeps the record's `_file` or `_url`
instead (re-ingesting re-encodes the image; `_file` paths stay relative to the folder of the
original catalogue). Engine-computed fields (`_labels`, `_colors`) are left out: ingest
computes them from images and refuses them as input.
"""
from __future__ import annotations

import json
from typing import IO, Any

SOURCES = ("_file", "_url")


def export_records(col: Any, out: IO[str], *, vectors: bool = True) -> dict:
    """Write every record of `col` to `out`; `{"records": N, "without_source": M}`."""
    written = without_source = 0
    for batch in col._store.export():
        for rec in batch:
            line: dict[str, Any] = {"_id": rec.id}
            line.update({k: v for k, v in rec.doc.items() if not k.startswith("_")})
            if vectors:
                line["_vector"] = [float(x) for x in rec.vector]
            else:
                source = next((k for k in SOURCES if rec.doc.get(k) is not None), None)
                if source is None:
                    without_source += 1
                else:
                    line[source] = rec.doc[source]
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            written += 1
    return {"records": written, "without_source": without_source}
