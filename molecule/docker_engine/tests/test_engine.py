"""What a user of the hosts stage relies on, checked inside each test host."""

import json
import socket

import pytest

# Debian release -> major.minor prefix of the engine it ships.
ENGINE_VERSION = {"bookworm": "20.10.", "trixie": "26."}

BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
ENTRYPOINT ["/bin/busybox"]
"""


@pytest.fixture(scope="module")
def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


@pytest.mark.parametrize("package", ["docker.io", "python3-docker", "python3-jsondiff", "python3-yaml"])
def test_packages_installed(host, package):
    assert host.package(package).is_installed


def test_engine_version_matches_release(host):
    codename = host.system_info.codename
    server = host.check_output("docker version --format '{{.Server.Version}}'")
    assert server.startswith(ENGINE_VERSION[codename]), f"{codename} runs engine {server}"


def test_service_running_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_overlay_repair_running_and_enabled(host):
    repair = host.service("docker-overlay-repair")
    assert repair.is_running
    assert repair.is_enabled


def test_daemon_json_defaults(daemon_json):
    assert daemon_json["no-new-privileges"] is True
    # Swarm mode refuses to start with live-restore on.
    assert daemon_json["live-restore"] is False
    assert daemon_json["log-driver"] == "json-file"


def test_daemon_json_extra_merged_recursively(daemon_json):
    # max-file comes from docker_engine_daemon_options_extra; max-size must
    # survive the merge from the defaults.
    assert daemon_json["log-opts"] == {"max-file": "5", "max-size": "10m"}


def test_running_engine_uses_daemon_json(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is False


def test_deployer_in_docker_group(host):
    assert "docker" in host.user("deployer").groups


def test_deployer_can_use_docker_without_sudo(host):
    server = host.check_output("docker info --format '{{.ServerVersion}}'")
    with host.sudo("deployer"):
        as_deployer = host.check_output("docker info --format '{{.ServerVersion}}'")
    assert as_deployer == server


@pytest.fixture(scope="module")
def busybox_image(host):
    """A busybox image built on the host (no registry here): its tag."""
    tag = "molecule-busybox:test"
    workdir = host.check_output("mktemp -d")
    try:
        host.run_expect([0], f"cp /bin/busybox {workdir}/busybox")
        host.run_expect([0], f"printf '%s' '{BUSYBOX_DOCKERFILE}' > {workdir}/Dockerfile")
        host.run_expect([0], f"docker build --quiet --tag {tag} {workdir}")
        yield tag
    finally:
        host.run(f"rm -rf {workdir}; docker image rm -f {tag}")


def test_build_and_run_a_local_image(host, busybox_image):
    """An image built on the host runs, with no-new-privileges applied."""
    out = host.check_output(
        f"docker run --rm {busybox_image} sh -c 'echo hello-from-scratch; grep NoNewPrivs /proc/self/status'"
    )
    lines = out.splitlines()
    assert lines[0] == "hello-from-scratch"
    assert lines[1].split() == ["NoNewPrivs:", "1"]


def test_default_bridge_isolates_containers_and_ports_need_no_proxy(host, busybox_image):
    """icc=false: a container cannot reach its neighbour on the default bridge; userland-proxy=false: a published
    port still answers on the host, through NAT rules and without a docker-proxy process."""
    server = host.check_output(
        f"docker run -d --rm -p 127.0.0.1:18080:8080 {busybox_image} sh -c "
        "'mkdir /www && echo neighbour > /www/index.html && exec httpd -f -p 8080 -h /www'"
    )
    try:
        address = host.check_output(f"docker inspect -f '{{{{.NetworkSettings.IPAddress}}}}' {server}")
        # Until httpd listens (no docker-proxy accepts for it any more).
        from_the_host = host.run(
            "for try in $(seq 20); do"
            " timeout 5 /bin/busybox wget -q -O - http://127.0.0.1:18080/ && exit; sleep 0.5; done"
        )
        assert from_the_host.stdout.strip() == "neighbour", from_the_host.stderr
        # As PID 1 wget would ignore timeout's SIGTERM, and the DROP rule holds its connect for 2 minutes: sh is PID 1.
        from_a_neighbour = host.run(
            f"docker run --rm {busybox_image} sh -c 'timeout 5 wget -q -O - http://{address}:8080/ || exit 1'"
        )
        assert from_a_neighbour.rc != 0 and "neighbour" not in from_a_neighbour.stdout
        assert host.run("pgrep -x docker-proxy").rc == 1, "a docker-proxy process runs for the published port"
    finally:
        host.run(f"docker rm -f {server}")


def test_firewall_is_its_own_table_loaded_at_boot(host):
    assert host.service("loginapp-firewall").is_enabled
    rules = host.file("/etc/loginapp/firewall.nft")
    assert rules.user == "root" and rules.mode == 0o600
    assert "policy drop" in host.check_output("nft list chain inet loginapp input")
    # Loading it again (as at boot) replaces the table in one transaction, and leaves Docker's rules alone.
    docker_rules = host.check_output("iptables-save -t nat | grep -c DOCKER")
    host.run_expect([0], "systemctl restart loginapp-firewall")
    assert "policy drop" in host.check_output("nft list chain inet loginapp input")
    assert host.check_output("iptables-save -t nat | grep -c DOCKER") == docker_rules


def test_firewall_drops_a_stranger_on_an_unlisted_port(host):
    """The controller (where pytest runs) is no cluster member: a port nothing admits does not answer it, though
    the host itself reaches its listener."""
    address = next(a for a in host.interface("eth0").addresses if ":" not in a)
    host.run_expect([0], "setsid timeout 60 python3 -m http.server 8099 >/dev/null 2>&1 < /dev/null &")
    listening = f"until (exec 3<>/dev/tcp/{address}/8099) 2>/dev/null; do sleep 0.2; done"
    host.run_expect([0], f"timeout 10 bash -c '{listening}'")
    try:
        socket.create_connection((address, 8099), timeout=3).close()
        answered = True
    except OSError:
        answered = False
    host.run("pkill -f 'http.server 8099'")
    assert not answered, f"{address}:8099 answered a host that is no cluster member"
