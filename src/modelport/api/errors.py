"""Errors on the wire: one mapping from error codes to HTTP statuses, and one encoder per surface.

Every error answer goes through an ``ErrorEncoder``: domain errors, FastAPI's validation errors,
Starlette's own statuses (no route, wrong method) and the raw-ASGI answers of the inference fast path.
The status comes from the code (``STATUS``, the only such table); the surface chooses the JSON body; the
headers (``WWW-Authenticate``, ``Retry-After``) are the same on every surface.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelport.errors import InvalidInput, ModelportError

log = logging.getLogger("modelport.api")
Headers = list[tuple[bytes, bytes]]
JSON: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)

STATUS = {
    "invalid_input": 400,
    "invalid_name": 400,
    "unsupported_format": 400,
    "unsafe_format": 400,
    "unsafe_archive": 400,
    "invalid_spec": 422,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "storage_full": 507,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_ready": 503,
    "overloaded": 503,
    "rate_limited": 429,
    "timeout": 504,
    "load_error": 503,
    "out_of_memory": 503,
    "integrity_error": 503,
    "decryption_failed": 503,
    "inference_failed": 500,
    "config_error": 500,
    "internal": 500,
}
# codes of the statuses the HTTP layer answers by itself (no such route, wrong method, ...)
HTTP_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_spec",
    431: "headers_too_large",
}


class HTTPError(ModelportError):
    """A status the HTTP layer answers by itself, carried like a domain error so that it goes through the
    same encoders. Not part of the domain tree in ``modelport.errors``: no domain code raises it."""

    code = "error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = HTTP_CODES.get(status, "error")


def status_of(error: ModelportError) -> int:
    if isinstance(error, HTTPError):
        return error.status
    return STATUS.get(error.code, 500)


def retry_after(exc: ModelportError) -> str | None:
    return None if exc.retry_after is None else str(max(1, math.ceil(exc.retry_after)))


# ---- the JSON bodies of each surface ----------------------------------------------------------------
ErrorBody = Callable[[int, ModelportError], object]


def v2_body(status: int, error: ModelportError) -> object:
    """Open Inference Protocol v2 (as Triton): ``{"error": "<message>"}``."""
    return {"error": error.message}


def management_body(status: int, error: ModelportError) -> object:
    """The management API: ``{"error": {"code", "message", "field"?}}``."""
    detail = {"code": error.code, "message": error.message}
    if error.field:
        detail["field"] = error.field
    return {"error": detail}


# OpenAI's (type, code) for our codes; other codes keep their own, with the type of their status
OPENAI_ERRORS = {
    "unauthenticated": ("invalid_request_error", "invalid_api_key"),
    "forbidden": ("invalid_request_error", "permission_denied"),
    "not_found": ("invalid_request_error", "model_not_found"),
    "invalid_input": ("invalid_request_error", "invalid_value"),
    "invalid_name": ("invalid_request_error", "invalid_value"),
    "rate_limited": ("requests", "rate_limit_exceeded"),
    "not_ready": ("server_error", "model_not_ready"),
}


def openai_body(status: int, error: ModelportError) -> object:
    """The OpenAI-compatible surface: ``{"error": {"message", "type", "param", "code"}}``, with OpenAI's
    names where it has one (``invalid_api_key``, ``model_not_found``, ``rate_limit_exceeded``)."""
    kind, code = OPENAI_ERRORS.get(error.code, ("", error.code))
    param = error.field
    if status == 404:  # no such route, or no such model (what the surface's requests name)
        code, param = ("unknown_url", None) if isinstance(error, HTTPError) else (code, param or "model")
    if not kind:
        kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": error.message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class ErrorEncoder:
    """(status, error) -> the answer of one surface: its JSON body, and the headers every surface sends."""

    body: ErrorBody

    def answer(self, status: int, error: ModelportError) -> tuple[int, Headers, bytes]:
        """For raw ASGI (the inference fast path): status, headers and body bytes."""
        headers = list(JSON)
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        retry = retry_after(error)
        if retry is not None:
            headers.append((b"retry-after", retry.encode()))
        return status, headers, orjson.dumps(self.body(status, error))

    def response(self, status: int, error: ModelportError) -> Response:
        status, headers, payload = self.answer(status, error)
        return Response(payload, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


def validation_error(exc: RequestValidationError) -> InvalidInput:
    """FastAPI's first validation error, in words, naming the field at fault (400, never 422)."""
    first = exc.errors()[0] if exc.errors() else {}
    kind = first.get("type")
    if kind == "json_invalid":  # loc is ("body", position)
        position = first.get("loc", ("body", "?"))[-1]
        detail = first.get("ctx", {}).get("error", "invalid JSON")
        return InvalidInput(f"malformed JSON body at byte {position}: {detail}")
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    where = ".".join(loc)
    if kind == "missing" and not where:
        return InvalidInput("this request needs a JSON body")
    message = "unknown field" if kind == "extra_forbidden" else first.get("msg", "invalid request")
    return InvalidInput(f"{where or 'request'}: {message}", field=where or None)


def install_error_handlers(app: FastAPI, errors: ErrorEncoder) -> None:
    """Every error ``app`` answers, in the shape of ``errors``: the one handler of a surface."""

    @app.exception_handler(ModelportError)
    async def _domain(request: Request, exc: ModelportError) -> Response:
        return errors.response(status_of(exc), exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return errors.response(400, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else HTTP_CODES.get(exc.status_code, "error")
        return errors.response(exc.status_code, HTTPError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Log the details for the operator; the caller gets no trace, path or secret.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return errors.response(500, ModelportError("internal server error"))
