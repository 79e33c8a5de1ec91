"""Login throttling as an attacker meets it, and the tables it leaves behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from flask.testing import FlaskClient
from loginapp_kit.client import Client
from sqlalchemy import func, select

from loginapp.auth import BAD_CREDENTIALS
from loginapp.db import get_session
from loginapp.models import LoginThrottle, UserSession
from loginapp.passwords import EXTENSION as PASSWORDS
from loginapp.prune import EXTENSION as PRUNER
from loginapp.prune import prune_expired

ATTACKER = {"X-Forwarded-For": "203.0.113.66"}
OWNER = {"X-Forwarded-For": "198.51.100.7"}


def _text(response) -> str:
    return response.get_data(as_text=True)


def _rows(app: Flask, table) -> int:
    with app.app_context():
        return get_session().scalar(select(func.count()).select_from(table))


class VerifyCounter:
    """Counts argon2 verifications in an app, each taking as long as a production hash."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch, seconds: float = 0.05) -> None:
        self.count = 0
        hasher = app.extensions[PASSWORDS]
        original, lock = hasher.verify, threading.Lock()

        def verify(password_hash: str | None, password: str) -> bool:
            with lock:
                self.count += 1
            # Widens the window between reading the count and verifying, as argon2's
            # tens of milliseconds do in production; the fast test parameters would hide it.
            time.sleep(seconds)
            return original(password_hash, password)

        monkeypatch.setattr(hasher, "verify", verify)


# --- one address, one account ---------------------------------------------------------


def test_throttling_kicks_in_and_lifts(client: FlaskClient, user, clock, forms) -> None:
    for _ in range(10):
        response = forms.login(client, "alice", "wrong password!")
        assert BAD_CREDENTIALS in _text(response)
    # Now even the right password is refused from this address until the window has passed.
    response = forms.login(client, "alice", user.password)
    assert response.status_code == 429
    assert "Too many failed attempts" in _text(response)
    assert 0 < int(response.headers["Retry-After"]) <= 900
    clock.advance(minutes=10)
    assert forms.login(client, "alice", user.password).status_code == 429
    clock.advance(minutes=5, seconds=1)
    assert forms.login(client, "alice", user.password).status_code == 302


def test_success_resets_failure_count(client: FlaskClient, user, forms) -> None:
    for _ in range(9):
        forms.login(client, "alice", "wrong password!")
    assert forms.login(client, "alice", user.password).status_code == 302
    forms.logout(client)
    for _ in range(9):
        forms.login(client, "alice", "wrong password!")
    assert forms.login(client, "alice", user.password).status_code == 302


def test_unknown_user_throttled_the_same_way(client: FlaskClient, forms) -> None:
    for _ in range(10):
        forms.login(client, "nobody-here", "wrong password!")
    response = forms.login(client, "nobody-here", "wrong password!")
    assert response.status_code == 429
    assert "Too many failed attempts" in _text(response)


def test_throttling_is_per_account(client: FlaskClient, user, forms) -> None:
    for _ in range(10):
        forms.login(client, "someone-else", "wrong password!")
    assert forms.login(client, "alice", user.password).status_code == 302


def test_change_password_shares_the_login_budget(client: FlaskClient, user, forms) -> None:
    forms.login(client, "alice", user.password)
    for _ in range(10):
        assert (
            forms.change_password(client, "wrong current!", "a fresh new passphrase").status_code
            == 400
        )
    response = forms.change_password(client, user.password, "a fresh new passphrase")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


def test_a_throttled_attempt_verifies_nothing(
    client: FlaskClient, user, forms, monkeypatch
) -> None:
    verified = VerifyCounter(client.application, monkeypatch, seconds=0)
    for _ in range(15):
        forms.login(client, "alice", "wrong password!")
    assert verified.count == 10


# --- no malicious lockout ----------------------------------------------------------------


def test_an_attacker_cannot_lock_the_owner_out(client: FlaskClient, user, forms) -> None:
    for _ in range(10):
        forms.login(client, "alice", "wrong password!", headers=ATTACKER)
    assert forms.login(client, "alice", user.password, headers=ATTACKER).status_code == 429
    # The owner, from their own address, is not affected.
    assert forms.login(client, "alice", user.password, headers=OWNER).status_code == 302


def test_the_account_ceiling_stops_a_distributed_attack(make_app, user, clock, forms) -> None:
    client = make_app(LOGIN_MAX_FAILURES=5, LOGIN_ACCOUNT_MAX_FAILURES=20).test_client()
    for bot in range(4):
        for _ in range(5):
            bot_address = {"X-Forwarded-For": f"192.0.2.{bot}"}
            response = forms.login(client, "alice", "wrong password!", headers=bot_address)
            assert response.status_code == 200
    # 20 failures an hour from all addresses together: now every address waits, the owner too.
    response = forms.login(client, "alice", user.password, headers=OWNER)
    assert response.status_code == 429
    assert 3000 < int(response.headers["Retry-After"]) <= 3600
    another_bot = {"X-Forwarded-For": "192.0.2.99"}
    fresh_bot = forms.login(client, "alice", "wrong password!", headers=another_bot)
    assert fresh_bot.status_code == 429
    # An hour later everyone may try again.
    clock.advance(hours=1, seconds=1)
    assert forms.login(client, "alice", user.password, headers=OWNER).status_code == 302


