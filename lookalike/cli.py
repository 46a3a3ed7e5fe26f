"""The `lookalike` command line: the contract's operations, for people and for scripts.

`--json` prints exactly the HTTP response body; without it output is for people (tables on
stdout, progress on stderr). Exit status: 0 success, 1 some records failed, 2 bad usage or
input, 130 interrupted, 141 output pipe closed early (`... | head`). See docs/api.md.
"""
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

from .cli_checks import UsageError, check_boosts, check_fields, group_by_value, parse_vector_arg
from .cli_output import print_collections, print_hits, print_info, print_json
from .cli_source import _iter_source, count_line, error_line, iter_source  # noqa: F401 (iter_source: API)
from .errors import LookalikeError
from .records import files_anywhere


# -- helpers ------------------------------------------------------------------------------
@contextlib.contextmanager
def _scoped_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set environment variables (None: leave as is) for the duration of a command, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: Commands that only read: they open the data folder read-only, beside a server or an ingest.
READ_ONLY_COMMANDS = {"search", "recommend", "rerank", "match", "duplicates", "get", "collections", "eval", "backup",
                      "info", "export"}


def _db(args: argparse.Namespace):
    from . import connect
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
    from tqdm import tqdm

    if args.device == "cuda":  # a clear error now, not a torch assertion once the model loads
        from .models.efficientnet import check_device
        check_device("cuda")
    if args.device != "auto":
        os.environ["LOOKALIKE_DEVICE"] = args.device  # read when the encoder loads
    from .ingest.decode import CLI_DEFAULT_DECODE
    # Read by the Ingestor (lookalike/ingest.py) while this command runs; bulk ingest decodes in processes.
    ingest_env = {"LOOKALIKE_DECODE": args.decode or os.environ.get("LOOKALIKE_DECODE") or CLI_DEFAULT_DECODE,
                  "LOOKALIKE_RESIZE": args.resize or os.environ.get("LOOKALIKE_RESIZE")}
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")

    pairs, base_dir, total = _iter_source(Path(args.path))
    origins: collections.deque[str] = collections.deque()

    def records() -> Iterator[Any]:  # remembers where each record came from, for its error line
        for origin, record in pairs:
            origins.append(origin)
            yield record

    if args.allow_outside:  # `_file`s as given, relative ones still against the catalogue's folder
        records, base_dir = partial(files_anywhere, records(), base_dir), None

    settings = {"model": args.model, "group_field": args.group_field,
                "text_fields": args.text_fields.split(",") if args.text_fields else None}
    with _db(args) as db, _scoped_env(ingest_env):
        col, _ = db.ensure_collection(args.collection, **settings)
        counts: dict[str, int] = {}
        results: list[dict] = []
        errors: list[dict] = []
        start = time.perf_counter()
        # A bar only on a terminal: in a log file its redraws would interleave with the error lines.
        bar = tqdm(total=total, unit="img", desc=f"ingest {args.collection}", file=sys.stderr,
                   disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True)

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
                from .ingest.ray import ray_ingest
                ray_results = ray_ingest(col, records(), base_dir=base_dir, address=args.ray, workers=args.workers,
                                         batch_size=min(args.batch_size, 16), on_batch=on_batch)
                results.extend(ray_results if args.json else [])
            else:
                for r in col.upsert_iter(records(), base_dir=base_dir, batch_size=args.batch_size,
                                         on_batch=on_batch):
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
    if len(given) != 1:
        raise UsageError("give exactly one of --id, --ids, --image, --url, --text, --color, --vector")
    return dict(given)


def _load_models(col: Any, query: dict, with_text: str | None) -> None:
    """Load the models a search needs before it starts, so `took_ms` is the search alone."""
    kind = next(iter(query))
    if col.settings.model != "none" and kind in ("file", "url", "text", "image", "base64"):
        col.encoder
    if (kind == "text" or with_text is not None) and col.settings.text_fields:
        try:
            from .models.text import get_text_encoder
            get_text_encoder()
        except ImportError:  # the search itself names what is missing
            pass


