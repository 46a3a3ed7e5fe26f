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


class BadRequest(LookalikeError):
    code, status = "bad_request", 400


class Unauthorized(LookalikeError):
    code, status = "unauthorized", 401


class Forbidden(LookalikeError):
    code, status = "forbidden", 403


class NotFound(LookalikeError):
    code, status = "not_found", 404


class Conflict(LookalikeError):
    code, status = "conflict", 409


class TooLarge(LookalikeError):
    code, status = "too_large", 413


class NotAnImage(LookalikeError):
    code, status = "not_an_image", 415


class ValidationFailed(LookalikeError):
    code, status = "validation_error", 422


class NotImplementedYet(LookalikeError):
    code, status = "not_implemented", 501


ERRORS_BY_CODE: dict[str, type[LookalikeError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge,
                NotAnImage, ValidationFailed, NotImplementedYet, LookalikeError)
}
