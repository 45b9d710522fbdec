"""A tiny JSON API over leads: the app uses ``db.session`` like any Flask app."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import request

from .models import Lead
from .models import Status
from .models import db

bp = Blueprint("leads", __name__)

#: Distance between neighbouring cards in a status column; same as the backfill
#: in migrations/0005_add_lead_order_index.py.
ORDER_GAP = 1024


def _as_json(lead: Lead, status: str) -> dict[str, t.Any]:
    return {
        "id": lead.id,
        "email": lead.email,
        "company": lead.company,
        "status": status,
        "owner_id": lead.owner_id,
        "order_index": lead.order_index,
        "created_at": lead.created_at.isoformat(),
    }


@bp.get("/leads")
def list_leads() -> list[dict[str, t.Any]]:
    rows = db.session.execute(
        sa.select(Lead, Status.name)
        .join(Status, Lead.status_id == Status.id)
        .order_by(Status.position, Lead.order_index.asc().nulls_last(), Lead.id)
    )
    return [_as_json(lead, status) for lead, status in rows]


@bp.post("/leads")
def create_lead() -> tuple[dict[str, t.Any], int]:
    data = request.get_json(silent=True) or {}
    email = data.get("email")
    if not isinstance(email, str) or "@" not in email:
        abort(400, description="'email' is required")
    status_name = data.get("status", "new")
    status = db.session.scalar(sa.select(Status).where(Status.name == status_name))
    if status is None:
        abort(400, description=f"unknown status {status_name!r}")
    if db.session.scalar(sa.select(Lead.id).where(Lead.email == email)) is not None:
        abort(409, description=f"a lead with e-mail {email!r} exists")
    last = db.session.scalar(
        sa.select(sa.func.max(Lead.order_index)).where(Lead.status_id == status.id)
    )
    lead = Lead(
        email=email,
        company=data.get("company"),
        status_id=status.id,
        order_index=(last or 0) + ORDER_GAP,  # at the bottom of its column
    )
    db.session.add(lead)
    db.session.commit()
    return _as_json(lead, status.name), 201
