"""Schedulers in front of a runtime's ``predict``: the adaptive ``Batcher`` and the ``DirectScheduler``.

Batcher: requests queue per version (bounded). One batch runs at a time per version, in the executor,
never on the event loop; while it runs, new requests accumulate, so batches grow with load and stay at
one request when idle. A batch takes compatible requests (same trailing shapes, dtypes and requested
outputs) from the queue, up to ``max_batch_size`` rows, waiting at most ``max_delay`` for more. Outputs
are split back by row counts. When a merged batch fails, its requests are retried one by one, so one
request's error never reaches another.

Runtimes batched by a token budget (text models) also bound a batch by ``max_batch_tokens``, counted
as the batch once padded: its rows times its longest row's tokens (estimated from text bytes, about four
per token, or elements for numeric inputs). The oldest request always goes first and the batch is
filled with the requests closest to it in length, so one long text does not pad a hundred short ones.

DirectScheduler: for runtimes that must not be batched; each request is its own call, several at once.

Both report to their ``Meters`` (the version's metric children, looked up once): rows per predict call,
each request's wait from submission to its batch's start, each predict call's time, and, where the
metrics cannot read them when scraped (``--workers``), the requests queued and in flight as they change.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from modelport import limits
from modelport.errors import InvalidInput, Overloaded, RequestTimeout
from modelport.runtimes.base import Tensors

Predict = Callable[[Tensors, Sequence[str] | None], Tensors]


def _ignore(value: float) -> None:
    return None


@dataclass(frozen=True)
class Meters:
    """What a scheduler reports for the metrics; each one a bound histogram child, cheap to call."""

    rows: Callable[[float], None] = _ignore  # rows per predict call
    waited: Callable[[float], None] = _ignore  # per request: seconds from submission to its batch's start
    computed: Callable[[float], None] = _ignore  # per predict call: seconds
    # (queued, in flight) whenever either changes; None where the metrics read them when scraped
    levels: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = limits.MAX_BATCH_SIZE  # rows
    max_delay: float = limits.MAX_BATCH_DELAY_MS / 1000  # seconds to wait for more once one is queued
    max_queue: int = limits.MAX_QUEUE  # requests waiting per version; beyond it, 503 + Retry-After
    max_batch_tokens: int = limits.MAX_BATCH_TOKENS  # for runtimes batched by a token budget
    tokens: bool = False  # the runtime is batched by a token budget as well as rows

    def as_dict(self) -> dict[str, float | int]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_delay_ms": self.max_delay * 1000,
            "max_queue": self.max_queue,
            "max_batch_tokens": self.max_batch_tokens,
        }


@dataclass
class _Pending:
    inputs: Tensors
    outputs: tuple[str, ...] | None
    rows: int
    tokens: int  # what counts against max_batch_tokens (0 when the runtime is batched by rows only)
    length: int  # tokens of its longest row: requests of similar length are batched together
    key: tuple[object, ...]
    future: asyncio.Future[Tensors]
    enqueued: float = field(default_factory=time.monotonic)


def batch_key(inputs: Tensors, outputs: tuple[str, ...] | None) -> tuple[object, ...]:
    return (tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())), outputs)


def text_tokens(item: object) -> int:
    """Tokens of one text, estimated from its size: about four bytes per token, plus the special ones."""
    return len(item) // 4 + 2 if isinstance(item, bytes | str) else 1


def token_cost(inputs: Tensors, rows: int) -> tuple[int, int]:
    """(tokens in all, tokens of the longest row) of a request: text estimated, numbers by element."""
    total = longest = 0
    for array in inputs.values():
        if array.dtype == object:
            per_row = [sum(text_tokens(x) for x in row.flat) for row in array.reshape(rows, -1)]
        else:
            per_row = [array.size // max(rows, 1)] * rows
        total = max(total, sum(per_row))
        longest = max(longest, max(per_row, default=0))
    return total, longest


def rows_of(inputs: Tensors) -> int:
    counts = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    if len(counts) != 1 or -1 in counts:
        raise InvalidInput("every input must have the same batch (first) dimension", field="inputs")
    return counts.pop()


class _Inflight:
    """Requests in flight, with an event set whenever there are none (a retiring version waits on it)."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = threading.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    def wait_idle(self, timeout: float) -> bool:
        return self._idle.wait(timeout)


