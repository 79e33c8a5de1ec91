"""Registration, login, logout, password change, throttling and sessions."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from loginapp.auth import BAD_CREDENTIALS
from loginapp.db import get_session
from loginapp.models import User, UserSession

from .conftest import PASSWORD, Clock, csrf_token, login, logout, register


def _text(response) -> str:
    return response.get_data(as_text=True)


def _db_user(app: Flask, username: str) -> User:
    with app.app_context():
        return get_session().scalar(select(User).where(User.username == username))


# --- registration --------------------------------------------------------------


def test_register_then_login_shows_dashboard(client: FlaskClient) -> None:
    response = register(client, "Alice", PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "Your account has been created" in _text(client.get("/login"))

    response = login(client, "alice", PASSWORD, follow_redirects=True)
    assert response.status_code == 200
    body = _text(response)
    assert "Hello, alice" in body
    assert "Welcome, alice." in body
    assert "This is your first login." in body


def test_register_duplicate_username_case_insensitive(client: FlaskClient, user) -> None:
    response = register(client, "ALICE", "another good passphrase")
    assert response.status_code == 400
    assert "This username is already taken." in _text(response)


@pytest.mark.parametrize(
    ("password", "message"),
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
def test_register_rejects_weak_passwords(client: FlaskClient, password: str, message: str) -> None:
    response = register(client, "bob", password)
    assert response.status_code == 400
    assert message in _text(response)
    assert _db_user(client.application, "bob") is None


def test_password_equal_to_username_rejected(client: FlaskClient) -> None:
    response = register(client, "longusername", "LongUserName")
    assert response.status_code == 400
    assert "must not be your username" in _text(response)


def test_password_rules_accept_long_unicode_no_composition(client: FlaskClient, app) -> None:
    # 128 characters, all lower-case letters and spaces: allowed (no composition rules).
    long_password = ("correct horse battery staple " * 5)[:128]
    assert register(client, "carol", long_password).status_code == 302
    assert login(client, "carol", long_password).status_code == 302
    logout(client)
    # Exactly 8 characters and non-ASCII are fine.
    assert register(client, "dave", "žluťoučk").status_code == 302
    assert login(client, "dave", "žluťoučk").status_code == 302


def test_no_truncation_of_long_passwords(client: FlaskClient) -> None:
    password = "a distinct prefix that is rather long " * 3  # 114 characters
    assert register(client, "erin", password).status_code == 302
    # Same prefix, different last character: must fail (bcrypt would truncate at 72 bytes).
    assert login(client, "erin", password[:-1] + "X").status_code == 200
    assert login(client, "erin", password).status_code == 302


def test_register_password_mismatch_and_bad_username(client: FlaskClient) -> None:
    response = register(client, "frank", PASSWORD, confirm=PASSWORD + "x")
    assert "The passwords do not match." in _text(response)
    response = register(client, "a b", PASSWORD)
    assert response.status_code == 400
    assert "Use 3 to 64 letters" in _text(response)


def test_password_is_stored_as_argon2id(client: FlaskClient, user) -> None:
    stored = _db_user(client.application, "alice").password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


# --- login and no enumeration ----------------------------------------------------


def test_wrong_password_and_unknown_user_look_identical(
    client: FlaskClient, user, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loginapp import passwords as pw_module

    calls: list[str | None] = []
    original = pw_module.Passwords.verify

    def counting_verify(self, password_hash, password):
        calls.append(password_hash)
        return original(self, password_hash, password)

    monkeypatch.setattr(pw_module.Passwords, "verify", counting_verify)
    wrong = login(client, "alice", "not the right password")
    unknown = login(client, "mallory", "not the right password")
    assert wrong.status_code == unknown.status_code == 200
    assert BAD_CREDENTIALS in _text(wrong)
    # Same page apart from the per-request CSRF token and the echoed username.
    strip = lambda r: csrf_strip(_text(r)).replace("alice", "X").replace("mallory", "X")  # noqa: E731
    assert strip(wrong) == strip(unknown)
    # Both paths run exactly one argon2 verification (the unknown one on a dummy hash).
    assert len(calls) == 2
    assert calls[0] is not None
    assert calls[1] is None


def csrf_strip(text: str) -> str:
    import re

    return re.sub(r'value="[^"]*"', 'value=""', text)


def test_unknown_user_verification_costs_a_real_hash(app: Flask) -> None:
    from loginapp.passwords import passwords

    with app.app_context():
        hasher = passwords()
        assert hasher.dummy_hash.startswith("$argon2id$")
        assert hasher.verify(None, "anything") is False


def test_login_bad_csrf_rejected(client: FlaskClient, user) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"csrf_token": "forged", "username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert "The form has expired" in _text(response)
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_register_bad_csrf_rejected(client: FlaskClient) -> None:
    response = client.post(
        "/register", data={"username": "zed", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status_code == 400
    assert _db_user(client.application, "zed") is None


def test_login_redirects_only_to_local_next(client: FlaskClient, user) -> None:
    token = csrf_token(client)
    data = {"csrf_token": token, "username": "alice", "password": PASSWORD}
    response = client.post("/login?next=//evil.example/x", data=data)
    assert response.headers["Location"] == "/"
    logout(client)
    data["csrf_token"] = csrf_token(client)
    response = client.post("/login?next=/password", data=data)
    assert response.headers["Location"] == "/password"


def test_dashboard_requires_login(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/")
    assert client.get("/password").status_code == 302


def test_dashboard_shows_previous_login_and_client_ip(client: FlaskClient, user, clock) -> None:
    login(client, "alice", PASSWORD, headers={"X-Forwarded-For": "203.0.113.7"})
    logout(client)
    clock.advance(hours=1)
    login(client, "alice", PASSWORD, headers={"X-Forwarded-For": "198.51.100.9"})
    body = _text(client.get("/"))
    assert "198.51.100.9" in body  # this login
    assert "203.0.113.7" in body  # previous login
    assert "2030-01-01 12:00:00 UTC" in body


def test_rehash_on_login_when_parameters_change(make_app, client: FlaskClient, user) -> None:
    old_hash = _db_user(client.application, "alice").password_hash
    assert "t=1" in old_hash
    stronger = make_app(ARGON2_TIME_COST=2)
    other = stronger.test_client()
    assert login(other, "alice", PASSWORD).status_code == 302
    new_hash = _db_user(stronger, "alice").password_hash
    assert new_hash != old_hash
    assert "t=2" in new_hash
    # And the new hash still verifies.
    logout(other)
    assert login(other, "alice", PASSWORD).status_code == 302


# --- throttling -------------------------------------------------------------------


def test_throttling_kicks_in_and_lifts(client: FlaskClient, user, clock: Clock) -> None:
    for _ in range(10):
        response = login(client, "alice", "wrong password!")
        assert BAD_CREDENTIALS in _text(response)
    # Now even the right password is refused until the window has passed.
    response = login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed attempts" in _text(response)
    assert int(response.headers["Retry-After"]) <= 900
    clock.advance(minutes=10)
    assert login(client, "alice", PASSWORD).status_code == 429
    clock.advance(minutes=5, seconds=1)
    assert login(client, "alice", PASSWORD).status_code == 302


def test_success_resets_failure_count(client: FlaskClient, user) -> None:
    for _ in range(9):
        login(client, "alice", "wrong password!")
    assert login(client, "alice", PASSWORD).status_code == 302
    logout(client)
    for _ in range(9):
        login(client, "alice", "wrong password!")
    assert login(client, "alice", PASSWORD).status_code == 302


def test_throttling_is_shared_between_replicas(make_app, user) -> None:
    # Two app instances on one database stand in for two replicas.
    first, second = make_app().test_client(), make_app().test_client()
    for i in range(10):
        login(first if i % 2 else second, "alice", "wrong password!")
    assert login(first, "alice", PASSWORD).status_code == 429
    assert login(second, "alice", PASSWORD).status_code == 429


def test_unknown_user_throttled_the_same_way(client: FlaskClient) -> None:
    for _ in range(10):
        login(client, "nobody-here", "wrong password!")
    response = login(client, "nobody-here", "wrong password!")
    assert response.status_code == 429
    assert "Too many failed attempts" in _text(response)


def test_throttling_is_per_account(client: FlaskClient, user) -> None:
    for _ in range(10):
        login(client, "someone-else", "wrong password!")
    assert login(client, "alice", PASSWORD).status_code == 302


# --- sessions ------------------------------------------------------------------------


def _cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(client.application.config["SESSION_COOKIE_NAME"])
    return cookie.value if cookie else None


def test_session_renewed_on_login(client: FlaskClient, user) -> None:
    client.get("/login")
    with client.session_transaction() as sess:
        sess["planted"] = "by attacker"
        pre_login_csrf = sess.get("csrf_token")
    planted_cookie = _cookie(client)

    assert login(client, "alice", PASSWORD).status_code == 302
    with client.session_transaction() as sess:
        assert "planted" not in sess
        assert sess.get("csrf_token") != pre_login_csrf
    assert _cookie(client) != planted_cookie

    # Whoever kept the pre-login cookie (fixation attempt) is not logged in.
    attacker = client.application.test_client()
    attacker.set_cookie(client.application.config["SESSION_COOKIE_NAME"], planted_cookie)
    assert attacker.get("/").status_code == 302


def test_logout_requires_post_and_csrf(client: FlaskClient, user) -> None:
    login(client, "alice", PASSWORD)
    assert client.get("/logout").status_code == 405
    response = client.post("/logout", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert client.get("/").status_code == 200


def test_logout_invalidates_session_server_side(client: FlaskClient, user) -> None:
    login(client, "alice", PASSWORD)
    stolen = _cookie(client)
    response = logout(client)
    assert response.status_code == 302
    assert "You have been logged out." in _text(client.get("/login"))
    assert client.get("/").status_code == 302
    # Replaying the cookie from before logout does not work either.
    replay = client.application.test_client()
    replay.set_cookie(client.application.config["SESSION_COOKIE_NAME"], stolen)
    assert replay.get("/").status_code == 302
    with client.application.app_context():
        assert get_session().scalars(select(UserSession)).all() == []


def test_idle_timeout(client: FlaskClient, user, clock: Clock) -> None:
    login(client, "alice", PASSWORD)
    clock.advance(minutes=29)
    assert client.get("/").status_code == 200
    clock.advance(minutes=29)  # activity above refreshed the idle timer
    assert client.get("/").status_code == 200
    clock.advance(minutes=31)
    response = client.get("/")
    assert response.status_code == 302
    assert "Your session has expired" in _text(client.get("/login"))


def test_absolute_timeout(make_app, clock: Clock) -> None:
    app = make_app(SESSION_IDLE_TIMEOUT=1800, SESSION_ABSOLUTE_TIMEOUT=3 * 3600)
    client = app.test_client()
    register(client, "alice", PASSWORD)
    login(client, "alice", PASSWORD)
    for _ in range(7):  # active every 25 minutes for 2 h 55 min: idle timeout never hits
        clock.advance(minutes=25)
        assert client.get("/").status_code == 200
    clock.advance(minutes=25)  # 3 h 20 min after login: over the absolute limit
    response = client.get("/")
    assert response.status_code == 302
    assert "Your session has expired" in _text(client.get("/login"))


# --- change password ----------------------------------------------------------------


def _change(client: FlaskClient, current: str, new: str, confirm: str | None = None):
    token = csrf_token(client, "/password")
    return client.post(
        "/password",
        data={
            "csrf_token": token,
            "current_password": current,
            "new_password": new,
            "confirm": new if confirm is None else confirm,
        },
    )


def test_change_password_flow(make_app, client: FlaskClient, user) -> None:
    other_device = make_app().test_client()
    login(other_device, "alice", PASSWORD)
    login(client, "alice", PASSWORD)
    before = _cookie(client)

    new = "a completely new passphrase"
    response = _change(client, PASSWORD, new)
    assert response.status_code == 302
    assert "Your password has been changed" in _text(client.get("/"))
    assert _cookie(client) != before  # this session renewed
    assert other_device.get("/").status_code == 302  # the other one signed out

    logout(client)
    assert BAD_CREDENTIALS in _text(login(client, "alice", PASSWORD))
    assert login(client, "alice", new).status_code == 302


def test_change_password_failures(client: FlaskClient, user) -> None:
    login(client, "alice", PASSWORD)
    response = _change(client, "wrong current password", "a completely new passphrase")
    assert response.status_code == 400
    assert "The current password is not correct." in _text(response)
    response = _change(client, PASSWORD, "password1")
    assert "too common" in _text(response)
    response = _change(client, PASSWORD, "short")
    assert "at least 8" in _text(response)
    response = _change(client, PASSWORD, "fine new passphrase", confirm="different")
    assert "do not match" in _text(response)
    response = client.post(
        "/password",
        data={"current_password": PASSWORD, "new_password": "x" * 20, "confirm": "x" * 20},
    )
    assert response.status_code == 400  # no CSRF token
    logout(client)
    assert login(client, "alice", PASSWORD).status_code == 302
