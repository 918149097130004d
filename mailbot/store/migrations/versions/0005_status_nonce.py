"""status_nonce: each case's private status page is signed with it; #new-status-link replaces it, and the old
link stops working

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 07:40:00
"""
import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.add_column(sa.Column('status_nonce', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.drop_column('status_nonce')
