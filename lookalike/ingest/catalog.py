"""Where `lookalike ingest` reads records from: a folder, one image, a JSONL or JSON catalogue.

Each record comes with where it came from (`line 12`, `record 3`, `shirts/red.jpg`), so an
error result can be reported as `line 12: record has no '_id'`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import BadRequest
from ..jsontext import load_json
from ..records import InvalidRecord

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


class CatalogError(BadRequest):
    """A path that is no catalogue: missing, not JSON, or JSON of another shape."""


def sourced_records(path: Path, count: bool = True) -> tuple[Iterator[tuple[str, Any]], Path, int | None]:
    """(where each record came from, record) pairs of a folder, an image, or a JSONL/JSON catalogue,
    the folder and the number of records (None for a JSONL without `count`: counting its lines
    reads the whole file once more, 3 GB for a million 256-d vectors, for a progress bar only)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

        def from_folder() -> Iterator[tuple[str, Any]]:
            for f in files:
                rel = f.relative_to(path)
                yield rel.as_posix(), {"_id": rel.with_suffix("").as_posix(), "_file": rel.as_posix(),
                                       "path": rel.as_posix()}
        return from_folder(), path, len(files)
    if not path.exists():
        raise CatalogError(f"no such file or folder: {path}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:  # one image: the same record it would make inside its folder
        record = {"_id": path.stem, "_file": path.name, "path": path.name}
        return iter([(path.name, record)]), path.parent, 1
    if suffix == ".jsonl":
        total = sum(1 for line in path.open("rb") if not _blank(line)) if count else None
        return _jsonl_records(path), path.parent, total
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CatalogError(f"{path} is not valid JSON: {exc}") from None
        records = data.get("records") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise CatalogError(f"{path} must hold a list of records or {{\"records\": [...]}}")
        return ((f"record {n}", r) for n, r in enumerate(records, 1)), path.parent, len(records)
    raise CatalogError(f"{path} is neither a folder, an image, nor a .jsonl/.json catalogue")


def _blank(line: bytes) -> bool:
    """Whether a catalogue line holds only whitespace (Unicode's too, as `str.strip` sees it)."""
    if not line.strip():
        return True
    if line.isascii():
        return False
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    """("line N", record) per non-blank line of a JSONL file, or an InvalidRecord naming the line.

    The file is read in binary and each line's bytes go to the parser as they are: a line of a
    256-d vector is ~3 kB, and decoding it to text first (then encoding it again for the check
    of long integers) cost a tenth of reading it. Lines end at b"\n" (`\r\n` too: the `\r`
    is JSON whitespace). A line that is not UTF-8 is that line's error, not the whole file's;
    a UTF-8 byte-order mark before the first record is skipped (json reads bytes so).
    """
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            try:
                yield f"line {n}", load_json(line)  # json.loads's value, faster (jsontext.py)
            except json.JSONDecodeError as exc:
                if not _blank(line):
                    yield f"line {n}", InvalidRecord(f"line {n} is not valid JSON: {exc.msg}")
            except UnicodeDecodeError as exc:
                yield f"line {n}", InvalidRecord(f"line {n} is not UTF-8 text: {exc.reason} at byte {exc.start}")


def iter_source(path: Path) -> tuple[Iterator[Any], Path, int | None]:
    """Records from a folder of images, one image, or a JSONL/JSON catalogue; (records, base_dir, total)."""
    pairs, base_dir, total = sourced_records(path)
    return (record for _, record in pairs), base_dir, total
