"""senders: the case's From and Reply-To; the From behind each automatic letter

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:00:00
"""
import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.add_column(sa.Column('from_addr', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('reply_to', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table('message') as batch:
        batch.add_column(sa.Column('trigger_from', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index('ix_message_cap_from', 'message', ['trigger_from', 'automatic', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_message_cap_from', table_name='message')
    with op.batch_alter_table('message') as batch:
        batch.drop_column('trigger_from')
    with op.batch_alter_table('case') as batch:
        batch.drop_column('reply_to')
        batch.drop_column('from_addr')
