"""Alias names may no longer be all digits: existing ones become ``alias-<digits>``, history included.

A version reference of digits is a version number, so alias ``7`` could never be reached and alias
``2`` hid behind version 2. Each such alias (and its history rows) is renamed within its model to
``alias-<digits>``, or ``alias-<digits>-2``, ``-3``... when that name is taken; names stay within 63
characters. No table changes shape.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
MAX_NAME = 63

aliases = sa.table(
    "aliases", sa.column("id", sa.Integer), sa.column("model_id", sa.Integer), sa.column("name", sa.String)
)
history = sa.table(
    "alias_history",
    sa.column("id", sa.Integer),
    sa.column("model_id", sa.Integer),
    sa.column("alias", sa.String),
)


def new_name(digits: str, taken: set[str]) -> str:
    """``alias-<digits>`` (cut to fit), or with the first free ``-N`` suffix."""
    base = f"alias-{digits}"[:MAX_NAME]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"-{n}"
        candidate = base[: MAX_NAME - len(suffix)] + suffix
    return candidate


def upgrade() -> None:
    conn = op.get_bind()
    taken: dict[int, set[str]] = defaultdict(set)  # every alias name a model uses, live or in history
    digit_names: set[tuple[int, str]] = set()
    for model_id, name in [
        *conn.execute(sa.select(aliases.c.model_id, aliases.c.name)),
        *conn.execute(sa.select(history.c.model_id, history.c.alias).distinct()),
    ]:
        taken[model_id].add(name)
        if name.isdigit():
            digit_names.add((model_id, name))
    for model_id, name in sorted(digit_names):
        renamed = new_name(name, taken[model_id])
        taken[model_id].add(renamed)
        conn.execute(
            aliases.update()
            .where(aliases.c.model_id == model_id, aliases.c.name == name)
            .values(name=renamed)
        )
        conn.execute(
            history.update()
            .where(history.c.model_id == model_id, history.c.alias == name)
            .values(alias=renamed)
        )


def downgrade() -> None:
    # Nothing to undo in the schema; the renamed aliases keep their new names (an all-digit name was
    # the defect, and which ``alias-N`` names were renamed ones is not recorded).
    pass
