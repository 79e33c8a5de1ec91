"""The deployed stack as an operator inspects it and as a user reaches it.

Swarm facts are read on the manager (`docker service inspect`, `docker exec`);
everything a user sees is checked from the controller over the network, at
the host's address, with the project's CA as the only trust anchor.
"""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest
from conftest import STACK, service_converged, wait_for

SERVICES = ["nginx", "app", "db"]
# Fixed by the images (roles/stack/vars/main.yml).
UIDS = {"app": "10001", "nginx": "33", "db": "999"}
# Where each service reads its secrets (files under /run/secrets, never env values).
SECRET_TARGETS = {
    "app": {"secret_key", "db_password"},
    "db": {"db_password"},
    "nginx": {"tls_cert", "tls_key"},
}
MIB = 1024 * 1024
NANO = 10**9


# --- the services, as Swarm runs them -----------------------------------------------


def test_every_service_runs_its_replicas(manager):
    out = manager.check_output(
        f"docker service ls --filter label=com.docker.stack.namespace={STACK} "
        "--format '{{.Name}} {{.Replicas}}'"
    )
    # "1/1 (max 1 per node)" for nginx: compare the counts only.
    replicas = {name: counts.split(" ")[0] for name, counts in (line.split(" ", 1) for line in out.splitlines())}
    # One node: nginx is capped at one replica (host-mode ports), the app keeps 2.
    assert replicas == {
        f"{STACK}_nginx": "1/1",
        f"{STACK}_app": "2/2",
        f"{STACK}_db": "1/1",
    }


@pytest.mark.parametrize(
    "service, cpus, memory, cpus_reserved, memory_reserved",
    [
        ("nginx", 0.5, 128, 0.05, 32),
        ("app", 1.0, 512, 0.1, 192),
        ("db", 1.0, 512, 0.1, 128),
    ],
)
def test_limits_and_reservations(service_spec, service, cpus, memory, cpus_reserved, memory_reserved):
    resources = service_spec(service)["TaskTemplate"]["Resources"]
    assert resources["Limits"]["NanoCPUs"] == int(cpus * NANO)
    assert resources["Limits"]["MemoryBytes"] == memory * MIB
    assert resources["Reservations"]["NanoCPUs"] == int(cpus_reserved * NANO)
    assert resources["Reservations"]["MemoryBytes"] == memory_reserved * MIB


def test_app_pids_limit(manager, service_spec):
    # The role sets it only when the deploy host's CLI is 23 or newer (trixie: 26).
    cli = manager.check_output("docker version --format '{{.Client.Version}}'")
    assert int(cli.split(".")[0]) >= 23, f"test host CLI {cli}: expected trixie's Docker 26"
    assert service_spec("app")["TaskTemplate"]["Resources"]["Limits"].get("Pids") == 256


def test_app_pids_limit_is_enforced(manager, task_container):
    # The limit reaches the kernel: the container's pids cgroup says 256.
    limit = manager.check_output(f"docker inspect --format '{{{{.HostConfig.PidsLimit}}}}' {task_container('app')}")
    assert limit == "256"


@pytest.mark.parametrize("service", SERVICES)
def test_hardened_container_spec(service_spec, service):
    container = service_spec(service)["TaskTemplate"]["ContainerSpec"]
    assert container.get("ReadOnly") is True
    assert container.get("CapabilityDrop") == ["ALL"]


@pytest.mark.parametrize("service", SERVICES)
def test_containers_are_healthy(manager, task_container, service):
    # Stack healthchecks for nginx and app, the image's HEALTHCHECK for the db.
    status = manager.check_output(f"docker inspect --format '{{{{.State.Health.Status}}}}' {task_container(service)}")
    assert status == "healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_is_read_only_at_runtime(manager, task_container, service):
    result = manager.run(f"docker exec {task_container(service)} touch /probe")
    assert result.rc != 0
    assert "Read-only file system" in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_processes_do_not_run_as_root(manager, task_container, service):
    uid = manager.check_output(f"docker exec {task_container(service)} id -u")
    assert uid == UIDS[service]


def test_app_and_db_use_dns_round_robin(service_spec):
    assert service_spec("app")["EndpointSpec"]["Mode"] == "dnsrr"
    assert service_spec("db")["EndpointSpec"]["Mode"] == "dnsrr"


