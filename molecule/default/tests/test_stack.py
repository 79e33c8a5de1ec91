"""The deployed stack as an operator inspects it and as a user reaches it.

Swarm facts are read on the manager (`docker service inspect`, `docker exec`);
everything a user sees is checked from the controller over the network, at
the host's address, with the project's CA as the only trust anchor.
"""

from __future__ import annotations

import http.client
import json
import queue
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from cryptography import x509
from loginapp_kit.client import served_certificate
from loginapp_kit.wait import wait_for

SERVICES = ["nginx", "app", "db", "backup"]
# The backup service runs the db image as the same user, and no server to check.
HEALTH_CHECKED = ["nginx", "app", "db"]
# Where each service reads its secrets (files under /run/secrets, never env values).
SECRET_TARGETS = {
    # db_ca: the internal CA the app verifies the database's certificate with.
    "app": {"secret_key", "secret_key_fallbacks", "db_password", "db_ca"},
    # The server holds no password (the stack role sets the app role's through its socket), only its TLS key.
    "db": {"db_tls"},
    # nginx.conf, its certificate and key are node files it reloads in place (see test_nginx_conf_and_the_tls_key_...).
    "nginx": set(),
    "backup": {"db_password", "db_ca"},
}
MIB = 1024 * 1024
NANO = 10**9


# --- the services, as Swarm runs them -----------------------------------------------


@pytest.fixture(scope="module")
def uids(target):
    """The users each service runs as (shared settings, baked into the images)."""
    uids = {service: str(target.settings[f"loginapp_{service}_uid"]) for service in HEALTH_CHECKED}
    return {**uids, "backup": uids["db"]}


def test_every_service_runs_its_replicas(target):
    out = target.docker(
        "service",
        "ls",
        "--filter",
        f"label=com.docker.stack.namespace={target.stack}",
        "--format",
        "{{.Name}} {{.Replicas}}",
    )
    # "1/1 (max 1 per node)" for nginx: compare the counts only.
    replicas = {name: counts.split(" ")[0] for name, counts in (line.split(" ", 1) for line in out.splitlines())}
    # One node: nginx is capped at one replica (host-mode ports), the app keeps 2.
    expected = {"nginx": "1/1", "app": "2/2", "db": "1/1", "backup": "1/1"}
    assert replicas == {target.service(name): count for name, count in expected.items()}


@pytest.mark.parametrize(
    "service, cpus, memory, cpus_reserved, memory_reserved",
    [
        ("nginx", 1.0, 128, 0.05, 32),
        ("app", 1.0, 512, 0.1, 192),
        ("db", 1.0, 512, 0.1, 128),
    ],
)
def test_limits_and_reservations(target, service, cpus, memory, cpus_reserved, memory_reserved):
    resources = target.service_spec(service)["TaskTemplate"]["Resources"]
    assert resources["Limits"]["NanoCPUs"] == int(cpus * NANO)
    assert resources["Limits"]["MemoryBytes"] == memory * MIB
    assert resources["Reservations"]["NanoCPUs"] == int(cpus_reserved * NANO)
    assert resources["Reservations"]["MemoryBytes"] == memory_reserved * MIB


PIDS = {"nginx": 512, "app": 256, "db": 256, "backup": 32}  # the stack role's defaults


def test_cli_can_express_pids_limits(manager):
    # The role sets them only when the deploy host's CLI is 23 or newer (trixie: 26).
    cli = manager.check_output("docker version --format '{{.Client.Version}}'")
    assert int(cli.split(".")[0]) >= 23, f"test host CLI {cli}: expected trixie's Docker 26"


@pytest.mark.parametrize("service", SERVICES)
def test_pids_limit(target, service):
    assert target.service_spec(service)["TaskTemplate"]["Resources"]["Limits"].get("Pids") == PIDS[service]


