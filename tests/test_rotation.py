"""The secret-key rotation's file steps (stack entry point `rotate_secret_key`), without Docker.

What the two rolling updates in between do to sessions is proven in the app's
tests (test_key_rotation_keeps_sessions_and_forms) and, under load on a real
stack, in the default scenario.
"""

import pytest
from loginapp.config import fallback_keys


@pytest.fixture
def rotate(rotation_phase):
    """``rotate(phase)`` runs one phase on a secrets directory of this test (``rotate.dir``)."""
    return rotation_phase("rotate_secret_key", "stack_secret_key_rotation")


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


def test_switch_without_an_accepted_key_is_refused(rotate):
    refused = rotate("switch", ok=False)
    assert "run the accept" in refused.output
    assert not rotate.dir.exists() or not list(rotate.dir.iterdir()), "a refused switch must not make keys"

    rotate("accept")
    rotate("switch")
    done = keys(rotate.dir)
    rotate("switch", ok=False)
    assert keys(rotate.dir) == done, "a second switch must not sign with a key nobody accepts"


def test_a_hand_edited_fallbacks_file_reads_as_the_app_reads_it(rotate):
    """The role parses the fallbacks file in Jinja, the app in Python: the same keys must come out."""
    first, second = "a" * 64, "b" * 64
    rotate.dir.mkdir()
    (rotate.dir / "secret_key_fallbacks").write_bytes(
        f"# notes\r\n\r\n   {first}  \r\n\t# {'c' * 64}\n{second}\n\n".encode()
    )
    rotate("accept")
    _, fallbacks, new = keys(rotate.dir)
    assert fallbacks == [first, second, new]
