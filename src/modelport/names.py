"""Names are identifiers matched by a strict pattern, never paths."""

from __future__ import annotations

import re

from modelport.errors import InvalidName

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_name(value: str, *, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidName(
            f"invalid {field}: must match {NAME_PATTERN.pattern}",
            field=field,
        )
    return value


def check_alias(value: str, *, field: str = "alias") -> str:
    """An alias name: a name that is not all digits, since a version reference of digits is a version
    number (alias ``7`` could never be reached, alias ``2`` would hide behind version 2)."""
    check_name(value, field=field)
    if value.isdigit():
        raise InvalidName(
            f"invalid {field}: an alias name may not be all digits (digits name a version number); "
            f"it must match {NAME_PATTERN.pattern} and hold a letter, '-' or '_', e.g. 'v{value}'",
            field=field,
        )
    return value