@pytest.mark.parametrize("service", SERVICES)
def test_pids_limit_is_enforced(manager, target, service):
    # The limit reaches the container's pids cgroup.
    inspect = f"docker inspect --format '{{{{.HostConfig.PidsLimit}}}}' {target.container(service)}"
    assert manager.check_output(inspect) == str(PIDS[service])


@pytest.mark.parametrize("service", SERVICES)
def test_hardened_container_spec(target, service):
    container = target.service_spec(service)["TaskTemplate"]["ContainerSpec"]
    assert container.get("ReadOnly") is True
    assert container.get("CapabilityDrop") == ["ALL"]


@pytest.mark.parametrize("service", HEALTH_CHECKED)
def test_containers_are_healthy(manager, target, service):
    # Stack healthchecks for nginx and app, the image's HEALTHCHECK for the db.
    status = manager.check_output(f"docker inspect --format '{{{{.State.Health.Status}}}}' {target.container(service)}")
    assert status == "healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_is_read_only_at_runtime(manager, target, service):
    result = manager.run(f"docker exec {target.container(service)} touch /probe")
    assert result.rc != 0
    assert "Read-only file system" in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_processes_do_not_run_as_root(manager, target, uids, service):
    uid = manager.check_output(f"docker exec {target.container(service)} id -u")
    assert uid == uids[service]


def test_app_and_db_use_dns_round_robin(target):
    assert target.service_spec("app")["EndpointSpec"]["Mode"] == "dnsrr"
    assert target.service_spec("db")["EndpointSpec"]["Mode"] == "dnsrr"


def test_app_updates_start_first_and_roll_back(target):
    update = target.service_spec("app")["UpdateConfig"]
    assert update["Order"] == "start-first"
    assert update["FailureAction"] == "rollback"


def test_nginx_publishes_80_and_443_in_host_mode(target):
    ports = target.service_spec("nginx")["EndpointSpec"]["Ports"]
    assert {(p["PublishedPort"], p["PublishMode"]) for p in ports} == {
        (80, "host"),
        (443, "host"),
    }


def test_db_is_pinned_by_node_label(target, manager):
    label = target.settings["loginapp_db_node_label"]
    constraints = target.service_spec("db")["TaskTemplate"]["Placement"]["Constraints"]
    assert constraints == [f"node.labels.{label} == true"]
    labels = json.loads(manager.check_output("docker node inspect self --format '{{json .Spec.Labels}}'"))
    assert labels[label] == "true"


@pytest.mark.parametrize(
    "user, database, sslmode, refused_with",
    [
        ("app", "app", "require", None),
        # Older clusters gave the superuser the app's password: it is refused over TCP even with it.
        ("postgres", "postgres", "require", "pg_hba.conf rejects connection"),
        ("app", "postgres", "require", "pg_hba.conf rejects connection"),
        ("app", "app", "disable", "no encryption"),
    ],
)
def test_over_the_network_only_the_app_role_reaches_its_database_over_tls(
    manager, target, user, database, sslmode, refused_with
):
    user = target.settings["loginapp_db_user"] if user == "app" else user
    database = target.settings["loginapp_db_name"] if database == "app" else database
    password = (Path(target.outputs("stack")["stack_secrets_dir"]) / "db_password").read_text().strip()
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    psql = f"psql -X -w -h 127.0.0.1 -U {user} -d {database} -tAc '{query}'"
    env = f"--env PGPASSWORD={password} --env PGSSLMODE={sslmode}"
    result = manager.run(f"docker exec {env} {target.container('db')} {psql}")
    if refused_with:
        assert result.rc != 0 and refused_with in result.stderr, result.stderr
    else:
        assert result.rc == 0 and result.stdout.strip() == "t", result.stderr


