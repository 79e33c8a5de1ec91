"""Operations on the deployed stack, end to end: backup/restore, rolling update, rollback, key rotation.

These tests drive the real playbooks from the controller against the
deployment (``target``: this scenario's host, or this machine's own
deployment when pytest runs outside Molecule:
``pytest -v molecule/default/tests/test_operations.py``) and watch the site
as a user would, through nginx over HTTPS. Each test leaves the stack
converged and serving; none needs another to have run. Each app build costs
1-2 minutes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from loginapp_kit.apptree import copy_app_tree
from loginapp_kit.client import served_certificate

pytestmark = [pytest.mark.disruptive, pytest.mark.timeout(1500)]

# Steady traffic while the stack changes: a few users' worth, not a stress test.
LOAD_WORKERS = 6


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path


def site(target, workdir: Path, name: str, **extra):
    """Run site.yml against the target; the log is kept in workdir/<name>.log."""
    run = target.run_playbook("site.yml", log=workdir / f"{name}.log", **extra)
    print(f"site.yml ({name}): rc={run.returncode} in {run.duration:.0f} s, recap {run.recap}")
    return run


def new_user() -> tuple[str, str]:
    return f"ops-{secrets.token_hex(4)}", f"Ops-{secrets.token_urlsafe(12)}"


def backup(target, workdir: Path) -> Path:
    """Run backup.yml into workdir/backups; the path of the dump it made."""
    run = target.run_playbook("playbooks/backup.yml", stack_backup_dir=str(workdir / "backups"))
    assert run.ok, run.tail()
    match = re.search(r"Backup:\s+(\S+\.dump)", run.stdout)
    assert match, f"backup.yml printed no backup path:\n{run.tail()}"
    return Path(match.group(1))


def test_status_reports_the_deployment(target, workdir):
    """`make status` (playbooks/status.yml) says what runs, which version, where, and when the certificate expires."""
    run = target.run_playbook("playbooks/status.yml", log=workdir / "status.log")
    assert run.ok, run.tail()
    text = " ".join(run.output.split())
    assert re.search(r"node \S+: Ready, Active, Leader", text), run.tail()
    for service in ("nginx", "app", "db", "backup"):
        image = re.escape(target.service_image(service))
        line = rf"service {target.service(service)}: (\d+)/\1 running, image {image}(@\S+)?, last update \w+"
        assert re.search(line, text), f"no line for {service} in:\n{run.tail()}"
    assert f"url: https://{target.host}/" in text, run.tail()
    expiry = re.search(r"certificate: expires \S+ \S+ UTC, in (\d+) days", text)
    assert expiry and 300 < int(expiry.group(1)) <= 365, run.tail()
    assert "last backup: " in text, run.tail()
    assert re.search(r"scheduled backups: every \d+ s, \d+ kept on \S+(, newest \S+\.dump)?", text), run.tail()
    # This run took no lock (status changes nothing); the deploys before it are in the audit log.
    assert "deploy lock: free" in text, run.tail()
    assert re.search(r"run: \S+ holder=\S+@\S+ pid=\d+ since=\S+ run=\S+ (started|finished ok)", text), run.tail()


def test_backup_survives_loss_of_stack_and_volume(target, workdir):
    """Users registered before a backup log in again after the stack and its volume are destroyed and restored.

    The first redeploy uses a wrong app image: it fails fast, with the cause.
    """
    users = [new_user() for _ in range(2)]
    for name, password in users:
        target.client().register(name, password)
        client = target.client()
        client.login(name, password)
        assert client.logged_in_as(name), f"{name} cannot log in right after registering"

    dump = backup(target, workdir)
    assert dump.parent == workdir / "backups"
    assert dump.name.startswith(f"{target.stack}-")
    recorded = (dump.parent / (dump.name + ".sha256")).read_text().split()
    assert recorded == [hashlib.sha256(dump.read_bytes()).hexdigest(), dump.name]
    assert dump.read_bytes().startswith(b"PGDMP"), "not a pg_dump custom-format archive"

    # Disaster: the stack and the database's volume are gone.
    not_an_app = target.service_image("nginx")
    target.remove_stack_and_volume()
    with pytest.raises(OSError):
        target.client(timeout=5).get("/healthz")

    # The first deploy after it, with an image that cannot run as the app, stops as soon as the app's
    # tasks keep failing the same way (Swarm has no earlier version to roll back to), and says why.
    wrong = target.run_playbook("playbooks/stack.yml", log=workdir / "wrong.log", stack_app_image=not_an_app)
    assert not wrong.ok
    assert wrong.says("app keeps failing: its last 3 tasks since this deploy failed with"), wrong.tail()
    assert wrong.says("stopped waiting: Swarm would restart app forever"), wrong.tail()
    # The image's own words (its entrypoint, edge-supervisor, misses its settings), not only Swarm's.
    last_lines = re.search(
        r"Last lines of the newest failed app task \(on \S+\):\s+\S*edge-supervisor: .*EDGE_UPSTREAM_NAME", wrong.output
    )
    assert last_lines, wrong.tail()

    redeploy = site(target, workdir, "redeploy")
    assert redeploy.ok, redeploy.tail()
    name, password = users[0]
    empty = target.client()
    empty.login(name, password)
    assert not empty.logged_in_as(name), "the redeployed database should be empty before the restore"

    restore = target.run_playbook(
        "playbooks/restore.yml", log=workdir / "restore.log", stack_restore_file=str(dump), stack_restore_confirm=True
    )
    assert restore.ok, restore.tail()
    # The YAML callback folds long messages: match on whitespace-normalised output.
    output = " ".join(restore.output.split())
    report = re.search(r"Restored \S+ into \S+ on \S+: (\d+) users", output)
    assert report, restore.tail()
    assert int(report.group(1)) >= len(users)
    # What the restore replaced (the empty database) was dumped first.
    safety = re.search(r"The content before it: (\S+\.dump)", output)
    assert safety and safety.group(1) != str(dump), restore.tail()
    assert Path(safety.group(1)).read_bytes().startswith(b"PGDMP")

    for name, password in users:
        client = target.client()
        client.login(name, password)
        assert client.logged_in_as(name), f"{name} cannot log in after the restore"


def test_scheduled_dump_is_restored_by_name(target, manager, workdir):
    """A dump of the backup service, named as `make status` shows it, is fetched, checked and restored."""
    kept, registered_after = new_user(), new_user()
    target.client().register(*kept)
    directory = manager.check_output(f"docker volume inspect --format '{{{{.Mountpoint}}}}' {target.stack}_db-backups")
    registered = manager.check_output("date -u +%Y%m%dT%H%M%SZ")
    dump = f"{target.stack}-{registered}.dump"  # the backup service's names sort by time

    def newer_dump() -> str | None:
        names = sorted(manager.check_output(f"ls -1 {directory} | grep '[.]dump$' || true").split())
        newest = names[-1] if names and names[-1] > dump else None
        return newest if newest and manager.file(f"{directory}/{newest}.sha256").exists else None

    env = dict(e.split("=", 1) for e in target.service_spec("backup")["TaskTemplate"]["ContainerSpec"]["Env"])
    deadline = time.monotonic() + int(env["BACKUP_INTERVAL"]) * 2 + 30
    while not newer_dump():
        assert time.monotonic() < deadline, "the backup service made no dump after the registration"
        time.sleep(2)
    scheduled = newer_dump()
    # The scenario dumps every few seconds and keeps two: pause the service so this one is not pruned meanwhile.
    target.docker("service", "scale", "--detach", f"{target.service('backup')}=0")
    try:
        target.client().register(*registered_after)
        unknown = target.run_playbook("playbooks/restore.yml", stack_restore_scheduled="no-such.dump")
        assert not unknown.ok
        assert unknown.says("No scheduled dump named no-such.dump"), unknown.tail()
        assert unknown.says(scheduled), "the refusal lists the dumps there are"
        unconfirmed = target.run_playbook("playbooks/restore.yml", stack_restore_scheduled=scheduled)
        assert not unconfirmed.ok
        assert unconfirmed.says("is a valid dump"), unconfirmed.tail()

        restore = target.run_playbook(
            "playbooks/restore.yml", log=workdir / "restore.log", stack_restore_scheduled=scheduled,
            stack_restore_confirm=True,
        )  # fmt: skip
        assert restore.ok, restore.tail()
        assert restore.says(f"scheduled/{scheduled} into"), restore.tail()
    finally:
        target.docker("service", "scale", "--detach=false", f"{target.service('backup')}=1")
    for (name, password), present in ((kept, True), (registered_after, False)):
        client = target.client()
        client.login(name, password)
        assert client.logged_in_as(name) is present, f"{name}: registered {'before' if present else 'after'} the dump"


def test_restore_refuses_a_damaged_dump(target, workdir):
    """A dump that no longer matches its .sha256 is refused before anything is touched."""
    dump = backup(target, workdir)
    damaged = workdir / "damaged.dump"
    damaged.write_bytes(dump.read_bytes()[:-16])
    (workdir / "damaged.dump.sha256").write_text((dump.parent / (dump.name + ".sha256")).read_text())
    run = target.run_playbook("playbooks/restore.yml", stack_restore_file=str(damaged))
    assert not run.ok
    assert run.says(f"Checksum mismatch for {damaged}"), run.tail()
    assert not run.says("Restore the dump"), run.tail()


def test_nginx_conf_that_nginx_refuses_never_reaches_the_nodes(target, manager):
    """A setting that passes preflight but that nginx rejects stops the run with nginx's own error, changing nothing."""
    stack = target.settings["loginapp_stack_name"]
    conf = "sha256sum /etc/loginapp/edge/nginx.conf"
    nginx_spec = f"docker service inspect --format '{{{{.Version.Index}}}}' {stack}_nginx"
    before = manager.check_output(conf), manager.check_output(nginx_spec)
    run = target.run_playbook("playbooks/stack.yml", stack_nginx_ssl_ciphers="NO-SUCH-CIPHER")
    assert not run.ok
    assert run.says("nginx refused the new nginx.conf"), run.tail()
    assert run.says('SSL_CTX_set_cipher_list("NO-SUCH-CIPHER") failed'), run.tail()
    assert not run.says("Install nginx.conf"), run.tail()
    assert (manager.check_output(conf), manager.check_output(nginx_spec)) == before
    assert manager.check_output("ls /tmp | grep -c loginapp-nginx-check || true") == "0"


