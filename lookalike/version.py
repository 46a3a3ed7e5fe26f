"""The package version (read by the server's OpenAPI document and `lookalike --version`)."""
__version__ = "0.1.0"
