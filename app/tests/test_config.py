"""Configuration from LOGINAPP_* variables and *_FILE secrets."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from gunicorn.config import KNOWN_SETTINGS

from loginapp import create_app
from loginapp.config import (
    SPECS,
    ConfigError,
    Settings,
    available_cpus,
    load_gunicorn_options,
    load_settings,
)
from loginapp.db import database_url
from loginapp.migrate import alembic_config

KEY = "k" * 48
README = Path(__file__).resolve().parents[1] / "README.md"
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

# A valid value for every setting that differs from its default, as written in a
# file (with the trailing newline editors add) and as the app then holds it.
SAMPLES: dict[str, tuple[str, object]] = {
    "env": ("production", "production"),
    "secret_key": ("s" * 40, "s" * 40),
    "secret_key_fallbacks": ("f" * 40 + "\n" + "g" * 40, "f" * 40 + "\n" + "g" * 40),
    "database_url": (
        "postgresql+psycopg://other@db2/other",
        "postgresql+psycopg://other@db2/other",
    ),
    "database_password": (" pass word ", " pass word "),
    "database_wait": ("7", 7),
    "secure_cookies": ("yes", True),
    "session_idle_timeout": ("600", 600),
    "session_absolute_timeout": ("7200", 7200),
    "login_max_failures": ("5", 5),
    "login_failure_window": ("600", 600),
    "login_account_max_failures": ("50", 50),
    "prune_interval": ("60", 60),
    "argon2_time_cost": ("3", 3),
    "argon2_memory_cost": ("65536", 65536),
    "argon2_parallelism": ("2", 2),
    "proxy_hops": ("2", 2),
    "static_dir": ("/srv/static", "/srv/static"),
    "log_level": ("debug", "DEBUG"),
    "listen_address": ("127.0.0.1", "127.0.0.1"),
    "port": ("9000", 9000),
    "workers": ("2", 2),  # the default, 2 x CPUs + 1, is at least 3
    "threads": ("8", 8),
    "timeout": ("60", 60),
    "graceful_timeout": ("20", 20),
    "keepalive": ("2", 2),
    "max_requests": ("500", 500),
    "access_log": ("/dev/null", "/dev/null"),
}
# What a development deployment needs besides the defaults.
BASE_ENV = {
    "LOGINAPP_SECRET_KEY": KEY,
    "LOGINAPP_DATABASE_URL": "postgresql+psycopg://loginapp@db/loginapp",
}
# Flask settings that follow from the table's values instead of being settings of their own.
DERIVED_FLASK_KEYS = {
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_PATH",
    "SESSION_COOKIE_DOMAIN",
    "PERMANENT_SESSION_LIFETIME",
    "REMEMBER_COOKIE_DURATION",
    "SECRET_KEY_FALLBACKS",
    "WTF_CSRF_TIME_LIMIT",
    "MAX_CONTENT_LENGTH",
}


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


def test_production_refuses_a_weak_fallback_key() -> None:
    env = {**BASE_ENV, "LOGINAPP_ENV": "production",
           "LOGINAPP_SECRET_KEY_FALLBACKS": "o" * 40 + "\nchangeme\n"}  # fmt: skip
    with pytest.raises(ConfigError, match="weak key in LOGINAPP_SECRET_KEY_FALLBACKS"):
        load_settings(env)


def test_fallback_keys_are_read_one_a_line() -> None:
    old = "o" * 40
    # A Swarm secret cannot be empty: the stack sends a comment when there is no old key.
    settings = load_settings(
        {**BASE_ENV, "LOGINAPP_SECRET_KEY_FALLBACKS": f"# earlier keys\n\n{old}\n\n"}
    )
    assert settings.flask_config()["SECRET_KEY_FALLBACKS"] == [old]
    assert load_settings(BASE_ENV).flask_config()["SECRET_KEY_FALLBACKS"] == []


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
    assert settings.database_wait == 60
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forms, password
) -> None:
    # What "Run locally" does: `flask --app loginapp db upgrade`, then `flask --app loginapp run`.
    # Nothing set at all; only the instance folder is moved out of the source tree.
    instance = tmp_path / "instance"
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda _app: str(instance))
    app = create_app()
    assert app.config["DATABASE_URL"] == f"sqlite:///{instance}/loginapp.sqlite3"
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.config["DATABASE_WAIT"] == 0
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.output == f"Database schema upgraded from base to {HEAD}.\n"
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert forms.register(client, "devuser", password).status_code == 302
    assert forms.login(client, "devuser", password).status_code == 302


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOGINAPP_ENV": "staging"}, "must be 'production' or 'development'"),
        ({"LOGINAPP_SESSION_IDLE_TIMEOUT": "soon"}, "must be an integer"),
        ({"LOGINAPP_SECURE_COOKIES": "maybe"}, "true or false"),
        # ASVS 2.2.1: at most 100 failed logins per hour on one account.
        ({"LOGINAPP_LOGIN_ACCOUNT_MAX_FAILURES": "101"}, "must be at most 100"),
        (
            {"LOGINAPP_SESSION_IDLE_TIMEOUT": "7200", "LOGINAPP_SESSION_ABSOLUTE_TIMEOUT": "3600"},
            "must not exceed",
        ),
    ],
)
def test_invalid_settings_rejected(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


# --- the table -----------------------------------------------------------------------


def test_samples_cover_every_setting() -> None:
    assert set(SAMPLES) == {f.name for f in fields(Settings)}


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_every_setting_can_come_from_a_file(name: str, tmp_path: Path) -> None:
    raw, expected = SAMPLES[name]
    variable = "LOGINAPP_" + name.upper()
    (tmp_path / "value").write_text(raw + "\n")
    env = {k: v for k, v in BASE_ENV.items() if k != variable}
    default = getattr(load_settings(env), name)
    settings = load_settings({**env, variable + "_FILE": str(tmp_path / "value")})
    assert getattr(settings, name) == expected
    assert expected != default
    # The same value given directly reads the same.
    assert getattr(load_settings({**env, variable: raw}), name) == expected


def test_flask_config_comes_from_the_table() -> None:
    settings = load_settings({**BASE_ENV, "LOGINAPP_DATABASE_PASSWORD": "pw"})
    config = settings.flask_config()
    table = {spec.flask: name for name, spec in SPECS.items() if spec.flask}
    assert set(config) == set(table) | DERIVED_FLASK_KEYS
    for key, name in table.items():
        assert config[key] == getattr(settings, name), key


def test_gunicorn_options_come_from_the_table() -> None:
    env = {f"LOGINAPP_{name.upper()}": raw for name, (raw, _) in SAMPLES.items()}
    settings = load_settings(env)
    options = settings.gunicorn_options()
    table = {name: spec.gunicorn for name, spec in SPECS.items() if spec.gunicorn}
    assert set(options) == set(table.values()) | {"max_requests_jitter"}
    assert set(options) <= {setting.name for setting in KNOWN_SETTINGS}
    for name, option in table.items():
        if option != "bind":
            assert options[option] == getattr(settings, name), option
    assert options["bind"] == ["127.0.0.1:9000"]
    assert options["max_requests_jitter"] == 50
    # The master reads the same table, but only its part of it.
    assert load_gunicorn_options(env) == options


def test_gunicorn_defaults() -> None:
    assert load_gunicorn_options({}) == {
        "bind": ["0.0.0.0:8000"],
        "workers": 2 * available_cpus() + 1,
        "threads": 2,
        "timeout": 30,
        "graceful_timeout": 25,
        "keepalive": 5,
        "max_requests": 10000,
        "max_requests_jitter": 1000,
        "accesslog": "-",
        "loglevel": "INFO",
    }


def test_gunicorn_access_log_can_be_off() -> None:
    # None is Gunicorn's own "no access log"; a file named "off" is not what anyone means.
    assert load_gunicorn_options({"LOGINAPP_ACCESS_LOG": "off"})["accesslog"] is None


def test_gunicorn_options_need_no_secret_key() -> None:
    # Gunicorn's master runs no app code; the workers' create_app reports the missing key.
    production = {"LOGINAPP_ENV": "production", "LOGINAPP_LISTEN_ADDRESS": "::"}
    with pytest.raises(ConfigError, match="without a secret key"):
        load_settings(production)
    assert load_gunicorn_options(production)["bind"] == ["[::]:8000"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOGINAPP_PORT": "0"}, "LOGINAPP_PORT must be at least 1."),
        ({"LOGINAPP_PORT": "65536"}, "LOGINAPP_PORT must be at most 65535."),
        ({"LOGINAPP_WORKERS": "many"}, "LOGINAPP_WORKERS must be an integer, not 'many'."),
        (
            {"LOGINAPP_LOG_LEVEL": "loud"},
            "LOGINAPP_LOG_LEVEL must be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL', "
            "not 'loud'.",
        ),
    ],
)
def test_invalid_gunicorn_settings_rejected(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_gunicorn_options(env)
    assert str(error.value) == message


def test_readme_documents_exactly_the_table() -> None:
    documented = re.findall(r"^\| `LOGINAPP_([A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE)
    assert sorted(documented) == sorted(name.upper() for name in SPECS)
