"""The secret-key rotation's file steps (stack entry point `rotate_secret_key`), without Docker.

What the two rolling updates in between do to sessions is proven in the app's
tests (test_key_rotation_keeps_sessions_and_forms) and, under load on a real
stack, in the default scenario.
"""

import pytest
from loginapp.config import fallback_keys
from loginapp_kit.playbook import write_inventory


@pytest.fixture
def rotate(run_playbook, tmp_path):
    """``rotate(phase)`` runs one phase on a secrets directory of this test; returns the run."""
    inventory = write_inventory(tmp_path)
    secrets = tmp_path / "secrets"

    def run(phase):
        result = run_playbook(
            "tests/render/rotate_secret_key.yml",
            inventory,
            extra_vars={"stack_secrets_dir": str(secrets), "stack_secret_key_rotation": phase},
        )
        assert result.ok, result.output
        return result

    run.dir = secrets
    return run


def keys(secrets):
    """(signing key, accepted fallbacks, pending next key or None) as the files hold them."""
    fallbacks = secrets / "secret_key_fallbacks"
    pending = secrets / "secret_key.next"
    return (
        (secrets / "secret_key").read_text().strip(),
        fallback_keys(fallbacks.read_text()) if fallbacks.exists() else [],
        pending.read_text().strip() if pending.exists() else None,
    )


def test_two_phases_swap_the_keys(rotate):
    accept = rotate("accept")
    first, fallbacks, new = keys(rotate.dir)
    assert new and new != first
    assert fallbacks == [new], "after phase 1 every replica must accept the new key"
    assert first not in accept.output and new not in accept.output, "keys must not be printed"

    rotate("switch")
    assert keys(rotate.dir) == (new, [first], None)
    assert oct((rotate.dir / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert oct((rotate.dir / "secret_key_fallbacks").stat().st_mode & 0o777) == "0o600"


def test_the_next_rotation_drops_the_oldest_key(rotate):
    rotate("accept")
    rotate("switch")
    second, [first], _ = keys(rotate.dir)
    rotate("accept")
    _, fallbacks, third = keys(rotate.dir)
    assert fallbacks == [first, third]
    rotate("switch")
    assert keys(rotate.dir) == (third, [second], None)


def test_an_interrupted_rotation_resumes(rotate):
    rotate("accept")
    before = keys(rotate.dir)
    assert rotate("accept").changed == 0, "a repeated phase 1 must not make another key"
    assert keys(rotate.dir) == before

    # Interrupted in phase 2 after the new key was written, before the rotation was marked done.
    first, _, new = before
    (rotate.dir / "secret_key").write_text(new)
    (rotate.dir / "secret_key_fallbacks").write_text(f"# header\n{first}\n")
    rotate("accept")
    assert keys(rotate.dir) == (new, [first], new), "phase 1 must not undo a finished switch"
    rotate("switch")
    assert keys(rotate.dir) == (new, [first], None)
