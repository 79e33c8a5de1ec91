"""Server-side sessions, login throttling and response headers."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, current_app, g, request
from sqlalchemy import case, delete, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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


def prune_sessions(db: Session, moment: datetime) -> int:
    """Delete sessions past their idle or absolute timeout; return how many."""
    idle = timedelta(seconds=current_app.config["SESSION_IDLE_TIMEOUT"])
    absolute = timedelta(seconds=current_app.config["SESSION_ABSOLUTE_TIMEOUT"])
    expired = or_(
        UserSession.created_at < moment - absolute, UserSession.last_seen_at < moment - idle
    )
    return db.execute(delete(UserSession).where(expired)).rowcount


def end_session(db: Session, token: str | None) -> None:
    if token:
        db.execute(delete(UserSession).where(UserSession.token_hash == _token_hash(token)))


def end_all_sessions(db: Session, user: User) -> None:
    db.execute(delete(UserSession).where(UserSession.user_id == user.id))


# --- throttling ----------------------------------------------------------------
#
# Every password verification first reserves one attempt in two counters, in one
# atomic statement each, so concurrent guesses cannot all read the same old count:
#   * per (account, client address): LOGIN_MAX_FAILURES per LOGIN_FAILURE_WINDOW;
#     one address using up its attempts does not stop the owner elsewhere;
#   * per account: LOGIN_ACCOUNT_MAX_FAILURES per hour from all addresses, which
#     only a distributed attack reaches (ASVS 2.2.1: at most 100 an hour).
# A successful verification gives its reservations back.

ACCOUNT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int
    window: timedelta


@dataclass(frozen=True)
class Attempt:
    """The outcome of reserve_attempt: allowed, or how many seconds to wait."""

    counters: tuple[Counter, ...]
    wait: int = 0


def _hmac(*parts: str) -> str:
    secret = current_app.config["SECRET_KEY"]
    if isinstance(secret, str):
        secret = secret.encode()
    message = "\0".join(parts).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def account_key(username: str) -> str:
    """Stands for the account name in the throttle table and the audit log."""
    return _hmac("account", username)


def throttle_counters(username: str) -> tuple[Counter, Counter]:
    """The (account, address) and account counters for a login as ``username``.

    Keyed by an HMAC of the submitted name, so unknown names are throttled like
    real ones and what people type is not stored in clear.
    """
    config = current_app.config
    return (
        Counter(
            _hmac("address", username, client_ip() or ""),
            config["LOGIN_MAX_FAILURES"],
            timedelta(seconds=config["LOGIN_FAILURE_WINDOW"]),
        ),
        Counter(account_key(username), config["LOGIN_ACCOUNT_MAX_FAILURES"], ACCOUNT_WINDOW),
    )


def _insert(db: Session) -> Any:
    # INSERT ... ON CONFLICT DO UPDATE ... RETURNING exists in both dialects.
    postgresql = db.get_bind().dialect.name == "postgresql"
    return (postgresql_insert if postgresql else sqlite_insert)(LoginThrottle)


def _take(db: Session, counter: Counter, moment: datetime) -> bool:
    """Count one attempt unless the counter is at its limit; True when counted."""
    expired = LoginThrottle.window_start <= moment - counter.window
    at = literal(moment, LoginThrottle.window_start.type)
    statement = (
        _insert(db)
        .values(key=counter.key, failures=1, window_start=moment)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
                "window_start": case((expired, at), else_=LoginThrottle.window_start),
            },
            where=or_(expired, LoginThrottle.failures < counter.limit),
        )
        .returning(LoginThrottle.failures)
    )
    taken = db.execute(statement).first() is not None
    db.commit()
    return taken


def _give_back(db: Session, counter: Counter) -> None:
    db.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == counter.key, LoginThrottle.failures > 0)
        .values(failures=LoginThrottle.failures - 1)
    )


def _wait(db: Session, counter: Counter, moment: datetime) -> int:
    start = db.scalar(select(LoginThrottle.window_start).where(LoginThrottle.key == counter.key))
    remaining = (aware(start) + counter.window - moment).total_seconds() if start else 0
    return max(1, math.ceil(remaining))


def reserve_attempt(db: Session, username: str) -> Attempt:
    """Reserve one password verification for ``username`` from this client address."""
    moment = now()
    taken: list[Counter] = []
    for counter in throttle_counters(username):
        if not _take(db, counter, moment):
            for earlier in taken:
                _give_back(db, earlier)
            db.commit()
            return Attempt((), wait=_wait(db, counter, moment))
        taken.append(counter)
    return Attempt(tuple(taken))


def attempt_succeeded(db: Session, attempt: Attempt) -> None:
    """A right password: this address starts afresh; the account gets its attempt back."""
    address, *others = attempt.counters
    db.execute(delete(LoginThrottle).where(LoginThrottle.key == address.key))
    for counter in others:
        _give_back(db, counter)


def prune_throttle(db: Session, moment: datetime) -> int:
    """Delete rows whose window has passed (they count as zero anyway); return how many."""
    longest = max(timedelta(seconds=current_app.config["LOGIN_FAILURE_WINDOW"]), ACCOUNT_WINDOW)
    result = db.execute(
        delete(LoginThrottle).where(LoginThrottle.window_start <= moment - longest)
    )
    return result.rowcount


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
