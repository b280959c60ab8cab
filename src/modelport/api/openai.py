"""The OpenAI-compatible surface, ``/v1``: models, embeddings, chat and text completions (SSE streaming).

Thin: authorise (a Bearer key with the ``infer`` scope, within its model limits), decode
(``protocol/openai.py``), call the data plane, encode. Each answer names the version that served it
(``model`` is ``name:version``, and the ``X-Model-Version`` header). Each inference answer, an error too,
carries ``X-Request-Id`` (the client's own when valid, else a new one; see ``api.inference.request_id``).
Each request is reported to the data plane's observers when its answer ends, a streamed one when its
stream does.

A generation's token streams are cancelled however the request ends (answered, failed, timed out, the
client gone): that is what frees their sequences' slots at once. A generation is bounded by the data
plane's generation timeout from when its streams are queued (as on V2, loading the version is not counted):
504 before the answer starts, an error event after. A streamed answer starts with its first token, so an
error before it (a full queue, a timeout while waiting for a slot) is still an HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from modelport.api.auth import Authenticator
from modelport.api.errors import status_of
from modelport.api.inference import REQUEST_ID, read_body, request_id, version_ref
from modelport.api.openapi import REF, errors
from modelport.api.surfaces import OPENAI
from modelport.errors import ModelportError, NotFound, RequestTimeout
from modelport.protocol import openai as wire
from modelport.registry import ModelRecord, VersionRecord
from modelport.runtimes.base import Task, Tensors, text_array
from modelport.runtimes.streams import Delta, Sampling, TokenStream
from modelport.security.keys import Scope as KeyScope
from modelport.serving.dataplane import DataPlane
from modelport.serving.observers import InferenceEvent

log = logging.getLogger("modelport.api")
T = TypeVar("T")
READERS = (KeyScope.INFER, KeyScope.READ)
CLIENT_GONE = 499  # the status reported (never sent) for a request whose client went away
GENERATION_ERRORS = errors(400, 404, 413, 503, 504)


class ClientGone(Exception):
    """The client closed the connection before its answer."""


def _documented(request: type[Any] | None, answer: type[Any], stream: bool = False) -> dict[str, Any]:
    """``openapi_extra`` of a route: its JSON body (decoded by hand, not by FastAPI) and its answer."""
    content = {"application/json": {"schema": {"$ref": REF.format(model=answer.__name__)}}}
    if stream:
        content["text/event-stream"] = {
            "schema": {"type": "string", "description": "with stream=true: data: <chunk> events, then [DONE]"}
        }
    extra: dict[str, Any] = {"responses": {"200": {"description": "Successful Response", "content": content}}}
    if request is not None:
        schema = {"$ref": REF.format(model=request.__name__)}
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return extra


def build_app(dataplane: DataPlane, auth: Authenticator, max_body: int) -> FastAPI:
    app = OPENAI.app(tags=["OpenAI-compatible"])
    app.doc_models.extend(wire.DOCUMENTED)
    routes = OpenAIRoutes(dataplane, auth, max_body)

    @app.get("/models", openapi_extra=_documented(None, wire.ModelList))
    def list_models(request: Request) -> Response:
        who = auth.principal(request, *READERS)
        cards = [
            card
            for model in dataplane.registry.models.list_models()
            if who.can_access(model.name)
            and (card := routes.card(model, model.name, None, listing=True)) is not None
        ]
        return _json(wire.dumps({"object": "list", "data": cards}))

    @app.get("/models/{model}", openapi_extra=_documented(None, wire.ModelCard), responses=errors(503))
    def get_model(request: Request, model: str) -> Response:
        who = auth.principal(request, *READERS)
        name, ref = wire.split_model(model)
        who.require_model(name)
        card = routes.card(dataplane.registry.models.get_model(name), model, version_ref(name, ref))
        if card is None:
            raise NotFound(f"model {model!r} is not served here: it neither embeds nor generates text")
        return _json(wire.dumps(card))

    @app.post(
        "/embeddings",
        openapi_extra=_documented(wire.EmbeddingRequest, wire.EmbeddingList),
        responses=errors(400, 404, 413, 503, 504),
    )
    async def embeddings(request: Request) -> Response:
        return await routes.embeddings(request)

    @app.post(
        "/chat/completions",
        openapi_extra=_documented(wire.ChatRequest, wire.ChatCompletion, stream=True),
        responses=GENERATION_ERRORS,
    )
    async def chat_completions(request: Request) -> Response:
        return await routes.generate(request, chat=True)

    @app.post(
        "/completions",
        openapi_extra=_documented(wire.CompletionRequest, wire.Completion, stream=True),
        responses=GENERATION_ERRORS,
    )
    async def completions(request: Request) -> Response:
        return await routes.generate(request, chat=False)

    return app


def _json(payload: bytes, version: VersionRecord | None = None, rid: str | None = None) -> Response:
    headers = {"x-model-version": str(version.version)} if version is not None else {}
    if rid is not None:
        headers[REQUEST_ID] = rid
    return Response(payload, media_type="application/json", headers=headers)


@dataclass
class Call:
    """One request, as its observers hear of it."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    model: str = ""  # the model's name once the data plane is asked (unknown names stay "")
    version: int | None = None
    prompt_tokens: int = 0  # of an embeddings request (a generation's are its streams')
    streams: Sequence[TokenStream] = ()
    reported: bool = False  # observers hear of a request once, however it ends
    inputs: Tensors = field(default_factory=dict)  # an embeddings request's texts and vectors, named as
    outputs: Tensors = field(default_factory=dict)  # by V2, for the prediction log and drift

    @property
    def tokens_in(self) -> int:
        return self.prompt_tokens + sum(s.prompt_tokens for s in self.streams)