def test_app_updates_start_first_and_roll_back(service_spec):
    update = service_spec("app")["UpdateConfig"]
    assert update["Order"] == "start-first"
    assert update["FailureAction"] == "rollback"


def test_nginx_publishes_80_and_443_in_host_mode(service_spec):
    ports = service_spec("nginx")["EndpointSpec"]["Ports"]
    assert {(p["PublishedPort"], p["PublishMode"]) for p in ports} == {
        (80, "host"),
        (443, "host"),
    }


def test_db_is_pinned_by_node_label(service_spec, manager):
    constraints = service_spec("db")["TaskTemplate"]["Placement"]["Constraints"]
    assert constraints == ["node.labels.loginapp.db == true"]
    labels = manager.check_output("docker node inspect self --format '{{json .Spec.Labels}}'")
    assert '"loginapp.db":"true"' in labels


@pytest.mark.parametrize("service", SERVICES)
def test_secrets_are_files_not_environment(service_spec, service):
    container = service_spec(service)["TaskTemplate"]["ContainerSpec"]
    mounted = {s["File"]["Name"] for s in container.get("Secrets", [])}
    assert mounted == SECRET_TARGETS[service]
    for secret in container.get("Secrets", []):
        assert secret["File"]["Mode"] == 0o400
        assert secret["File"]["UID"] == UIDS[service]
    env = dict(e.split("=", 1) for e in container.get("Env", []))
    # Only *_FILE pointers, never a secret's value.
    for name, value in env.items():
        assert not any(word in name for word in ("PASSWORD", "SECRET", "KEY")) or (
            name.endswith("_FILE") and value.startswith("/run/secrets/")
        ), f"{name} looks like a secret in the environment"


@pytest.mark.parametrize(
    "service, secret",
    [("app", "secret_key"), ("app", "db_password"), ("db", "db_password")],
)
def test_secret_values_only_in_the_mounted_files(manager, task_container, site, service, secret):
    value = (site.secrets_dir / secret).read_text().split()[0]
    container = task_container(service)
    # The file holds the controller's generated value...
    assert manager.check_output(f"docker exec {container} cat /run/secrets/{secret}") == value
    # ...and no process environment of the container carries it.
    env = manager.check_output(f"docker inspect --format '{{{{json .Config.Env}}}}' {container}")
    assert value not in env
    environ = manager.check_output(f"docker exec {container} cat /proc/1/environ")
    assert value not in environ


def test_ports_listen_on_the_host(manager):
    assert manager.socket("tcp://0.0.0.0:80").is_listening
    assert manager.socket("tcp://0.0.0.0:443").is_listening


# --- what the controller sees over the network ----------------------------------------


def test_http_redirects_to_https(site):
    conn = http.client.HTTPConnection(site.host, 80, timeout=10)
    conn.request("GET", "/login?next=%2F")
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == f"https://{site.host}/login?next=%2F"


