"""The data plane: route ``model[/versions/{number|alias}]`` to a version, keep it loaded, run inference.

Routes and keys are cached per process and kept current by ``reconcile``, which runs every second and
reads the registry's change feed (``registry.changes``): each change names what it touched, so only
those routes are re-resolved, deleted or unloaded versions are evicted, changed serving settings are
applied, and key changes drop the key cache. A new target is loaded and warmed before its route switches,
and requests already holding the old version finish on it: promotions and rollbacks drop no request, in
this process and in every other one that shares the registry.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np

from modelport.errors import InferenceFailed, InvalidInput, ModelportError
from modelport.registry import (
    AliasRecord,
    ChangeKind,
    ChangeRecord,
    ModelRecord,
    Registry,
    VersionRecord,
    VersionState,
)
from modelport.runtimes.base import (
    EmbeddingRuntime,
    GenerationScheduler,
    Signature,
    StreamingRuntime,
    Task,
    Tensors,
    text_array,
)
from modelport.runtimes.streams import Sampling, TokenStream
from modelport.serving.cache import ModelCache, ServedVersion
from modelport.serving.datatypes import numpy_dtype
from modelport.serving.observers import Observers
from modelport.serving.router import Router

log = logging.getLogger("modelport.dataplane")
A = TypeVar("A")
R = TypeVar("R")
TOKENIZE_INLINE_CHARS = 2048  # texts up to this size are tokenized on the event loop (tens of µs)
EVICTING = frozenset({ChangeKind.VERSION_DELETED, ChangeKind.MODEL_DELETED, ChangeKind.MODEL_UNLOADED})


@dataclass
class Prediction:
    version: VersionRecord
    inputs: Tensors
    outputs: Tensors


@dataclass
class Embeddings:
    version: VersionRecord
    vectors: np.ndarray  # [texts, dimensions] float32
    tokens: list[int]  # per text
    resizable: bool  # the version allows fewer dimensions (Matryoshka)


@dataclass
class Generation:
    version: VersionRecord
    stream: TokenStream


class DataPlane:
    def __init__(
        self,
        registry: Registry,
        cache: ModelCache,
        request_timeout: float = 30.0,
        generation_timeout: float = 600.0,
        observers: Observers | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.router = Router(registry)
        self.observers = observers or Observers()
        self.request_timeout = request_timeout
        self.generation_timeout = generation_timeout  # a whole generation, streamed or not
        self.on_keys_changed: list[Callable[[], None]] = []
        self._seen = registry.changes.head()
        self._readable: set[str] = set()  # blobs this process has proven it can read
        self._reconcile_lock = threading.Lock()

    # ---- resolution (blocking: registry reads) -------------------------------------------------
    def resolve(self, model: str, ref: str | None = None) -> VersionRecord:
        """The version ``ref`` names, in any state (see ``Router.resolve``)."""
        return self.router.resolve(model, ref)

    def ready_version(self, model: str, ref: str | None = None) -> VersionRecord:
        """The version that would serve a request for ``ref`` now; raises if none can: not ready,
        unloaded, or its artifact cannot be read back (a missing blob, an encryption key not set)."""
        record = self.router.route_for(model, ref).pick()
        self.check_servable(record)
        return record

    def unavailable_reason(self, model: ModelRecord, record: VersionRecord) -> str | None:
        """Why ``record`` cannot serve now (for the repository index), or None when it can."""
        if record.state is not VersionState.READY:
            return record.error or record.state.value
        if model.unloaded:
            return "unloaded"
        try:
            self.check_servable(record)
        except ModelportError as exc:
            return exc.message
        return None

    def check_servable(self, record: VersionRecord) -> None:
        """Loaded here, or its files can be read back from the store now (without loading them)."""
        if self.cache.peek((record.model, record.version)) is not None:
            return
        for sha in {entry.sha256 for entry in record.manifest} - self._readable:
            self.cache.repository.store.readable(sha)
            self._readable.add(sha)  # the key cannot change under a running process

    # ---- inference ----------------------------------------------------------------------------
    async def served(self, model: str, ref: str | None, key: str | None = None) -> ServedVersion:
        """The loaded version that serves a request for ``model`` + ``ref`` now (loading it if needed);
        ``key`` is for sticky traffic policies."""
        route = self.router.cached(model, ref)
        if route is None:
            route = await asyncio.to_thread(self.router.lookup, model, ref)
        record = route.pick(key)
        served = self.cache.peek((record.model, record.version))
        if served is None:
            served = await asyncio.to_thread(self.cache.get, record)
        return served

    async def predict(
        self,
        model: str,
        ref: str | None,
        inputs: Tensors,
        datatypes: dict[str, str],
        outputs: Sequence[str] | None = None,
        timeout: float | None = None,
        key: str | None = None,
    ) -> Prediction:
        served = await self.served(model, ref, key)
        signature = served.loaded.signature
        try:
            prepared = conform_inputs(signature, inputs, datatypes)
            if outputs is not None:
                signature.check_outputs(outputs)
            work = served.scheduler.submit(prepared, outputs, self._limit(timeout))
            result = await _translated(served, work)
        except ModelportError as exc:
            exc.version = served.record.version  # errors count against the version that answered them
            raise
        return Prediction(served.record, prepared, result)

    def _limit(self, timeout: float | None) -> float:
        return min(timeout, self.request_timeout) if timeout else self.request_timeout

    async def embed(
        self,
        model: str,
        ref: str | None,
        inputs: list[str] | list[list[int]],
        timeout: float | None = None,
        key: str | None = None,
    ) -> Embeddings:
        """One vector per text (or per list of the model's token ids) from an embedding version,
        batched with other requests by tokens."""
        served = await self.served(model, ref, key)
        _require(served, Task.EMBED, "an embedding")
        runtime = cast(EmbeddingRuntime, served.loaded.runtime)
        texts = [t for t in inputs if isinstance(t, str)]
        if len(texts) < len(inputs):  # token ids of the model's own tokenizer
            ids = [t for t in inputs if not isinstance(t, str)]
            texts = await _off_loop_if(sum(map(len, ids)) > TOKENIZE_INLINE_CHARS, runtime.decode, ids)
        # refuses texts over the model's length first; a long request is tokenized off the event loop
        tokens = await _off_loop_if(sum(map(len, texts)) > TOKENIZE_INLINE_CHARS, runtime.count_tokens, texts)
        tensors = {served.loaded.signature.inputs[0].name: text_array(texts)}
        outputs = await _translated(served, served.scheduler.submit(tensors, None, self._limit(timeout)))
        vectors = outputs[served.loaded.signature.outputs[0].name]
        return Embeddings(served.record, vectors, tokens, runtime.resizable())

    async def generate(
        self,
        model: str,
        ref: str | None,
        prompt: str | list[int] | Sequence[Mapping[str, str]],
        sampling: Sampling,
        key: str | None = None,
    ) -> Generation:
        """Start generating from a text, token ids or chat messages; the text arrives on the stream."""
        served = await self.served(model, ref, key)
        _require(served, Task.STREAM, "a text-generation")
        chat = False
        if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
            ids = cast(list[int], prompt)
        else:
            chat = not isinstance(prompt, str)
            runtime = cast(StreamingRuntime, served.loaded.runtime)
            text = cast(str | Sequence[Mapping[str, str]], prompt)
            size = len(text) if isinstance(text, str) else sum(len(str(m.get("content", ""))) for m in text)
            ids = await _off_loop_if(size > TOKENIZE_INLINE_CHARS, runtime.prompt_ids, text)
        try:
            stream = cast(GenerationScheduler, served.scheduler).start(ids, sampling)
        except InvalidInput as exc:
            if chat and exc.field == "prompt":
                exc.field = "messages"  # what the chat request calls its prompt
            raise
        return Generation(served.record, stream)

    def tasks(self, record: VersionRecord) -> frozenset[Task]:
        """What a version does beyond ``predict``, without loading it: as loaded here, else as its
        runtime declares and its signature shows (text to ``embedding``, or text to text)."""
        served = self.cache.peek((record.model, record.version))
        if served is not None:
            return served.loaded.capabilities.tasks
        try:
            declared = self.cache.repository.runtimes.get(str(record.framework)).capabilities.tasks
        except ModelportError:
            return frozenset()
        signature = Signature.from_dict(record.signature or {})
        ins = [(t.name, t.datatype) for t in signature.inputs]
        outs = [(t.name, t.datatype) for t in signature.outputs]
        if ins != [("text", "BYTES")]:
            return frozenset()
        if outs == [("embedding", "FP32")]:
            return declared & {Task.EMBED}
        if outs == [("text", "BYTES")]:
            return declared & {Task.STREAM}
        return frozenset()

    def evict(self, model: str, version: int | None = None) -> None:
        """Unload from this process only (the next request loads again)."""
        self.router.invalidate(model)
        self.cache.evict(model, version)

    # ---- control operations that must not drop a request (blocking) ---------------------------
    def promote(self, model: str, alias: str, version: int, *, by: str) -> AliasRecord:
        """Swap before switch: the target is loaded and warmed, then the alias moves (a version that is
        not ready is left to the registry to refuse)."""
        target = self.registry.models.get_version(model, version)
        if target.state is VersionState.READY:
            self.cache.get(target)
        record = self.cache.repository.promote(model, alias, version, by=by)
        self.reconcile()
        return record

    def rollback(self, model: str, alias: str, *, by: str) -> AliasRecord:
        target = self.registry.aliases.rollback_target(model, alias)
        self.cache.get(self.registry.models.get_version(model, target))
        record = self.cache.repository.rollback(model, alias, by=by)
        self.reconcile()
        return record

    def load_model(self, model: str) -> VersionRecord:
        """Back in service for every process (the repository extension's load)."""
        self.registry.models.set_unloaded(model, False)
        record = self.ready_version(model)
        self.cache.get(record)
        self.reconcile()
        return record

    def unload_model(self, model: str) -> None:
        """Out of service for every process, until loaded again (the repository extension's unload)."""
        self.registry.models.set_unloaded(model, True)
        self.reconcile()

    # ---- keeping up with the registry ---------------------------------------------------------
    def reconcile(self) -> bool:
        """Apply the changes the feed announced since the last call; True if there were any."""
        with self._reconcile_lock:
            changes = self.registry.changes.since(self._seen)
            if changes == []:
                return False
            if changes is None:  # fell behind the feed's retention: start over
                self._seen = self.registry.changes.head()
                self._apply_all()
                return True
            self._seen = changes[-1].seq
            self._apply(changes)
            return True

    def _apply(self, changes: list[ChangeRecord]) -> None:
        if any(c.kind is ChangeKind.KEY_CHANGED for c in changes):
            self._keys_changed()
        touched = {c.model for c in changes if c.model is not None}
        evicted = [
            (c.model, c.version, c.kind) for c in changes if c.kind in EVICTING and c.model is not None
        ]
        for model, _version, _kind in evicted:  # first: no new request may reach a version being evicted
            self.router.invalidate(model)
        self.router.refresh(touched, self.cache.get)  # new targets loaded before routes switch to them
        for model, version, kind in evicted:
            self.cache.evict(model, version, "unloaded" if kind is ChangeKind.MODEL_UNLOADED else "deleted")
        for change in changes:
            if change.kind is ChangeKind.VERSION_CONFIG and change.model and change.version is not None:
                try:
                    self.cache.reconfigure(self.registry.models.get_version(change.model, change.version))
                except ModelportError:
                    continue  # deleted since; a later change evicts it

    def _apply_all(self) -> None:
        self._keys_changed()
        for model, version in self.cache.loaded_keys():
            try:
                record = self.registry.models.get_version(model, version)
            except ModelportError:
                self.cache.evict(model, version, "deleted")
                continue
            self.cache.reconfigure(record)
        self.router.refresh(None, self.cache.get)

    def _keys_changed(self) -> None:
        for callback in self.on_keys_changed:
            callback()

    def close(self) -> None:
        self.cache.close()


async def _off_loop_if(heavy: bool, work: Callable[[A], R], argument: A) -> R:
    """``work(argument)``, in a thread when it is ``heavy`` (tokenizing a long text): the event loop serves
    everyone else meanwhile; short texts take tens of µs, less than the hand-over."""
    return await asyncio.to_thread(work, argument) if heavy else work(argument)


def _require(served: ServedVersion, task: Task, what: str) -> None:
    if task not in served.loaded.capabilities.tasks:
        record = served.record
        raise InvalidInput(f"{record.model}:{record.version} is not {what} model", field="model")


async def _translated(served: ServedVersion, work: Awaitable[Tensors]) -> Tensors:
    """A runtime's answer, its failures said in modelport's terms."""
    try:
        return await work
    except ModelportError:
        raise
    except ValueError as exc:  # frameworks report bad input values this way
        raise InvalidInput(f"the model rejected the input: {str(exc).splitlines()[0][:300]}") from None
    except Exception as exc:
        raise InferenceFailed(f"{served.record.framework} failed to predict: {type(exc).__name__}") from None


def conform_inputs(signature: Signature, inputs: Tensors, datatypes: dict[str, str]) -> Tensors:
    """Check names, ranks and fixed dimensions; cast numeric inputs to the signature's datatype."""
    expected = {spec.name: spec for spec in signature.inputs}
    if inputs.keys() != expected.keys():
        unknown = [n for n in inputs if n not in expected]
        missing = [n for n in expected if n not in inputs]
        raise InvalidInput(
            f"inputs must be {sorted(expected)}; unknown {unknown}, missing {missing}", field="inputs"
        )
    out: Tensors = {}
    for name, array in inputs.items():
        spec = expected[name]
        if spec.shape and (
            array.ndim != len(spec.shape)
            or any(want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True))
        ):
            raise InvalidInput(
                f"input {name!r} must have shape {list(spec.shape)}, got {list(array.shape)}", field="inputs"
            )
        if array.ndim and array.shape[0] == 0:
            raise InvalidInput(f"input {name!r} has no rows", field="inputs")
        given = datatypes.get(name, spec.datatype)
        if (given == "BYTES") != (spec.datatype == "BYTES"):
            raise InvalidInput(f"input {name!r} must be {spec.datatype}, got {given}", field="inputs")
        if given != spec.datatype:
            array = array.astype(numpy_dtype(spec.datatype))
        out[name] = np.asarray(array)
    return out
