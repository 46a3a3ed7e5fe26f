"""`lookalike demo`: build the sample collection, show a search, then serve it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..collection import connect
from ..ingest.catalog import iter_source
from ..sample import make_catalog
from .output import print_hits

COLLECTION = "sample"


def run_demo(args: argparse.Namespace) -> int:
    """Generate the sample images, ingest them, print a search, serve if possible."""
    data = Path(args.data)
    catalog = data / "sample-catalog" / "catalog.jsonl"
    if not catalog.exists():
        print(f"drawing the sample catalogue into {catalog.parent} ...", file=sys.stderr)
        make_catalog(catalog.parent)
    with connect(data) as db:
        col, _ = db.ensure_collection(COLLECTION, group_field="product_id", text_fields=["title", "tags"])
        records, base_dir, _ = iter_source(catalog)
        results = col.upsert(records, base_dir=base_dir)
        counts = {s: sum(r["status"] == s for r in results) for s in ("inserted", "updated", "unchanged", "error")}
        print(f"ingested {len(results)} sample records: {counts}")
        anchor = "stripes-square-0-red"
        print(f"\nlookalike search -c {COLLECTION} --id {anchor}  (one hit per product_id)")
        print_hits(col.search({"id": anchor}, k=8))
        print("\n... only items under 50 on sale or not:  --filter '{\"price\": {\"$lt\": 50}}'")
        print_hits(col.search({"id": anchor}, k=5, filter={"price": {"$lt": 50}}, fields=["title", "price"]))
    if getattr(args, "no_serve", False):
        return 0
    try:
        from ..server import serve  # FastAPI and uvicorn: loaded only to serve
    except ImportError:
        return 0
    print(f"\nserving http://{args.host}:{args.port}/ (Ctrl+C to stop)", file=sys.stderr)
    serve(data=str(data), host=args.host, port=args.port, admin_key=None, search_key=None)
    return 0
