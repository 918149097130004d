"""The letters counted and dated by `mailbot status`, /healthz and /metrics from an index: (direction, delivery,
sent_at) takes the place of the index on delivery alone

Before, the letters by delivery state and the last letter sent were each read from every outbound row: on 150,000
letters sent (50,000 cases' worth), 250 and 220 ms of every `mailbot status`, health check and metrics scrape on
SQLite, which reads a row with its letter's bytes. The outbox index (delivery, next_attempt_at) answers what the
index on delivery alone did, so a message still writes as many index rows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:20:00
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_message_state', 'message', ['direction', 'delivery', 'sent_at'], unique=False)
    op.drop_index('ix_message_delivery', table_name='message')


def downgrade() -> None:
    op.create_index('ix_message_delivery', 'message', ['delivery'], unique=False)
    op.drop_index('ix_message_state', table_name='message')