def test_a_right_password_gives_the_account_its_attempt_back(make_app, user, forms) -> None:
    client = make_app(LOGIN_MAX_FAILURES=5, LOGIN_ACCOUNT_MAX_FAILURES=6).test_client()
    for _ in range(5):
        forms.login(client, "alice", "wrong password!", headers=ATTACKER)
    for _ in range(3):
        assert forms.login(client, "alice", user.password, headers=OWNER).status_code == 302
        forms.logout(client)
    # Five failures and three successes: the account has used 5 of its 6.
    assert forms.login(client, "alice", "wrong password!", headers=OWNER).status_code == 200
    assert forms.login(client, "alice", user.password, headers=OWNER).status_code == 429


# --- concurrency, on real servers -----------------------------------------------------------


def _guess_at_once(base_urls: list[str], username: str, guesses: int) -> list[int]:
    """Fire ``guesses`` wrong passwords from one address at the same instant; the statuses."""
    clients = [Client(base_urls[i % len(base_urls)]) for i in range(guesses)]
    pages = [c.get("/login") for c in clients]  # each browser gets its form and CSRF token first
    start = threading.Barrier(guesses)

    def guess(i: int) -> int:
        start.wait()
        fields = {"username": username, "password": f"guess number {i}"}
        return clients[i].submit_page(pages[i], fields, follow=False, headers=ATTACKER).status

    with ThreadPoolExecutor(guesses) as pool:
        return list(pool.map(guess, range(guesses)))


@pytest.mark.parametrize("replicas", [1, 2])
def test_simultaneous_guesses_never_exceed_the_limit(
    make_app: Callable[..., Flask], serve, user, monkeypatch, replicas: int
) -> None:
    apps = [make_app(LOGIN_MAX_FAILURES=5) for _ in range(replicas)]
    counters = [VerifyCounter(app, monkeypatch) for app in apps]
    statuses = _guess_at_once([serve(app) for app in apps], "alice", guesses=30)
    verified = sum(counter.count for counter in counters)
    print(f"{replicas} replica(s): 30 simultaneous guesses, {verified} verified")
    assert verified <= 5
    assert statuses.count(200) == verified
    assert statuses.count(429) == 30 - verified


# --- bounded tables ------------------------------------------------------------------------


def test_prune_deletes_only_what_has_expired(
    app: Flask, client: FlaskClient, user, clock, forms
) -> None:
    forms.login(client, "alice", user.password)  # a session, and alice's account row (at 0)
    forms.login(app.test_client(), "mallory", "wrong password!")  # two throttle rows
    with app.app_context():
        assert prune_expired() == (0, 0)
    clock.advance(minutes=31)  # past the idle timeout, inside the hour
    with app.app_context():
        assert prune_expired() == (1, 0)
    clock.advance(minutes=30)
    with app.app_context():
        assert prune_expired() == (0, 3)
    assert _rows(app, UserSession) == _rows(app, LoginThrottle) == 0


def test_tables_stay_bounded_under_a_spraying_attack(app: Flask, clock, forms) -> None:
    """Two new names a minute for three hours, pruned every 10 minutes: the table levels off."""
    client = app.test_client()
    sizes = []
    for minute in range(180):
        for n in range(2):
            forms.login(client, f"spray-{minute}-{n}", "wrong password!")
        clock.advance(minutes=1)
        if minute % 10 == 9:
            with app.app_context():
                prune_expired()
            sizes.append(_rows(app, LoginThrottle))
    # Two rows per name; rows live one hour plus at most one interval.
    assert max(sizes) <= 2 * 2 * 70
    assert sizes[-1] == sizes[-7]  # level after the first hour and a half


def test_workers_prune_in_the_background(make_app, clock, forms) -> None:
    app = make_app(PRUNE_INTERVAL=1)
    client = app.test_client()
    forms.login(client, "mallory", "wrong password!")
    assert _rows(app, LoginThrottle) == 2
    clock.advance(hours=2)
    client.get("/healthz")  # any request starts this process's pruner
    try:
        deadline = time.monotonic() + 10
        while _rows(app, LoginThrottle) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _rows(app, LoginThrottle) == 0
        assert app.extensions[PRUNER].runs >= 1
    finally:
        app.extensions[PRUNER].stop()


def test_prune_command(app: Flask, clock, forms) -> None:
    forms.login(app.test_client(), "mallory", "wrong password!")
    clock.advance(hours=2)
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    assert "Deleted 0 expired sessions and 2 spent throttle rows." in result.output
