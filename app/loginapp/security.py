"""Server-side sessions, per-account login throttling and response headers."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from datetime import UTC, datetime, timedelta

from flask import Flask, Response, current_app, g, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import LoginThrottle, User, UserSession

# Refreshing last_seen_at at most this often keeps most requests read-only.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def now() -> datetime:
    """Current UTC time; tests replace it through app.config["NOW"]."""
    clock = current_app.config.get("NOW")
    return clock() if clock else datetime.now(UTC)


def aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def client_ip() -> str | None:
    # ProxyFix has already replaced remote_addr with the trusted hop's X-Forwarded-For.
    return request.remote_addr


# --- sessions ------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def start_session(db: Session, user: User) -> str:
    """Create a server-side session and return the token that goes into the cookie."""
    token = secrets.token_urlsafe(32)
    moment = now()
    db.add(
        UserSession(
            token_hash=_token_hash(token),
            user_id=user.id,
            created_at=moment,
            last_seen_at=moment,
            ip=client_ip(),
            user_agent=(request.user_agent.string or "")[:255] or None,
        )
    )
    return token


def load_session(db: Session, token: str) -> User | None:
    """Return the user for a session token, enforcing the idle and absolute timeouts."""
    row = db.get(UserSession, _token_hash(token))
    if row is None:
        return None
    moment = now()
    idle = timedelta(seconds=current_app.config["SESSION_IDLE_TIMEOUT"])
    absolute = timedelta(seconds=current_app.config["SESSION_ABSOLUTE_TIMEOUT"])
    if moment - aware(row.created_at) > absolute or moment - aware(row.last_seen_at) > idle:
        db.delete(row)
        db.commit()
        g.session_expired = True
        return None
    if moment - aware(row.last_seen_at) >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = moment
        db.commit()
    user = row.user
    user.session_token = token
    return user


def end_session(db: Session, token: str | None) -> None:
    if token:
        db.execute(delete(UserSession).where(UserSession.token_hash == _token_hash(token)))


def end_all_sessions(db: Session, user: User) -> None:
    db.execute(delete(UserSession).where(UserSession.user_id == user.id))


# --- throttling ----------------------------------------------------------------


def throttle_key(username: str) -> str:
    secret = current_app.config["SECRET_KEY"]
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, username.encode("utf-8"), hashlib.sha256).hexdigest()


def _window() -> timedelta:
    return timedelta(seconds=current_app.config["LOGIN_FAILURE_WINDOW"])


def throttled_for(db: Session, key: str) -> int:
    """Seconds until this account may try again; 0 when it may try now."""
    row = db.get(LoginThrottle, key)
    if row is None or row.failures < current_app.config["LOGIN_MAX_FAILURES"]:
        return 0
    remaining = (aware(row.window_start) + _window() - now()).total_seconds()
    return math.ceil(remaining) if remaining > 0 else 0


def record_failure(db: Session, key: str) -> None:
    """Count a failed attempt; row-locked so replicas do not lose increments."""
    moment = now()
    for _attempt in range(2):
        row = db.execute(
            select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            db.add(LoginThrottle(key=key, failures=1, window_start=moment))
        elif moment - aware(row.window_start) >= _window():
            row.failures = 1
            row.window_start = moment
        else:
            row.failures += 1
        try:
            db.commit()
            return
        except IntegrityError:
            # Another replica inserted the row first; retry as an update.
            db.rollback()
    raise RuntimeError("could not record a failed login")


def clear_failures(db: Session, key: str) -> None:
    db.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


# --- headers -------------------------------------------------------------------


def _set_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        # Pages carry CSRF tokens and personal data: keep them out of caches.
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(_set_headers)
