"""ix_message_cap holds automatic letters only: the inbound rows' To lists are not indexed any more, since
PostgreSQL refuses an index row over ~2.7 KB and a message To 400 people stopped intake there

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_message_cap', table_name='message')
    op.create_index('ix_message_cap', 'message', ['to_addrs', 'at'], unique=False,
                    postgresql_where=sa.text('automatic'), sqlite_where=sa.text('automatic = 1'))


def downgrade() -> None:
    op.drop_index('ix_message_cap', table_name='message')
    op.create_index('ix_message_cap', 'message', ['to_addrs', 'automatic', 'at'], unique=False)
