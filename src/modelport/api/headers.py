"""Numbers sent in request headers (lengths), read without trusting their size."""

from __future__ import annotations

from modelport.errors import InvalidInput

MAX_LENGTH_DIGITS = 18  # any longer and it is no length this server accepts (nor fits in 64 bits)


def _plain_number(value: str) -> bool:
    return value.isascii() and value.isdigit()


def declared_over(value: str | None, limit: int) -> bool:
    """Whether a declared length (``Content-Length``) exceeds ``limit``; junk is left to the reading."""
    return (
        value is not None
        and _plain_number(value)
        and (len(value.lstrip("0")) > MAX_LENGTH_DIGITS or int(value) > limit)
    )


def length_header(value: str | None, name: str) -> int | None:
    """A length the protocol reads from a header: None when absent; InvalidInput unless a plain number."""
    if value is None:
        return None
    if not _plain_number(value) or len(value.lstrip("0")) > MAX_LENGTH_DIGITS:
        raise InvalidInput(f"{name} must be a number of bytes")
    return int(value)
