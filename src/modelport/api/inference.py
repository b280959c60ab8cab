"""The inference hot path: ``POST /v2/models/{m}[/versions/{v}]/infer`` on raw ASGI.

``InferenceFastPath`` wraps the FastAPI app and answers inference requests itself — raw body bytes,
orjson, no framework middleware, routing or dependency solving per request — and hands every other
request to FastAPI. The FastAPI routes for the same paths call the same ``InferenceHandler`` (they
document the API and serve when the fast path is not installed).
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from modelport.api.auth import Authenticator
from modelport.api.errors import STATUS, retry_after
from modelport.errors import InvalidInput, ModelportError, PayloadTooLarge
from modelport.protocol.v2 import (
    HEADER_LENGTH,
    MAX_ELEMENTS,
    InferenceRequest,
    decode_request,
    encode_response,
)
from modelport.registry.records import REQUEST_SOURCE
from modelport.security.keys import Scope
from modelport.serving.dataplane import DataPlane, Prediction
from modelport.serving.observers import InferenceEvent

log = logging.getLogger("modelport.api")
INFER_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
Headers = list[tuple[bytes, bytes]]
JSON = ((b"content-type", b"application/json"),)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Requests compressed by the client (tritonclient's request_compression_algorithm)."""
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidInput(f"body is not valid {encoding}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds {limit} bytes")
    return out


async def read_body(headers: Mapping[str, str], receive: Any, limit: int) -> bytes:
    """The whole request body from ASGI ``receive``, refusing more than ``limit`` bytes."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _timeout_seconds(parameters: dict[str, Any]) -> float | None:
    """Triton clients send ``timeout`` in microseconds."""
    value = parameters.get("timeout")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value) / 1e6
    return None


class InferenceHandler:
    def __init__(
        self,
        dataplane: DataPlane,
        auth: Authenticator,
        max_body: int,
        max_elements: int = MAX_ELEMENTS,
    ) -> None:
        self.max_elements = max_elements
        self.dataplane = dataplane
        self.auth = auth
        self.max_body = max_body

    async def respond(
        self,
        model: str,
        version: str | None,
        read_body: Callable[[], Awaitable[bytes]],
        headers: Mapping[str, str],
    ) -> tuple[int, Headers, bytes]:
        """Answer one inference request, errors included, and report it to the data plane's observers."""
        started = time.perf_counter()
        prediction: Prediction | None = None
        error: str | None = None
        try:
            request, prediction = await self.predict(model, version, await read_body(), headers)
            out_headers, payload = encode(model, request, prediction)
            status = 200
        except ModelportError as exc:
            status, out_headers, payload = v2_error(exc)
            error = exc.code
        except Exception:
            log.exception("unhandled error on inference for %s", model)
            status, out_headers, payload = 500, list(JSON), b'{"error":"internal server error"}'
            error = "internal"
        self.dataplane.observers.notify(
            InferenceEvent(
                model=model if status != 404 else "",  # unknown names must not grow label sets
                version=prediction.version.version if prediction else None,
                surface="v2",
                status=status,
                duration=time.perf_counter() - started,
                error=error,
                inputs=prediction.inputs if prediction else {},
                outputs=prediction.outputs if prediction else {},
            )
        )
        return status, out_headers, payload

    async def predict(
        self, model: str, version: str | None, body: bytes, headers: Mapping[str, str]
    ) -> tuple[InferenceRequest, Prediction]:
        """Authorise, decode and run one request; raises for error answers."""
        (await self.auth.authorize(headers.get("authorization"), Scope.INFER)).require_model(model)
        body = decompress(body, headers.get("content-encoding"), self.max_body)
        header = headers.get(HEADER_LENGTH)
        if header is not None and not header.isdigit():
            raise InvalidInput("Inference-Header-Content-Length must be a number")
        decoded = decode_request(body, int(header) if header is not None else None, self.max_elements)
        wanted = [o.name for o in decoded.outputs] if decoded.outputs else None
        prediction = await self.dataplane.predict(
            model, version, decoded.inputs, decoded.datatypes, wanted, _timeout_seconds(decoded.parameters)
        )
        return decoded, prediction


def encode(model: str, request: InferenceRequest, prediction: Prediction) -> tuple[Headers, bytes]:
    payload, json_size = encode_response(
        model_name=model,
        model_version=prediction.version.version,
        request=request,
        outputs=prediction.outputs,
    )
    if json_size is None:
        return list(JSON), payload
    binary = [
        (b"content-type", b"application/octet-stream"),
        (b"inference-header-content-length", str(json_size).encode()),
    ]
    return binary, payload


def v2_error(exc: ModelportError) -> tuple[int, Headers, bytes]:
    status = STATUS.get(exc.code, 500)
    headers = list(JSON)
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    retry = retry_after(exc)
    if retry is not None:
        headers.append((b"retry-after", retry.encode()))
    return status, headers, orjson.dumps({"error": exc.message})


class InferenceFastPath:
    """ASGI middleware in front of the FastAPI app; see the module docstring."""

    def __init__(self, app: Any, handler: InferenceHandler, max_header_bytes: int = 16 * 1024) -> None:
        self.app = app
        self.handler = handler
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and sum(len(k) + len(v) for k, v in scope["headers"]) > self.max_header_bytes
        ):
            await self._too_large_headers(scope, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.match(scope["path"])
            if match is not None:
                await self._infer(match.group(1), match.group(2), scope, receive, send)
                return
        if scope["type"] == "http":  # audit events of this request name its client
            client = scope.get("client")
            REQUEST_SOURCE.set(f"{client[0]}:{client[1]}" if client else None)
        await self.app(scope, receive, send)

    async def _too_large_headers(self, scope: dict[str, Any], send: Any) -> None:
        message = f"request headers exceed {self.max_header_bytes} bytes"
        error: object = (
            message
            if scope["path"].startswith("/v2")
            else {
                "code": "headers_too_large",
                "message": message,
            }
        )
        payload = orjson.dumps({"error": error})
        headers = [*JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 431, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _infer(
        self, model: str, version: str | None, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, out_headers, payload = await self.handler.respond(
            model, version, lambda: read_body(headers, receive, self.handler.max_body), headers
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*out_headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
