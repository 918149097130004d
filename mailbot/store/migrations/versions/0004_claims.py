"""claimed_until: on PostgreSQL a deliverer claims the letters it is about to send (FOR UPDATE SKIP LOCKED),
so two deliverers never send one letter twice

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 07:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as batch:
        batch.add_column(sa.Column('claimed_until', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('message') as batch:
        batch.drop_column('claimed_until')
