"""A push sent as ``multipart/form-data`` (``curl -F file=@model.skops``): the one file part's bytes are
streamed into the upload, never the envelope around them.

``SingleFileParts`` is a small incremental parser (RFC 7578 / RFC 2046): it is fed the body as it
arrives and hands the file part's content to a sink without holding it in memory. Exactly one part, a
file part, is accepted; anything else is refused with a message that says how to send the raw file.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable
from enum import Enum, auto

from modelport.errors import InvalidInput

MAX_PART_HEADERS = 16 * 1024
MAX_FILENAME = 255
RAW_HINT = (
    "send the file itself as the body: curl --data-binary @model.skops "
    "-H 'Content-Type: application/octet-stream' (framework and filename as query parameters)"
)


def is_multipart(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "multipart/form-data"


def boundary_of(content_type: str) -> bytes:
    message = email.message.Message()
    message["content-type"] = content_type
    boundary = message.get_boundary()
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise InvalidInput(f"multipart/form-data needs a boundary of 1 to 70 characters; or {RAW_HINT}")
    return boundary.encode()


MAX_ENVELOPE = 64 * 1024


class _State(Enum):
    PREAMBLE = auto()
    AFTER_BOUNDARY = auto()
    HEADERS = auto()
    CONTENT = auto()
    END = auto()


class SingleFileParts:
    """Feed the body with ``feed``; the file part's content goes to ``sink``; ``finish`` checks that
    the body was complete and held exactly one file part, and returns that part's file name."""

    def __init__(self, boundary: bytes, sink: Callable[[bytes], None]) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.sink = sink
        self.filename: str | None = None
        self.files = 0
        self._state = _State.PREAMBLE
        self._buffer = b"\r\n"  # the first boundary has no CRLF before it: add one, match one way
        self._outside = 0  # bytes of preamble and epilogue: bounded, since they are not the upload

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> str | None:
        if self._state is not _State.END:
            raise InvalidInput(f"the multipart body ends before its closing boundary; or {RAW_HINT}")
        if self.files != 1:
            raise InvalidInput(f"a multipart push needs exactly one file part; {RAW_HINT}")
        return self.filename

    def _step(self) -> bool:
        """Consume what the buffer allows in the current state; True when the state moved on."""
        state, buffer = self._state, self._buffer
        if state is _State.END:
            self._discard(len(buffer))  # the epilogue is ignored, up to a bound
            self._buffer = b""
            return False
        if state is _State.AFTER_BOUNDARY:
            if len(buffer) < 2:
                return False
            if buffer.startswith(b"--"):
                self._state, self._buffer = _State.END, buffer[2:]
            elif buffer.startswith(b"\r\n"):
                self._state, self._buffer = _State.HEADERS, buffer[2:]
            else:
                raise InvalidInput(f"malformed multipart body after a boundary; or {RAW_HINT}")
            return True
        if state is _State.HEADERS:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_PART_HEADERS:
                    raise InvalidInput(f"multipart part headers over {MAX_PART_HEADERS} bytes")
                return False
            self._part(buffer[:end])
            self._state, self._buffer = _State.CONTENT, buffer[end + 4 :]
            return True
        at = buffer.find(self.delimiter)  # PREAMBLE or CONTENT: up to the next boundary
        if at < 0:
            keep = len(self.delimiter) - 1  # a boundary may straddle two chunks
            if state is _State.CONTENT and len(buffer) > keep:
                self.sink(buffer[:-keep])
            elif state is _State.PREAMBLE:
                self._discard(max(0, len(buffer) - keep))
            self._buffer = buffer[-keep:]
            return False
        if state is _State.CONTENT:
            self.sink(buffer[:at])
        else:
            self._discard(at)
        self._state, self._buffer = _State.AFTER_BOUNDARY, buffer[at + len(self.delimiter) :]
        return True

    def _discard(self, count: int) -> None:
        self._outside += count
        if self._outside > MAX_ENVELOPE:
            raise InvalidInput(f"the multipart body carries over {MAX_ENVELOPE} bytes outside its parts")

    def _part(self, raw_headers: bytes) -> None:
        headers = email.message.Message()
        for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        if headers.get("content-disposition") is None:
            raise InvalidInput(f"a multipart part without Content-Disposition; {RAW_HINT}")
        filename = headers.get_filename()
        if filename is None:
            field = headers.get_param("name", header="content-disposition")
            raise InvalidInput(
                f"a multipart push takes one file part and no other fields (got field {field!r}); {RAW_HINT}"
            )
        self.files += 1
        if self.files > 1:
            raise InvalidInput(f"a multipart push needs exactly one file part; {RAW_HINT}")
        if len(filename) > MAX_FILENAME:
            raise InvalidInput(f"the file part's filename is over {MAX_FILENAME} characters")
        self.filename = filename
