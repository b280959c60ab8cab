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