class _Scheduler:
    """What both schedulers share: the runtime's ``predict``, the executor, the policy, in-flight count,
    the meters."""

    def __init__(
        self, predict: Predict, executor: Executor, policy: BatchPolicy, meters: Meters | None = None
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.policy = policy
        self.meters = meters or Meters()
        self._levels = self.meters.levels
        self._inflight = _Inflight()

    @property
    def inflight(self) -> int:
        return self._inflight.count

    @property
    def queued(self) -> int:
        """Requests waiting for their predict call to start."""
        return 0

    def _timed(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        """``predict`` in the executor, its time measured."""
        began = time.perf_counter()
        try:
            return self._predict(inputs, outputs)
        finally:
            self.meters.computed(time.perf_counter() - began)

    def wait_idle(self, timeout: float) -> bool:
        return self._inflight.wait_idle(timeout)

    def configure(self, policy: BatchPolicy) -> None:
        self.policy = policy

    async def _answer(self, future: Awaitable[Tensors], timeout: float | None) -> Tensors:
        """Await one request's result, counted in flight meanwhile, bounded by ``timeout``."""
        self._inflight.enter()
        if self._levels is not None:
            self._levels(self.queued, self._inflight.count)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise RequestTimeout(f"inference did not finish within {timeout:g} s") from None
        finally:
            self._inflight.leave()
            if self._levels is not None:
                self._levels(self.queued, self._inflight.count)


class Batcher(_Scheduler):
    def __init__(
        self,
        predict: Predict,
        executor: Executor,
        policy: BatchPolicy,
        meters: Meters | None = None,
    ) -> None:
        super().__init__(predict, executor, policy, meters)
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(
        self, inputs: Tensors, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> Tensors:
        if len(self._queue) >= self.policy.max_queue:
            raise Overloaded("the model's request queue is full; retry shortly")
        loop = asyncio.get_running_loop()
        wanted = tuple(outputs) if outputs is not None else None
        rows = rows_of(inputs)
        tokens, length = token_cost(inputs, rows) if self.policy.tokens else (0, 0)
        key = batch_key(inputs, wanted)
        pending = _Pending(inputs, wanted, rows, tokens, length, key, loop.create_future())
        self._queue.append(pending)
        self._ensure_worker()
        assert self._wakeup is not None
        self._wakeup.set()
        return await self._answer(pending.future, timeout)

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._loop is not loop:
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run())

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather()
            batch = self._take()
            if self._levels is not None:
                self._levels(len(self._queue), self._inflight.count)
            if batch:
                await self._execute(batch)

    async def _gather(self) -> None:
        """Let more requests arrive, up to ``max_delay`` after the oldest one, unless the batch is full."""
        policy = self.policy
        deadline = self._queue[0].enqueued + policy.max_delay
        while (
            sum(p.rows for p in self._queue) < policy.max_batch_size
            and sum(p.tokens for p in self._queue) < policy.max_batch_tokens
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            assert self._wakeup is not None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        """The oldest request, then compatible ones (closest in length first under a token budget)."""
        live = [p for p in self._queue if not p.future.done()]  # drop timed out or cancelled ones
        if not live:
            self._queue.clear()
            return []
        head, policy = live[0], self.policy
        candidates = [p for p in live[1:] if p.key == head.key]
        if policy.tokens:
            candidates.sort(key=lambda p: abs(p.length - head.length))
        batch, rows, longest = [head], head.rows, head.length
        for p in candidates:
            # rows are padded to the longest one: the budget counts the padded batch
            padded = (rows + p.rows) * max(longest, p.length)
            if rows + p.rows > policy.max_batch_size or padded > policy.max_batch_tokens:
                continue
            batch.append(p)
            rows += p.rows
            longest = max(longest, p.length)
        taken = {id(p) for p in batch}
        self._queue = deque(p for p in live if id(p) not in taken)
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        outputs = batch[0].outputs
        meters = self.meters
        started = time.monotonic()
        for p in batch:
            meters.waited(started - p.enqueued)
        meters.rows(sum(p.rows for p in batch))
        if len(batch) == 1:
            await self._run_one(batch[0])
            return
        try:
            results = await loop.run_in_executor(self._executor, self._merged, batch, outputs)
        except Exception:
            for p in batch:  # isolate the culprit: each request alone
                await self._run_one(p)
            return
        for p, result in zip(batch, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)

    async def _run_one(self, p: _Pending) -> None:
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._timed, p.inputs, p.outputs
            )
        except Exception as exc:
            if not p.future.done():
                p.future.set_exception(exc)
            return
        if not p.future.done():
            p.future.set_result(result)

    def _merged(self, batch: list[_Pending], outputs: tuple[str, ...] | None) -> list[Tensors]:
        names = batch[0].inputs.keys()
        merged = {n: np.concatenate([p.inputs[n] for p in batch]) for n in names}
        result = self._timed(merged, outputs)
        total = sum(p.rows for p in batch)
        if any(a.ndim == 0 or a.shape[0] != total for a in result.values()):
            raise ValueError("outputs are not per-row; the model cannot be batched")
        offsets = np.cumsum([0] + [p.rows for p in batch])
        return [{n: a[offsets[i] : offsets[i + 1]] for n, a in result.items()} for i in range(len(batch))]

    def close(self) -> None:
        if self._worker is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._worker.cancel)
        for p in self._queue:
            if not p.future.done():
                p.future.set_exception(Overloaded("the model was unloaded"))
        self._queue.clear()
        if self._levels is not None:
            self._levels(0, self._inflight.count)


class DirectScheduler(_Scheduler):
    """No batching: each request is one ``predict`` call in the executor, as many at once as it allows,
    with the same queue bound, timeout and in-flight accounting as the ``Batcher``."""

    async def submit(
        self, inputs: Tensors, outputs: Sequence[str] | None = None, timeout: float | None = None
    ) -> Tensors:
        if self._inflight.count >= self.policy.max_queue:
            raise Overloaded("the model's request queue is full; retry shortly")
        wanted = tuple(outputs) if outputs is not None else None
        call = asyncio.get_running_loop().run_in_executor(
            self._executor, self._waited_call, time.monotonic(), inputs, wanted
        )
        return await self._answer(call, timeout)

    def _waited_call(self, submitted: float, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        """In the executor: its wait for a thread is the request's queue wait; its rows, its batch."""
        meters = self.meters
        meters.waited(time.monotonic() - submitted)
        first = next(iter(inputs.values()), None)
        meters.rows(first.shape[0] if first is not None and first.ndim else 1)
        return self._timed(inputs, outputs)

    def close(self) -> None:
        return None
