"""Headers, cookies, proxy handling and the health endpoints."""

from __future__ import annotations

from flask.testing import FlaskClient
from loginapp_kit.pgserver import free_port


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "object-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # no JavaScript at all, so none is allowed
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_static_stylesheet_served_with_headers(client: FlaskClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in response.headers.get("Cache-Control", "")
    response.close()


def test_pages_have_no_scripts(client: FlaskClient) -> None:
    for path in ("/login", "/register"):
        assert "<script" not in client.get(path).get_data(as_text=True)


def test_development_cookie_flags(client: FlaskClient) -> None:
    cookie = client.get("/login").headers["Set-Cookie"]
    assert cookie.startswith("loginapp=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_secure_cookie_flags(make_app) -> None:
    app = make_app(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-loginapp")
    client = app.test_client()
    headers = {"X-Forwarded-Proto": "https"}
    cookie = client.get("/login", headers=headers).headers["Set-Cookie"]
    assert cookie.startswith("__Host-loginapp=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie


def test_proxy_fix_uses_one_trusted_hop(client: FlaskClient, user, forms) -> None:
    # A client-supplied X-Forwarded-For is prepended; only the proxy's last entry counts.
    headers = {
        "X-Forwarded-For": "6.6.6.6, 192.0.2.44",
        "X-Forwarded-Proto": "https",
        # Over HTTPS Flask-WTF also insists on a same-origin Referer.
        "Referer": "https://localhost/login",
    }
    assert forms.login(client, "alice", user.password, headers=headers).status_code == 302
    body = client.get("/", headers=headers).get_data(as_text=True)
    assert "192.0.2.44" in body
    assert "6.6.6.6" not in body


def test_proxy_fix_scheme_and_host(app) -> None:
    seen: dict[str, str] = {}

    @app.after_request
    def _record(response):
        from flask import request

        seen.update(scheme=request.scheme, host=request.host, ip=request.remote_addr)
        return response

    app.test_client().get(
        "/healthz",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "login.example",
            "X-Forwarded-For": "192.0.2.1",
        },
    )
    assert seen == {"scheme": "https", "host": "login.example", "ip": "192.0.2.1"}


def test_https_post_without_same_origin_referer_rejected(client: FlaskClient, user, forms) -> None:
    headers = {"X-Forwarded-Proto": "https", "Referer": "https://evil.example/"}
    assert forms.login(client, "alice", user.password, headers=headers).status_code == 400


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_ok(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["database"] == "up"


def test_readyz_and_healthz_when_database_down(make_app, tmp_path) -> None:
    for url in (
        f"sqlite:///{tmp_path}/missing-dir/db.sqlite3",
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
    ):
        client = make_app(DATABASE_URL=url).test_client()
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_unknown_page_is_404_with_headers(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert "object-src 'none'" in response.headers["Content-Security-Policy"]
