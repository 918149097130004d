"""channel: how each complaint reached us (email, web, phone, post, in-person); postal_address for those
who have no email, whose letters staff post

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 05:00:00
"""
import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.add_column(sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                   server_default='email'))
        batch.add_column(sa.Column('postal_address', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.drop_column('postal_address')
        batch.drop_column('channel')
