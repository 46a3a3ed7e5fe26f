"""The `lookalike` command line: the contract's operations, for people and for scripts.

`--json` prints exactly the HTTP response body; without it output is for people (tables on
stdout, progress on stderr). Exit status: 0 success, 1 some records failed, 2 bad usage or
input, 130 interrupted, 141 output pipe closed early (`... | head`). See docs/api.md.
"""
from __future__ import annotations

import os
import sys

from ..errors import LookalikeError
from ..ingest.catalog import CatalogError
from .checks import UsageError
from .output import print_json
from .parser import build_parser


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
    except (UsageError, CatalogError) as exc:  # usage, or a path that is no catalogue
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
