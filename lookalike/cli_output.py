"""What the `lookalike` command prints for people: tables that fit the terminal, and JSON.

Tables are drawn by rich at the terminal's width (`shutil.get_terminal_size`: `$COLUMNS`,
else the terminal, else 100 columns when piped), so nothing wraps into garbage on 80
columns; long values are cut with an ellipsis.
"""
from __future__ import annotations

import json
import shutil
import sys
from typing import Any


def terminal_width() -> int:
    """Columns to draw in: the terminal's, `$COLUMNS`, or 100 when there is no terminal."""
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _console():
    from rich.console import Console
    return Console(width=terminal_width(), soft_wrap=False, highlight=False)


def print_json(obj: Any, *, pretty: bool = False) -> None:
    """One JSON document on stdout (indented when `pretty`, for people at a terminal)."""
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2 if pretty else None)
    sys.stdout.write("\n")


def _summary(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def print_hits(result: dict) -> None:
    """The hits as a table (one line each) and how long the search took; "no hits" when empty."""
    from rich.table import Table

    hits = result.get("hits", [])
    if not hits:
        print("no hits")
    else:
        table = Table(show_header=True, header_style="bold", expand=False, box=None, pad_edge=False)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("_id", no_wrap=True, overflow="ellipsis", min_width=8, max_width=40)
        table.add_column("score", justify="right", no_wrap=True)
        matched = any("_match" in h for h in hits)
        grouped = any("_group" in h for h in hits)
        if matched:
            table.add_column("match", no_wrap=True)
        if grouped:
            table.add_column("group", no_wrap=True, overflow="ellipsis", max_width=24)
        table.add_column("label", no_wrap=True, overflow="ellipsis", max_width=18)
        table.add_column("metadata", no_wrap=True, overflow="ellipsis", ratio=1)
        for i, hit in enumerate(hits, 1):
            meta = ", ".join(f"{k}={_summary(v)}" for k, v in hit.items() if not k.startswith("_"))
            labels = hit.get("_labels") or [{}]
            row = [str(i), str(hit["_id"]), f"{hit['_score']:.4f}"]
            if matched:
                row.append(str(hit.get("_match", "")))
            if grouped:
                row.append(_summary(hit.get("_group", "")))
            table.add_row(*row, str(labels[0].get("label", "")), meta)
        _console().print(table)
    if result.get("missing"):
        print(f"missing: {', '.join(result['missing'])}")
    if hits:
        print(f"{len(hits)} hits in {result.get('took_ms', 0):.1f} ms")


def print_collections(cols: list[dict]) -> None:
    """One line per collection under a header; a hint when there are none."""
    if not cols:
        return
    width = max(len("collection"), *(len(c["name"]) for c in cols))
    print(f"{'collection':<{width}}  {'records':>10}  model")
    for c in cols:
        print(f"{c['name']:<{width}}  {c['count']:>10}  {c['model']}")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def print_info(info: dict, disk_bytes: int | None) -> None:
    """A collection's count, model, settings and sizes, one `key: value` per line."""
    lines = [("collection", info.get("name")), ("records", info.get("count")),
             ("model", f"{info.get('model')} ({info.get('dim')}-d, {info.get('metric')})"),
             ("group_field", info.get("group_field")), ("text_fields", info.get("text_fields")),
             ("boosts", info.get("boosts")), ("thumbnails", info.get("thumbnails")),
             ("index", info.get("index")), ("compression", info.get("compression")),
             ("vectors+index", human_bytes(info.get("bytes"))),
             ("bytes/vector", info.get("bytes_per_vector"))]
    if disk_bytes is not None:
        lines.append(("data folder", human_bytes(disk_bytes)))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        text = "-" if value is None else (json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value))
        print(f"{key:<{width}}  {text}")