def test_nginx_setting_change_is_reloaded_in_place_without_a_failed_request(target, workdir):
    """A changed nginx setting reaches the running nginx by a graceful reload: the same container, no failed request."""
    nginx = target.container("nginx")
    client = target.client()
    assert client.get("/login").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    with target.load(LOAD_WORKERS) as load:
        run = target.run_playbook(
            "playbooks/stack.yml", log=workdir / "nginx-setting.log", stack_nginx_referrer_policy="no-referrer"
        )
    print(f"stack.yml with a new nginx setting: rc={run.returncode} in {run.duration:.0f} s; {load.summary()}")
    assert run.ok, run.tail()
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the reload: {load.summary()}"
    assert target.container("nginx") == nginx, "nginx must reload its new nginx.conf, not restart"
    assert client.get("/login").headers["Referrer-Policy"] == "no-referrer"
    back = site(target, workdir, "nginx-setting-back")
    assert back.ok and back.changed > 0, back.tail()
    assert client.get("/login").headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_app_image_missing_on_a_node_is_refused(target):
    """stack_app_image (what a rollback deploys) must be on every node: else the run stops before any change."""
    before = target.service_spec("app")
    run = target.run_playbook("playbooks/stack.yml", stack_app_image="loginapp/app:never-built")
    assert not run.ok
    assert run.says("The app image loginapp/app:never-built is not on"), run.tail()
    assert not run.says("Deploy the stack"), run.tail()
    assert target.service_spec("app") == before


