"""Settings from LOGINAPP_* environment variables: one table drives everything.

Each field of ``Settings`` is one variable, ``LOGINAPP_<FIELD NAME>``; its type
comes from the annotation, the rest (defaults, bounds, the Flask key and the
Gunicorn option it feeds) from ``setting(...)`` in the field's metadata. Every
variable can instead be read from a file named by the same variable with a
``_FILE`` suffix, which is how Docker/Swarm secrets are mounted. An empty value
counts as not set.
"""

from __future__ import annotations

import os
import secrets
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

PREFIX = "LOGINAPP_"

# Values people paste from examples; a key like these must not reach production.
_PLACEHOLDER_KEYS = {"dev", "changeme", "change-me", "secret", "development", "test"}
MIN_SECRET_KEY_LENGTH = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_METADATA_KEY = "loginapp"
_SAME_AS_DEFAULT: Any = object()


class ConfigError(RuntimeError):
    """The environment does not describe a usable configuration."""


# --- CPUs, for the default number of Gunicorn workers ------------------------------


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs the container may use according to its cgroup quota, if one is set."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for base in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1
        try:
            quota_us = int((base / "cpu.cfs_quota_us").read_text())
            period_us = int((base / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    return None


def available_cpus(root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPU quota if any, else the CPUs this process may run on (cpuset/affinity)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, max(1, int(limit + 0.5)))
    return max(1, cpus)


# --- computed defaults (called with the Flask instance path) -----------------------


def _random_secret_key(_instance_path: str) -> str:
    # A fresh key per process is fine for local development: sessions just reset.
    return secrets.token_urlsafe(48)


def _sqlite_in_instance_folder(instance_path: str) -> str:
    return "sqlite:///" + str(Path(instance_path) / "loginapp.sqlite3")


def _two_workers_per_cpu(_instance_path: str) -> int:
    # Argon2 hashing is CPU-bound, so more workers than ~2x CPUs only queue up and
    # each in-flight hash holds 19 MiB; threads cover the I/O waits on the database.
    return 2 * available_cpus() + 1


# --- the table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How one setting is read and where it goes; lives in its field's metadata.

    A default is a value, or a function of the instance path computed when the
    variable is not set; ``None`` where the setting is required is checked in
    ``_check`` with a message that says how to fix it.
    """

    doc: str
    production: Any
    development: Any
    minimum: int | None
    maximum: int | None
    choices: tuple[str, ...]
    flask: str | None
    gunicorn: str | None

    def default(self, production: bool, instance_path: str) -> Any:
        value = self.production if production else self.development
        return value(instance_path) if callable(value) else value


def setting(
    doc: str,
    *,
    default: Any = None,
    production: Any = _SAME_AS_DEFAULT,
    development: Any = _SAME_AS_DEFAULT,
    minimum: int | None = None,
    maximum: int | None = None,
    choices: tuple[str, ...] = (),
    flask: str | None = None,
    gunicorn: str | None = None,
    secret: bool = False,
) -> Any:
    """A field of ``Settings``; ``production``/``development`` override ``default`` per mode."""
    spec = Spec(
        doc=doc,
        production=default if production is _SAME_AS_DEFAULT else production,
        development=default if development is _SAME_AS_DEFAULT else development,
        minimum=minimum,
        maximum=maximum,
        choices=choices,
        flask=flask,
        gunicorn=gunicorn,
    )
    # Secrets stay out of repr(), so a logged Settings does not leak them.
    return field(repr=not secret, metadata={_METADATA_KEY: spec})


@dataclass(frozen=True)
class Settings:
    env: str = setting(
        "production enforces a real secret key and a database URL, and turns secure cookies on",
        default="development",
        choices=("production", "development"),
        flask="LOGINAPP_ENV",
    )
    secret_key: str = setting(
        "signs the session cookie and CSRF tokens; at least 32 random characters in production",
        development=_random_secret_key,
        flask="SECRET_KEY",
        secret=True,
    )
    secret_key_fallbacks: str | None = setting(
        "earlier secret keys, one a line: sessions and forms signed with them stay valid",
        flask=None,
        secret=True,
    )
    database_url: str = setting(
        "SQLAlchemy URL, e.g. postgresql+psycopg://loginapp@db:5432/loginapp",
        development=_sqlite_in_instance_folder,
        flask="DATABASE_URL",
    )
    database_password: str | None = setting(
        "database password added to the URL; one a line, the first the server accepts is used"
        " (a rotation lists the old and the new)",
        flask="DATABASE_PASSWORD",
        secret=True,
    )
    database_wait: int = setting(
        "seconds `flask db` commands wait for the database to accept connections",
        production=60,
        development=0,
        minimum=0,
        flask="DATABASE_WAIT",
    )
    secure_cookies: bool = setting(
        "Secure cookie named __Host-loginapp; false gives a plain loginapp cookie for HTTP",
        production=True,
        development=False,
        flask="SESSION_COOKIE_SECURE",
    )
    session_idle_timeout: int = setting(
        "seconds without a request after which a session ends",
        default=30 * 60,
        minimum=60,
        flask="SESSION_IDLE_TIMEOUT",
    )
    session_absolute_timeout: int = setting(
        "seconds after login after which a session ends regardless",
        default=12 * 60 * 60,
        minimum=60,
        flask="SESSION_ABSOLUTE_TIMEOUT",
    )
    login_max_failures: int = setting(
        "failed logins per account from one client address per window before that address waits",
        default=10,
        minimum=1,
        flask="LOGIN_MAX_FAILURES",
    )
    login_failure_window: int = setting(
        "the per-address throttling window in seconds",
        default=15 * 60,
        minimum=1,
        flask="LOGIN_FAILURE_WINDOW",
    )
    # ASVS 2.2.1: no more than 100 failed attempts per hour on one account.
    login_account_max_failures: int = setting(
        "failed logins per account per hour from all addresses before every address waits",
        default=100,
        minimum=1,
        maximum=100,
        flask="LOGIN_ACCOUNT_MAX_FAILURES",
    )
    prune_interval: int = setting(
        "seconds between deletions of expired sessions and throttle rows (per worker); 0 never",
        default=10 * 60,
        minimum=0,
        flask="PRUNE_INTERVAL",
    )
    # OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
    argon2_time_cost: int = setting(
        "argon2id iterations", default=2, minimum=1, flask="ARGON2_TIME_COST"
    )
    argon2_memory_cost: int = setting(
        "argon2id memory in KiB", default=19 * 1024, minimum=8, flask="ARGON2_MEMORY_COST"
    )
    argon2_parallelism: int = setting(
        "argon2id lanes", default=1, minimum=1, flask="ARGON2_PARALLELISM"
    )
    proxy_hops: int = setting(
        "trusted reverse proxies in front (ProxyFix); 0 when clients connect directly",
        default=1,
        minimum=0,
        flask="PROXY_HOPS",
    )
    static_dir: str | None = setting(
        "where /static/ is served from (default: the package's static/)", flask="STATIC_DIR"
    )
    log_level: str = setting(
        "app and Gunicorn log level",
        default="INFO",
        choices=LOG_LEVELS,
        flask="LOG_LEVEL",
        gunicorn="loglevel",
    )
    listen_address: str = setting(
        "address Gunicorn listens on",
        default="0.0.0.0",  # noqa: S104 - in a container, the service network reaches it
        gunicorn="bind",
    )
    port: int = setting(
        "port Gunicorn listens on", default=8000, minimum=1, maximum=65535, gunicorn="bind"
    )
    workers: int = setting(
        "Gunicorn worker processes", default=_two_workers_per_cpu, minimum=1, gunicorn="workers"
    )
    # Measured with 1 CPU per replica (README, Benchmarks): 3 workers x 2 threads served as
    # much as x 4 with 28% less memory and fewer logins past 2 s; x 8 exceeded 512 MiB.
    threads: int = setting(
        "threads per Gunicorn worker (gthread)", default=2, minimum=1, gunicorn="threads"
    )
    timeout: int = setting(
        "seconds a Gunicorn worker may be silent before it is restarted",
        default=30,
        minimum=1,
        gunicorn="timeout",
    )
    # Docker/Swarm send SIGTERM and wait 10 s by default before SIGKILL.
    graceful_timeout: int = setting(
        "seconds Gunicorn gives requests after SIGTERM",
        default=25,
        minimum=0,
        gunicorn="graceful_timeout",
    )
    keepalive: int = setting("keep-alive seconds", default=5, minimum=0, gunicorn="keepalive")
    # Recycle workers now and then, jittered so they do not all restart together.
    max_requests: int = setting(
        "requests before a Gunicorn worker is recycled (10 % jitter); 0 never",
        default=10000,
        minimum=0,
        gunicorn="max_requests",
    )
    access_log: str = setting(
        "Gunicorn access log file, - for stdout, off for none", default="-", gunicorn="accesslog"
    )

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def fallback_keys(self) -> list[str]:
        return fallback_keys(self.secret_key_fallbacks)

    def flask_config(self) -> dict[str, object]:
        config: dict[str, object] = {
            spec.flask: getattr(self, name) for name, spec in SPECS.items() if spec.flask
        }
        config.update(
            {
                # __Host- makes browsers insist on Secure, Path=/ and no Domain.
                "SESSION_COOKIE_NAME": "__Host-loginapp" if self.secure_cookies else "loginapp",
                "SESSION_COOKIE_HTTPONLY": True,
                "SESSION_COOKIE_SAMESITE": "Lax",
                "SESSION_COOKIE_PATH": "/",
                "SESSION_COOKIE_DOMAIN": None,
                "PERMANENT_SESSION_LIFETIME": self.session_absolute_timeout,
                # Only the session cookie is used; no long-lived "remember me" token.
                "REMEMBER_COOKIE_DURATION": 0,
                # Still accepted for cookies and (see create_app) CSRF tokens.
                "SECRET_KEY_FALLBACKS": self.fallback_keys,
                "WTF_CSRF_TIME_LIMIT": self.session_absolute_timeout,
                "MAX_CONTENT_LENGTH": 64 * 1024,
            }
        )
        return config

    def gunicorn_options(self) -> dict[str, object]:
        return _gunicorn_options({name: getattr(self, name) for name in SPECS})


SPECS: dict[str, Spec] = {f.name: f.metadata[_METADATA_KEY] for f in fields(Settings)}


def _value_type(hint: Any) -> type:
    # "str | None" reads like str; None is what an unset optional setting holds.
    return next(t for t in get_args(hint) or (hint,) if t is not types.NoneType)


_TYPES: dict[str, type] = {
    name: _value_type(hint) for name, hint in get_type_hints(Settings).items() if name in SPECS
}


# --- reading the environment -------------------------------------------------------


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


def _one_of(choices: Iterable[str]) -> str:
    quoted = [repr(choice) for choice in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _parse(variable: str, raw: str, kind: type, spec: Spec) -> Any:
    if kind is bool:
        value = raw.strip().lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{variable} must be true or false, not {raw!r}.")
    if kind is int:
        try:
            number = int(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be an integer, not {raw!r}.") from None
        if spec.minimum is not None and number < spec.minimum:
            raise ConfigError(f"{variable} must be at least {spec.minimum}.")
        if spec.maximum is not None and number > spec.maximum:
            raise ConfigError(f"{variable} must be at most {spec.maximum}.")
        return number
    if spec.choices:
        for choice in spec.choices:
            if raw.strip().lower() == choice.lower():
                return choice
        raise ConfigError(f"{variable} must be {_one_of(spec.choices)}, not {raw!r}.")
    # Strings are taken as given: a password may well start or end with a space.
    return raw


def _read(environ: Mapping[str, str], instance_path: str, names: Iterable[str]) -> dict[str, Any]:
    """Parse the named settings; unset ones get the default of the mode LOGINAPP_ENV picks."""

    def read(name: str, production: bool) -> Any:
        raw = env_value(name.upper(), environ)
        if raw is None or not raw.strip():
            return SPECS[name].default(production, instance_path)
        return _parse(PREFIX + name.upper(), raw, _TYPES[name], SPECS[name])

    production = read("env", production=False) == "production"
    return {name: read(name, production) for name in names}


def fallback_keys(text: str | None) -> list[str]:
    """The keys of LOGINAPP_SECRET_KEY_FALLBACKS, oldest first: one a line, "#" comments."""
    lines = (line.strip() for line in (text or "").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _weak(key: str) -> bool:
    return len(key) < MIN_SECRET_KEY_LENGTH or key.lower() in _PLACEHOLDER_KEYS


def _check(values: Mapping[str, Any]) -> None:
    """The rules that involve more than one setting, or the mode."""
    production = values["env"] == "production"
    secret_key = values["secret_key"]
    if production and not secret_key:
        raise ConfigError(
            f"Refusing to start in production without a secret key: set {PREFIX}SECRET_KEY "
            f"or {PREFIX}SECRET_KEY_FILE (at least {MIN_SECRET_KEY_LENGTH} random "
            'characters, e.g. python3 -c "import secrets; print(secrets.token_urlsafe(48))").'
        )
    if production and _weak(secret_key):
        raise ConfigError(
            f"Refusing to start in production with a weak secret key: {PREFIX}SECRET_KEY "
            f"must be at least {MIN_SECRET_KEY_LENGTH} random characters."
        )
    if production and not values["database_url"]:
        raise ConfigError(
            f"Refusing to start in production without {PREFIX}DATABASE_URL "
            "(e.g. postgresql+psycopg://loginapp@db:5432/loginapp)."
        )
    if production and any(_weak(key) for key in fallback_keys(values["secret_key_fallbacks"])):
        raise ConfigError(
            f"Refusing to start in production with a weak key in {PREFIX}SECRET_KEY_FALLBACKS: "
            f"each line must be at least {MIN_SECRET_KEY_LENGTH} random characters."
        )
    if values["session_idle_timeout"] > values["session_absolute_timeout"]:
        raise ConfigError(
            f"{PREFIX}SESSION_IDLE_TIMEOUT must not exceed {PREFIX}SESSION_ABSOLUTE_TIMEOUT."
        )


def load_settings(environ: Mapping[str, str] | None = None, instance_path: str = ".") -> Settings:
    """Read and validate the whole configuration; raise ConfigError with a clear reason."""
    environ = os.environ if environ is None else environ
    values = _read(environ, instance_path, SPECS)
    _check(values)
    return Settings(**values)


def _bind_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _gunicorn_options(values: Mapping[str, Any]) -> dict[str, object]:
    options: dict[str, object] = {
        spec.gunicorn: values[name]
        for name, spec in SPECS.items()
        if spec.gunicorn and spec.gunicorn != "bind"
    }
    # The one option made of two settings, and the one that follows from another.
    options["bind"] = [_bind_address(values["listen_address"], values["port"])]
    options["max_requests_jitter"] = values["max_requests"] // 10
    # Behind nginx, whose access log has every request, a second one only costs CPU.
    if options["accesslog"] == "off":
        options["accesslog"] = None
    return options


def load_gunicorn_options(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Gunicorn's settings alone, for its master, which runs no app code.

    Only the settings Gunicorn uses are read, so it starts on a secret key or a
    database URL that only the app (and its error message) cares about.
    """
    environ = os.environ if environ is None else environ
    names = [name for name, spec in SPECS.items() if spec.gunicorn]
    return _gunicorn_options(_read(environ, ".", names))
