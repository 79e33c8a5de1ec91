"""backup.yml and restore.yml refuse bad input before touching any host (no Docker needed)."""

import hashlib

from conftest import write_inventory


def refused(result, *fragments):
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in fragments:
        assert fragment in output, output
    # Nothing past the input checks ran.
    assert "Restore the dump" not in output and "Dump the database" not in output, output


def db_inventory(tmp_path):
    return write_inventory(tmp_path, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})


def test_restore_needs_backup_file(run_playbook, tmp_path):
    refused(run_playbook("playbooks/restore.yml", db_inventory(tmp_path)), "Say which dump to restore: -e backup_file=")


def test_restore_names_a_missing_dump(run_playbook, tmp_path):
    missing = tmp_path / "nope.dump"
    result = run_playbook("playbooks/restore.yml", db_inventory(tmp_path), extra_vars={"backup_file": str(missing)})
    refused(result, "Missing on the controller", str(missing))


def test_restore_refuses_a_checksum_mismatch(run_playbook, tmp_path):
    dump = tmp_path / "loginapp-20260101T000000Z.dump"
    dump.write_bytes(b"PGDMP not really")
    (tmp_path / (dump.name + ".sha256")).write_text(f"{hashlib.sha256(b'other').hexdigest()}  {dump.name}\n")
    result = run_playbook("playbooks/restore.yml", db_inventory(tmp_path), extra_vars={"backup_file": str(dump)})
    refused(result, "Checksum mismatch", "damaged")


def test_restore_refuses_a_bad_expected_count(run_playbook, tmp_path):
    dump = tmp_path / "loginapp-20260101T000000Z.dump"
    dump.write_bytes(b"PGDMP")
    (tmp_path / (dump.name + ".sha256")).write_text(f"{hashlib.sha256(b'PGDMP').hexdigest()}  {dump.name}\n")
    result = run_playbook(
        "playbooks/restore.yml",
        db_inventory(tmp_path),
        extra_vars={"backup_file": str(dump), "restore_expected_users": "many"},
    )
    refused(result, "restore_expected_users must be a whole number")


def test_backup_needs_a_database_node(run_playbook, tmp_path):
    result = run_playbook("playbooks/backup.yml", write_inventory(tmp_path, managers=("node1", "node2")))
    refused(result, "Exactly one host needs swarm_node_labels with loginapp.db", "found 0")
