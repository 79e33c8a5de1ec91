"""Registration, login, logout, password change, throttling and sessions."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from flask import Flask
from flask.testing import FlaskClient
from loginapp_kit.html import csrf_token
from sqlalchemy import select

from loginapp.auth import BAD_CREDENTIALS
from loginapp.db import get_session
from loginapp.models import User, UserSession


def _text(response) -> str:
    return response.get_data(as_text=True)


def _generic(response, username: str) -> str:
    """The page with what differs between requests anyway: CSRF token and echoed name."""
    page = _text(response)
    return page.replace(csrf_token(page), "TOKEN").replace(username, "NAME")


def _db_user(app: Flask, username: str) -> User:
    with app.app_context():
        return get_session().scalar(select(User).where(User.username == username))


# --- registration --------------------------------------------------------------


def test_register_then_login_shows_dashboard(client: FlaskClient, forms, password) -> None:
    response = forms.register(client, "Alice", password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "Your account has been created" in _text(client.get("/login"))

    response = forms.login(client, "alice", password, follow_redirects=True)
    assert response.status_code == 200
    body = _text(response)
    assert "Hello, alice" in body
    assert "Welcome, alice." in body
    assert "This is your first login." in body


def test_register_duplicate_username_case_insensitive(client: FlaskClient, user, forms) -> None:
    response = forms.register(client, "ALICE", "another good passphrase")
    assert response.status_code == 400
    assert "This username is already taken." in _text(response)


@pytest.mark.parametrize(
    ("weak_password", "message"),
    [
        ("short", "Use at least 8 characters."),
        ("sevench", "Use at least 8 characters."),
        ("x" * 129, "Use at most 128 characters."),
        ("password", "too common"),
        ("Password1", "too common"),
        ("iloveyou", "too common"),
        ("qwertyuiop", "too common"),
    ],
)
def test_register_rejects_weak_passwords(
    client: FlaskClient, weak_password: str, message: str, forms
) -> None:
    response = forms.register(client, "bob", weak_password)
    assert response.status_code == 400
    assert message in _text(response)
    assert _db_user(client.application, "bob") is None


def test_password_equal_to_username_rejected(client: FlaskClient, forms) -> None:
    response = forms.register(client, "longusername", "LongUserName")
    assert response.status_code == 400
    assert "must not be your username" in _text(response)


def test_password_rules_accept_long_unicode_no_composition(
    client: FlaskClient, app, forms
) -> None:
    # 128 characters, all lower-case letters and spaces: allowed (no composition rules).
    long_password = ("correct horse battery staple " * 5)[:128]
    assert forms.register(client, "carol", long_password).status_code == 302
    assert forms.login(client, "carol", long_password).status_code == 302
    forms.logout(client)
    # Exactly 8 characters and non-ASCII are fine.
    assert forms.register(client, "dave", "žluťoučk").status_code == 302
    assert forms.login(client, "dave", "žluťoučk").status_code == 302


def test_no_truncation_of_long_passwords(client: FlaskClient, forms) -> None:
    password = "a distinct prefix that is rather long " * 3  # 114 characters
    assert forms.register(client, "erin", password).status_code == 302
    # Same prefix, different last character: must fail (bcrypt would truncate at 72 bytes).
    assert forms.login(client, "erin", password[:-1] + "X").status_code == 200
    assert forms.login(client, "erin", password).status_code == 302


def test_register_password_mismatch_and_bad_username(client: FlaskClient, forms, password) -> None:
    response = forms.register(client, "frank", password, confirm=password + "x")
    assert "The passwords do not match." in _text(response)
    response = forms.register(client, "a b", password)
    assert response.status_code == 400
    assert "Use 3 to 64 letters" in _text(response)


class _Elements(HTMLParser):
    """Tag and attributes of every element of a page, in document order."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _described_by(page: str) -> dict[str, str | None]:
    """Visible input's name -> its aria-describedby, checked to name an element of the page."""
    elements = _Elements(page).elements
    ids = {attrs["id"] for _, attrs in elements if attrs.get("id")}
    described = {
        str(attrs["name"]): attrs.get("aria-describedby")
        for tag, attrs in elements
        if tag == "input" and attrs.get("type") != "hidden"
    }
    dangling = {name: ref for name, ref in described.items() if ref and ref not in ids}
    assert dangling == {}, "aria-describedby points at no element"
    return described


def test_aria_describedby_only_where_there_is_help(client: FlaskClient, forms, password) -> None:
    # Fields with a description point at it; the rest carry no attribute at all.
    page = _text(client.get("/register"))
    assert _described_by(page) == {
        "username": "username-help",
        "password": "password-help",
        "confirm": None,
    }
    assert "None" not in page
    assert _described_by(_text(client.get("/login"))) == {"username": None, "password": None}
    # An error is help too, and marks the field invalid.
    page = _text(forms.register(client, "frank", password, confirm=password + "x"))
    assert _described_by(page)["confirm"] == "confirm-help"
    assert page.count('aria-invalid="true"') == 1  # the confirm field only


