"""Change feed, blob references and pins, version metadata, model unload state, version counter.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("metadata", sa.JSON, nullable=True))
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("unloaded", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("last_version", sa.Integer, nullable=False, server_default="0"))
    op.execute(
        "UPDATE models SET last_version = "
        "(SELECT COALESCE(MAX(number), 0) FROM versions WHERE versions.model_id = models.id)"
    )
    files = op.create_table(
        "version_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_version_files_version_id", "version_files", ["version_id"])
    op.create_index("ix_version_files_sha256", "version_files", ["sha256"])
    op.create_table(
        "blob_pins",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_blob_pins_owner", "blob_pins", ["owner"])
    op.create_index("ix_blob_pins_sha256", "blob_pins", ["sha256"])
    counters = op.create_table(
        "registry_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "changes", "value": 0}, {"name": "blobs", "value": 0}])
    op.create_table(
        "changes",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(63)),
        sa.Column("version", sa.Integer),
    )
    # existing versions reference their manifest's blobs
    conn = op.get_bind()
    versions = sa.table("versions", sa.column("id", sa.Integer), sa.column("manifest", sa.JSON))
    rows = [
        {"version_id": vid, "sha256": entry["sha256"]}
        for vid, manifest in conn.execute(sa.select(versions.c.id, versions.c.manifest))
        for entry in {e["sha256"]: e for e in manifest or []}.values()
    ]
    if rows:
        op.bulk_insert(files, rows)


def downgrade() -> None:
    for table in ("changes", "registry_counters", "blob_pins", "version_files"):
        op.drop_table(table)
    with op.batch_alter_table("models") as batch:
        batch.drop_column("last_version")
        batch.drop_column("unloaded")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("metadata")
