"""Settings from LOGINAPP_* environment variables.

Every variable can instead be read from a file named by the same variable with
a ``_FILE`` suffix, which is how Docker/Swarm secrets are mounted.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "LOGINAPP_"

# Values people paste from examples; a key like these must not reach production.
_PLACEHOLDER_KEYS = {"dev", "changeme", "change-me", "secret", "development", "test"}
MIN_SECRET_KEY_LENGTH = 32


class ConfigError(RuntimeError):
    """The environment does not describe a usable configuration."""


def env_value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return LOGINAPP_<name>, or the content of the file LOGINAPP_<name>_FILE names."""
    environ = os.environ if environ is None else environ
    direct = environ.get(PREFIX + name)
    file_name = environ.get(PREFIX + name + "_FILE")
    if direct is not None and file_name:
        raise ConfigError(f"Set either {PREFIX}{name} or {PREFIX}{name}_FILE, not both.")
    if file_name:
        try:
            # Secret files usually end with a newline that is not part of the secret.
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"{PREFIX}{name}_FILE names {file_name!r}, which cannot be read: {exc}"
            ) from exc
    return direct


def _bool(name: str, default: bool, environ: Mapping[str, str]) -> bool:
    raw = env_value(name, environ)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{PREFIX}{name} must be true or false, not {raw!r}.")


def _int(name: str, default: int, environ: Mapping[str, str], minimum: int = 0) -> int:
    raw = env_value(name, environ)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} must be an integer, not {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}.")
    return value


@dataclass(frozen=True)
class Settings:
    env: str
    secret_key: str
    database_url: str
    database_password: str | None
    secure_cookies: bool
    session_idle_timeout: int
    session_absolute_timeout: int
    login_max_failures: int
    login_failure_window: int
    argon2_time_cost: int
    argon2_memory_cost: int
    argon2_parallelism: int
    proxy_hops: int
    auto_migrate: bool
    static_dir: str | None
    log_level: str

    @property
    def production(self) -> bool:
        return self.env == "production"

    def flask_config(self) -> dict[str, object]:
        cookie_name = "__Host-loginapp" if self.secure_cookies else "loginapp"
        return {
            "LOGINAPP_ENV": self.env,
            "SECRET_KEY": self.secret_key,
            "DATABASE_URL": self.database_url,
            "DATABASE_PASSWORD": self.database_password,
            # __Host- makes browsers insist on Secure, Path=/ and no Domain.
            "SESSION_COOKIE_NAME": cookie_name,
            "SESSION_COOKIE_SECURE": self.secure_cookies,
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_PATH": "/",
            "SESSION_COOKIE_DOMAIN": None,
            "PERMANENT_SESSION_LIFETIME": self.session_absolute_timeout,
            "SESSION_IDLE_TIMEOUT": self.session_idle_timeout,
            "SESSION_ABSOLUTE_TIMEOUT": self.session_absolute_timeout,
            "LOGIN_MAX_FAILURES": self.login_max_failures,
            "LOGIN_FAILURE_WINDOW": self.login_failure_window,
            "ARGON2_TIME_COST": self.argon2_time_cost,
            "ARGON2_MEMORY_COST": self.argon2_memory_cost,
            "ARGON2_PARALLELISM": self.argon2_parallelism,
            "PROXY_HOPS": self.proxy_hops,
            "AUTO_MIGRATE": self.auto_migrate,
            "STATIC_DIR": self.static_dir,
            "LOG_LEVEL": self.log_level,
            # Only the session cookie is used; no long-lived "remember me" token.
            "REMEMBER_COOKIE_DURATION": 0,
            "WTF_CSRF_TIME_LIMIT": self.session_absolute_timeout,
            "MAX_CONTENT_LENGTH": 64 * 1024,
        }


def load_settings(environ: Mapping[str, str] | None = None, instance_path: str = ".") -> Settings:
    """Read and validate the whole configuration; raise ConfigError with a clear reason."""
    environ = os.environ if environ is None else environ
    env = (env_value("ENV", environ) or "development").strip().lower()
    if env not in {"production", "development"}:
        raise ConfigError(f"{PREFIX}ENV must be 'production' or 'development', not {env!r}.")
    production = env == "production"

    secret_key = env_value("SECRET_KEY", environ)
    if not secret_key:
        if production:
            raise ConfigError(
                f"Refusing to start in production without a secret key: set {PREFIX}SECRET_KEY "
                f"or {PREFIX}SECRET_KEY_FILE (at least {MIN_SECRET_KEY_LENGTH} random "
                'characters, e.g. python3 -c "import secrets; print(secrets.token_urlsafe(48))").'
            )
        # A fresh key per process is fine for local development: sessions just reset.
        secret_key = secrets.token_urlsafe(48)
    elif production and (
        len(secret_key) < MIN_SECRET_KEY_LENGTH or secret_key.lower() in _PLACEHOLDER_KEYS
    ):
        raise ConfigError(
            f"Refusing to start in production with a weak secret key: {PREFIX}SECRET_KEY "
            f"must be at least {MIN_SECRET_KEY_LENGTH} random characters."
        )

    database_url = env_value("DATABASE_URL", environ)
    if not database_url:
        if production:
            raise ConfigError(
                f"Refusing to start in production without {PREFIX}DATABASE_URL "
                "(e.g. postgresql+psycopg://loginapp@db:5432/loginapp)."
            )
        database_url = "sqlite:///" + str(Path(instance_path) / "loginapp.sqlite3")

    idle = _int("SESSION_IDLE_TIMEOUT", 30 * 60, environ, minimum=60)
    absolute = _int("SESSION_ABSOLUTE_TIMEOUT", 12 * 60 * 60, environ, minimum=60)
    if idle > absolute:
        raise ConfigError(
            f"{PREFIX}SESSION_IDLE_TIMEOUT must not exceed {PREFIX}SESSION_ABSOLUTE_TIMEOUT."
        )
    max_failures = _int("LOGIN_MAX_FAILURES", 10, environ, minimum=1)
    window = _int("LOGIN_FAILURE_WINDOW", 15 * 60, environ, minimum=1)
    # ASVS 2.2.1: no more than 100 failed attempts per hour on one account.
    if max_failures * -(-3600 // window) > 100:
        raise ConfigError(
            f"{PREFIX}LOGIN_MAX_FAILURES per {PREFIX}LOGIN_FAILURE_WINDOW allows more than "
            "100 failed logins per hour per account."
        )

    return Settings(
        env=env,
        secret_key=secret_key,
        database_url=database_url,
        database_password=env_value("DATABASE_PASSWORD", environ) or None,
        secure_cookies=_bool("SECURE_COOKIES", production, environ),
        session_idle_timeout=idle,
        session_absolute_timeout=absolute,
        login_max_failures=max_failures,
        login_failure_window=window,
        # OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
        argon2_time_cost=_int("ARGON2_TIME_COST", 2, environ, minimum=1),
        argon2_memory_cost=_int("ARGON2_MEMORY_COST", 19 * 1024, environ, minimum=8),
        argon2_parallelism=_int("ARGON2_PARALLELISM", 1, environ, minimum=1),
        proxy_hops=_int("PROXY_HOPS", 1, environ),
        auto_migrate=_bool("AUTO_MIGRATE", not production, environ),
        static_dir=env_value("STATIC_DIR", environ) or None,
        log_level=(env_value("LOG_LEVEL", environ) or "INFO").upper(),
    )
