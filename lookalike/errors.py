"""Errors with a stable machine-readable code, mapped one to one onto HTTP statuses.

Every layer (store, query, encoder, CLI, server) raises these, so the same problem
reads the same in Python, on the command line and over HTTP:
`{"error": {"code": ..., "message": ...}}`.
"""
from __future__ import annotations


class LookalikeError(Exception):
    """Base class: `code` is the contract's error code, `status` its HTTP status."""

    code = "internal"
    status = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def _kind(name: str, code: str, status: int) -> type[LookalikeError]:
    """A LookalikeError subclass for one code and status (a module-level class: it pickles)."""
    return type(name, (LookalikeError,), {"code": code, "status": status, "__module__": __name__,
                                          "__doc__": f"`{code}`: HTTP {status}."})


#: Each error kind: class name, the contract's code, HTTP status.
_KINDS = (("BadRequest", "bad_request", 400), ("Unauthorized", "unauthorized", 401), ("Forbidden", "forbidden", 403),
          ("NotFound", "not_found", 404), ("Conflict", "conflict", 409), ("TooLarge", "too_large", 413),
          ("NotAnImage", "not_an_image", 415), ("ValidationFailed", "validation_error", 422),
          ("NotImplementedYet", "not_implemented", 501))
(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, NotAnImage, ValidationFailed,
 NotImplementedYet) = (_kind(*kind) for kind in _KINDS)

ERRORS_BY_CODE: dict[str, type[LookalikeError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge,
                NotAnImage, ValidationFailed, NotImplementedYet, LookalikeError)
}
