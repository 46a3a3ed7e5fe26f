"""lookalike: self-hosted visual similarity search ("show me more like this")."""
import os

# OpenMP threads (FAISS's and torch's libgomp) that spin while idle take the cores the other
# stages of a load need: a bulk load and an image ingest each overlap Python work with those
# threads. Sleeping at once cut a 100k-vector load's CPU by ~30 % and raised image ingest from
# ~55 to ~85 images/s on 2 cores, with search latency unchanged (docs/index.md, "OpenMP").
# Read when libgomp loads, so it is set before anything imports FAISS or torch; a value the
# user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .collection import Collection, Database, connect  # noqa: E402
from .errors import (BadRequest, Conflict, Forbidden, LookalikeError, NotAnImage, NotFound, NotImplementedYet,  # noqa: E402
                     TooLarge, Unauthorized)

from .version import __version__  # noqa: E402


def __getattr__(name: str):
    if name == "Client":  # imported lazily: the HTTP client needs httpx only when used
        from .client import Client
        return Client
    raise AttributeError(name)


__all__ = ["BadRequest", "Client", "Collection", "Conflict", "Database", "Forbidden", "LookalikeError", "NotAnImage",
           "NotFound", "NotImplementedYet", "TooLarge", "Unauthorized", "__version__", "connect"]
