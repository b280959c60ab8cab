"""One mapping from error codes to HTTP statuses, and the JSON shapes of each surface."""

from __future__ import annotations

import logging
import math

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from modelport.errors import ModelportError

log = logging.getLogger("modelport.api")

STATUS = {
    "invalid_input": 400,
    "invalid_name": 400,
    "unsupported_format": 400,
    "unsafe_format": 400,
    "unsafe_archive": 400,
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
    "integrity_error": 503,
    "decryption_failed": 503,
    "inference_failed": 500,
    "config_error": 500,
    "internal": 500,
}
_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def retry_after(exc: ModelportError) -> str | None:
    return None if exc.retry_after is None else str(max(1, math.ceil(exc.retry_after)))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    retry: str | None = None,
) -> Response:
    """V2 routes answer ``{"error": "..."}`` (as Triton); the rest ``{"error": {code, message}}``."""
    if request.url.path.startswith("/v2"):
        body: dict[str, object] = {"error": message}
    else:
        detail: dict[str, str] = {"code": code, "message": message}
        if field:
            detail["field"] = field
        body = {"error": detail}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry is not None:
        headers["Retry-After"] = retry
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ModelportError)
    async def _domain(request: Request, exc: ModelportError) -> Response:
        status = STATUS.get(exc.code, 500)
        return error_response(request, status, exc.code, exc.message, exc.field, retry_after(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        message = f"{'.'.join(loc) or 'request'}: {first.get('msg', 'invalid request')}"
        return error_response(request, 400, "invalid_input", message, ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        return error_response(request, exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Log the details for the operator; the caller gets no trace, path or secret.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal", "internal server error")
