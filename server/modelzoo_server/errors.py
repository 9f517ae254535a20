"""Typed errors of a request; one middleware (app.py) maps them to HTTP status codes and
JSON bodies, and grpc_server.py to gRPC status codes. A model that cannot be served at all
raises modelzoo_models.contract.Unservable (RefusedGraph, RecordError, ...) before the
server starts."""

from __future__ import annotations

from typing import ClassVar


class ModelZooError(Exception):
    """Base class: `status` is the HTTP status, `str(self)` the reason shown to the client."""

    status: ClassVar[int] = 500
    headers: dict[str, str] = {}  # noqa: RUF012  (replaced per instance, never mutated)


class InvalidInput(ModelZooError):
    status = 400


class Unauthorized(ModelZooError):
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="modelzoo"'}  # noqa: RUF012


class ModelNotFound(ModelZooError):
    status = 404


class PayloadTooLarge(ModelZooError):
    status = 413


class UnsupportedMediaType(ModelZooError):
    status = 415


class NotSupported(ModelZooError):
    """A part of a protocol this server does not offer (gRPC: UNIMPLEMENTED)."""

    status = 501


class ServerOverloaded(ModelZooError):
    status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class ModelNotReady(ModelZooError):
    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}
