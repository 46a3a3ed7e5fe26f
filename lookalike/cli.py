"""The `lookalike` command line: the contract's operations, for people and for scripts.

`--json` prints exactly the HTTP response body; without it output is for people (tables on
stdout, progress on stderr). Exit status: 0 success, 1 some records failed, 2 bad usage.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from .errors import LookalikeError
from .records import InvalidRecord, files_anywhere

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


class UsageError(Exception):
    """Bad command-line usage (exit status 2)."""


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
READ_ONLY_COMMANDS = {"search", "recommend", "rerank", "match", "duplicates", "get", "collections", "eval", "backup"}


def _db(args: argparse.Namespace):
    from . import connect
    return connect(args.data, read_only=getattr(args, "command", None) in READ_ONLY_COMMANDS)


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


def _parse_json_arg(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None


def _print_hits(result: dict) -> None:
    """A compact table: one line per hit, metadata summarised to fit the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("#", justify="right", min_width=2)
    table.add_column("_id", no_wrap=True, overflow="ellipsis", min_width=12, max_width=32)
    table.add_column("score", justify="right", min_width=6)
    grouped = any("_group" in h for h in result.get("hits", []))
    if grouped:
        table.add_column("group", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("label", no_wrap=True, overflow="ellipsis", min_width=8, max_width=18)
    table.add_column("metadata", no_wrap=True, overflow="ellipsis", max_width=48)
    for i, hit in enumerate(result.get("hits", []), 1):
        meta = ", ".join(f"{k}={v}" for k, v in hit.items() if not k.startswith("_"))
        labels = hit.get("_labels") or [{}]
        row = [str(i), hit["_id"], f"{hit['_score']:.4f}"]
        if grouped:
            row.append(str(hit.get("_group", "")))
        table.add_row(*row, str(labels[0].get("label", "")), meta)
    Console(width=max(120, shutil.get_terminal_size((120, 24)).columns)).print(table)
    if result.get("missing"):
        print(f"missing: {', '.join(result['missing'])}")
    print(f"{len(result.get('hits', []))} hits in {result.get('took_ms', 0):.1f} ms")


# -- ingest -------------------------------------------------------------------------------
def iter_source(path: Path) -> tuple[Iterator[dict], Path, int | None]:
    """Records from a folder of images or a JSONL/JSON catalogue; (records, base_dir, total)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

        def from_folder() -> Iterator[dict]:
            for f in files:
                rel = f.relative_to(path)
                yield {"_id": rel.with_suffix("").as_posix(), "_file": rel.as_posix(), "path": rel.as_posix()}
        return from_folder(), path, len(files)
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    if path.suffix.lower() == ".jsonl":
        total = sum(1 for line in path.open(encoding="utf-8") if line.strip())

        def from_jsonl() -> Iterator[dict]:
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield InvalidRecord(f"line {n} is not valid JSON: {exc.msg}")
        return from_jsonl(), path.parent, total
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON: {exc}") from None
        records = data.get("records") if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise UsageError(f"{path} must hold a list of records or {{\"records\": [...]}}")
        return iter(records), path.parent, len(records)
    raise UsageError(f"{path} is neither a folder nor a .jsonl/.json catalogue")


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.device == "cuda":  # a clear error now, not a torch assertion once the model loads
        from .models.efficientnet import check_device
        check_device("cuda")
    if args.device != "auto":
        os.environ["LOOKALIKE_DEVICE"] = args.device  # read when the encoder loads
    from .decode import CLI_DEFAULT_DECODE
    # Read by the Ingestor (lookalike/ingest.py) while this command runs; bulk ingest decodes in processes.
    ingest_env = {"LOOKALIKE_DECODE": args.decode or os.environ.get("LOOKALIKE_DECODE") or CLI_DEFAULT_DECODE,
                  "LOOKALIKE_RESIZE": args.resize or os.environ.get("LOOKALIKE_RESIZE")}
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")

    records, base_dir, total = iter_source(Path(args.path))
    if args.allow_outside:  # `_file`s as given, relative ones still against the catalogue's folder
        records, base_dir = files_anywhere(records, base_dir), None
    settings = {"model": args.model, "group_field": args.group_field,
                "text_fields": args.text_fields.split(",") if args.text_fields else None}
    with _db(args) as db, _scoped_env(ingest_env):
        col, _ = db.ensure_collection(args.collection, **settings)
        counts: dict[str, int] = {}
        results: list[dict] = []
        errors: list[dict] = []
        start = time.perf_counter()
        bar = tqdm(total=total, unit="img", desc=f"ingest {args.collection}", file=sys.stderr,
                   disable=args.quiet or not sys.stderr.isatty() and args.json, dynamic_ncols=True)

        def on_batch(batch: list[dict]) -> None:
            for r in batch:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
                if r["status"] == "error":
                    errors.append(r)
                    if not args.json:
                        bar.write(f"error: {r['_id']}: {r['error']}", file=sys.stderr)
            bar.update(len(batch))
            bar.set_postfix({k: v for k, v in counts.items()}, refresh=False)

        if args.ray is not None:  # distributed: decode and embed in Ray actors, write here in batches
            from .distributed import ray_ingest
            ray_results = ray_ingest(col, records, base_dir=base_dir, address=args.ray, workers=args.workers,
                                     batch_size=min(args.batch_size, 16), on_batch=on_batch)
            results.extend(ray_results if args.json else [])
        else:
            for r in col.upsert_iter(records, base_dir=base_dir, batch_size=args.batch_size, on_batch=on_batch):
                if args.json:
                    results.append(r)
        bar.close()
        elapsed = time.perf_counter() - start
    if args.json:
        _print_json({"results": results})
    else:
        done = sum(counts.values())
        print(f"{done} records in {elapsed:.1f} s ({done / elapsed if elapsed else 0:.1f}/s): "
              + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("inserted", "updated", "unchanged", "error")))
    return 1 if errors else 0


# -- search and friends -------------------------------------------------------------------
def _query_from_args(args: argparse.Namespace) -> dict:
    given = [(k, v) for k, v in (("id", args.id), ("file", args.image), ("url", args.url), ("text", args.text),
                                 ("color", args.color)) if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --id, --image, --url, --text, --color")
    return dict(given)


def cmd_search(args: argparse.Namespace) -> int:
    query = _query_from_args(args)
    with _db(args) as db:
        result = db.collection(args.collection).search(
            query, k=args.k, offset=args.offset, filter=_parse_json_arg("--filter", args.filter),
            group_by=args.group_by, negative=[{"id": n} for n in args.negative_id] or None,
            boost=_parse_json_arg("--boost", args.boost),
            fields=args.fields.split(",") if args.fields else None, text=getattr(args, "with_text", None),
            hybrid=getattr(args, "hybrid", None))
    _print_json(result) if args.json else _print_hits(result)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    with _db(args) as db:
        result = db.collection(args.collection).recommend(args.id, k=args.k,
                                                          filter=_parse_json_arg("--filter", args.filter))
    _print_json(result) if args.json else _print_hits(result)
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    with _db(args) as db:
        result = db.collection(args.collection).rerank(args.ids, {"id": args.id})
    _print_json(result) if args.json else _print_hits(result)
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    with _db(args) as db:
        result = db.collection(args.collection).match({"file": args.image}, threshold=args.threshold)
    _print_json(result) if args.json else _print_hits(result)
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    with _db(args) as db:
        result = db.collection(args.collection).duplicates(threshold=args.threshold)
    if args.json:
        _print_json(result)
    else:
        for cluster in result["clusters"]:
            print("  ".join(cluster))
        print(f"{len(result['clusters'])} clusters")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _db(args) as db:
        _print_json(db.collection(args.collection).get(args.id))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _db(args) as db:
        n = db.collection(args.collection).delete(args.ids)
    _print_json({"deleted": n}) if args.json else print(f"deleted {n}")
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    with _db(args) as db:
        cols = db.collections()
    if args.json:
        _print_json({"collections": cols})
    else:
        for c in cols:
            print(f"{c['name']:<24} {c['count']:>10}  {c['model']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_file
    with _db(args) as db:
        result = evaluate_file(db.collection(args.collection), Path(args.truth), k=args.k)
    if args.json:
        _print_json(result)
    else:
        for key, value in result["metrics"].items():
            print(f"{key:<12} {value:.4f}")
        print(f"{result['queries']} queries")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from .backup import backup
    with _db(args) as db:
        result = backup(db, args.collection, args.file)
    _print_json(result) if args.json else print(
        f"backed up {result['records']} records of {result['collection']} to {args.file} ({result['bytes']} bytes)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from .backup import restore
    with _db(args) as db:
        result = restore(db, args.file, name=args.as_name, replace=args.replace)
    _print_json(result) if args.json else print(f"restored {result['records']} records into {result['collection']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve
    serve(data=args.data, host=args.host, port=args.port, admin_key=args.admin_key, search_key=args.search_key,
          cors_origins=args.cors_origin, max_body_bytes=args.max_body_bytes, max_pixels=args.max_pixels,
          log_level=args.log_level, access_log=not args.no_access_log, url_deadline=args.url_deadline,
          max_url_fetches=args.max_url_fetches, auth_failures=args.auth_failures, auth_window=args.auth_window,
          header_timeout=args.header_timeout, max_connections=args.max_connections,
          models_dir=args.models)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
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
    col.add_argument("-c", "--collection", required=True)

    p = argparse.ArgumentParser(prog="lookalike", description="Visual similarity search: show me more like this.")
    p.add_argument("--version", action="version", version=f"lookalike {__import__('lookalike').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", parents=[common, col], help="add a folder of images or a JSONL catalogue")
    s.add_argument("path")
    s.add_argument("--model")
    s.add_argument("--group-field")
    s.add_argument("--text-fields")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (auto: CUDA when available)")
    s.add_argument("--decode", choices=("threads", "processes"),
                   help="decode images in worker processes (default for this command, measured faster:"
                        " bench/README.md) or in threads (the Python API's and server's default)")
    s.add_argument("--resize", choices=("auto", "host", "device"),
                   help="resize for the model with Pillow (host) or on the model's device (auto: device on CUDA)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="decode and embed on Ray Data actors: a local Ray instance, or the cluster at ADDRESS")
    s.add_argument("--workers", type=int, help="with --ray: number of encoder actors (default: one per CPU or GPU)")
    s.add_argument("--allow-outside", action="store_true",
                   help="read a catalogue's '_file's outside its folder too (absolute, '../'); refused by default")
    s.set_defaults(func=cmd_ingest)

    def query_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--id")
        s.add_argument("--image")
        s.add_argument("--url")
        s.add_argument("--text", help="search by text (metadata and labels; pixels with a CLIP-like model)")
        s.add_argument("--with-text", help="text mixed into an image query's ranking (needs text_fields)")
        s.add_argument("--hybrid", type=float, help="0..1: weight of text similarity against looks (default 0.5)")
        s.add_argument("--color")
        s.add_argument("-k", type=int, default=10)
        s.add_argument("--offset", type=int, default=0)
        s.add_argument("--filter")
        s.add_argument("--group-by")
        s.add_argument("--negative-id", action="append", default=[])
        s.add_argument("--boost", help='JSON list of {"filter": ..., "weight": ...}')
        s.add_argument("--fields", help="comma-separated fields to return")

    s = sub.add_parser("search", parents=[common, col], help="find similar records")
    query_args(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("recommend", parents=[common, col], help="similar items, excluding the anchor's group")
    s.add_argument("--id", required=True)
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--filter")
    s.set_defaults(func=cmd_recommend)

    s = sub.add_parser("rerank", parents=[common, col], help="sort ids by similarity to --id")
    s.add_argument("--id", required=True)
    s.add_argument("ids", nargs="+")
    s.set_defaults(func=cmd_rerank)

    s = sub.add_parser("match", parents=[common, col], help="near-duplicates of an image")
    s.add_argument("--image", required=True)
    s.add_argument("--threshold", type=float)
    s.set_defaults(func=cmd_match)

    s = sub.add_parser("duplicates", parents=[common, col], help="clusters of copies in a collection")
    s.add_argument("--threshold", type=float)
    s.set_defaults(func=cmd_duplicates)

    s = sub.add_parser("get", parents=[common, col], help="print a stored record")
    s.add_argument("id")
    s.set_defaults(func=cmd_get)

    s = sub.add_parser("delete", parents=[common, col], help="delete records by id")
    s.add_argument("ids", nargs="+")
    s.set_defaults(func=cmd_delete)

    s = sub.add_parser("collections", parents=[common], help="list collections")
    s.set_defaults(func=cmd_collections)

    s = sub.add_parser("eval", parents=[common, col], help="score search quality against a golden set")
    s.add_argument("--truth", required=True)
    s.add_argument("-k", type=int, default=10)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("backup", parents=[common, col], help="write a collection to a backup file")
    s.add_argument("file")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("restore", parents=[common], help="recreate a collection from a backup file")
    s.add_argument("file")
    s.add_argument("--as", dest="as_name", help="restore under another collection name")
    s.add_argument("--replace", action="store_true", help="replace an existing collection of that name")
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser("serve", parents=[common], help="run the HTTP API and web page")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--admin-key", default=os.environ.get("LOOKALIKE_ADMIN_KEY"))
    s.add_argument("--search-key", default=os.environ.get("LOOKALIKE_SEARCH_KEY"))
    s.add_argument("--cors-origin", action="append", default=[],
                   help="allow browser calls from this origin (repeatable; '*' for any); CORS is off without it")
    s.add_argument("--max-body-bytes", type=int, default=32 * 1024 * 1024,
                   help="largest request body (413 beyond; NDJSON streams: largest line)")
    s.add_argument("--max-pixels", type=int, default=None,
                   help="largest image, width x height (413 beyond; default $LOOKALIKE_MAX_PIXELS or 64000000)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
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
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-serve", action="store_true", help="stop after the search")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"lookalike: {exc}", file=sys.stderr)
        return 2
    except LookalikeError as exc:
        if getattr(args, "json", False):
            _print_json(exc.to_dict())
        print(f"lookalike: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
