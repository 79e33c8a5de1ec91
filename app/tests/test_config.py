"""Configuration from LOGINAPP_* variables and *_FILE secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from loginapp import create_app
from loginapp.config import ConfigError, load_settings
from loginapp.db import database_url

KEY = "k" * 48


def test_production_refuses_without_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGINAPP_ENV", "production")
    monkeypatch.setenv("LOGINAPP_DATABASE_URL", "sqlite:///:memory:")
    with pytest.raises(ConfigError, match="without a secret key"):
        create_app()


@pytest.mark.parametrize("weak", ["changeme", "short-key", "dev"])
def test_production_refuses_weak_secret_key(weak: str) -> None:
    env = {"LOGINAPP_ENV": "production", "LOGINAPP_SECRET_KEY": weak}
    with pytest.raises(ConfigError, match="weak secret key"):
        load_settings(env)


def test_production_requires_database_url() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({"LOGINAPP_ENV": "production", "LOGINAPP_SECRET_KEY": KEY})


def test_secret_key_and_db_password_from_files(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text(KEY + "\n")
    (tmp_path / "db_password").write_text("s3cr3t pa$$\n")
    settings = load_settings(
        {
            "LOGINAPP_ENV": "production",
            "LOGINAPP_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
            "LOGINAPP_DATABASE_URL": "postgresql+psycopg://loginapp@db:5432/loginapp",
            "LOGINAPP_DATABASE_PASSWORD_FILE": str(tmp_path / "db_password"),
        }
    )
    assert settings.secret_key == KEY
    assert settings.database_password == "s3cr3t pa$$"
    url = database_url(settings.database_url, settings.database_password)
    assert url.password == "s3cr3t pa$$"
    assert (url.username, url.host, url.database) == ("loginapp", "db", "loginapp")


def test_app_reads_secret_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key").write_text(KEY)
    monkeypatch.setenv("LOGINAPP_ENV", "production")
    monkeypatch.setenv("LOGINAPP_SECRET_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("LOGINAPP_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite3")
    app = create_app()
    assert app.config["SECRET_KEY"] == KEY


def test_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    env = {"LOGINAPP_SECRET_KEY_FILE": str(tmp_path / "nope")}
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(env)


def test_value_and_file_together_rejected(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY)
    env = {"LOGINAPP_SECRET_KEY": KEY, "LOGINAPP_SECRET_KEY_FILE": str(tmp_path / "key")}
    with pytest.raises(ConfigError, match="not both"):
        load_settings(env)


def test_production_defaults_are_secure() -> None:
    settings = load_settings(
        {
            "LOGINAPP_ENV": "production",
            "LOGINAPP_SECRET_KEY": KEY,
            "LOGINAPP_DATABASE_URL": "postgresql+psycopg://loginapp@db/loginapp",
        }
    )
    config = settings.flask_config()
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_NAME"] == "__Host-loginapp"
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert settings.auto_migrate is False
    assert (settings.argon2_time_cost, settings.argon2_memory_cost) == (2, 19456)
    assert settings.argon2_parallelism == 1
    assert settings.proxy_hops == 1


def test_secure_cookies_can_be_switched_off_for_local_http() -> None:
    settings = load_settings(
        {
            "LOGINAPP_ENV": "production",
            "LOGINAPP_SECRET_KEY": KEY,
            "LOGINAPP_DATABASE_URL": "sqlite://",
            "LOGINAPP_SECURE_COOKIES": "false",
        }
    )
    assert settings.flask_config()["SESSION_COOKIE_NAME"] == "loginapp"


def test_development_defaults_work_with_nothing_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `flask --app loginapp run` does: SQLite in the instance folder, schema migrated.
    monkeypatch.setenv("LOGINAPP_DATABASE_URL", f"sqlite:///{tmp_path}/dev.sqlite3")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.test_client().get("/readyz").status_code == 200
    assert app.test_client().get("/register").status_code == 200


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOGINAPP_ENV": "staging"}, "must be 'production' or 'development'"),
        ({"LOGINAPP_SESSION_IDLE_TIMEOUT": "soon"}, "must be an integer"),
        ({"LOGINAPP_SECURE_COOKIES": "maybe"}, "true or false"),
        ({"LOGINAPP_LOGIN_MAX_FAILURES": "200"}, "more than 100 failed logins per hour"),
        (
            {"LOGINAPP_SESSION_IDLE_TIMEOUT": "7200", "LOGINAPP_SESSION_ABSOLUTE_TIMEOUT": "3600"},
            "must not exceed",
        ),
    ],
)
def test_invalid_settings_rejected(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)
