"""The HTTP API server: `serve()` runs it, `create_app()` builds the FastAPI app for a Database."""
from .app import create_app
from .run import serve

__all__ = ["create_app", "serve"]
