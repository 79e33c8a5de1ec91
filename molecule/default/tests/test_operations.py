"""Operations on the deployed stack, end to end: backup/restore, rolling update, rollback.

These tests drive the real playbooks from the controller against the scenario's
host (``$MOLECULE_INVENTORY_FILE``) and watch the site as a user would, through
nginx over HTTPS. The same file runs against this machine's own deployment:

    MOLECULE_INVENTORY_FILE=inventory/local/hosts.yml LOGINAPP_OPS_TARGET=local \\
        pytest -v molecule/default/tests/test_operations.py

(the variable only satisfies conftest.py; the target then is inventory/local,
https://<default IPv4>/ and ~/.local/share/loginapp/local/tls/ca.crt).

Order matters and is the file's order: the backup test destroys and redeploys
the stack; the update test rolls out a changed app tree; the rollback test
tries a broken one, then redeploys the repository's app/ and checks that a
second run changes nothing. Each app build costs 1-2 minutes.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))

from operations.client import (  # noqa: E402
    RELAXED_RATE_LIMIT,
    Client,
    LoadGenerator,
    Target,
    backup_path,
    changed_tasks,
    copy_app_tree,
    play_recap,
    run_playbook,
)

pytestmark = pytest.mark.disruptive

# Steady traffic while the stack changes: a few users' worth, not a stress test.
LOAD_WORKERS = 6


def _molecule_target() -> Target:
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    runner = AnsibleRunner(str(inventory))
    name = runner.get_hosts("managers")[0]
    # Under Molecule the instance is a container on this engine: run its inner docker CLI through docker exec.
    docker_cmd = ["docker", "exec", name, "docker"]
    route = subprocess.run(
        ["docker", "exec", name, "ip", "-4", "-o", "route", "get", "1.1.1.1"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    host = re.search(r"\bsrc (\S+)", route).group(1)
    tls_dir = runner.get_variables(name)["tls_dir"]
    return Target(inventory=inventory, host=host, ca_cert=Path(tls_dir) / "ca.crt", docker_cmd=docker_cmd)


@pytest.fixture(scope="module")
def target() -> Target:
    if os.environ.get("LOGINAPP_OPS_TARGET") == "local":
        # nginx's POST limit (10/min per IP) would throttle the test's logins: every run here uses the same
        # relaxed limit, so no run changes nginx's config (which would restart it) by itself.
        target = Target.local(extra_vars=dict(RELAXED_RATE_LIMIT))
    else:
        target = _molecule_target()
    assert target.ca_cert.is_file(), f"{target.ca_cert} missing: deploy first"
    return target


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("operations")


def site(target: Target, workdir: Path, name: str, **extra) -> object:
    """Run site.yml against the target; the log is kept in workdir/<name>.log."""
    result = run_playbook("site.yml", target.inventory, {**target.extra_vars, **extra}, log=workdir / f"{name}.log")
    print(f"site.yml ({name}): rc={result.returncode} in {result.duration:.0f} s, recap {play_recap(result.stdout)}")
    return result


def tail(output: str, lines: int = 60) -> str:
    return "\n".join(output.splitlines()[-lines:])


def new_user() -> tuple[str, str]:
    return f"ops-{secrets.token_hex(4)}", f"Ops-{secrets.token_urlsafe(12)}"


def test_backup_survives_loss_of_stack_and_volume(target, workdir):
    """Users registered before a backup log in again after the stack and its volume are destroyed and restored."""
    users = [new_user() for _ in range(2)]
    for name, password in users:
        Client.for_target(target).register(name, password)
        client = Client.for_target(target)
        client.login(name, password)
        assert client.logged_in_as(name), f"{name} cannot log in right after registering"

    backups = workdir / "backups"
    result = run_playbook("playbooks/backup.yml", target.inventory, {"backup_dir": str(backups)})
    assert result.returncode == 0, tail(result.stdout)
    dump = backup_path(result.stdout)
    assert dump.parent == backups and dump.name.startswith("loginapp-") and dump.is_file()
    recorded = (dump.parent / (dump.name + ".sha256")).read_text().split()
    assert recorded == [hashlib.sha256(dump.read_bytes()).hexdigest(), dump.name]
    assert dump.read_bytes().startswith(b"PGDMP"), "not a pg_dump custom-format archive"

    # Disaster: the stack and the database's volume are gone.
    target.remove_stack_and_volume()
    with pytest.raises(OSError):
        Client(target.base_url, target.ssl_context(), timeout=5).get("/healthz")

    redeploy = site(target, workdir, "redeploy")
    assert redeploy.returncode == 0, tail(redeploy.stdout)
    name, password = users[0]
    empty = Client.for_target(target)
    empty.login(name, password)
    assert not empty.logged_in_as(name), "the redeployed database should be empty before the restore"

    restore = run_playbook(
        "playbooks/restore.yml", target.inventory, {"backup_file": str(dump)}, log=workdir / "restore.log"
    )
    assert restore.returncode == 0, tail(restore.stdout)
    # The YAML callback folds long messages: match on whitespace-normalised output.
    report = re.search(r"Restored \S+ into \S+ on \S+: (\d+) users", " ".join(restore.stdout.split()))
    assert report, tail(restore.stdout)
    assert int(report.group(1)) >= len(users)

    for name, password in users:
        client = Client.for_target(target)
        client.login(name, password)
        assert client.logged_in_as(name), f"{name} cannot log in after the restore"


def test_restore_refuses_a_damaged_dump(target, workdir):
    """A dump that no longer matches its .sha256 is refused before anything is touched."""
    dumps = sorted((workdir / "backups").glob("*.dump"))
    if not dumps:
        pytest.skip("needs the dump of the backup test")
    damaged = workdir / "damaged.dump"
    damaged.write_bytes(dumps[-1].read_bytes()[:-16])
    (workdir / "damaged.dump.sha256").write_text((dumps[-1].parent / (dumps[-1].name + ".sha256")).read_text())
    result = run_playbook("playbooks/restore.yml", target.inventory, {"backup_file": str(damaged)})
    assert result.returncode != 0
    assert "Checksum mismatch" in result.stdout
    assert "Restore the dump" not in result.stdout


def test_rolling_update_loses_no_request(target, workdir):
    """A new app version rolls out through site.yml while steady traffic sees no error at all."""
    before = target.service_image("app")
    tree = copy_app_tree(workdir / "app-next", f"rolling update test {time.time()}")
    with LoadGenerator(target.host, target.ssl_context(), workers=LOAD_WORKERS) as load:
        result = site(target, workdir, "update", images_app_dir=str(tree))
    print(load.summary())
    assert result.returncode == 0, tail(result.stdout)
    after = target.service_image("app")
    assert after != before, "the changed app tree should have a new image tag"
    assert target.running_images("app") == {after}
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the rolling update: {load.summary()}"


def test_broken_version_is_rolled_back_without_downtime(target, workdir):
    """A version that never becomes healthy is rolled back by Swarm; the old one serves throughout."""
    before = target.service_image("app")
    tree = copy_app_tree(workdir / "app-broken", f"broken version test {time.time()}", broken=True)
    with LoadGenerator(target.host, target.ssl_context(), workers=LOAD_WORKERS) as load:
        result = site(target, workdir, "broken", images_app_dir=str(tree))
    print(load.summary())
    assert result.returncode != 0, "site.yml should fail when Swarm rolls the update back"
    assert "was rolled back" in result.stdout, tail(result.stdout)
    assert target.service_image("app") == before
    assert target.running_images("app") == {before}
    assert load.ok > 0
    assert load.failed == 0, f"requests lost while the broken version was tried: {load.summary()}"

    # Back to the repository's app/: converges, and then a second run changes nothing.
    good = site(target, workdir, "good")
    assert good.returncode == 0, tail(good.stdout)
    again = site(target, workdir, "good-again")
    assert again.returncode == 0, tail(again.stdout)
    changed = sum(host["changed"] for host in play_recap(again.stdout).values())
    assert changed == 0, f"second run changed: {changed_tasks(again.stdout)}"
