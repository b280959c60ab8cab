"""Monitoring: per-model settings, reference profiles, serving statistics, feedback, alert rules, webhook
deliveries, and dashboard sessions.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def _model_id() -> sa.Column[int]:
    return sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "model_monitoring",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sample_rate", sa.Float, nullable=False),
        sa.Column("reference_rows", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "version_profiles",
        sa.Column(
            "version_id", sa.Integer, sa.ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("source", sa.String(140), nullable=False),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "serving_stats",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_id(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("latency_sum", sa.Float, nullable=False),
        sa.Column("latency_counts", sa.JSON, nullable=False),
        sa.UniqueConstraint("model_id", "version", "bucket", "origin", name="uq_serving_stats_bucket"),
    )
    op.create_index("ix_serving_stats_bucket", "serving_stats", ["bucket"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_id(),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("label", sa.String(256)),
        sa.Column("value", sa.Float),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_id", "request_id", name="uq_feedback_request"),
    )
    op.create_index("ix_feedback_at", "feedback", ["at"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_id(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window_seconds", sa.Integer, nullable=False),
        sa.Column("version_ref", sa.String(63)),
        sa.Column("webhook_url", sa.String(2048)),
        sa.Column("webhook_secret", sa.String(256)),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("detail", sa.JSON),
        sa.Column("changed_at", sa.DateTime(timezone=True)),
        sa.Column("evaluated_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(256)),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_next_at", "webhook_deliveries", ["next_at"])
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])


def downgrade() -> None:
    for table in (
        "ui_sessions",
        "webhook_deliveries",
        "alert_rules",
        "feedback",
        "serving_stats",
        "version_profiles",
        "model_monitoring",
    ):
        op.drop_table(table)
