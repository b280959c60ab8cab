"""Token-by-token generation, framework-free: what a request asks for (``Sampling``), what it gets back
(``Delta`` pieces of text on a ``TokenStream``), and the text bookkeeping every generating runtime needs
(incremental detokenisation, stop strings held back until they cannot match).

A runtime's decoding thread writes to a ``TokenStream``; the event loop reads it. ``cancel`` (a client
that went away, a timeout) tells the runtime at once, through the callback it registered, so the
sequence's slot is freed at its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelport.errors import InvalidInput

STOP = "stop"  # finish reasons, as OpenAI names them
LENGTH = "length"
MAX_STOP_STRINGS = 4  # as OpenAI allows
MAX_STOP_CHARS = 64
GREEDY_BELOW = 1e-5  # temperatures under it are greedy (as vLLM does)
MAX_PENDING_TOKENS = 4  # a UTF-8 character is at most 4 bytes: byte-level tokens


@dataclass(frozen=True)
class Sampling:
    """How to pick each next token. ``temperature`` 0 is greedy; ``seed`` makes sampling repeatable."""

    max_tokens: int | None = None  # None: the version's default, within the model's room
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # go on past the end token, to max_tokens (vLLM's extension, for benchmarks)

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidInput("max_tokens must be at least 1", field="max_tokens")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput("temperature must be between 0 and 2", field="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInput("top_p must be above 0 and at most 1", field="top_p")
        if len(self.stop) > MAX_STOP_STRINGS or any(not s or len(s) > MAX_STOP_CHARS for s in self.stop):
            raise InvalidInput(
                f"stop takes at most {MAX_STOP_STRINGS} non-empty strings of at most {MAX_STOP_CHARS} "
                "characters",
                field="stop",
            )

    @property
    def greedy(self) -> bool:
        """Temperatures this low pick the likeliest token anyway (and would overflow the logits)."""
        return self.temperature < GREEDY_BELOW


@dataclass(frozen=True)
class Delta:
    """New text of one sequence; the last one has a ``finish_reason`` (``stop`` or ``length``)."""

    text: str
    finish_reason: str | None = None


@dataclass
class TokenStream:
    """One sequence's output, written by a decoding thread and read on the event loop."""

    loop: asyncio.AbstractEventLoop
    prompt_tokens: int
    completion_tokens: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    first_token: float | None = None  # perf_counter of the first token's text
    finished: float | None = None
    finish_reason: str | None = None
    _items: deque[Delta | BaseException] = field(default_factory=deque)  # touched on the loop only
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _on_cancel: Callable[[], None] | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _ended: bool = False  # the reader has taken the last delta

    # ---- the decoding thread's side ---------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        self._on_cancel = callback

    def put(self, delta: Delta, tokens: int) -> None:
        """From any thread: ``tokens`` more tokens were made, ``delta`` is their text (may be empty)."""
        now = time.perf_counter()
        self.completion_tokens += tokens
        if self.first_token is None and tokens:
            self.first_token = now
        if delta.finish_reason is not None:
            self.finished, self.finish_reason = now, delta.finish_reason
        if delta.text or delta.finish_reason is not None:
            self._send(delta)

    def fail(self, error: BaseException) -> None:
        self.finished = time.perf_counter()
        self._send(error)

    def _send(self, item: Delta | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self._arrive, item)
        except RuntimeError:  # the reader's event loop is gone: nobody waits for this sequence
            self._cancelled.set()

    def _arrive(self, item: Delta | BaseException) -> None:
        self._items.append(item)
        self._arrived.set()

    # ---- the reader's side --------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop generating (idempotent): the runtime frees the slot at its next step."""
        if not self._cancelled.is_set():
            self._cancelled.set()
            if self._on_cancel is not None:
                self._on_cancel()

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> Delta:
        if self._ended:
            raise StopAsyncIteration
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        item = self._items.popleft()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        # a reader that fell behind takes what has arrived since in one piece: fewer, larger chunks
        # under load, the same text
        while item.finish_reason is None and self._items and isinstance(self._items[0], Delta):
            following = self._items.popleft()
            assert isinstance(following, Delta)
            item = Delta(item.text + following.text, following.finish_reason)
        self._ended = item.finish_reason is not None
        return item

    async def text(self) -> str:
        """The whole completion (for non-streamed answers)."""
        return "".join([delta.text async for delta in self])


class TextTail:
    """Turns one sequence's token ids into text pieces as they come: a token that ends in the middle of
    a UTF-8 character waits for the next one, and text that could be the start of a stop string is held
    back until it cannot be."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str]) -> None:
        self._decode = decode
        self._stop = tuple(stop)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._prefix = 0  # ids[prefix:read] were decoded already; decoding from prefix keeps spacing right
        self._read = 0
        self._text = ""  # all text decoded so far
        self._sent = 0  # characters of it handed out

    def push(self, token: int) -> tuple[str, bool]:
        """The text that can be sent after ``token``, and whether a stop string was reached (then the
        text ends before it and the sequence is done)."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        # a token that ends mid-character waits for the next, but not for ever (a model emitting stray
        # bytes would otherwise hold the text back and decode an ever longer window)
        whole = not after.endswith("\ufffd") or len(self._ids) - self._read >= MAX_PENDING_TOKENS
        if whole:  # (a token with no text, a skipped special one, moves the window on as well)
            self._text += after[len(before) :]
            self._prefix, self._read = self._read, len(self._ids)
        if self._stop:
            start = max(0, self._sent - self._hold)
            found = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
            if found:
                return self._take(min(found)), True
            return self._take(max(self._sent, len(self._text) - self._hold)), False
        return self._take(len(self._text)), False

    def flush(self) -> str:
        """What is left once the sequence ends for another reason (length, end of sequence), including
        a last character cut short (as the tokenizer decodes it)."""
        done = self._decode(self._ids[self._prefix : self._read])
        rest = self._decode(self._ids[self._prefix :])
        if len(rest) > len(done):
            self._text += rest[len(done) :]
            self._prefix = self._read = len(self._ids)
        return self._take(len(self._text))

    def _take(self, upto: int) -> str:
        piece = self._text[self._sent : upto]
        self._sent = max(self._sent, upto)
        return piece
