"""What the `lookalike` command prints for people: tables that fit the terminal, and JSON.

Tables are laid out at the terminal's width (`shutil.get_terminal_size`: `$COLUMNS`, else
the terminal, else 100 columns when piped), one line per hit, so nothing wraps into garbage
on 80 columns; long values are cut with an ellipsis.
"""
from __future__ import annotations

import json
import shutil
import sys
from typing import Any


def terminal_width() -> int:
    """Columns to draw in: the terminal's, `$COLUMNS`, or 100 when there is no terminal."""
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def print_json(obj: Any, *, pretty: bool = False) -> None:
    """One JSON document on stdout (indented when `pretty`, for people at a terminal)."""
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2 if pretty else None)
    sys.stdout.write("\n")


def _summary(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else (text[:width - 1] + "\u2026" if width > 0 else "")


def hits_table(hits: list[dict], width: int) -> list[str]:
    """The hits as lines of at most `width` characters: #, _id, score, [match], [group], label, metadata.

    The small columns keep their full width; `_id` gets up to 40 characters and the metadata
    what is left, both cut with an ellipsis when the terminal is narrow.
    """
    columns: list[tuple[str, list[str], bool]] = [  # (header, cells, right-aligned)
        ("#", [str(i) for i in range(1, len(hits) + 1)], True),
        ("_id", [str(h["_id"]) for h in hits], False),
        ("score", [f"{h['_score']:.4f}" for h in hits], True)]
    if any("_match" in h for h in hits):
        columns.append(("match", [_match_summary(h.get("_match")) for h in hits], False))
    if any("_group" in h for h in hits):
        columns.append(("group", [_summary(h.get("_group", "")) for h in hits], False))
    if any("_collapsed" in h for h in hits):
        columns.append(("copies", [str(h.get("_collapsed", "")) for h in hits], True))
    columns.append(("label", [str((h.get("_labels") or [{}])[0].get("label", "")) for h in hits], False))
    columns.append(("metadata", [", ".join(f"{k}={_summary(v)}" for k, v in h.items() if not k.startswith("_"))
                                 for h in hits], False))
    caps = {"_id": 40, "group": 24, "label": 18}
    widths = [min(max(len(head), *(len(c) for c in cells)), caps.get(head, 10 ** 6)) for head, cells, _ in columns]
    gaps = 2 * (len(columns) - 1)
    spare = width - gaps - sum(widths[:-1])
    if spare < 8:  # narrow terminal: the id column gives way first, down to 12 characters
        id_width = max(12, widths[1] - (8 - spare))
        spare += widths[1] - id_width
        widths[1] = id_width
    widths[-1] = max(0, min(widths[-1], spare))
    lines = []
    for row in range(-1, len(hits)):
        cells = []
        for (head, values, right), w in zip(columns, widths):
            text = _cut(head if row < 0 else values[row], w)
            cells.append(text.rjust(w) if right else text.ljust(w))
        lines.append("  ".join(cells).rstrip()[:width])
    return lines


def print_hits(result: dict) -> None:
    """The hits as a table (one line each) and how long the search took; "no hits" when empty."""
    hits = result.get("hits", [])
    if hits:
        print("\n".join(hits_table(hits, terminal_width())))
        for line in why_lines(hits):
            print(line)
        print(f"{len(hits)} hits in {result.get('took_ms', 0):.1f} ms")
    else:
        print("no hits")
    if result.get("missing"):
        print(f"missing: {', '.join(result['missing'])}")


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


def error_line(origin: str | None, result: dict) -> str:
    """`line 12: record has no '_id'`, `line 3: sku-1: file not found: ...`: where, which, what."""
    message = str(result.get("error"))
    parts = [origin] if origin and not message.startswith(origin + " ") else []
    if result.get("_id") is not None and result["_id"] != origin:
        parts.append(str(result["_id"]))
    return ": ".join([*parts, message])


def count_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in ("inserted", "updated", "unchanged", "error"))


def why_lines(hits: list[dict]) -> list[str]:
    """Per hit with `_explain` or hidden copies, lines saying why it is there (`--explain`, `--collapse-ids`)."""
    lines = []
    for n, hit in enumerate(hits, 1):
        why = hit.get("_explain")
        if why:
            parts = " + ".join(f"{name} {value:.4f}" for name, value in why.get("parts", {}).items())
            lines.append(f"{n:>3} {hit['_id']}: {parts}")
            for rule in why.get("boosts", []):
                lines.append(f"      boost ({rule['source']} rule {rule['rule']}) {json.dumps(rule['filter'])}: "
                             f"{rule['effect']:+g}")
            if why.get("labels"):
                lines.append("      labels shared: " + ", ".join(x["label"] for x in why["labels"]))
            if why.get("colors"):
                lines.append("      colours shared: " + ", ".join(f"{c['query']}~{c['hit']}" for c in why["colors"]))
            dup = why.get("duplicate")
            if dup:
                lines.append(f"      copy of the query ({dup['how']}, {dup['score']:.3f}) at {dup['region']}")
        if hit.get("_collapsed_ids"):
            lines.append(f"{n:>3} {hit['_id']} hides copies: {', '.join(hit['_collapsed_ids'])}")
    return lines


def _match_summary(info: object) -> str:
    """`exact`, or `near` with the copy's rotation, scale and mirror when they are not nil."""
    if not isinstance(info, dict):
        return str(info or "")
    parts = [str(info.get("kind", ""))]
    if info.get("mirrored"):
        parts.append("mirrored")
    if abs(float(info.get("angle") or 0)) >= 1:
        parts.append(f"{float(info['angle']):+.0f}°")
    return " ".join(parts)
