"""The tamper-evident audit trail: each event's salt, content hash, place in the chain and chain hash, the
event that redacted it, and the chain's head; the events already recorded are linked in id order

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 09:30:00
"""
import secrets

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

from mailbot.domain import audit

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event') as batch:
        batch.add_column(sa.Column('salt', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('chain_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('redacted_by', sa.Integer(), nullable=True))
        batch.create_index('ix_event_seq', ['seq'], unique=True)
    head = op.create_table(
        'audit_head',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    bind = op.get_bind()
    event = sa.table('event', sa.column('id', sa.Integer), sa.column('case_id', sa.Integer),
                     sa.column('at', sa.DateTime), sa.column('type', sa.String), sa.column('actor', sa.String),
                     sa.column('detail', sa.Text), sa.column('salt', sa.String),
                     sa.column('content_hash', sa.String), sa.column('seq', sa.Integer),
                     sa.column('chain_hash', sa.String))
    seq, previous, after = 0, audit.GENESIS, 0
    while True:  # a page at a time, in id order: what was recorded before the chain existed, linked as it stands
        rows = bind.execute(sa.select(event.c.id, event.c.case_id, event.c.at, event.c.type, event.c.actor,
                                      event.c.detail).where(event.c.id > after).order_by(event.c.id)
                            .limit(5000)).all()
        if not rows:
            break
        updates = []
        for event_id, case_id, at, type_, actor, detail in rows:
            salt = secrets.token_hex(16)
            content = audit.content_hash(salt, case_id, at, type_, actor or "", detail or "")
            seq += 1
            previous = audit.link(previous, seq, content)
            updates.append({"b_id": event_id, "b_salt": salt, "b_content": content, "b_seq": seq,
                            "b_chain": previous})
        bind.execute(event.update().where(event.c.id == sa.bindparam("b_id")).values(
            salt=sa.bindparam("b_salt"), content_hash=sa.bindparam("b_content"), seq=sa.bindparam("b_seq"),
            chain_hash=sa.bindparam("b_chain")), updates)
        after = rows[-1][0]
    op.bulk_insert(head, [{"id": 1, "seq": seq, "hash": previous}])


def downgrade() -> None:
    op.drop_table('audit_head')
    with op.batch_alter_table('event') as batch:
        batch.drop_index('ix_event_seq')
        batch.drop_column('redacted_by')
        batch.drop_column('chain_hash')
        batch.drop_column('seq')
        batch.drop_column('content_hash')
        batch.drop_column('salt')
