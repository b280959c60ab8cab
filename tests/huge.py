"""What counts as a huge number in the fuzz tests: 2**64 or more in magnitude."""

from __future__ import annotations

BEYOND_64_BITS = 2**64


def is_huge(value: object) -> bool:
    """An integer (or its decimal text) of magnitude 2**64 or more; int() is not used on long text,
    which Python refuses beyond 4300 digits."""
    digits = str(value).removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        return False
    digits = digits.lstrip("0")
    return len(digits) > 20 or int(digits or "0") >= BEYOND_64_BITS
