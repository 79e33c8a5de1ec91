"""backup.yml, restore.yml and teardown.yml refuse bad input before touching any host (no Docker needed)."""

import hashlib

from loginapp_kit.playbook import write_inventory


def refused(result, *fragments):
    assert result.returncode != 0, result.output
    for fragment in fragments:
        assert result.says(fragment), result.output
    # Nothing past the input checks ran.
    for task in ("Restore the dump", "Dump the database", "Remove the stack and wait"):
        assert not result.says(task), result.output


def db_inventory(tmp_path):
    return write_inventory(tmp_path, host_vars={"node1": {"swarm_node_labels": {"loginapp.db": "true"}}})


def dump_with_checksum(tmp_path, content, recorded):
    dump = tmp_path / "loginapp-20260101T000000Z.dump"
    dump.write_bytes(content)
    (tmp_path / (dump.name + ".sha256")).write_text(f"{hashlib.sha256(recorded).hexdigest()}  {dump.name}\n")
    return dump


def test_restore_needs_exactly_one_dump(run_playbook, tmp_path):
    named = "Name the dump to restore with exactly one of stack_restore_file"
    refused(run_playbook("playbooks/restore.yml", db_inventory(tmp_path)), named)
    both = {"stack_restore_file": str(tmp_path / "a.dump"), "stack_restore_scheduled": "loginapp-b.dump"}
    refused(run_playbook("playbooks/restore.yml", db_inventory(tmp_path), extra_vars=both), named)


def test_restore_names_a_missing_dump(run_playbook, tmp_path):
    missing = tmp_path / "nope.dump"
    result = run_playbook(
        "playbooks/restore.yml", db_inventory(tmp_path), extra_vars={"stack_restore_file": str(missing)}
    )
    refused(result, "Missing on the controller", str(missing))


def test_restore_refuses_a_checksum_mismatch(run_playbook, tmp_path):
    dump = dump_with_checksum(tmp_path, b"PGDMP not really", recorded=b"other")
    result = run_playbook("playbooks/restore.yml", db_inventory(tmp_path), extra_vars={"stack_restore_file": str(dump)})
    refused(result, "Checksum mismatch", "damaged")


def test_restore_needs_the_operators_confirmation(run_playbook, tmp_path):
    dump = dump_with_checksum(tmp_path, b"PGDMP", recorded=b"PGDMP")
    result = run_playbook("playbooks/restore.yml", db_inventory(tmp_path), extra_vars={"stack_restore_file": str(dump)})
    refused(result, "is a valid dump", "replaces every row", "-e stack_restore_confirm=true")


def test_operation_inputs_are_typed_in_preflight(run_playbook, tmp_path):
    dump = dump_with_checksum(tmp_path, b"PGDMP", recorded=b"PGDMP")
    result = run_playbook(
        "playbooks/restore.yml",
        db_inventory(tmp_path),
        extra_vars={"stack_restore_file": str(dump), "stack_restore_restart_app": "sometimes"},
    )
    refused(result, 'stack_restore_restart_app must be a bool, got "sometimes"')


def test_teardown_flag_must_be_a_boolean(run_playbook, tmp_path):
    result = run_playbook(
        "playbooks/teardown.yml", db_inventory(tmp_path), extra_vars={"stack_teardown_remove_data": "yes please"}
    )
    refused(result, 'stack_teardown_remove_data must be a bool, got "yes please"')


def test_misspelled_operation_variable_is_named(run_playbook, tmp_path):
    result = run_playbook("playbooks/backup.yml", db_inventory(tmp_path), extra_vars={"stack_backup_dri": "/tmp/x"})
    refused(result, "Unknown variable(s) for role stack", "stack_backup_dri")


def test_backup_needs_a_database_node(run_playbook, tmp_path):
    result = run_playbook("playbooks/backup.yml", write_inventory(tmp_path, managers=("node1", "node2")))
    refused(result, "Exactly one host needs swarm_node_labels with loginapp.db", "found 0")