def cmd_search(args: argparse.Namespace) -> int:
    query = _query_from_args(args)
    boost = _parse_json_arg("--boost", args.boost)
    check_boosts(boost)
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
            same_label=args.same_label)
    print_json(result) if args.json else print_hits(result)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    with _db(args) as db:
        col = db.collection(args.collection)
        result = col.recommend(args.id, k=args.k, offset=args.offset, filter=_parse_json_arg("--filter", args.filter),
                               fields=_fields_arg(col, args.fields))
    print_json(result) if args.json else print_hits(result)
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    with _db(args) as db:
        col = db.collection(args.collection)
        result = col.rerank(args.ids, {"id": args.id}, fields=_fields_arg(col, args.fields))
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
    with _db(args) as db:
        result = db.collection(args.collection).duplicates(threshold=args.threshold)
    if args.json:
        print_json(result)
    else:
        for cluster in result["clusters"]:
            print("  ".join(cluster))
        print(f"{len(result['clusters'])} clusters")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _db(args) as db:
        record = db.collection(args.collection).get(args.id)
    print_json(record, pretty=not args.json and sys.stdout.isatty())
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from .errors import NotFound
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
    from .export import export_records
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
    from .query.evaluate import evaluate_file
    with _db(args) as db:
        result = evaluate_file(db.collection(args.collection), Path(args.truth), k=args.k)
    if args.json:
        print_json(result)
    else:
        for key, value in result["metrics"].items():
            print(f"{key:<12} {value:.4f}")
        print(f"{result['queries']} queries")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .store.backup import backup
    folder = Path(args.file).parent
    if not folder.is_dir():
        raise UsageError(f"folder {folder} does not exist (for the backup file {args.file}); create it first")
    with _db(args) as db:
        result = backup(db, args.collection, args.file)
    print_json(result) if args.json else print(
        f"backed up {result['records']} records of {result['collection']} to {args.file} ({result['bytes']} bytes)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .store.backup import restore
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
    from .server import serve
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
    from .demo import run_demo
    if not args.no_serve:
        check_port(args.host, args.port)
    return run_demo(args)


# -- parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", "--store", dest="data",
                        default=os.environ.get("LOOKALIKE_DATA", "./lookalike-data"),
                        help="data folder, Milvus URL (milvus://host:19530) or Milvus Lite file (x.db); "
                             "default $LOOKALIKE_DATA or ./lookalike-data")
    common.add_argument("--json", action="store_true", help="print the HTTP response body as JSON")
    col = argparse.ArgumentParser(add_help=False)
    col.add_argument("-c", "--collection", required=True, help="the collection to work on")

    p = argparse.ArgumentParser(prog="lookalike", description="Visual similarity search: show me more like this. "
                                "The full contract: docs/api.md.")
    p.add_argument("--version", action="version", version=f"lookalike {__import__('lookalike').__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("ingest", parents=[common, col],
                       help="add a folder of images, one image, or a JSONL/JSON catalogue")
    s.add_argument("path", help="a folder of images (id = relative path without extension), one image file, "
                                "or a .jsonl/.json catalogue whose _file paths are relative to it")
    s.add_argument("--model", help="image model of a new collection (default efficientnet-lite0-style; "
                                   "'none' for precomputed _vector records)")
    s.add_argument("--group-field", help="field whose value groups records (one hit per value, e.g. product_id)")
    s.add_argument("--text-fields", help="comma-separated metadata fields that text queries search")
    s.add_argument("--batch-size", type=int, default=32, help="records per written batch (default 32)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (auto: CUDA when available)")
    s.add_argument("--decode", choices=("threads", "processes"),
                   help="decode images in worker processes (default for this command, measured faster:"
                        " bench/README.md) or in threads (the Python API's and server's default)")
    s.add_argument("--resize", choices=("auto", "host", "device"),
                   help="resize for the model with Pillow (host) or on the model's device (auto: device on CUDA)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar (there is none when stderr "
                                                                "is not a terminal)")
    s.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="decode and embed on Ray Data actors: a local Ray instance, or the cluster at ADDRESS")
    s.add_argument("--workers", type=int, help="with --ray: number of encoder actors (default: one per CPU or GPU)")
    s.add_argument("--allow-outside", action="store_true",
                   help="read a catalogue's '_file's outside its folder too (absolute, '../'); refused by default")
    s.set_defaults(func=cmd_ingest)

    def query_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--id", help="query by a stored record (never returned itself)")
        s.add_argument("--ids", nargs="+", metavar="ID", help="query by several stored records: like all of them")
        s.add_argument("--image", help="query by a local image file")
        s.add_argument("--url", help="query by an image at an http(s) URL")
        s.add_argument("--text", help="search by text (metadata and labels; pixels with a CLIP-like model)")
        s.add_argument("--color", help="search by a colour, #rrggbb")
        s.add_argument("--vector", help="query by a vector: a JSON list or comma-separated numbers")
        s.add_argument("--with-text", help="text mixed into an image query's ranking (needs text_fields)")
        s.add_argument("--hybrid", type=float, help="0..1: weight of text similarity against looks (default 0.5)")
        s.add_argument("-k", type=int, default=10, help="how many hits, 1..1000 (default 10)")
        s.add_argument("--offset", type=int, default=0, help="hits to skip, for paging")
        s.add_argument("--filter", help='JSON filter, e.g. \'{"price": {"$lt": 50}}\'')
        s.add_argument("--group-by", help="at most one hit per value of this field (default: the collection's "
                                          "group_field; false or none: no grouping)")
        s.add_argument("--negative-id", action="append", default=[], metavar="ID",
                       help="a record to move away from (repeatable)")
        s.add_argument("--negative-weight", type=float, default=0.5,
                       help="weight of the --negative-id anchors, 0..10 (default 0.5)")
        s.add_argument("--same-label", action="store_true",
                       help="only hits sharing the query's top automatic label")
        s.add_argument("--boost", help='JSON list of {"filter": ..., "weight": ...} rules')
        s.add_argument("--fields", help="comma-separated fields to return (default all)")

    s = sub.add_parser("search", parents=[common, col], help="find similar records")
    query_args(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("recommend", parents=[common, col], help="similar items, excluding the anchor's group")
    s.add_argument("--id", required=True, help="the anchor record")
    s.add_argument("-k", type=int, default=10, help="how many hits, 1..1000 (default 10)")
    s.add_argument("--offset", type=int, default=0, help="hits to skip, for paging")
    s.add_argument("--filter", help="JSON filter, as in search")
    s.add_argument("--fields", help="comma-separated fields to return (default all)")
    s.set_defaults(func=cmd_recommend)

    s = sub.add_parser("rerank", parents=[common, col], help="sort ids by similarity to --id")
    s.add_argument("--id", required=True, help="the record to compare with")
    s.add_argument("ids", nargs="+", help="the ids to sort")
    s.add_argument("--fields", help="comma-separated fields to return (default all)")
    s.set_defaults(func=cmd_rerank)

    s = sub.add_parser("match", parents=[common, col], help="near-duplicates of an image or a record")
    s.add_argument("--image", help="a local image file")
    s.add_argument("--id", help="a stored record")
    s.add_argument("--threshold", type=float, help="similarity above which an item is a near-duplicate")
    s.add_argument("-k", type=int, default=10, help="at most this many matches (default 10)")
    s.add_argument("--fields", help="comma-separated fields to return (default all)")
    s.set_defaults(func=cmd_match)

    s = sub.add_parser("duplicates", parents=[common, col], help="clusters of copies in a collection")
    s.add_argument("--threshold", type=float, help="similarity above which two records are copies")
    s.set_defaults(func=cmd_duplicates)

    s = sub.add_parser("get", parents=[common, col], help="print a stored record")
    s.add_argument("id", help="the record's _id")
    s.set_defaults(func=cmd_get)

    s = sub.add_parser("delete", parents=[common, col], help="delete records by id")
    s.add_argument("ids", nargs="+", help="the _ids to delete")
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("drop", parents=[common, col], help="delete a whole collection")
    s.add_argument("--yes", action="store_true", help="confirm: the collection and its records are gone for good")
    s.set_defaults(func=cmd_drop)

    s = sub.add_parser("info", parents=[common, col], help="count, model, settings and sizes of a collection")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("export", parents=[common, col], help="write a collection's records as JSONL")
    s.add_argument("file", nargs="?", default="-", help="the JSONL file to write (default -: stdout)")
    s.add_argument("--no-vectors", action="store_true",
                   help="write each record's _file/_url instead of its _vector (re-ingest then re-encodes)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("collections", parents=[common], help="list collections")
    s.set_defaults(func=cmd_collections)

    s = sub.add_parser("eval", parents=[common, col], help="score search quality against a golden set")
    s.add_argument("--truth", required=True, help="JSONL of {\"query\": ..., \"relevant\": [...]} lines")
    s.add_argument("-k", type=int, default=10, help="cut-off of the metrics (default 10)")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("backup", parents=[common, col], help="write a collection to a backup file")
    s.add_argument("file", help="the backup file to write (gzip JSON lines)")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("restore", parents=[common], help="recreate a collection from a backup file")
    s.add_argument("file", help="a file written by lookalike backup")
    s.add_argument("--as", dest="as_name", help="restore under another collection name")
    s.add_argument("--replace", action="store_true", help="replace an existing collection of that name")
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser("serve", parents=[common], help="run the HTTP API and web page")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need "
                                                       "--admin-key)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--admin-key", default=os.environ.get("LOOKALIKE_ADMIN_KEY"),
                   help="key for every route (default $LOOKALIKE_ADMIN_KEY)")
    s.add_argument("--search-key", default=os.environ.get("LOOKALIKE_SEARCH_KEY"),
                   help="key for the read routes only (default $LOOKALIKE_SEARCH_KEY)")
    s.add_argument("--cors-origin", action="append", default=[],
                   help="allow browser calls from this origin (repeatable; '*' for any); CORS is off without it")
    s.add_argument("--max-body-bytes", type=int, default=32 * 1024 * 1024,
                   help="largest request body (413 beyond; NDJSON streams: largest line)")
    s.add_argument("--max-pixels", type=int, default=None,
                   help="largest image, width x height (413 beyond; default $LOOKALIKE_MAX_PIXELS or 64000000)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default info)")
    s.add_argument("--no-access-log", action="store_true", help="do not log each request")
    s.add_argument("--url-deadline", type=float, default=None,
                   help="seconds per image URL fetch, retries included (default $LOOKALIKE_URL_DEADLINE or 20)")
    s.add_argument("--max-url-fetches", type=int, default=None,
                   help="image URL fetches at once, 503 beyond (default $LOOKALIKE_MAX_URL_FETCHES or 16)")
    s.add_argument("--auth-failures", type=int, default=None,
                   help="wrong API keys per address or key within --auth-window before 429; 0: no limit "
                        "(default $LOOKALIKE_AUTH_FAILURES or 10)")
    s.add_argument("--auth-window", type=float, default=None,
                   help="seconds the wrong-key count covers (default $LOOKALIKE_AUTH_WINDOW or 60)")
    s.add_argument("--header-timeout", type=float, default=None,
                   help="seconds a client has to send its request headers (default $LOOKALIKE_HEADER_TIMEOUT or 10)")
    s.add_argument("--max-connections", type=int, default=None,
                   help="connections and requests at once, 503 beyond (default $LOOKALIKE_MAX_CONNECTIONS or 1000)")
    s.add_argument("--models", metavar="DIR", help="folder of user models ('torchscript:NAME.pt' over HTTP "
                                                   "names a file in it); without it HTTP refuses user models")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", parents=[common], help="build the sample collection, search it, serve it")
    s.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    s.add_argument("--no-serve", action="store_true", help="stop after the search")
    s.set_defaults(func=cmd_demo)
    return p


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the exit flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except UsageError as exc:
        print(f"lookalike: {exc}", file=sys.stderr)
        return 2
    except LookalikeError as exc:
        if getattr(args, "json", False):
            print_json(exc.to_dict())
        print(f"lookalike: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lookalike search ... --json | head`: the reader has all it wanted
        _quiet_stdout()
        return 141
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the command was given (permissions, disk full, ...)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"lookalike: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
