"""A browser-like HTTPS client for the deployed site: cookie jar, CA, CSRF tokens, same-origin Referer.

Standard library only, so bench/ uses it as tests do. HTTP errors come back as
responses (never raised), so callers assert on status codes; network errors
(refused, reset, TLS) are raised as OSError.
"""

from __future__ import annotations

import http.cookiejar
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from cryptography import x509

from . import html


@dataclass
class Response:
    status: int
    url: str  # the URL that answered (after redirects, when followed)
    headers: Message  # case-insensitive .get()
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def ssl_context(ca_cert: Path | str | None) -> ssl.SSLContext:
    """A client context trusting only ``ca_cert`` (the system store when None)."""
    return ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)


def served_certificate(name: str, cafile: Path, address: str | None = None, port: int = 443) -> x509.Certificate:
    """The leaf served for ``name`` by ``address`` (else where ``name`` resolves), verified against ``cafile``."""
    context = ssl_context(cafile)
    with (
        socket.create_connection((address or name, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


class Client:
    """One browser: its own cookies. ``base_url`` is e.g. https://192.0.2.10."""

    def __init__(self, base_url: str, context: ssl.SSLContext | None = None, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.cookies = http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.cookies), urllib.request.HTTPSHandler(context=context)]
        self._follow = urllib.request.build_opener(*handlers)
        self._nofollow = urllib.request.build_opener(*handlers, _NoRedirect)

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def request(self, method: str, path: str, data: dict | None = None, *, follow: bool = True,
                referer: str | None = None, headers: dict | None = None) -> Response:  # fmt: skip
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.url(path), data=body, method=method, headers=headers or {})
        # Flask-WTF checks a same-origin Referer on HTTPS POSTs, as browsers send it.
        req.add_header("Referer", referer or self.url(path))
        opener = self._follow if follow else self._nofollow
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.url, resp.headers, resp.read().decode())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, err.url, err.headers, err.read().decode())

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def submit(self, path: str, fields: dict, *, action: str | None = None, referer: str | None = None,
               follow: bool = True) -> Response:  # fmt: skip
        """GET ``path`` and submit its form (the one posting to ``action``, else the last) with ``fields``.

        The form's hidden fields (the CSRF token) go along, as a browser sends them.
        """
        page = self.get(path)
        return self.submit_page(page, fields, action=action, referer=referer, follow=follow)

    def submit_page(self, page: Response, fields: dict | None = None, *, action: str | None = None,
                    referer: str | None = None, follow: bool = True,
                    headers: dict | None = None) -> Response:  # fmt: skip
        """Submit a form of a page already fetched (e.g. the dashboard's logout button)."""
        form = html.form(page.text, action)
        target = urllib.parse.urljoin(page.url, form.action or page.url)
        data = {**form.fields, **(fields or {})}
        return self.request("POST", target, data, follow=follow, referer=referer or page.url, headers=headers)

    # The app's own flows, as a user clicks through them.
    def register(self, username: str, password: str, **kwargs) -> Response:
        return self.submit("/register", {"username": username, "password": password, "confirm": password}, **kwargs)

    def login(self, username: str, password: str, **kwargs) -> Response:
        """Login page (CSRF token), POST the credentials, follow the redirect to the dashboard."""
        return self.submit("/login", {"username": username, "password": password}, **kwargs)

    def logged_in_as(self, username: str) -> bool:
        page = self.get("/")
        return page.status == 200 and page.url.rstrip("/") == self.base_url and f"Hello, {username}" in page.text
