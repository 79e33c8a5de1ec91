"""Register, log in, log out and change password."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from . import security
from .db import get_session
from .forms import ChangePasswordForm, LoginForm, LogoutForm, RegisterForm
from .models import User
from .passwords import passwords

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
audit = logging.getLogger("loginapp.audit")

# One message for unknown users and wrong passwords, so neither can be told apart.
BAD_CREDENTIALS = "Invalid username or password."


@login_manager.user_loader
def _load_user(token: str) -> User | None:
    return security.load_session(get_session(), token)


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    if g.pop("session_expired", False):
        session.clear()
        flash("Your session has expired. Please log in again.", "info")
    else:
        flash("Please log in to see this page.", "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//evil.example" and "\\evil" are other hosts to browsers.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("main.dashboard")


def _establish_session(user: User) -> None:
    """Fresh cookie session for a fresh login: nothing survives from before (no fixation)."""
    db = get_session()
    session.clear()
    token = security.start_session(db, user)
    db.commit()
    user.session_token = token
    session.permanent = True
    login_user(user)


@bp.route("/register", methods=["GET", "POST"])
def register() -> Response | str:
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    form = RegisterForm()
    if form.validate_on_submit():
        db = get_session()
        username = form.username.data.lower()
        if db.scalar(select(User.id).where(User.username == username)) is not None:
            form.username.errors.append("This username is already taken.")
        else:
            moment = security.now()
            db.add(
                User(
                    username=username,
                    password_hash=passwords().hash(form.password.data),
                    created_at=moment,
                    password_changed_at=moment,
                )
            )
            try:
                db.commit()
            except IntegrityError:
                # Lost a race with a concurrent registration of the same name.
                db.rollback()
                form.username.errors.append("This username is already taken.")
            else:
                audit.info("registered user=%s ip=%s", username, security.client_ip())
                flash("Your account has been created. Please log in.", "success")
                return redirect(url_for("auth.login"))
    return render_template("register.html", form=form), 200 if request.method == "GET" else 400


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int] | str:
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    form = LoginForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("login.html", form=form), status

    db = get_session()
    username = form.username.data.lower()
    attempt = security.reserve_attempt(db, username)
    # The audit log names the account by an HMAC prefix, never by what was typed.
    name_tag = security.account_key(username)[:12]
    if attempt.wait:
        audit.warning("throttled name=%s ip=%s", name_tag, security.client_ip())
        minutes = -(-attempt.wait // 60)
        flash(
            f"Too many failed attempts for this account. Try again in {minutes} "
            f"minute{'s' if minutes != 1 else ''}.",
            "error",
        )
        return render_template("login.html", form=form), 429, {"Retry-After": str(attempt.wait)}

    user = db.scalar(select(User).where(User.username == username))
    # Unknown users are checked against a dummy hash so both paths take as long.
    ok = passwords().verify(user.password_hash if user else None, form.password.data)
    if not ok or user is None:
        # The reserved attempt stays counted: that is the failure.
        audit.info("login failed name=%s ip=%s", name_tag, security.client_ip())
        flash(BAD_CREDENTIALS, "error")
        return render_template("login.html", form=form), 200

    if passwords().needs_rehash(user.password_hash):
        user.password_hash = passwords().hash(form.password.data)
    security.attempt_succeeded(db, attempt)
    user.previous_login_at, user.previous_login_ip = user.last_login_at, user.last_login_ip
    user.last_login_at, user.last_login_ip = security.now(), security.client_ip()
    _establish_session(user)
    audit.info("login ok user_id=%s ip=%s", user.id, security.client_ip())
    flash(f"Welcome, {user.username}.", "success")
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    form = LogoutForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        db = get_session()
        security.end_session(db, current_user.get_id())
        db.commit()
        audit.info("logout user_id=%s", current_user.id)
    logout_user()
    session.clear()
    flash("You have been logged out.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def change_password() -> Response | tuple[str, int] | str:
    user: User = current_user._get_current_object()
    form = ChangePasswordForm(username_hint=user.username)
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("change_password.html", form=form), status

    db = get_session()
    # Counts against the same budget as logins, so this form is no side door.
    attempt = security.reserve_attempt(db, user.username)
    if attempt.wait:
        flash("Too many failed attempts for this account. Try again later.", "error")
        return (
            render_template("change_password.html", form=form),
            429,
            {"Retry-After": str(attempt.wait)},
        )
    if not passwords().verify(user.password_hash, form.current_password.data):
        form.current_password.errors.append("The current password is not correct.")
        return render_template("change_password.html", form=form), 400

    security.attempt_succeeded(db, attempt)
    old_token = user.get_id()
    user.password_hash = passwords().hash(form.new_password.data)
    user.password_changed_at = security.now()
    # Everything signed in with the old password is signed out, this session renewed.
    security.end_all_sessions(db, user)
    db.commit()
    _establish_session(user)
    audit.info("password changed user_id=%s old_session=%s", user.id, bool(old_token))
    flash("Your password has been changed. Other sessions have been signed out.", "success")
    return redirect(url_for("main.dashboard"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    # Our own server-side sessions handle renewal; Flask-Login's IP/UA check would
    # log mobile users out whenever their address changes.
    login_manager.session_protection = None
    app.register_blueprint(bp)