def test_the_apps_database_connections_are_tls(manager, target):
    """pg_stat_ssl, read through the superuser's socket: the app's pool (its health checks keep it busy)."""
    role = target.settings["loginapp_db_user"]
    query = (
        "SELECT count(*), count(*) FILTER (WHERE s.ssl), string_agg(DISTINCT s.version, ',')"
        f" FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '{role}'"
    )
    psql = f'psql -X -w -h /tmp -U postgres -d postgres -tAc "{query}"'
    connections, encrypted, versions = manager.check_output(f"docker exec {target.container('db')} {psql}").split("|")
    assert int(connections) > 0 and encrypted == connections, (connections, encrypted)
    assert versions == "TLSv1.3"


# Run in an app container with its own secrets: the database's name verifies, its address does not (verify-full).
VERIFY_FROM_THE_APP = """
import socket, psycopg
password = open("/run/secrets/db_password").readline().strip()
for host in ("{db}", socket.gethostbyname("{db}")):
    try:
        psycopg.connect(host=host, dbname="{name}", user="{user}", password=password,
                        sslmode="verify-full", sslrootcert="/run/secrets/db_ca", connect_timeout=5).close()
        print(host, "ok")
    except psycopg.OperationalError as error:
        print(host, "refused:", " ".join(str(error).split()))
"""


def test_the_app_verifies_the_database_certificate_and_its_name(manager, target):
    settings = target.settings
    script = VERIFY_FROM_THE_APP.format(
        db=settings["loginapp_db_service"], name=settings["loginapp_db_name"], user=settings["loginapp_db_user"]
    )
    by_name, by_address = target.docker("exec", target.container("app"), "python", "-c", script).splitlines()
    assert by_name == f"{settings['loginapp_db_service']} ok"
    assert "refused" in by_address and "does not match host name" in by_address, by_address


@pytest.mark.parametrize(
    "exec_user, db_user, refused_with",
    [
        ("postgres", "postgres", None),
        ("postgres", "app", "pg_hba.conf rejects connection"),
        # No capabilities: root in the container cannot even open the postgres-only socket.
        ("0", "postgres", "Permission denied"),
    ],
)
def test_the_socket_admits_only_the_superuser_as_postgres(manager, target, exec_user, db_user, refused_with):
    """Backups, restores and setting the app's password go through the socket, without a password."""
    db_user = target.settings["loginapp_db_user"] if db_user == "app" else db_user
    psql = f"psql -X -w -h /tmp -U {db_user} -d postgres -tAc 'SELECT 1'"
    result = manager.run(f"docker exec --user {exec_user} {target.container('db')} {psql}")
    if refused_with:
        assert result.rc != 0 and refused_with in result.stderr, result.stderr
    else:
        assert result.rc == 0 and result.stdout.strip() == "1", result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_secrets_are_files_not_environment(target, uids, service):
    container = target.service_spec(service)["TaskTemplate"]["ContainerSpec"]
    mounted = {s["File"]["Name"] for s in container.get("Secrets", [])}
    assert mounted == SECRET_TARGETS[service]
    for secret in container.get("Secrets", []):
        assert secret["File"]["Mode"] == 0o400
        assert secret["File"]["UID"] == uids[service]
    env = dict(e.split("=", 1) for e in container.get("Env", []))
    # Only *_FILE pointers, never a secret's value.
    for name, value in env.items():
        assert not any(word in name for word in ("PASSWORD", "SECRET", "KEY")) or (
            name.endswith("_FILE") and value.startswith("/run/secrets/")
        ), f"{name} looks like a secret in the environment"


@pytest.mark.parametrize(
    "service, secret",
    [("app", "secret_key"), ("app", "db_password"), ("backup", "db_password")],
)
def test_secret_values_only_in_the_mounted_files(manager, target, service, secret):
    value = (Path(target.outputs("stack")["stack_secrets_dir"]) / secret).read_text().split()[0]
    container = target.container(service)
    # The file holds the controller's generated value...
    assert manager.check_output(f"docker exec {container} cat /run/secrets/{secret}") == value
    # ...and no process environment of the container carries it.
    env = manager.check_output(f"docker inspect --format '{{{{json .Config.Env}}}}' {container}")
    assert value not in env
    environ = manager.check_output(f"docker exec {container} cat /proc/1/environ")
    assert value not in environ


