"""What a user of the hosts stage relies on, checked inside each test host."""

import json

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


def test_build_and_run_a_local_image(host):
    """An image built on the host runs, with no-new-privileges applied."""
    workdir = host.check_output("mktemp -d")
    try:
        host.run_expect([0], f"cp /bin/busybox {workdir}/busybox")
        host.run_expect([0], f"printf '%s' '{BUSYBOX_DOCKERFILE}' > {workdir}/Dockerfile")
        host.run_expect([0], f"docker build --quiet --tag molecule-busybox:test {workdir}")
        out = host.check_output(
            "docker run --rm molecule-busybox:test sh -c 'echo hello-from-scratch; grep NoNewPrivs /proc/self/status'"
        )
    finally:
        host.run(f"rm -rf {workdir}; docker image rm -f molecule-busybox:test")
    lines = out.splitlines()
    assert lines[0] == "hello-from-scratch"
    assert lines[1].split() == ["NoNewPrivs:", "1"]
