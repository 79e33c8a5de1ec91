"""loginapp: a small, hardened login application."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import auth, db, main, migrate, passwords, prune, security
from .config import ConfigError, load_settings

__all__ = ["ConfigError", "create_app"]
__version__ = "1.0.0"

csrf = CSRFProtect()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory; configuration comes from LOGINAPP_* variables."""
    app = Flask(__name__, instance_relative_config=True)
    settings = load_settings(instance_path=app.instance_path)
    app.config.update(settings.flask_config())
    if test_config:
        app.config.update(test_config)
    # Flask-WTF has no fallbacks of its own; given a list, itsdangerous signs with
    # the last key and accepts them all, as Flask does for the session cookie.
    app.config["WTF_CSRF_SECRET_KEY"] = [
        *app.config["SECRET_KEY_FALLBACKS"],
        app.config["SECRET_KEY"],
    ]
    if app.config["STATIC_DIR"]:
        # The image serves the copy under /srv/loginapp/static that nginx also gets.
        app.static_folder = app.config["STATIC_DIR"]

    _configure_logging(app)
    if app.config["DATABASE_URL"].startswith("sqlite:///" + app.instance_path):
        os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    passwords.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    security.init_app(app)
    migrate.init_app(app)
    prune.init_app(app)
    app.register_blueprint(main.bp)
    _register_errors(app)

    hops = app.config["PROXY_HOPS"]
    if hops:
        # Trust exactly the proxy in front of us (nginx), so client IP and scheme are right.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app


def _configure_logging(app: Flask) -> None:
    level = app.config["LOG_LEVEL"]
    logger = logging.getLogger("loginapp")
    logger.setLevel(level)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
        logger.addHandler(handler)


def _register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[str, int]:
        message = "The form has expired or was not sent from this site. Please try again."
        return render_template("error.html", code=400, message=message), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int]:
        code = error.code or 500
        return render_template("error.html", code=code, message=error.description), code