def test_nginx_conf_and_the_tls_key_are_node_files_only_nginx_reads(manager, target, uids):
    tls = target.outputs("tls")
    chain, key = (Path(tls[name]).read_text().strip() for name in ("tls_server_cert_path", "tls_server_key_path"))
    directory = manager.file("/etc/loginapp/edge")
    assert (directory.uid, directory.mode) == (int(uids["nginx"]), 0o500)
    for name in ("nginx.conf", "server.pem"):
        file = manager.file(f"/etc/loginapp/edge/{name}")
        assert (file.uid, file.mode) == (int(uids["nginx"]), 0o400), name
    assert manager.file("/etc/loginapp/edge/server.pem").content_string == f"{chain}\n{key}\n"
    spec = target.service_spec("nginx")["TaskTemplate"]["ContainerSpec"]
    binds = [(m["Source"], m["Target"], m.get("ReadOnly")) for m in spec["Mounts"] if m["Type"] == "bind"]
    assert binds == [
        ("/etc/loginapp/edge", "/etc/nginx/edge", True),
        # ACME HTTP-01 responses (tls_mode acme): mounted in every mode, so switching never restarts nginx.
        ("/var/lib/loginapp/acme-challenge", "/srv/acme/.well-known/acme-challenge", True),
    ]
    assert spec["Args"][:3] == ["nginx", "-c", "/etc/nginx/edge/nginx.conf"]
    assert not spec.get("Configs"), "nginx.conf is the node's file, not a Swarm config"


def test_published_ports_answer_on_the_host_without_a_proxy(manager):
    """userland-proxy=false: the host-mode ports are kernel NAT rules, no docker-proxy process listens for them,
    and nginx still answers on the node itself."""
    assert manager.run("pgrep -x docker-proxy").rc == 1
    health = "GET /nginx-health HTTP/1.0\\r\\n\\r\\n"
    status = manager.check_output(
        f"timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/80 && printf \"{health}\" >&3 && head -1 <&3'"
    )
    assert status.split()[1] == "200", status
    assert manager.run("timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/443'").rc == 0


# --- what the controller sees over the network ----------------------------------------


def test_http_redirects_to_https(target):
    conn = http.client.HTTPConnection(target.host, 80, timeout=10)
    conn.request("GET", "/login?next=%2F")
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://{target.host}/login?next=%2F"


def test_certificate_verifies_against_the_ca_with_the_host_ip(target):
    context = target.ssl_context()  # hostname checking on: the IP must be a SAN
    with (
        socket.create_connection((target.host, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=target.host) as tls,
    ):
        cert = tls.getpeercert()
        version = tls.version()
    sans = {value for kind, value in cert["subjectAltName"] if kind == "IP Address"}
    assert target.host in sans
    assert version in ("TLSv1.2", "TLSv1.3")


def test_certificate_names_the_revocation_list_nginx_serves(target):
    """The private CA is name-constrained, and its signed revocation list is at the URL the server certificate
    names, over plain HTTP (TLS scanners then stop reporting "neither CRL nor OCSP URI")."""
    ca = x509.load_pem_x509_certificate(Path(target.ca_cert).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.NameConstraints).critical
    leaf = served_certificate(target.host, target.ca_cert, target.host)
    (point,) = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = urllib.parse.urlsplit(point.full_name[0].value)
    assert url.scheme == "http"
    conn = http.client.HTTPConnection(target.host, 80, timeout=10)
    conn.request("GET", url.path, headers={"Host": url.netloc})
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Content-Type")) == (200, "application/pkix-crl")
    crl = x509.load_der_x509_crl(resp.read())
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())


