"""`python -m lookalike.cli`: the `lookalike` command."""
import sys

from .main import main

sys.exit(main())