def test_old_image_versions_are_pruned_and_the_rollback_target_kept(target, manager, workdir):
    """A run keeps, per image, the deployed version and the newest others up to images_keep_versions (3)."""
    current = target.service_image("app")
    repository = current.rsplit(":", 1)[0]
    olds = [f"{repository}:prune-test-{n}" for n in range(4)]
    for n, ref in enumerate(olds):
        # A RUN step makes an image created now (a LABEL alone keeps the base's date); ages differ by a second at least.
        manager.check_output(f"printf 'FROM {current}\\nRUN echo {n}\\n' | docker build -q -t {ref} - && sleep 1")
    run = target.run_playbook("playbooks/images.yml", log=workdir / "images.log")
    assert run.ok, run.tail()
    left = set(
        manager.check_output(f"docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {repository}").split()
    )
    assert {current, olds[3], olds[2]} <= left, left
    assert not {olds[0], olds[1]} & left, left


def test_rolling_update_and_rollback_lose_no_request(target, workdir):
    """A new app version rolls out through site.yml, then `make rollback` brings the previous one back; steady traffic
    sees no error at all."""
    before = target.service_image("app")
    tree = copy_app_tree(workdir / "app-next", f"rolling update test {time.time()}")
    with target.load(LOAD_WORKERS) as load:
        run = site(target, workdir, "update", images_app_dir=str(tree))
    print(load.summary())
    assert run.ok, run.tail()
    after = target.service_image("app")
    assert after != before, "the changed app tree should have a new image tag"
    assert target.running_images("app") == {after}
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the rolling update: {load.summary()}"

    with target.load(LOAD_WORKERS) as load:
        rollback = target.run_playbook("playbooks/rollback.yml", log=workdir / "rollback.log")
    print(f"rollback.yml: rc={rollback.returncode} in {rollback.duration:.0f} s; {load.summary()}")
    assert rollback.ok, rollback.tail()
    assert rollback.says(f"Rolling the app back: {after} -> {before}"), rollback.tail()
    assert target.service_image("app") == before
    assert target.running_images("app") == {before}
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the rollback: {load.summary()}"


