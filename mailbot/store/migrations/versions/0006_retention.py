"""held_reason and anonymised_at: a case on hold (#hold) is kept out of retention; an anonymised one (by
retention or erase-person) keeps only its figures

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 07:50:00
"""
import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.add_column(sa.Column('held_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch.add_column(sa.Column('anonymised_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('case') as batch:
        batch.drop_column('anonymised_at')
        batch.drop_column('held_reason')
