"""The `lookalike` command line (`main`, the console script) and its parser."""
from .main import main
from .parser import build_parser

__all__ = ["build_parser", "main"]