def test_password_is_stored_as_argon2id(client: FlaskClient, user) -> None:
    stored = _db_user(client.application, "alice").password_hash
    assert stored.startswith("$argon2id$")
    assert user.password not in stored


# --- login and no enumeration ----------------------------------------------------


def test_wrong_password_and_unknown_user_look_identical(
    client: FlaskClient, user, monkeypatch: pytest.MonkeyPatch, forms
) -> None:
    from loginapp import passwords as pw_module

    calls: list[str | None] = []
    original = pw_module.Passwords.verify

    def counting_verify(self, password_hash, password):
        calls.append(password_hash)
        return original(self, password_hash, password)

    monkeypatch.setattr(pw_module.Passwords, "verify", counting_verify)
    wrong = forms.login(client, "alice", "not the right password")
    unknown = forms.login(client, "mallory", "not the right password")
    assert wrong.status_code == unknown.status_code == 200
    assert BAD_CREDENTIALS in _text(wrong)
    # Same page apart from the per-request CSRF token and the echoed username.
    assert _generic(wrong, "alice") == _generic(unknown, "mallory")
    # Both paths run exactly one argon2 verification (the unknown one on a dummy hash).
    assert len(calls) == 2
    assert calls[0] is not None
    assert calls[1] is None


def test_unknown_user_verification_costs_a_real_hash(app: Flask) -> None:
    from loginapp.passwords import passwords

    with app.app_context():
        hasher = passwords()
        assert hasher.dummy_hash.startswith("$argon2id$")
        assert hasher.verify(None, "anything") is False


def test_login_bad_csrf_rejected(client: FlaskClient, user) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"csrf_token": "forged", "username": "alice", "password": user.password}
    )
    assert response.status_code == 400
    assert "The form has expired" in _text(response)
    response = client.post("/login", data={"username": "alice", "password": user.password})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_register_bad_csrf_rejected(client: FlaskClient, password) -> None:
    response = client.post(
        "/register", data={"username": "zed", "password": password, "confirm": password}
    )
    assert response.status_code == 400
    assert _db_user(client.application, "zed") is None


def test_login_redirects_only_to_local_next(client: FlaskClient, user, forms) -> None:
    token = forms.csrf_token(client)
    data = {"csrf_token": token, "username": "alice", "password": user.password}
    response = client.post("/login?next=//evil.example/x", data=data)
    assert response.headers["Location"] == "/"
    forms.logout(client)
    data["csrf_token"] = forms.csrf_token(client)
    response = client.post("/login?next=/password", data=data)
    assert response.headers["Location"] == "/password"