def test_certificate_is_refused_without_the_ca(target):
    # A control: the default trust store does not know the project's CA.
    context = ssl.create_default_context()
    with (
        socket.create_connection((target.host, 443), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=target.host)


# Python deprecates naming TLS 1.0/1.1 at all; these tests do so on purpose.
legacy_tls = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")


def _handshake(target, maximum: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(target.ca_cert))
    # OpenSSL 3's default security level refuses TLS < 1.2 locally; level 0
    # lets the client offer it, so any refusal comes from the server.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    with (
        socket.create_connection((target.host, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=target.host) as tls,
    ):
        return tls.version()


@legacy_tls
def test_tls_1_2_is_accepted_by_the_same_client(target):
    # Proves the legacy-capable client below can complete a handshake at all.
    assert _handshake(target, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


@legacy_tls
@pytest.mark.parametrize("maximum", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_are_refused_by_the_server(target, maximum):
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(target, getattr(ssl.TLSVersion, maximum))
    # The server's protocol_version alert, not a local "no protocols available".
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def test_security_headers(https_client):
    resp = https_client.get("/login")
    assert resp.status == 200
    assert resp.headers.get("Strict-Transport-Security") == "max-age=63072000"
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    csp = resp.headers.get("Content-Security-Policy") or ""
    assert resp.headers.get("X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in csp.split("; ")
    assert resp.headers.get("Server") == "nginx"  # server_tokens off: no version


def test_static_files_are_cached_long(https_client):
    resp = https_client.get("/static/style.css")
    assert resp.status == 200
    assert resp.headers.get("Content-Type", "").startswith("text/css")
    cache = resp.headers.get("Cache-Control", "")
    assert "max-age=31536000" in cache and "immutable" in cache
    assert resp.headers.get("Strict-Transport-Security") == "max-age=63072000"


def test_health_endpoints(https_client, target):
    assert https_client.get("/healthz").status == 200
    # Readiness (the database answers) is for the app's own health check, not for the internet.
    assert https_client.get("/readyz").status == 404
    assert target.passes_health_check("app")


# --- a user's round trip ---------------------------------------------------------------


def assert_dashboard(resp, target, username):
    assert resp.status == 200, resp.text[:500]
    assert resp.url == f"{target.base_url}/"
    assert f"Hello, {username}" in resp.text
    # The client IP nginx saw (host mode keeps it): the controller's own address.
    assert f"<code>{target.controller_address()}</code>" in resp.text


def test_register_login_dashboard_logout(https_client, target, credentials):
    username, password = credentials

    registered = https_client.register(username, password)
    assert registered.status == 200
    assert registered.url == f"{target.base_url}/login"
    assert "Your account has been created" in registered.text

    dashboard = https_client.login(username, password)
    assert_dashboard(dashboard, target, username)
    assert "This is your first login." in dashboard.text
    session_cookies = [c for c in https_client.cookies if c.domain.startswith(target.host)]
    assert [c.name for c in session_cookies] == ["__Host-loginapp"]
    assert all(c.secure and c.path == "/" for c in session_cookies)

    logged_out = https_client.submit_page(dashboard, action="/logout")
    assert logged_out.url.startswith(f"{target.base_url}/login")
    assert "You have been logged out." in logged_out.text

    # The dashboard is closed again.
    again = https_client.get("/", follow=False)
    assert again.status == 302
    assert "/login" in again.headers.get("Location")


def test_logout_requires_the_csrf_token(https_client, credentials):
    username, password = credentials
    https_client.register(username, password)
    dashboard = https_client.login(username, password)
    assert f"Hello, {username}" in dashboard.text
    forged = https_client.request("POST", "/logout", data={}, follow=True)
    assert forged.status == 400
    assert f"Hello, {username}" in https_client.get("/").text


def test_post_without_same_origin_referer_is_refused(https_client, credentials):
    username, password = credentials
    https_client.register(username, password)
    # A valid token, but the POST comes from another origin (Flask-WTF's strict Referer check).
    resp = https_client.submit(
        "/login",
        {"username": username, "password": password},
        referer="https://evil.example/login",
    )
    assert resp.status == 400
    assert "Hello," not in resp.text


def test_wrong_password_gets_the_generic_message(new_client, credentials):
    username, password = credentials
    assert new_client().register(username, password).status == 200

    wrong = new_client().login(username, password + "-wrong")
    unknown = new_client().login(f"nobody-{username}", password)
    for resp in (wrong, unknown):
        assert resp.status == 200
        assert "Invalid username or password." in resp.text
        assert "Hello," not in resp.text
    # Same page for both: nothing tells a wrong password from an unknown user.
    assert "already" not in wrong.text and "not exist" not in unknown.text


@pytest.mark.disruptive
def test_users_survive_an_app_restart(new_client, target, credentials):
    username, password = credentials
    assert new_client().register(username, password).status == 200

    target.docker("service", "update", "--force", "--detach", target.service("app"))
    # start-first rolling update: wait for it to complete, not only for 2/2.
    assert wait_for(lambda: target.converged("app"), timeout=240, interval=3), target.docker(
        "service", "ps", target.service("app")
    )

    # A fresh client, as after a browser restart: the account is in the database.
    client = new_client()

    def logged_in():
        resp = client.login(username, password)
        return resp if "Hello," in resp.text else None

    dashboard = wait_for(logged_in, timeout=60, interval=3)
    assert dashboard, "login failed after the app's tasks were replaced"
    assert_dashboard(dashboard, target, username)


def edge_upstream(target) -> tuple[str, list[str]]:
    """The nginx container, and the app replicas its upstream lists now (written by edge-supervisor)."""
    nginx = target.container("nginx")
    env = json.loads(target.docker("inspect", "--format", "{{json .Config.Env}}", nginx))
    path = dict(item.split("=", 1) for item in env)["EDGE_UPSTREAM_FILE"]
    listed = target.docker("exec", nginx, "cat", path)
    return nginx, sorted(line.split()[1].rstrip(";") for line in listed.splitlines() if line.startswith("server "))


def app_connections(target, nginx: str) -> set[str]:
    """Local ports of nginx's established TCP connections to the app's port (from /proc/net/tcp)."""
    port = f"{int(target.settings['loginapp_app_port']):04X}"
    rows = [line.split() for line in target.docker("exec", nginx, "cat", "/proc/net/tcp").splitlines()[1:]]
    return {row[1].split(":")[1] for row in rows if row[2].endswith(f":{port}") and row[3] == "01"}


@pytest.mark.disruptive
def test_nginx_follows_the_app_replicas_and_reuses_connections(target, https_client):
    """Scaling the app 2 -> 4 -> 2 under load: nginx lists exactly the healthy replicas, loses no request,
    sends traffic to the new replicas, and reuses its connections to them."""
    replicas = target.service_spec("app")["Mode"]["Replicated"]["Replicas"]
    nginx, listed = edge_upstream(target)
    assert listed == sorted(target.app_replicas())
    with target.load() as load:
        # Reused keep-alive connections outlive one sample: the same ones are open a second later.
        first = app_connections(target, nginx)
        time.sleep(1)
        assert first & app_connections(target, nginx), "no connection to the app was kept open"

        target.docker("service", "scale", "--detach=false", f"{target.service('app')}={replicas + 2}", timeout=300)
        scaled = time.monotonic()  # Swarm reports tasks running once their health check passed
        assert wait_for(lambda: len(edge_upstream(target)[1]) == replicas + 2, timeout=30, interval=0.2), edge_upstream(
            target
        )
        print(f"nginx listed the new replicas {time.monotonic() - scaled:.1f} s after the scale returned")
        nginx, listed = edge_upstream(target)
        assert listed == sorted(target.app_replicas())
        since = target.docker("exec", nginx, "date", "+%s").strip()
        for _ in range(4 * len(listed)):
            https_client.get("/login")

        def used() -> set[str]:
            served = target.docker("logs", "--since", since, nginx, check=True)
            return {address for address in listed if f'"upstream_addr":"{address}"' in served}

        # Each nginx worker writes its access log lines in batches, at most stack_nginx_access_log_flush (1 s) late.
        assert wait_for(lambda: used() == set(listed), timeout=10, interval=0.5), (
            f"replicas nginx sent nothing to: {set(listed) - used()}"
        )

        target.docker("service", "scale", "--detach=false", f"{target.service('app')}={replicas}", timeout=300)
        assert wait_for(lambda: len(edge_upstream(target)[1]) == replicas, timeout=30, interval=0.2)
    assert load.failed == 0, f"requests lost while scaling: {load.summary()}"
    assert edge_upstream(target)[1] == sorted(target.app_replicas())


# --- the operator's view --------------------------------------------------------------


def test_logs_return_and_follow(https_client, target):
    """`make logs` returns on every engine (20.10's `docker service logs` never does) and follows when asked."""
    seen = f"/logs-probe-{secrets.token_hex(4)}"
    https_client.get(seen)
    runs: list[subprocess.CompletedProcess] = []

    def logged() -> bool:
        runs.append(
            subprocess.run(target.logs_command("nginx", "--since", "5m"), capture_output=True, text=True, timeout=120)
        )
        return any(line.startswith("nginx.1.") and seen in line for line in runs[-1].stdout.splitlines())

    # nginx writes its access log in batches, at most stack_nginx_access_log_flush (1 s) late.
    found = wait_for(logged, timeout=15, interval=1)
    run = runs[-1]
    assert run.returncode == 0, run.stderr
    assert found, run.stdout[-2000:]
    assert "app." not in run.stdout, "only the service asked for"

    follow = subprocess.Popen(
        target.logs_command("nginx", "--since", "1s", "--follow"), stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout], daemon=True).start()
    try:
        new = f"/logs-probe-{secrets.token_hex(4)}"
        deadline, next_request = time.monotonic() + 30, 0.0
        while True:
            assert time.monotonic() < deadline, f"--follow printed no line with {new} within 30 s"
            if time.monotonic() >= next_request:  # again each second: the follower may still be starting
                https_client.get(new)
                next_request = time.monotonic() + 1
            try:
                if new in lines.get(timeout=0.5):
                    break
            except queue.Empty:
                pass
        assert follow.poll() is None, "--follow should keep running"
    finally:
        follow.terminate()
        follow.wait(timeout=10)


def test_scheduled_backups_are_read_back_and_pruned(manager, target):
    """The backup service dumps on schedule, keeps the newest BACKUP_KEEP dumps, each with a matching .sha256."""
    env = dict(e.split("=", 1) for e in target.service_spec("backup")["TaskTemplate"]["ContainerSpec"]["Env"])
    interval, keep = int(env["BACKUP_INTERVAL"]), int(env["BACKUP_KEEP"])
    assert interval <= 60, "the scenario schedules dumps often enough to watch (molecule.yml)"
    directory = manager.check_output(f"docker volume inspect --format '{{{{.Mountpoint}}}}' {target.stack}_db-backups")

    def dumps() -> list[str]:
        return sorted(manager.check_output(f"ls -1 {directory} | grep '[.]dump$' || true").split())

    def log() -> str:
        return manager.check_output(f"docker logs {target.container('backup')} 2>&1")

    before = dumps()
    assert wait_for(lambda: dumps() and dumps()[-1] not in before, interval * 3 + 30), f"no new dump: {before}"
    # Pruned once the service has made more than keep dumps.
    assert wait_for(lambda: "removed" in log(), interval * (keep + 2) + 30), log()
    kept = dumps()
    assert len(kept) == keep, kept
    checksums = " ".join(f"{dump}.sha256" for dump in kept)
    assert manager.run(f"cd {directory} && sha256sum -c {checksums}").rc == 0
    newest = manager.run(f"docker exec {target.container('backup')} pg_restore --list /backups/{kept[-1]}")
    assert newest.rc == 0 and "TABLE public users" in newest.stdout, newest.stderr
