"""a case's operation history

Revision ID: 0003_case_history
Revises: 0002_audit_log
Create Date: 2026-12-07 19:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_case_history"
down_revision: str | Sequence[str] | None = "0002_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("history", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_results", schema=None) as batch_op:
        batch_op.drop_column("history")