class OpenAIRoutes:
    def __init__(self, dataplane: DataPlane, auth: Authenticator, max_body: int) -> None:
        self.dataplane = dataplane
        self.auth = auth
        self.max_body = max_body

    # ---- models (blocking: registry reads) ----------------------------------------------------------
    def card(
        self, model: ModelRecord, shown: str, ref: str | None, listing: bool = False
    ) -> dict[str, Any] | None:
        """``model`` as ``/v1/models`` shows it, if the version ``ref`` serves embeds or generates text
        (in a listing, a model that cannot serve now is left out rather than an error)."""
        try:
            record = self.dataplane.ready_version(model.name, ref)
        except ModelportError:
            if not listing:
                raise
            return None
        tasks = self.dataplane.tasks(record)
        capabilities = [wire.EMBEDDINGS] if Task.EMBED in tasks else []
        capabilities += [wire.CHAT] if Task.STREAM in tasks else []
        if not capabilities:
            return None
        return {
            "id": shown,
            "object": "model",
            "created": int(model.created_at.timestamp()),
            "owned_by": "modelport",
            "version": record.version,
            "capabilities": capabilities,
        }

    # ---- inference --------------------------------------------------------------------------------
    async def _begin(
        self, request: Request, kind: type[wire.R], refused: wire.Refused
    ) -> tuple[wire.R, str, str | None]:
        """Authorise, then decode the body: the request, and the model's name and reference (its key
        allowing that model)."""
        who = await self.auth.authorize(request.headers.get("authorization"), KeyScope.INFER)
        body = wire.decode(kind, await read_body(request.headers, request.receive, self.max_body), refused)
        name, ref = wire.split_model(body.model)
        who.require_model(name)
        return body, name, version_ref(name, ref)

    async def embeddings(self, request: Request) -> Response:
        call = Call(request_id(request.headers.get(REQUEST_ID)))
        try:
            body, name, ref = await self._begin(request, wire.EmbeddingRequest, {})
            texts = wire.texts_to_embed(body)
            call.model = name
            result = await self.dataplane.embed(name, ref, texts)
            call.version, call.prompt_tokens = result.version.version, sum(result.tokens)
            call.outputs = {"embedding": result.vectors}
            if all(isinstance(t, str) for t in texts):  # token ids are logged as their vectors only
                call.inputs = {"text": text_array(cast(list[str], texts))}
            vectors = wire.fit_dimensions(result.vectors, body.dimensions, result.resizable)
            served = f"{name}:{result.version.version}"
            payload = wire.embedding_list(served, vectors, body.encoding_format, call.prompt_tokens)
        except Exception as exc:
            return self._failed(call, exc)
        self._report(call, 200)
        return _json(payload, result.version, call.request_id)

    async def generate(self, request: Request, chat: bool) -> Response:
        call = Call(request_id(request.headers.get(REQUEST_ID)))
        streams: list[TokenStream] = []
        events = Events(streams)
        streaming = False
        try:
            body: wire.ChatRequest | wire.CompletionRequest
            if chat:
                asked, name, ref = await self._begin(request, wire.ChatRequest, wire.CHAT_REFUSED)
                prompts: list[Any] = [wire.chat_messages(asked)]
                body, max_tokens = asked, asked.max_completion_tokens or asked.max_tokens
            else:
                text, name, ref = await self._begin(request, wire.CompletionRequest, wire.COMPLETION_REFUSED)
                body, prompts, max_tokens = text, wire.prompts(text), text.max_tokens
            sampling = wire.sampling(body, max_tokens)
            call.model, call.streams = name, streams
            version = await self._start(name, ref, prompts, sampling, streams)
            # as on V2, the timeout bounds the work (waiting for a slot, decoding), not a first load
            deadline = asyncio.get_running_loop().time() + self.dataplane.generation_timeout
            call.version = version.version
            options = body.stream_options
            answer = wire.Answer(chat, f"{name}:{version.version}", bool(options and options.include_usage))
            if body.stream:
                first = await _within(request, deadline, events.next())
                streaming = True  # from here the stream's own generator cancels and reports
                sse = self._sse(answer, events, first, call, deadline)

                def gone() -> None:  # when the body never started: the client left before it
                    events.close()
                    self._report(call, CLIENT_GONE, "client_disconnected")

                headers = {"x-model-version": str(version.version), REQUEST_ID: call.request_id}
                return EventStream(sse, headers, gone)
            texts = await _within(request, deadline, events.texts())
            used = wire.usage(call.tokens_in, _completion_tokens(streams))
            payload = answer.whole(texts, [s.finish_reason for s in streams], used)
        except Exception as exc:
            return self._failed(call, exc)
        finally:
            if not streaming:
                events.close()
        self._report(call, 200)
        return _json(payload, version, call.request_id)

    async def _start(
        self, name: str, ref: str | None, prompts: list[Any], sampling: Sampling, streams: list[TokenStream]
    ) -> VersionRecord:
        """One stream per prompt, all on the version the first one got (a traffic split picks once)."""
        version: VersionRecord | None = None
        for prompt in prompts:
            pinned = ref if version is None else str(version.version)
            generation = await self.dataplane.generate(name, pinned, prompt, sampling)
            streams.append(generation.stream)
            version = version or generation.version
        assert version is not None  # prompts are never empty
        return version

    async def _sse(
        self,
        answer: wire.Answer,
        events: Events,
        first: tuple[int, Delta] | None,
        call: Call,
        deadline: float,
    ) -> AsyncGenerator[bytes, None]:
        status: int = CLIENT_GONE  # unless it ends otherwise
        error: str | None = "client_disconnected"
        try:
            if answer.chat:
                for index in range(len(events.streams)):
                    yield answer.chunk(index)
            item = first
            while item is not None:
                index, delta = item
                if delta.text:
                    yield answer.chunk(index, delta.text)
                if delta.finish_reason is not None:
                    yield answer.chunk(index, finish_reason=delta.finish_reason)
                async with _bounded(deadline):
                    item = await events.next()
            if answer.include_usage:
                yield answer.usage_chunk(wire.usage(call.tokens_in, _completion_tokens(events.streams)))
            yield wire.DONE
            status, error = 200, None
        except Exception as exc:
            failure = _as_error(exc)
            status, error = status_of(failure), failure.code
            yield wire.event(OPENAI.errors.body(status, failure))
        finally:
            events.close()
            self._report(call, status, error)

    # ---- outcomes ---------------------------------------------------------------------------------
    def _failed(self, call: Call, exc: Exception) -> Response:
        if isinstance(exc, ClientGone):
            self._report(call, CLIENT_GONE, "client_disconnected")
            return Response(status_code=CLIENT_GONE)  # nobody reads it
        error = _as_error(exc)
        status = status_of(error)
        self._report(call, status, error.code)
        response = OPENAI.errors.response(status, error)
        response.headers[REQUEST_ID] = call.request_id
        return response

    def _report(self, call: Call, status: int, error: str | None = None) -> None:
        if call.reported:
            return
        call.reported = True
        streams = call.streams
        firsts = [s.first_token for s in streams if s.first_token is not None]
        per_token = [
            (s.finished - s.first_token) / (s.completion_tokens - 1)
            for s in streams
            if s.first_token is not None and s.finished is not None and s.completion_tokens > 1
        ]
        self.dataplane.observers.notify(
            InferenceEvent(
                model=call.model if status != 404 else "",
                version=call.version,
                surface="openai",
                status=status,
                duration=time.perf_counter() - call.started,
                error=error,
                prompt_tokens=call.tokens_in,
                completion_tokens=_completion_tokens(streams),
                first_token=min(firsts) - call.started if firsts else None,
                per_token=statistics.fmean(per_token) if per_token else None,
                request_id=call.request_id,
                inputs=call.inputs,
                outputs=call.outputs,
            )
        )


