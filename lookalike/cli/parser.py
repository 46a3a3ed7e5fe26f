"""The `lookalike` argument parser: every subcommand, its options and its `cmd_*` function."""
from __future__ import annotations

import argparse
import os

from ..version import __version__
from . import commands as c


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
    p.add_argument("--version", action="version", version=f"lookalike {__version__}")
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
    s.set_defaults(func=c.cmd_ingest)

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
    s.set_defaults(func=c.cmd_search)

    s = sub.add_parser("recommend", parents=[common, col], help="similar items, excluding the anchor's group")
    s.add_argument("--id", required=True, help="the anchor record")
    s.add_argument("-k", type=int, default=10, help="how many hits, 1..1000 (default 10)")
    s.add_argument("--offset", type=int, default=0, help="hits to skip, for paging")
    s.add_argument("--filter", help="JSON filter, as in search")
    s.add_argument("--fields", help="comma-separated fields to return (default all)")
    s.add_argument("--group-by", help="at most one hit per value of this field (default: the collection's "
                                      "group_field; false or none: no grouping)")
    s.set_defaults(func=c.cmd_recommend)

    s = sub.add_parser("rerank", parents=[common, col], help="sort ids by similarity to --id")
    s.add_argument("--id", required=True, help="the record to compare with")
    s.add_argument("ids", nargs="+", help="the ids to sort")
    s.add_argument("--fields", help="comma-separated fields to return (default all)")
    s.set_defaults(func=c.cmd_rerank)

    s = sub.add_parser("match", parents=[common, col], help="near-duplicates of an image or a record")
    s.add_argument("--image", help="a local image file")
    s.add_argument("--id", help="a stored record")
    s.add_argument("--threshold", type=float, help="similarity above which an item is a near-duplicate")
    s.add_argument("-k", type=int, default=10, help="at most this many matches (default 10)")
    s.add_argument("--fields", help="comma-separated fields to return (default all)")
    s.set_defaults(func=c.cmd_match)

    s = sub.add_parser("duplicates", parents=[common, col], help="clusters of copies in a collection")
    s.add_argument("--threshold", type=float, help="similarity above which two records are copies")
    s.set_defaults(func=c.cmd_duplicates)

    s = sub.add_parser("get", parents=[common, col], help="print a stored record")
    s.add_argument("id", help="the record's _id")
    s.set_defaults(func=c.cmd_get)

    s = sub.add_parser("delete", parents=[common, col], help="delete records by id")
    s.add_argument("ids", nargs="+", help="the _ids to delete")
    s.set_defaults(func=c.cmd_delete)

    s = sub.add_parser("drop", parents=[common, col], help="delete a whole collection")
    s.add_argument("--yes", action="store_true", help="confirm: the collection and its records are gone for good")
    s.set_defaults(func=c.cmd_drop)

    s = sub.add_parser("info", parents=[common, col], help="count, model, settings and sizes of a collection")
    s.set_defaults(func=c.cmd_info)

    s = sub.add_parser("compact", parents=[common, col],
                       help="reclaim the space of deleted and replaced records (embedded store)")
    s.set_defaults(func=c.cmd_compact)

    s = sub.add_parser("tune", parents=[common, col],
                       help="learn from a field's values which records are alike, and search in that space")
    s.add_argument("--field", default=None, help="the metadata field whose equal values mean 'alike' (dotted path)")
    s.add_argument("--groups", action="store_true", help="use the collection's group_field as the field")
    s.add_argument("--reset", action="store_true", help="go back to the model's own vectors")
    s.set_defaults(func=c.cmd_tune)

    s = sub.add_parser("export", parents=[common, col], help="write a collection's records as JSONL")
    s.add_argument("file", nargs="?", default="-", help="the JSONL file to write (default -: stdout)")
    s.add_argument("--no-vectors", action="store_true",
                   help="write each record's _file/_url instead of its _vector (re-ingest then re-encodes)")
    s.set_defaults(func=c.cmd_export)

    s = sub.add_parser("collections", parents=[common], help="list collections")
    s.set_defaults(func=c.cmd_collections)

    s = sub.add_parser("eval", parents=[common, col], help="score search quality against a golden set")
    s.add_argument("--truth", default=None, help="JSONL of {\"query\": ..., \"relevant\": [...]} lines")
    s.add_argument("--holdout", action="store_true",
                   help="instead of --truth: score with the field values the last tune held out")
    s.add_argument("-k", type=int, default=10, help="cut-off of the metrics (default 10)")
    s.set_defaults(func=c.cmd_eval)

    s = sub.add_parser("backup", parents=[common, col], help="write a collection to a backup file")
    s.add_argument("file", help="the backup file to write (gzip JSON lines)")
    s.set_defaults(func=c.cmd_backup)

    s = sub.add_parser("restore", parents=[common], help="recreate a collection from a backup file")
    s.add_argument("file", help="a file written by lookalike backup")
    s.add_argument("--as", dest="as_name", help="restore under another collection name")
    s.add_argument("--replace", action="store_true", help="replace an existing collection of that name")
    s.set_defaults(func=c.cmd_restore)

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
    s.set_defaults(func=c.cmd_serve)

    s = sub.add_parser("demo", parents=[common], help="build the sample collection, search it, serve it")
    s.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    s.add_argument("--no-serve", action="store_true", help="stop after the search")
    s.set_defaults(func=c.cmd_demo)
    return p