def test_dashboard_requires_login(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/")
    assert client.get("/password").status_code == 302


def test_dashboard_shows_previous_login_and_client_ip(
    client: FlaskClient, user, clock, forms
) -> None:
    forms.login(client, "alice", user.password, headers={"X-Forwarded-For": "203.0.113.7"})
    forms.logout(client)
    clock.advance(hours=1)
    forms.login(client, "alice", user.password, headers={"X-Forwarded-For": "198.51.100.9"})
    body = _text(client.get("/"))
    assert "198.51.100.9" in body  # this login
    assert "203.0.113.7" in body  # previous login
    assert "2030-01-01 12:00:00 UTC" in body


def test_rehash_on_login_when_parameters_change(
    make_app, client: FlaskClient, user, forms
) -> None:
    old_hash = _db_user(client.application, "alice").password_hash
    assert "t=1" in old_hash
    stronger = make_app(ARGON2_TIME_COST=2)
    other = stronger.test_client()
    assert forms.login(other, "alice", user.password).status_code == 302
    new_hash = _db_user(stronger, "alice").password_hash
    assert new_hash != old_hash
    assert "t=2" in new_hash
    # And the new hash still verifies.
    forms.logout(other)
    assert forms.login(other, "alice", user.password).status_code == 302


# --- sessions ------------------------------------------------------------------------


def _cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(client.application.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie else None


def test_session_renewed_on_login(client: FlaskClient, user, forms) -> None:
    client.get("/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by attacker"
        pre_login_csrf = sess.get("csrf_token")
    planted_cookie = _cookie(client)

    assert forms.login(client, "alice", user.password).status_code == 302
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess.get("csrf_token") != pre_login_csrf
    assert _cookie(client) != planted_cookie

    # Whoever kept the pre-login cookie (fixation attempt) is not logged in.
    attacker = client.application.test_client()
    attacker.set_cookie(client.application.config["SESSION_COOKIE_NAME"], planted_cookie)
    assert attacker.get("/").status_code == 302


def test_logout_requires_post_and_csrf(client: FlaskClient, user, forms) -> None:
    forms.login(client, "alice", user.password)
    assert client.get("/logout").status_code == 405
    response = client.post("/logout", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert client.get("/").status_code == 200


def test_logout_invalidates_session_server_side(client: FlaskClient, user, forms) -> None:
    forms.login(client, "alice", user.password)
    stolen = _cookie(client)
    response = forms.logout(client)
    assert response.status_code == 302
    assert "You have been logged out." in _text(client.get("/login"))
    assert client.get("/").status_code == 302
    # Replaying the cookie from before logout does not work either.
    replay = client.application.test_client()
    replay.set_cookie(client.application.config["SESSION_COOKIE_NAME"], stolen)
    assert replay.get("/").status_code == 302
    with client.application.app_context():
        assert get_session().scalars(select(UserSession)).all() == []


OLD_KEY, NEW_KEY = "o" * 48, "n" * 48


def _moved(source: FlaskClient, app: Flask) -> FlaskClient:
    """The same browser (its cookie) talking to another replica."""
    other = app.test_client()
    name = app.config["SESSION_COOKIE_NAME"]
    other.set_cookie(name, source.get_cookie(name).value)
    return other


@pytest.mark.parametrize("first", [0, 1])
def test_key_rotation_keeps_sessions_and_forms(make_app, user, forms, first: int) -> None:
    """While a new key rolls out, replicas signing with either key serve each other's users.

    Phase 1 of a rotation makes every replica accept the new key; phase 2 makes
    it the signing key, the old one a fallback. These are the two kinds of
    replica that meet during phase 2's rolling update.
    """
    replicas = [
        make_app(SECRET_KEY=OLD_KEY, SECRET_KEY_FALLBACKS=[NEW_KEY]),
        make_app(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]),
    ]
    here = replicas[first].test_client()
    forms.login(here, "alice", user.password)
    dashboard = here.get("/")
    there = _moved(here, replicas[1 - first])
    assert there.get("/").status_code == 200, "the session did not survive the other key"
    # A form rendered by the other replica (the dashboard's log-out button) still submits.
    token = csrf_token(dashboard.get_data(as_text=True))
    assert there.post("/logout", data={"csrf_token": token}).status_code == 302
    assert there.get("/").status_code == 302


def test_a_key_without_fallback_ends_sessions(make_app, user, forms) -> None:
    here = make_app(SECRET_KEY=OLD_KEY).test_client()
    forms.login(here, "alice", user.password)
    assert _moved(here, make_app(SECRET_KEY=NEW_KEY)).get("/").status_code == 302


def test_idle_timeout(client: FlaskClient, user, clock, forms) -> None:
    forms.login(client, "alice", user.password)
    clock.advance(minutes=29)
    assert client.get("/").status_code == 200
    clock.advance(minutes=29)  # activity above refreshed the idle timer
    assert client.get("/").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/")
    assert response.status_code == 302
    assert "Your session has expired" in _text(client.get("/login"))


def test_absolute_timeout(make_app, clock, forms, password) -> None:
    app = make_app(SESSION_IDLE_TIMEOUT=1800, SESSION_ABSOLUTE_TIMEOUT=3 * 3600)
    client = app.test_client()
    forms.register(client, "alice", password)
    forms.login(client, "alice", password)
    for _ in range(7):  # active every 25 minutes for 2 h 55 min: idle timeout never hits
        clock.advance(minutes=25)
        assert client.get("/").status_code == 200
    clock.advance(minutes=25)  # 3 h 20 min after login: over the absolute limit
    response = client.get("/")
    assert response.status_code == 302
    assert "Your session has expired" in _text(client.get("/login"))


# --- change password ----------------------------------------------------------------


def test_change_password_flow(make_app, client: FlaskClient, user, forms) -> None:
    other_device = make_app().test_client()
    forms.login(other_device, "alice", user.password)
    forms.login(client, "alice", user.password)
    before = _cookie(client)

    new = "a completely new passphrase"
    response = forms.change_password(client, user.password, new)
    assert response.status_code == 302
    assert "Your password has been changed" in _text(client.get("/"))
    assert _cookie(client) != before  # this session renewed
    assert other_device.get("/").status_code == 302  # the other one signed out

    forms.logout(client)
    assert BAD_CREDENTIALS in _text(forms.login(client, "alice", user.password))
    assert forms.login(client, "alice", new).status_code == 302


def test_change_password_failures(client: FlaskClient, user, forms) -> None:
    forms.login(client, "alice", user.password)
    response = forms.change_password(
        client, "wrong current password", "a completely new passphrase"
    )
    assert response.status_code == 400
    assert "The current password is not correct." in _text(response)
    response = forms.change_password(client, user.password, "password1")
    assert "too common" in _text(response)
    response = forms.change_password(client, user.password, "short")
    assert "at least 8" in _text(response)
    response = forms.change_password(
        client, user.password, "fine new passphrase", confirm="different"
    )
    assert "do not match" in _text(response)
    response = client.post(
        "/password",
        data={"current_password": user.password, "new_password": "x" * 20, "confirm": "x" * 20},
    )
    assert response.status_code == 400  # no CSRF token
    forms.logout(client)
    assert forms.login(client, "alice", user.password).status_code == 302