def _completion_tokens(streams: Sequence[TokenStream]) -> int:
    return sum(s.completion_tokens for s in streams)


def _as_error(exc: Exception) -> ModelportError:
    if isinstance(exc, ModelportError):
        return exc
    log.error("unhandled error on an OpenAI request", exc_info=exc)
    return ModelportError("internal server error")


class _bounded:
    """``asyncio.timeout_at(deadline)`` whose expiry is a ``RequestTimeout`` (504)."""

    def __init__(self, deadline: float) -> None:
        self._timeout = asyncio.timeout_at(deadline)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, kind: Any, exc: Any, trace: Any) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, trace)
        except TimeoutError:
            raise RequestTimeout(
                "the generation did not end within the server's generation timeout"
            ) from None


async def _within(request: Request, deadline: float, work: Awaitable[T]) -> T:
    """``work``'s result, unless the deadline passes (RequestTimeout) or the client goes (ClientGone)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        async with _bounded(deadline):
            await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if not task.done():
        raise ClientGone()
    return task.result()


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone (the body was read already: nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Events:
    """The deltas of one request's streams as they come: (choice index, delta); None once all ended."""

    def __init__(self, streams: Sequence[TokenStream]) -> None:
        self.streams = streams  # filled in by the caller before the first ``next``
        self._live: list[int] | None = None
        self._reading: dict[asyncio.Future[Delta], int] = {}

    async def next(self) -> tuple[int, Delta] | None:
        if self._live is None:
            self._live = list(range(len(self.streams)))
        if len(self.streams) == 1:  # the usual case needs no tasks
            if not self._live:
                return None
            delta = await self.streams[0].__anext__()
            if delta.finish_reason is not None:
                self._live.clear()
            return 0, delta
        reading = set(self._reading.values())
        for index in self._live:
            if index not in reading:
                self._reading[asyncio.ensure_future(self.streams[index].__anext__())] = index
        if not self._reading:
            return None
        done, _ = await asyncio.wait(self._reading, return_when=asyncio.FIRST_COMPLETED)
        future = min(done, key=self._reading.__getitem__)
        index = self._reading.pop(future)
        delta = future.result()
        if delta.finish_reason is not None:
            self._live.remove(index)
        return index, delta

    async def texts(self) -> list[str]:
        """Each stream's whole text (for an answer that is not streamed)."""
        texts = [""] * len(self.streams)
        while (item := await self.next()) is not None:
            texts[item[0]] += item[1].text
        return texts

    def close(self) -> None:
        """Cancel every stream (idempotent): their slots are freed at the next decoding step."""
        for future in self._reading:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a failed read of a cancelled request is no news
            future.cancel()
        self._reading.clear()
        for stream in self.streams:
            stream.cancel()


class EventStream(StreamingResponse):
    """Server-sent events. Starlette cancels the body when the client disconnects; closing the generator
    here as well makes its ``finally`` (cancel the streams, report) run at once however the send ends."""

    media_type = "text/event-stream"

    def __init__(
        self, events: AsyncGenerator[bytes, None], headers: dict[str, str], closed: Callable[[], None]
    ) -> None:
        super().__init__(events, headers={"cache-control": "no-cache", "x-accel-buffering": "no", **headers})
        self._events = events
        self._closed = closed  # what a generator closed before its first step never ran: its finally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()
            self._closed()
