"""roles/stack/templates/nginx.conf.j2, rendered by Ansible and run by the real nginx.

The template is rendered twice with the role's defaults and the shared
settings (tests/render/templates.yml): as shipped (for content checks) and
with container paths/ports pointed at a temp dir (for `nginx -t` and a live
nginx on free ports in front of a tiny Python upstream that echoes the
request headers).
"""

import concurrent.futures
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from loginapp_kit import REPO
from loginapp_kit.client import served_certificate

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# The edge image's entrypoint: keeps nginx's list of app replicas current.
EDGE_SUPERVISOR = str(REPO / "roles/images/files/nginx/edge-supervisor")

pytestmark = pytest.mark.skipif(
    not Path(NGINX).exists(),
    reason="nginx is not installed (apt-get install nginx-light)",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def certificate(subject, key, issuer, issuer_key, ca):
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(directory):
    """A CA (ca.crt, its key kept in memory) and server.pem for localhost: what the stack puts on each edge node."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    (directory / "ca.crt").write_bytes(ca.public_bytes(PEM))
    (directory / "server.pem").write_bytes(server_pem(ca, ca_key)[0])
    now = dt.datetime.now(dt.UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    return ca, ca_key


def server_pem(ca, ca_key):
    """(server.pem's content: leaf + CA + key, the leaf) for a new key signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("localhost", key, "test CA", ca_key, ca=False)
    private = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(PEM) + ca.public_bytes(PEM) + private, leaf


PEM = serialization.Encoding.PEM


# /slow* requests stay in progress this long (the per-client request limit test).
SLOW_SECONDS = 2
# The live nginx's per-client limit of requests in progress (shipped: the role's default).
LIVE_CLIENT_REQUESTS = 3


class EchoUpstream(BaseHTTPRequestHandler):
    """Stands in for gunicorn: answers 200 with the headers it received, keeping connections alive."""

    protocol_version = "HTTP/1.1"
    # The (address, port) of every connection nginx opened to it.
    connections: set = set()

    def _answer(self):
        EchoUpstream.connections.add(self.client_address)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/slow"):
            time.sleep(SLOW_SECONDS)
        body = json.dumps({"path": self.path, "method": self.command, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Frame-Options", "SAMEORIGIN")  # nginx must replace this
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, render_templates):
    """nginx.conf as shipped, and pointed at a temp dir and free ports for a live nginx."""
    work = tmp_path_factory.mktemp("nginx")
    for sub in ("tls", "static", "tmp"):
        (work / sub).mkdir()
    ca, ca_key = make_pki(work / "tls")
    (work / "static" / "app.css").write_text("body { color: #123456; }\n" * 100)
    ports = {"http": free_port(), "https": free_port(), "upstream": free_port()}
    shipped, _, default_conf = render_templates(work / "shipped")
    assert shipped.ok, shipped.output
    local, _, _ = render_templates(
        work / "local",
        stack_nginx_http_port=ports["http"],
        stack_nginx_https_port=ports["https"],
        stack_nginx_edge_dir=str(work / "tls"),
        tls_crl_path=str(work / "tls" / "ca.crl"),
        stack_nginx_pid_path=str(work / "tmp" / "nginx.pid"),
        stack_nginx_temp_dir=str(work / "tmp"),
        stack_nginx_static_root=str(work / "static") + "/",
        stack_nginx_access_log=str(work / "access.log"),
        stack_nginx_worker_processes="1",
        stack_nginx_client_requests=LIVE_CLIENT_REQUESTS,
        stack_nginx_upstream_dir=str(work / "tmp" / "upstreams"),
        loginapp_app_port=ports["upstream"],
    )
    assert local.ok, local.output
    return {
        "work": work,
        "ports": ports,
        "default": default_conf,
        "test": work / "local" / "nginx.conf",
        "ca": (ca, ca_key),
    }


def edge_environment(rendered, name):
    """The supervisor's settings, as the stack file gives them."""
    return {
        "EDGE_UPSTREAM_NAME": name,
        "EDGE_UPSTREAM_PORT": str(rendered["ports"]["upstream"]),
        "EDGE_UPSTREAM_FILE": str(rendered["work"] / "tmp" / "upstreams" / "app.conf"),
        "EDGE_UPSTREAM_INTERVAL": "1",
        "EDGE_WATCH_FILES": f"{rendered['test']} {rendered['work'] / 'tls' / 'server.pem'}",
    }


def upstream_block(conf):
    """The body of nginx.conf's `upstream app { ... }` block."""
    return re.search(r"upstream app \{(.*?)\}", conf, re.DOTALL).group(1)


def directives(conf, name):
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]*);", conf, re.MULTILINE)]


# --- the shipped configuration -------------------------------------------------


def test_nginx_accepts_rendered_config(rendered):
    proc = subprocess.run(
        [NGINX, "-t", "-c", str(rendered["test"]), "-e", "stderr"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr


def test_shipped_config_fits_a_read_only_non_root_container(rendered):
    conf = rendered["default"]
    assert not directives(conf, "user")
    assert directives(conf, "pid") == ["/tmp/nginx.pid"]
    temp_paths = re.findall(r"^\s*(\w+_temp_path)\s+(\S+);", conf, re.MULTILINE)
    assert {name for name, _ in temp_paths} == {
        "client_body_temp_path",
        "proxy_temp_path",
        "fastcgi_temp_path",
        "uwsgi_temp_path",
        "scgi_temp_path",
    }
    assert all(path.startswith("/tmp/") for _, path in temp_paths)
    assert directives(conf, "listen") == [
        "8080 default_server",
        "8443 ssl http2 default_server",
        "8080",  # the servers that refuse other names
        "8443 ssl",
    ]
    # One file holds chain and key: replaced in one step, never a pair that does not match.
    assert directives(conf, "ssl_certificate") == ["/etc/nginx/edge/server.pem"]
    assert directives(conf, "ssl_certificate_key") == ["/etc/nginx/edge/server.pem"]
    assert directives(conf, "error_log") == ["stderr warn"]
    assert directives(conf, "access_log")[0] == "/dev/stdout json buffer=4k flush=1s"
    # Static files only: they are in the image, so never change under a running nginx.
    assert directives(conf, "open_file_cache") == ["max=1000 inactive=1h"]


def test_shipped_config_tls_policy(rendered):
    conf = rendered["default"]
    assert directives(conf, "ssl_protocols") == ["TLSv1.2 TLSv1.3"]
    assert directives(conf, "ssl_prefer_server_ciphers") == ["off"]
    assert directives(conf, "ssl_session_tickets") == ["off"]
    assert directives(conf, "ssl_stapling") == ["off"]
    assert directives(conf, "server_tokens") == ["off"]
    ciphers = directives(conf, "ssl_ciphers")[0].split(":")
    assert ciphers[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert all(c.endswith(("-GCM-SHA256", "-GCM-SHA384", "-CHACHA20-POLY1305")) for c in ciphers), ciphers
    hsts = [h for h in directives(conf, "add_header") if h.startswith("Strict-Transport-Security")]
    assert hsts and all(h == 'Strict-Transport-Security "max-age=63072000" always' for h in hsts)


def test_shipped_config_routing(rendered):
    conf = rendered["default"]
    assert "return 301 https://$host$request_uri;" in conf
    # A fixed upstream whose servers the edge's supervisor writes, with connections kept alive.
    assert not directives(conf, "resolver")
    port = yaml.safe_load((REPO / "roles/loginapp/defaults/main.yml").read_text())["loginapp_app_port"]
    upstream = upstream_block(conf)
    assert directives(upstream, "server") == [f"127.0.0.1:{port} down"]
    assert directives(upstream, "include") == ["/tmp/upstreams/*.conf"]
    assert directives(upstream, "keepalive") == ["32"]
    assert directives(upstream, "keepalive_timeout") == ["4s"]
    assert set(directives(conf, "proxy_pass")) == {"http://app"}
    assert directives(conf, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directives(conf, "proxy_set_header")
    assert directives(conf, "proxy_set_header").count("X-Forwarded-For $remote_addr") == 1
    assert directives(conf, "proxy_next_upstream") == ["error timeout http_502 http_503"]
    # limit_req only inside the exact POST-keyed locations for /login and /register.
    limited = re.findall(r"location = (\S+) \{\s*limit_req zone=login burst=5 nodelay;", conf)
    assert limited == ["/login", "/register"]
    assert len(directives(conf, "limit_req")) == 2
    assert re.search(
        r"map \$request_method \$login_limit_key \{\s*default \"\";\s*POST \$binary_remote_addr;",
        conf,
    )
    assert directives(conf, "limit_req_zone") == ["$login_limit_key zone=login:10m rate=10r/m"]
    # Requests in progress per client address, on both ports; 0 turns it off.
    assert directives(conf, "limit_conn_zone") == ["$binary_remote_addr zone=perclient:10m"]
    assert directives(conf, "limit_conn") == ["perclient 64"]
    assert directives(conf, "limit_conn_status") == ["429"]


def test_app_keepalive_can_be_turned_off(render):
    result, _, conf = render(stack_nginx_upstream_keepalive=0)
    assert result.ok, result.output
    upstream = upstream_block(conf)
    assert not directives(upstream, "keepalive")
    assert directives(upstream, "include") == ["/tmp/upstreams/*.conf"]


@pytest.mark.parametrize(("name", "replicas"), [("localhost", 1), ("no-replica.invalid", 0)])
def test_edge_supervisor_lists_the_replicas_then_passes_the_stop_signal_on(rendered, tmp_path, name, replicas):
    """edge-supervisor writes the server list before its command starts, and the container's stop signal reaches it.

    A name without addresses (no healthy replica yet) gives an empty list, which nginx accepts.
    """
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGQUIT, lambda *_: sys.exit(3))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    environment = {**edge_environment(rendered, name), "EDGE_UPSTREAM_FILE": str(tmp_path / "up" / "app.conf")}
    proc = subprocess.Popen(
        [EDGE_SUPERVISOR, "python3", "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **environment},
    )
    try:
        assert proc.stdout.readline() == "started\n"
        port = rendered["ports"]["upstream"]
        listed = [f"server 127.0.0.1:{port};"] * replicas
        assert (tmp_path / "up" / "app.conf").read_text().splitlines() == listed
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(timeout=10) == 3  # the command's own exit status
        assert f"{name}: {replicas} replica(s)" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_edge_supervisor_refuses_to_start_without_its_settings():
    proc = subprocess.run([EDGE_SUPERVISOR, "true"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert proc.returncode != 0
    assert "EDGE_UPSTREAM_NAME" in proc.stderr


def test_hsts_subdomains_and_acme_root_are_knobs(render):
    result, _, conf = render(
        stack_nginx_hsts_include_subdomains=True, stack_nginx_hsts_max_age=31536000, stack_nginx_acme_root="/srv/acme"
    )
    assert result.ok, result.output
    assert 'Strict-Transport-Security "max-age=31536000; includeSubDomains" always' in conf
    assert re.search(r"acme-challenge/ \{\s*root /srv/acme;", conf)


def test_the_challenge_directory_is_mounted_where_nginx_serves_it(render):
    result, stack, conf = render(tls_acme_challenge_dir="/var/lib/loginapp/acme-challenge")
    assert result.ok, result.output
    mounts = stack["services"]["nginx"]["volumes"]
    assert {
        "type": "bind", "source": "/var/lib/loginapp/acme-challenge",
        "target": "/srv/acme/.well-known/acme-challenge", "read_only": True,
    } in mounts  # fmt: skip
    assert re.search(r"acme-challenge/ \{\s*root /srv/acme;", conf)
    # Without it (the outputs of an older tls stage): no mount, and the path answers 404.
    result, stack, conf = render()
    assert not [m for m in stack["services"]["nginx"]["volumes"] if "acme" in m.get("target", "")]
    assert re.search(r"acme-challenge/ \{\s*return 404;", conf)


def test_ocsp_stapling_follows_the_certificate(render):
    names = ["DNS:login.example.test"]
    result, _, conf = render(stack_certificate={"subject_alt_name": names, "ocsp_uri": "http://ocsp.example.test"})
    assert result.ok, result.output
    assert "ssl_stapling on;" in conf and "resolver 127.0.0.11" in conf
    # The private CA (and Let's Encrypt since 2025) name no responder: nothing to staple.
    for certificate in ({"subject_alt_name": names}, {"subject_alt_name": names, "ocsp_uri": None}):
        result, _, conf = render(stack_certificate=certificate)
        assert result.ok, result.output
        assert "ssl_stapling off;" in conf and "ssl_stapling on;" not in conf


# --- a live nginx ---------------------------------------------------------------


@pytest.fixture(scope="module")
def live(rendered):
    upstream = ThreadingHTTPServer(("127.0.0.1", rendered["ports"]["upstream"]), EchoUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    # Workers would drop to `nobody` without a user directive and could not read the 0700 tmp dir.
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    with open(rendered["work"] / "nginx.out", "w") as log:
        # As in the edge image: the supervisor lists the upstream's addresses (here localhost's) and runs nginx.
        proc = subprocess.Popen(
            [EDGE_SUPERVISOR, NGINX, "-c", str(rendered["test"]), "-e", "stderr", "-g", globals_],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **edge_environment(rendered, "localhost")},
        )
        try:
            wait_for_ports(proc, rendered)
            yield rendered
        finally:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            upstream.shutdown()
            upstream.server_close()


def wait_for_ports(proc, rendered):
    deadline = time.monotonic() + 20
    for port in (rendered["ports"]["http"], rendered["ports"]["https"]):
        while True:
            assert proc.poll() is None, (rendered["work"] / "nginx.out").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start listening"
                time.sleep(0.1)


def tls_context(rendered, version=None, alpn=None):
    ctx = ssl.create_default_context(cafile=str(rendered["work"] / "tls" / "ca.crt"))
    if version:
        # SECLEVEL=0 so the client itself can still speak old protocols: the refusal must come from nginx.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def https(rendered, method, path, headers=None, body=None):
    conn = http.client.HTTPSConnection(
        "localhost",
        rendered["ports"]["https"],
        context=tls_context(rendered),
        timeout=10,
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def test_http_redirects_to_https_and_answers_health(live):
    conn = http.client.HTTPConnection("127.0.0.1", live["ports"]["http"], timeout=10)
    conn.request("GET", "/login?next=/x", headers={"Host": "node1"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 301
    assert resp.headers["Location"] == "https://node1/login?next=/x"
    conn.request("GET", "/nginx-health")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"ok\n")
    conn.request("GET", "/.well-known/acme-challenge/token")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 404
    # The private CA's revocation list, over plain HTTP where the server certificate says.
    conn.request("GET", "/ca.crl", headers={"Host": "node1"})
    resp = conn.getresponse()
    assert (resp.status, resp.headers["Content-Type"]) == (200, "application/pkix-crl")
    assert resp.read() == (live["work"] / "tls" / "ca.crl").read_bytes()
    conn.close()
    assert "ca.crl" not in live["default"], "without a private CA (no tls_crl_path) nothing is served there"


def handshake(live, version, alpn=None):
    ctx = tls_context(live, version, alpn)
    with (
        socket.create_connection(("127.0.0.1", live["ports"]["https"]), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version(), tls.selected_alpn_protocol()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_shipped_config_serves_the_certificates_names_and_refuses_others(rendered):
    conf = rendered["default"]
    assert directives(conf, "server_name") == ["localhost node1 127.0.0.1"] * 2 + ["~."] * 2
    assert directives(conf, "ssl_reject_handshake") == ["on"]


def test_any_name_or_no_refusal_are_knobs(render):
    for knobs in ({"stack_nginx_server_names": ["_"]}, {"stack_nginx_refuse_unknown_names": False}):
        result, _, conf = render(**knobs)
        assert result.ok, result.output
        assert "ssl_reject_handshake" not in conf and "~." not in conf, knobs


def raw_http(port, request: bytes) -> bytes:
    """What nginx answers to ``request`` on a plain connection (b"" when it closes without answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_other_names_are_refused_and_addresses_served(live):
    http_port, https_port = live["ports"]["http"], live["ports"]["https"]
    # HTTP: another Host is closed without an answer; a served name, an address or no Host at all is answered.
    assert raw_http(http_port, b"GET / HTTP/1.1\r\nHost: other.example.test\r\nConnection: close\r\n\r\n") == b""
    assert raw_http(http_port, b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 301"
    )
    assert raw_http(http_port, b"GET /nginx-health HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")
    # TLS: a handshake for another name is refused before any certificate is sent.
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", https_port), timeout=10)
    with sock, pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        unverified.wrap_socket(sock, server_hostname="other.example.test")
    # Without SNI (clients connecting to an address): served, unless the Host names another site.
    for host, path, served in (("127.0.0.1", "/nginx-health", True), ("other.example.test", "/", False)):
        sock = socket.create_connection(("127.0.0.1", https_port), timeout=10)
        with sock, unverified.wrap_socket(sock) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            answer = tls.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200") is served, (host, answer)
        assert served or answer == b"", answer


def served_leaf(live):
    return served_certificate("localhost", live["work"] / "tls" / "ca.crt", "127.0.0.1", live["ports"]["https"])


def replace_file(path, content):
    """As Ansible's copy does: a new file renamed over the old one."""
    new = path.with_name(path.name + ".new")
    new.write_bytes(content)
    os.replace(new, path)


def reloads(live, replaced) -> int:
    """How many times the supervisor has reloaded nginx for ``replaced``."""
    return (live["work"] / "nginx.out").read_text().count(f"{replaced} replaced: reloading nginx")


def settles_on(live, replaced, reloads_before, probe, expected, seconds=15):
    """Wait until nginx reloaded for ``replaced`` after ``reloads_before`` and 5 new connections in a row see
    ``expected`` from ``probe(live)``: after a reload the old workers finish, and may still accept a few."""
    deadline, in_a_row, seen = time.monotonic() + seconds, 0, None
    while in_a_row < 5:
        assert time.monotonic() < deadline, f"nginx still serves {seen!r} after {seconds} s, not {expected!r}"
        seen = probe(live)
        if reloads(live, replaced) > reloads_before and seen == expected:
            in_a_row += 1
        else:
            in_a_row = 0
            time.sleep(0.2)


def test_a_replaced_certificate_is_reloaded_without_a_failed_request(live):
    """A new server.pem (new key) is served within seconds of being written, by a graceful reload: requests on
    new connections, each with its own handshake, keep succeeding meanwhile. The first file comes back at the end."""
    pem = live["work"] / "tls" / "server.pem"
    original, first_leaf = pem.read_bytes(), served_leaf(live)
    content, new_leaf = server_pem(*live["ca"])
    outcomes = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                outcomes.append(https(live, "GET", "/during-reload")[0])
            except OSError as error:
                outcomes.append(repr(error))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        before = reloads(live, pem)
        replace_file(pem, content)
        settles_on(live, pem, before, served_leaf, new_leaf)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
        before = reloads(live, pem)
        replace_file(pem, original)
    settles_on(live, pem, before, served_leaf, first_leaf)
    failed = [outcome for outcome in outcomes if outcome != 200]
    assert outcomes and not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:3]}"
    assert f"{pem} replaced: reloading nginx" in (live["work"] / "nginx.out").read_text()


def test_a_replaced_nginx_conf_is_reloaded(live):
    """A new nginx.conf (another Referrer-Policy) is served within seconds of being written; the first comes back."""
    conf = live["test"]
    original = conf.read_text()
    assert "strict-origin-when-cross-origin" in original

    def referrer_policy(live):
        return https(live, "GET", "/login")[1]["Referrer-Policy"]

    try:
        before = reloads(live, conf)
        replace_file(conf, original.replace("strict-origin-when-cross-origin", "no-referrer").encode())
        settles_on(live, conf, before, referrer_policy, "no-referrer")
    finally:
        before = reloads(live, conf)
        replace_file(conf, original.encode())
    settles_on(live, conf, before, referrer_policy, "strict-origin-when-cross-origin")
    assert f"{conf} replaced: reloading nginx" in (live["work"] / "nginx.out").read_text()


def test_old_tls_probe_can_succeed(live):
    """Control: the TLS 1.1 client below does connect to a server that allows TLS 1.1."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    tls_dir = live["work"] / "tls"
    server_ctx.load_cert_chain(tls_dir / "server.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve():
            conn, _ = listener.accept()
            try:
                server_ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        client_ctx = tls_context(live, ssl.TLSVersion.TLSv1_1)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == "TLSv1.1"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    "version",
    [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
    ids=["TLSv1.0", "TLSv1.1"],
)
def test_old_tls_is_refused(live, version):
    with pytest.raises(ssl.SSLError):
        handshake(live, version)


def test_tls12_and_tls13_are_accepted_with_http2(live):
    assert handshake(live, ssl.TLSVersion.TLSv1_2)[0] == "TLSv1.2"
    assert handshake(live, ssl.TLSVersion.TLSv1_3, alpn=["h2", "http/1.1"]) == (
        "TLSv1.3",
        "h2",
    )


def test_proxied_request_carries_security_headers_and_forwarding(live):
    status, headers, body = https(
        live,
        "GET",
        "/dashboard",
        headers={"X-Forwarded-For": "6.6.6.6", "Host": "localhost"},
    )
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/dashboard"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1", "a client-sent X-Forwarded-For must be overwritten"
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    assert seen["headers"]["X-Forwarded-Host"] == "localhost"
    assert seen["headers"]["Host"] == "localhost"
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers.get_all("X-Frame-Options") == ["DENY"]
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in headers["Permissions-Policy"]
    assert headers["Server"] == "nginx"


def test_static_files_are_served_cached_and_compressed(live):
    status, headers, _ = https(live, "GET", "/static/app.css", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert https(live, "GET", "/static/missing.css")[0] == 404


def test_health_on_https(live):
    status, _, body = https(live, "GET", "/nginx-health")
    assert (status, body) == (200, b"ok\n")
    # The app's readiness (its database's state) is never proxied to clients.
    status, headers, body = https(live, "GET", "/readyz")
    assert status == 404 and b"headers" not in body, body
    assert headers["Strict-Transport-Security"] == "max-age=63072000"


def test_login_posts_are_rate_limited_but_gets_and_other_posts_are_not(live):
    # Other paths and GETs first: they must never be limited nor use up the POST budget.
    assert {https(live, "POST", "/logout", body=b"x=1")[0] for _ in range(10)} == {200}
    assert {https(live, "GET", "/login")[0] for _ in range(10)} == {200}

    statuses = []
    for _ in range(10):
        status, headers, body = https(
            live,
            "POST",
            "/login",
            body=b"user=a&password=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        statuses.append(status)
        if status == 429:
            limited = (headers, body)
    # 10r/m with burst 5: the first 1 + 5 pass, the rest are refused at once
    # (one more may pass if the machine is so slow that 6 s elapse).
    assert statuses[:6] == [200] * 6
    assert statuses[-3:] == [429] * 3
    headers, body = limited
    assert b"Too many attempts" in body
    assert headers["Retry-After"] == "60"
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    assert https(live, "POST", "/register", body=b"x=1")[0] == 429, "register shares the login budget"


def test_requests_in_progress_per_client_are_limited(live):
    """Beyond LIVE_CLIENT_REQUESTS requests in progress from one address, more get 429 at once."""
    with concurrent.futures.ThreadPoolExecutor(LIVE_CLIENT_REQUESTS + 2) as pool:
        slow = [pool.submit(https, live, "GET", f"/slow/{i}") for i in range(LIVE_CLIENT_REQUESTS)]
        time.sleep(SLOW_SECONDS / 2)  # the slow ones are now in progress at the upstream
        status, headers, body = https(live, "GET", "/one-too-many")
        assert [future.result()[0] for future in slow] == [200] * LIVE_CLIENT_REQUESTS
    assert status == 429 and b"Too many attempts" in body, (status, body)
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    # Once they are done, the same address is served again.
    assert https(live, "GET", "/after")[0] == 200


def test_connections_to_the_app_are_reused(live):
    """With upstream keep-alive, many requests travel over few connections to the app."""
    EchoUpstream.connections.clear()
    for _ in range(20):
        status, _, _ = https(live, "GET", "/keepalive")
        assert status == 200
    # One worker: one idle connection reused (two if an idle one was being closed meanwhile).
    assert 1 <= len(EchoUpstream.connections) <= 2, EchoUpstream.connections


def test_access_log_is_json(live):
    https(live, "GET", "/json-log-probe")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = (live["work"] / "access.log").read_text().splitlines()
        entries = [json.loads(line) for line in lines]
        probe = [e for e in entries if e["uri"] == "/json-log-probe"]
        if probe:
            break
        time.sleep(0.1)
    assert probe and probe[0]["status"] == 200 and probe[0]["tls"]
    assert not [e for e in entries if e["uri"] == "/nginx-health"], "health checks must not be logged"
