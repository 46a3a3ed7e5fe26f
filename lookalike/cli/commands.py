"""The `lookalike` commands: one `cmd_*` function per subcommand (parser.py wires them up)."""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from ..collection import connect
from ..errors import NotFound
from ..ingest.catalog import sourced_records
from ..ingest.decode import CLI_DEFAULT_DECODE
from ..models.text import get_text_encoder
from ..query import cleanup
from ..query.evaluate import evaluate_file
from ..records import files_anywhere
from ..store.backup import backup, restore
from .checks import UsageError, check_fields, group_by_value, parse_vector_arg
from .demo import run_demo
from .export import export_records
from .output import count_line, error_line, human_bytes, print_collections, print_hits, print_info, print_json

# -- helpers ------------------------------------------------------------------------------
#: Commands that only read: they open the data folder read-only, beside a server or an ingest.
READ_ONLY_COMMANDS = {"search", "recommend", "rerank", "match", "duplicates", "get", "collections", "eval", "backup",
                      "info", "export"}


def _db(args: argparse.Namespace):
    return connect(args.data, read_only=getattr(args, "command", None) in READ_ONLY_COMMANDS)


def _parse_json_arg(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None


def _print_hits(result: dict) -> None:
    """The hits table (kept under this name for callers of the CLI module)."""
    print_hits(result)


def _fields_arg(col: Any, text: str | None) -> list[str] | None:
    """`--fields a,b`: the names, each one checked against the collection's fields."""
    if not text:
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    check_fields(col, fields, "--fields")
    return fields


# -- ingest -------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    if args.device == "cuda":  # a clear error now, not a torch assertion once the model loads
        from ..models.efficientnet import check_device  # torch: loaded only for this check
        check_device("cuda")
    device = None if args.device == "auto" else args.device
    # Pipeline options go to the pipeline as arguments; bulk ingest decodes in processes by default.
    decode = args.decode or os.environ.get("LOOKALIKE_DECODE") or CLI_DEFAULT_DECODE
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")

    show_bar = not args.quiet and sys.stderr.isatty()
    pairs, base_dir, total = sourced_records(Path(args.path), count=show_bar)
    origins: collections.deque[str] = collections.deque()

    def records() -> Iterator[Any]:  # remembers where each record came from, for its error line
        for origin, record in pairs:
            origins.append(origin)
            yield record

    if args.allow_outside:  # `_file`s as given, relative ones still against the catalogue's folder
        records, base_dir = partial(files_anywhere, records(), base_dir), None

    settings = {"model": args.model, "group_field": args.group_field,
                "text_fields": args.text_fields.split(",") if args.text_fields else None}
    with _db(args) as db:
        col, _ = db.ensure_collection(args.collection, **settings)
        counts: dict[str, int] = {}
        results: list[dict] = []
        errors: list[dict] = []
        start = time.perf_counter()
        # A bar only on a terminal: in a log file its redraws would interleave with the error lines.
        bar = tqdm(total=total, unit="img", desc=f"ingest {args.collection}", file=sys.stderr,
                   disable=not show_bar, dynamic_ncols=True)

        def on_batch(batch: list[dict]) -> None:
            for r in batch:
                origin = origins.popleft() if origins else None
                counts[r["status"]] = counts.get(r["status"], 0) + 1
                if r["status"] == "error":
                    errors.append(r)
                    bar.write(f"error: {error_line(origin, r)}", file=sys.stderr)
            bar.update(len(batch))
            bar.set_postfix({k: v for k, v in counts.items()}, refresh=False)

        try:
            if args.ray is not None:  # distributed: decode and embed in Ray actors, write here in batches
                from ..ingest.ray import ray_ingest  # Ray: an optional dependency
                ray_results = ray_ingest(col, records(), base_dir=base_dir, address=args.ray, workers=args.workers,
                                         batch_size=min(args.batch_size or 16, 16), on_batch=on_batch, device=device)
                results.extend(ray_results if args.json else [])
            else:
                for r in col.upsert_iter(records(), base_dir=base_dir, batch_size=args.batch_size,
                                         on_batch=on_batch, decode=decode, resize=args.resize, device=device):
                    if args.json:
                        results.append(r)
        except KeyboardInterrupt:
            bar.close()
            done = sum(counts.values())
            print(f"lookalike: interrupted; {done} records were written and are kept ({count_line(counts)}). "
                  "Run the same command again to resume: unchanged records are skipped quickly.", file=sys.stderr)
            return 130
        bar.close()
        elapsed = time.perf_counter() - start
    if args.json:
        print_json({"results": results})
    else:
        done = sum(counts.values())
        print(f"{done} records in {elapsed:.1f} s ({done / elapsed if elapsed else 0:.1f}/s): {count_line(counts)}")
    return 1 if errors else 0


# -- search and friends -------------------------------------------------------------------
def _query_from_args(args: argparse.Namespace) -> dict:
    vector = parse_vector_arg(args.vector) if getattr(args, "vector", None) is not None else None
    given = [(k, v) for k, v in (("id", args.id), ("ids", getattr(args, "ids", None)), ("file", args.image),
                                 ("url", args.url), ("text", args.text), ("color", args.color),
                                 ("vector", vector)) if v is not None]
    keywords = getattr(args, "keywords", None)
    if keywords is not None and not given:
        return {"keywords": keywords}
    if len(given) != 1:
        raise UsageError("give exactly one of --id, --ids, --image, --url, --text, --color, --vector"
                         + (" (or --keywords alone)" if hasattr(args, "keywords") else ""))
    query = dict(given) if keywords is None else {**dict(given), "keywords": keywords}
    if getattr(args, "box", None) is not None:
        query["box"] = parse_box_arg(args.box)
    return query


def parse_box_arg(text: str) -> list:
    """`--box 0.1,0.2,0.6,0.9` (or a JSON list) -> four numbers; checked by the search itself."""
    try:
        values = json.loads(text) if text.strip().startswith("[") else [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--box must be four numbers x0,y0,x1,y1 (fractions), not {text!r}") from None
    return values


def _load_models(col: Any, query: dict, with_text: str | None) -> None:
    """Load the models a search needs before it starts, so `took_ms` is the search alone."""
    kind = next(iter(query))
    if kind == "keywords":
        return
    if col.settings.model != "none" and kind in ("file", "url", "text", "image", "base64"):
        col.encoder
    if (kind == "text" or with_text is not None) and col.settings.text_fields:
        try:
            get_text_encoder()
        except ImportError:  # the search itself names what is missing
            pass


def cmd_search(args: argparse.Namespace) -> int:
    query = _query_from_args(args)
    boost = _parse_json_arg("--boost", args.boost)
    group_by = group_by_value(args.group_by)
    with _db(args) as db:
        col = db.collection(args.collection)
        if isinstance(group_by, str):
            check_fields(col, [group_by], "--group-by")
        fields = _fields_arg(col, args.fields)
        _load_models(col, query, args.with_text)
        result = col.search(
            query, k=args.k, offset=args.offset, filter=_parse_json_arg("--filter", args.filter),
            group_by=group_by, negative=[{"id": n} for n in args.negative_id] or None, boost=boost,
            fields=fields, text=args.with_text, hybrid=args.hybrid, negative_weight=args.negative_weight,
            same_label=args.same_label, fusion=args.fusion, keyword_weight=args.keyword_weight,
            regions=args.regions or False, **_result_options(args))
    if args.json:
        print_json(result)
        return 0
    print_hits(result)
    for region in result.get("regions", []):
        print(f"\nregion {', '.join(f'{v:.2f}' for v in region['box'])}")
        print_hits({"hits": region["hits"], "took_ms": result["took_ms"]})
    return 0


def _result_options(args: argparse.Namespace) -> dict:
    """`--min-score`, `--explain`, `--collapse` / `--collapse-ids` as search keyword arguments."""
    collapse = {"ids": True} if args.collapse_ids else (True if args.collapse else None)
    return {"min_score": args.min_score, "explain": args.explain, "collapse": collapse}


def cmd_recommend(args: argparse.Namespace) -> int:
    group_by = group_by_value(args.group_by)
    with _db(args) as db:
        col = db.collection(args.collection)
        if isinstance(group_by, str):
            check_fields(col, [group_by], "--group-by")
        result = col.recommend(args.id, k=args.k, offset=args.offset, filter=_parse_json_arg("--filter", args.filter),
                               fields=_fields_arg(col, args.fields), group_by=group_by, **_result_options(args))
    print_json(result) if args.json else print_hits(result)
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    with _db(args) as db:
        col = db.collection(args.collection)
        result = col.rerank(args.ids, {"id": args.id}, fields=_fields_arg(col, args.fields), min_score=args.min_score)
    print_json(result) if args.json else print_hits(result)
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.id is None):
        raise UsageError("give exactly one of --image, --id")
    query = {"file": args.image} if args.image is not None else {"id": args.id}
    with _db(args) as db:
        col = db.collection(args.collection)
        fields = _fields_arg(col, args.fields)
        _load_models(col, query, None)
        result = col.match(query, threshold=args.threshold, k=args.k, fields=fields)
    print_json(result) if args.json else print_hits(result)
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    export = getattr(args, "export", None)
    if export is not None:
        return _export_duplicates(args, Path(export))
    with _db(args) as db:
        result = db.collection(args.collection).duplicates(threshold=args.threshold)
    if args.json:
        print_json(result)
    else:
        for cluster in result["clusters"]:
            print("  ".join(cluster))
        print(f"{len(result['clusters'])} clusters")
    return 0


def _export_duplicates(args: argparse.Namespace, path: Path) -> int:
    """`duplicates --export FILE`: the report (query/cleanup.py) as JSON lines or CSV, by extension."""
    writers = {".jsonl": cleanup.to_jsonl, ".ndjson": cleanup.to_jsonl, ".csv": cleanup.to_csv}
    write = writers.get(path.suffix.lower())
    if write is None:
        raise UsageError(f"--export {path}: name a .jsonl or .csv file (the format follows the extension)")
    with _db(args) as db:
        clusters = db.collection(args.collection).duplicates_report(threshold=args.threshold)["clusters"]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(write(clusters), encoding="utf-8")
    tmp.replace(path)  # never a half-written report under the final name
    copies = sum(len(c["members"]) - 1 for c in clusters)
    summary = {"clusters": len(clusters), "removable": copies, "file": str(path)}
    print_json(summary) if args.json else print(f"{len(clusters)} clusters, {copies} copies besides the "
                                                f"suggested keepers: written to {path}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _db(args) as db:
        record = db.collection(args.collection).get(args.id)
    print_json(record, pretty=not args.json and sys.stdout.isatty())
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    fields = _parse_json_arg("FIELDS", args.fields)
    with _db(args) as db:
        record = db.collection(args.collection).update(args.id, fields)
    print_json(record, pretty=not args.json and sys.stdout.isatty())
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _db(args) as db:
        col = db.collection(args.collection)
        missing = []
        for rid in dict.fromkeys(args.ids):
            try:
                col.get(rid)
            except NotFound:
                missing.append(rid)
        n = col.delete(args.ids)
    print_json({"deleted": n}) if args.json else print(f"deleted {n}")
    if missing:
        print(f"lookalike: not found, nothing deleted for: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def cmd_drop(args: argparse.Namespace) -> int:
    with _db(args) as db:
        count = db.collection(args.collection).count()  # NotFound before anything is touched
        if not args.yes:
            raise UsageError(f"drop deletes collection {args.collection!r} and its {count} records for good; "
                             "add --yes to confirm (a backup first: lookalike backup -c NAME FILE)")
        db.drop(args.collection)
    print_json({"name": args.collection, "deleted": True}) if args.json else print(
        f"dropped {args.collection} ({count} records)")
    return 0


def _folder_bytes(location: str) -> int | None:
    path = Path(location)
    if not path.is_dir():
        return path.stat().st_size if path.is_file() else None
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cmd_info(args: argparse.Namespace) -> int:
    with _db(args) as db:
        info = db.collection(args.collection).info()
    if args.json:
        print_json(info)
    else:
        print_info(info, _folder_bytes(args.data))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out_path = None if args.file in (None, "-") else Path(args.file)
    if out_path is not None and not out_path.parent.is_dir():
        raise UsageError(f"folder {out_path.parent} does not exist (for {out_path})")
    with _db(args) as db:
        col = db.collection(args.collection)
        with (out_path.open("w", encoding="utf-8") if out_path else contextlib.nullcontext(sys.stdout)) as fh:
            counts = export_records(col, fh, vectors=not args.no_vectors)
    if out_path is not None:
        print(f"exported {counts['records']} records of {args.collection} to {out_path}", file=sys.stderr)
    if counts["without_source"]:
        print(f"lookalike: {counts['without_source']} records have no image source to write without vectors "
              "(they came as _base64); export them with vectors", file=sys.stderr)
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    with _db(args) as db:
        cols = db.collections()
    if args.json:
        print_json({"collections": cols})
    else:
        print_collections(cols)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    with _db(args) as db:
        if args.holdout == (args.truth is not None):
            raise UsageError("eval needs either --truth FILE or --holdout")
        col = db.collection(args.collection)
        result = col.evaluate(holdout=True, k=args.k) if args.holdout else evaluate_file(col, Path(args.truth), k=args.k)
    if args.json:
        print_json(result)
    else:
        for key, value in result["metrics"].items():
            print(f"{key:<12} {value:.4f}")
        print(f"{result['queries']} queries")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    folder = Path(args.file).parent
    if not folder.is_dir():
        raise UsageError(f"folder {folder} does not exist (for the backup file {args.file}); create it first")
    with _db(args) as db:
        result = backup(db, args.collection, args.file)
    print_json(result) if args.json else print(
        f"backed up {result['records']} records of {result['collection']} to {args.file} ({result['bytes']} bytes)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    with _db(args) as db:
        result = restore(db, args.file, name=args.as_name, replace=args.replace)
    print_json(result) if args.json else print(f"restored {result['records']} records into {result['collection']}")
    return 0


def check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on now, before anything is loaded (UsageError)."""
    import errno
    import socket
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host!r}: {exc.strerror}; give --host an address such as 127.0.0.1")
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use (another server running?); "
                                 f"choose another with --port, e.g. --port {port + 1}") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from ..server import serve  # FastAPI and uvicorn: loaded only to serve
    check_port(args.host, args.port)
    try:
        serve(data=args.data, host=args.host, port=args.port, admin_key=args.admin_key, search_key=args.search_key,
              cors_origins=args.cors_origin, max_body_bytes=args.max_body_bytes, max_pixels=args.max_pixels,
              log_level=args.log_level, access_log=not args.no_access_log, url_deadline=args.url_deadline,
              max_url_fetches=args.max_url_fetches, auth_failures=args.auth_failures, auth_window=args.auth_window,
              header_timeout=args.header_timeout, max_connections=args.max_connections, models_dir=args.models)
    except SystemExit as exc:  # uvicorn's start-up failure (exit 3): taken in the moment after the check
        if exc.code in (None, 0):
            return 0
        raise UsageError(f"the server could not start on {args.host}:{args.port} (see above); "
                         "is the port taken? choose another with --port") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.no_serve:
        check_port(args.host, args.port)
    return run_demo(args)


def cmd_tune(args: argparse.Namespace) -> int:
    with _db(args) as db:
        done = db.collection(args.collection).tune(field=args.field, groups=args.groups, reset=args.reset)
    if args.json:
        print_json(done)
        return 0
    if done.get("reset"):
        print(f"{done['collection']}: back to the model's own vectors" if done["was_tuned"]
              else f"{done['collection']} was not tuned: nothing to reset")
        return 0
    b, a = done["before"], done["after"]
    print(f"{done['collection']} by {done['field']!r}: {done['records']} labelled records, {done['values']} values, "
          f"{done['held_out_values']} held out for validation")
    print(f"P@5 {b['p@5']:.3f} -> {a['p@5']:.3f}   mAP@10 {b['map@10']:.3f} -> {a['map@10']:.3f}")
    print("applied" if done["applied"] else "not applied: it did not score better on the held-out values")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    with _db(args) as db:
        done = db.collection(args.collection).compact()
    if args.json:
        print_json(done)
        return 0
    print(f"compacted {done['collection']}: {done['count']} records, "
          f"{human_bytes(done['bytes_before'])} -> {human_bytes(done['bytes'])}")
    return 0
