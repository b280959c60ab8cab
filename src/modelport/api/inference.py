"""The inference hot path: ``POST /v2/models/{m}[/versions/{v}]/infer`` on raw ASGI.

``InferenceFastPath`` wraps the FastAPI app and answers inference requests itself — raw body bytes,
orjson, no framework middleware, routing or dependency solving per request — and hands every other
request to FastAPI. The FastAPI routes for the same paths call the same ``InferenceHandler`` (they
document the API and serve when the fast path is not installed).

Every inference answer, error or not, carries ``X-Request-Id``: the client's own when it is a plain
token (``request_id``), else a new one; observers get the same id in ``InferenceEvent.request_id``.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from modelport.api.auth import Authenticator
from modelport.api.errors import JSON, ErrorEncoder, Headers, HTTPError, status_of
from modelport.api.headers import declared_over, length_header
from modelport.api.surfaces import OPENAI, V2
from modelport.errors import InvalidInput, ModelportError, NotFound, PayloadTooLarge
from modelport.limits import MAX_VERSION
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
INFER_PATH = re.compile(rf"^{re.escape(V2.prefix)}/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_VERSION_DIGITS = len(str(MAX_VERSION))
# the OpenAI surface's inference paths (answered by FastAPI; here only for the fast path's own errors)
OPENAI_INFER_PATHS = frozenset(
    f"{OPENAI.prefix}{p}" for p in ("/completions", "/chat/completions", "/embeddings")
)
REQUEST_ID = "x-request-id"
_REQUEST_ID = REQUEST_ID.encode()
# a client's id is echoed only when it is a plain token (UUIDs, trace ids): it can inject nothing anywhere
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id(given: str | None) -> str:
    """The id of one inference request: the client's ``X-Request-Id`` when valid (1 to 128 characters of
    ``A-Z a-z 0-9 . _ : -``, the first alphanumeric), else a new one (32 hex digits: 16 random per
    process, then a counter)."""
    if given and _CLIENT_ID.fullmatch(given):
        return given
    return f"{_ids.prefix}{next(_ids.counter):016x}"


class _Ids:
    """Generated request ids: a random prefix per process and a counter (unique without a system call
    per request, which would hand the GIL to other threads on the hot path)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reset)


def version_ref(model: str, ref: str | None) -> str | None:
    """A path's ``{version}`` (a number or an alias name), refused as unknown when it is a number no
    registry can hold: beyond ``MAX_VERSION``, or digits other than ASCII ones."""
    if ref and ref.isdigit() and (not ref.isascii() or len(ref.lstrip("0")) > _VERSION_DIGITS):
        shown = ref if len(ref) <= 32 else f"{ref[:32]}..."
        raise NotFound(f"version {shown} of model {model!r} not found")
    return ref


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
    if declared_over(headers.get("content-length"), limit):
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
        rid = request_id(headers.get(REQUEST_ID))
        prediction: Prediction | None = None
        error: str | None = None
        failed: int | None = None  # the version that refused or failed the request
        try:
            request, prediction = await self.predict(model, version, await read_body(), headers)
            out_headers, payload = encode(model, request, prediction)
            status = 200
        except ModelportError as exc:
            status, out_headers, payload = V2.errors.answer(status_of(exc), exc)
            error, failed = exc.code, exc.version
        except Exception:
            log.exception("unhandled error on inference for %s", model)
            status, out_headers, payload = V2.errors.answer(500, ModelportError("internal server error"))
            error = "internal"
        out_headers.append((_REQUEST_ID, rid.encode()))
        self.dataplane.observers.notify(
            InferenceEvent(
                model=model if status != 404 else "",  # unknown names must not grow label sets
                version=prediction.version.version if prediction else failed,
                surface="v2",
                status=status,
                duration=time.perf_counter() - started,
                error=error,
                inputs=prediction.inputs if prediction else {},
                outputs=prediction.outputs if prediction else {},
                request_id=rid,
            )
        )
        return status, out_headers, payload

    async def predict(
        self, model: str, version: str | None, body: bytes, headers: Mapping[str, str]
    ) -> tuple[InferenceRequest, Prediction]:
        """Authorise, decode and run one request; raises for error answers."""
        (await self.auth.authorize(headers.get("authorization"), Scope.INFER)).require_model(model)
        body = decompress(body, headers.get("content-encoding"), self.max_body)
        header = length_header(headers.get(HEADER_LENGTH), "Inference-Header-Content-Length")
        decoded = decode_request(body, header, self.max_elements)
        wanted = [o.name for o in decoded.outputs] if decoded.outputs else None
        prediction = await self.dataplane.predict(
            model,
            version_ref(model, version),
            decoded.inputs,
            decoded.datatypes,
            wanted,
            _timeout_seconds(decoded.parameters),
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


class InferenceFastPath:
    """ASGI middleware in front of the FastAPI app; see the module docstring.

    ``errors_for`` picks the error shape of a request's surface (``RootApp.errors_for``: the same
    mounts that route it), for the answers given here before any framework code runs."""

    def __init__(
        self,
        app: Any,
        handler: InferenceHandler,
        max_header_bytes: int,
        errors_for: Callable[[dict[str, Any]], ErrorEncoder],
    ) -> None:
        self.app = app
        self.handler = handler
        self.max_header_bytes = max_header_bytes
        self.errors_for = errors_for

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
        error = HTTPError(431, f"request headers exceed {self.max_header_bytes} bytes")
        status, headers, payload = self.errors_for(scope).answer(431, error)
        path = scope["path"]
        if INFER_PATH.match(path) or path in OPENAI_INFER_PATHS:  # an inference answer: it has its id
            given = next((v for k, v in scope["headers"] if k == _REQUEST_ID), b"")
            headers.append((_REQUEST_ID, request_id(given.decode("latin-1")).encode()))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
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