def test_broken_version_is_rolled_back_without_downtime(target, workdir):
    """A version that never becomes healthy is rolled back by Swarm; the old one serves throughout."""
    before = target.service_image("app")
    tree = copy_app_tree(workdir / "app-broken", f"broken version test {time.time()}", broken=True)
    with target.load(LOAD_WORKERS) as load:
        run = site(target, workdir, "broken", images_app_dir=str(tree))
    print(load.summary())
    assert not run.ok, "site.yml should fail when Swarm rolls the update back"
    assert run.says("was rolled back"), run.tail()
    # This deploy's failures only, with the failing task's own words (tests/kit apptree's broken entrypoint).
    assert re.search(r"app: \d+ failed, the newest with: task: non-zero exit \(1\)", run.output), run.tail()
    assert run.says("broken build: refusing to start"), run.tail()
    assert target.service_image("app") == before
    assert target.running_images("app") == {before}
    assert load.ok > 0
    assert load.failed == 0, f"requests lost while the broken version was tried: {load.summary()}"

    # Back to the repository's app/: converges, and then a second run changes nothing.
    good = site(target, workdir, "good")
    assert good.ok, good.tail()
    again = site(target, workdir, "good-again")
    assert again.ok, again.tail()
    assert again.changed == 0, f"second run changed: {again.changed_tasks()}"


def test_secret_key_rotation_logs_nobody_out(target, workdir):
    """Both rolling updates of a key rotation run under steady traffic; a logged-in user stays logged in."""
    name, password = new_user()
    target.client().register(name, password)
    user = target.client()
    user.login(name, password)
    assert user.logged_in_as(name)
    # Its log-out form carries a CSRF token signed with the key about to be replaced.
    dashboard = user.get("/")
    secrets = Path(target.outputs("stack")["stack_secrets_dir"])
    old_key = (secrets / "secret_key").read_text().strip()

    with target.load(LOAD_WORKERS) as load:
        run = target.run_playbook("playbooks/rotate-secret-key.yml", log=workdir / "rotate.log")
    print(f"rotate-secret-key.yml: rc={run.returncode} in {run.duration:.0f} s; {load.summary()}")
    assert run.ok, run.tail()
    assert (secrets / "secret_key").read_text().strip() != old_key
    assert old_key in (secrets / "secret_key_fallbacks").read_text()
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the rotation: {load.summary()}"

    assert user.logged_in_as(name), "the rotation logged the user out"
    logout = user.submit_page(dashboard, action="/logout", follow=False)
    assert logout.status == 302 and logout.headers.get("Location", "").endswith("/login"), logout.status
    assert not user.logged_in_as(name)


