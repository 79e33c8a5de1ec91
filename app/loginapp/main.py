"""Dashboard and the health endpoints."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_login import current_user, login_required

from . import db
from .forms import LogoutForm
from .security import aware

bp = Blueprint("main", __name__)


@bp.route("/")
@login_required
def dashboard() -> str:
    user = current_user
    return render_template(
        "dashboard.html",
        user=user,
        last_login_at=aware(user.last_login_at) if user.last_login_at else None,
        previous_login_at=aware(user.previous_login_at) if user.previous_login_at else None,
        logout_form=LogoutForm(),
    )


@bp.route("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    # Liveness only: must not depend on the database, or a DB outage restarts every app.
    return {"status": "ok"}, 200


@bp.route("/readyz")
def readyz() -> tuple[dict[str, str], int]:
    try:
        db.ping()
    except Exception:  # any failure means "not ready"; the reason goes to the log
        current_app.logger.warning("readiness check failed", exc_info=True)
        return {"status": "unavailable", "database": "down"}, 503
    return {"status": "ok", "database": "up"}, 200
