"""lookalike: self-hosted visual similarity search ("show me more like this")."""
from .collection import Collection, Database, connect
from .errors import (BadRequest, Conflict, Forbidden, LookalikeError, NotAnImage, NotFound, NotImplementedYet,
                     TooLarge, Unauthorized)

from .version import __version__


def __getattr__(name: str):
    if name == "Client":  # imported lazily: the HTTP client needs httpx only when used
        from .client import Client
        return Client
    raise AttributeError(name)


__all__ = ["BadRequest", "Client", "Collection", "Conflict", "Database", "Forbidden", "LookalikeError", "NotAnImage",
           "NotFound", "NotImplementedYet", "TooLarge", "Unauthorized", "__version__", "connect"]