def test_db_password_rotation_loses_no_request(target, workdir):
    """The database password changes under steady traffic: no request fails, nobody is logged out,
    the server is never restarted, and only the new password opens the database afterwards."""
    name, password = new_user()
    target.client().register(name, password)
    user = target.client()
    user.login(name, password)
    assert user.logged_in_as(name)
    secrets = Path(target.outputs("stack")["stack_secrets_dir"])
    old = (secrets / "db_password").read_text().strip()
    server = target.container("db")

    with target.load(LOAD_WORKERS) as load:
        run = target.run_playbook("playbooks/rotate-db-password.yml", log=workdir / "rotate-db.log")
    print(f"rotate-db-password.yml: rc={run.returncode} in {run.duration:.0f} s; {load.summary()}")
    assert run.ok, run.tail()
    new = (secrets / "db_password").read_text().strip()
    assert new != old and not (secrets / "db_password.next").exists()
    assert old not in run.output and new not in run.output, "passwords must not be printed"
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the rotation: {load.summary()}"
    assert user.logged_in_as(name), "the rotation logged the user out"

    assert target.container("db") == server, "the database server must not restart for a new password"

    role, database = target.settings["loginapp_db_user"], target.settings["loginapp_db_name"]

    def opens_the_database(candidate):
        try:
            psql = ["psql", "-X", "-w", "-h", "127.0.0.1", "-U", role, "-d", database, "-c", "SELECT 1"]
            target.docker("exec", "--env", f"PGPASSWORD={candidate}", server, *psql)
        except RuntimeError:
            return False
        return True

    assert opens_the_database(new) and not opens_the_database(old)
    app = target.container("app")
    assert target.docker("exec", app, "cat", "/run/secrets/db_password").splitlines() == [new], (
        "after the rotation the app's secret holds the new password alone"
    )
    again = site(target, workdir, "after-db-rotation")
    assert again.ok and again.changed == 0, again.changed_tasks()


def served_public_key(target) -> bytes:
    """The public key of the certificate nginx serves on a new connection."""
    leaf = served_certificate(target.host, target.ca_cert, target.host)
    return leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_tls_key_rotation_reloads_nginx_without_a_failed_request(target, workdir):
    """A new TLS key under steady traffic: nginx reloads it in place (the same container), no request fails,
    nobody is logged out, and new connections get a certificate for the new key."""
    name, password = new_user()
    target.client().register(name, password)
    user = target.client()
    user.login(name, password)
    key_file = Path(target.outputs("tls")["tls_server_key_path"])
    old_key, old_served = key_file.read_text(), served_public_key(target)
    nginx = target.container("nginx")

    with target.load(LOAD_WORKERS) as load:
        run = target.run_playbook("playbooks/rotate-tls-key.yml", log=workdir / "rotate-tls.log")
    print(f"rotate-tls-key.yml: rc={run.returncode} in {run.duration:.0f} s; {load.summary()}")
    assert run.ok, run.tail()
    new_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key_file.read_text() != old_key
    assert "PRIVATE KEY" not in run.output, "the key must not be printed"
    assert load.ok > 0
    assert load.failed == 0, f"requests lost during the rotation: {load.summary()}"
    assert user.logged_in_as(name), "the rotation logged the user out"

    assert target.container("nginx") == nginx, "nginx must reload the new key, not restart"
    served = served_public_key(target)
    assert served != old_served
    assert served == new_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    again = site(target, workdir, "after-tls-rotation")
    assert again.ok and again.changed == 0, again.changed_tasks()
