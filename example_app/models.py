"""The CRM's tables, as the migrations in ``migrations/`` leave them.

The migrations are the source of truth for the schema; these models mirror
their end state (names of constraints and indexes included) so the ORM and
the database agree. ``db.create_all()`` is never used: change a table by
adding a migration, then update the model here.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def _created_at() -> Mapped[datetime.datetime]:
    return mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())


class User(db.Model):  # type: ignore[name-defined,misc]
    """0001."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(sa.Text, unique=True)
    name: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime.datetime] = _created_at()


class Status(db.Model):  # type: ignore[name-defined,misc]
    """0002 (with its seed rows: new, contacted, qualified, won, lost)."""

    __tablename__ = "statuses"

    id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text, unique=True)
    position: Mapped[int] = mapped_column(sa.Integer)


class Lead(db.Model):  # type: ignore[name-defined,misc]
    """0003, plus order_index (0005), leads_email_key (0006), leads_status_id_idx (0008)
    and leads_owner_id_fkey (0009/0010)."""

    __tablename__ = "leads"
    __table_args__ = (
        sa.Index("leads_email_key", "email", unique=True),
        sa.Index("leads_status_id_idx", "status_id"),
    )

    id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(sa.Text)
    company: Mapped[str | None] = mapped_column(sa.Text)
    status_id: Mapped[int] = mapped_column(sa.ForeignKey("statuses.id"))
    owner_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", name="leads_owner_id_fkey", ondelete="SET NULL")
    )
    # Nullable on purpose: see migrations/0005_add_lead_order_index.py.
    order_index: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime.datetime] = _created_at()


class Note(db.Model):  # type: ignore[name-defined,misc]
    """0004, plus notes_lead_id_fkey (0007)."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
    lead_id: Mapped[int] = mapped_column(
        sa.ForeignKey("leads.id", name="notes_lead_id_fkey", ondelete="CASCADE")
    )
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime.datetime] = _created_at()