def test_certificate_verifies_against_the_ca_with_the_host_ip(site):
    context = site.ssl_context()  # hostname checking on: the IP must be a SAN
    with (
        socket.create_connection((site.host, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=site.host) as tls,
    ):
        cert = tls.getpeercert()
        version = tls.version()
    sans = {value for kind, value in cert["subjectAltName"] if kind == "IP Address"}
    assert site.host in sans
    assert version in ("TLSv1.2", "TLSv1.3")


def test_certificate_is_refused_without_the_ca(site):
    # A control: the default trust store does not know the project's CA.
    context = ssl.create_default_context()
    with (
        socket.create_connection((site.host, 443), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=site.host)


# Python deprecates naming TLS 1.0/1.1 at all; these tests do so on purpose.
legacy_tls = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")


def _handshake(site, maximum: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(site.ca_cert))
    # OpenSSL 3's default security level refuses TLS < 1.2 locally; level 0
    # lets the client offer it, so any refusal comes from the server.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = maximum
    with (
        socket.create_connection((site.host, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=site.host) as tls,
    ):
        return tls.version()


@legacy_tls
def test_tls_1_2_is_accepted_by_the_same_client(site):
    # Proves the legacy-capable client below can complete a handshake at all.
    assert _handshake(site, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


@legacy_tls
@pytest.mark.parametrize("maximum", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_are_refused_by_the_server(site, maximum):
    with pytest.raises(ssl.SSLError) as refused:
        _handshake(site, getattr(ssl.TLSVersion, maximum))
    # The server's protocol_version alert, not a local "no protocols available".
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def test_security_headers(http_session):
    resp = http_session.get("/login")
    assert resp.status == 200
    assert resp.headers.get("Strict-Transport-Security") == "max-age=63072000"
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    csp = resp.headers.get("Content-Security-Policy") or ""
    assert resp.headers.get("X-Frame-Options") == "DENY" or "frame-ancestors 'none'" in csp
    assert resp.headers.get("Server") == "nginx"  # server_tokens off: no version


def test_static_files_are_cached_long(http_session):
    resp = http_session.get("/static/style.css")
    assert resp.status == 200
    assert resp.headers.get("Content-Type", "").startswith("text/css")
    cache = resp.headers.get("Cache-Control", "")
    assert "max-age=31536000" in cache and "immutable" in cache
    assert resp.headers.get("Strict-Transport-Security") == "max-age=63072000"


def test_health_endpoints(http_session):
    assert http_session.get("/healthz").status == 200
    ready = http_session.get("/readyz")
    assert ready.status == 200 and '"database":"up"' in ready.text.replace(" ", "")


# --- a user's round trip ---------------------------------------------------------------


def assert_dashboard(resp, site, username):
    assert resp.status == 200, resp.text[:500]
    assert resp.url == f"{site.https_url}/"
    assert f"Hello, {username}" in resp.text
    # The client IP nginx saw (host mode keeps it): the controller's own address.
    assert f"<code>{site.controller_ip}</code>" in resp.text


def test_register_login_dashboard_logout(http_session, site, credentials):
    username, password = credentials

    registered = http_session.register(username, password)
    assert registered.status == 200
    assert registered.url == f"{site.https_url}/login"
    assert "Your account has been created" in registered.text

    dashboard = http_session.login(username, password)
    assert_dashboard(dashboard, site, username)
    assert "This is your first login." in dashboard.text
    session_cookies = [c for c in http_session.cookies if c.domain.startswith(site.host)]
    assert session_cookies and all(c.secure for c in session_cookies)

    logged_out = http_session.post_form_on(dashboard, "/logout")
    assert logged_out.url.startswith(f"{site.https_url}/login")
    assert "You have been logged out." in logged_out.text

    # The dashboard is closed again.
    again = http_session.get("/", follow=False)
    assert again.status == 302
    assert "/login" in again.headers.get("Location")


def test_logout_requires_the_csrf_token(http_session, credentials):
    username, password = credentials
    http_session.register(username, password)
    dashboard = http_session.login(username, password)
    assert f"Hello, {username}" in dashboard.text
    forged = http_session.request("POST", "/logout", data={}, follow=True)
    assert forged.status == 400
    assert f"Hello, {username}" in http_session.get("/").text


def test_post_without_same_origin_referer_is_refused(http_session, credentials):
    username, password = credentials
    http_session.register(username, password)
    # A valid token, but the POST comes from another origin (Flask-WTF's strict Referer check).
    resp = http_session.submit(
        "/login",
        {"username": username, "password": password},
        referer="https://evil.example/login",
    )
    assert resp.status == 400
    assert "Hello," not in resp.text


def test_wrong_password_gets_the_generic_message(new_http_session, credentials):
    username, password = credentials
    assert new_http_session().register(username, password).status == 200

    wrong = new_http_session().login(username, password + "-wrong")
    unknown = new_http_session().login(f"nobody-{username}", password)
    for resp in (wrong, unknown):
        assert resp.status == 200
        assert "Invalid username or password." in resp.text
        assert "Hello," not in resp.text
    # Same page for both: nothing tells a wrong password from an unknown user.
    assert "already" not in wrong.text and "not exist" not in unknown.text


def test_users_survive_an_app_restart(manager, new_http_session, site, credentials):
    username, password = credentials
    assert new_http_session().register(username, password).status == 200

    manager.check_output(f"docker service update --force --detach {STACK}_app")
    # start-first rolling update: wait for it to complete, not only for 2/2.
    assert wait_for(lambda: service_converged(manager, "app"), timeout=240, interval=3), manager.check_output(
        f"docker service ps {STACK}_app"
    )

    # A fresh client, as after a browser restart: the account is in the database.
    client = new_http_session()

    def logged_in():
        resp = client.login(username, password)
        return resp if "Hello," in resp.text else None

    dashboard = wait_for(logged_in, timeout=60, interval=3)
    assert dashboard, "login failed after the app's tasks were replaced"
    assert_dashboard(dashboard, site, username)
