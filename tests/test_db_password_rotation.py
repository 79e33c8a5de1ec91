"""The database password rotation's controller-side phases (stack entry point `rotate_db_password`),
without Docker. The `apply` phase and the rolling updates run on a real stack under load in the
default scenario; connecting with the first accepted of two passwords is proven in the app's tests."""

import pytest


@pytest.fixture
def rotate(rotation_phase):
    """``rotate(phase)`` runs one phase on a secrets directory of this test (``rotate.dir``)."""
    return rotation_phase("rotate_db_password", "stack_db_password_rotation")


def passwords(secrets):
    """(current, next or None) as the files hold them."""
    pending = secrets / "db_password.next"
    return (secrets / "db_password").read_text().strip(), pending.read_text().strip() if pending.exists() else None


def test_accept_makes_one_next_password_and_switch_makes_it_current(rotate):
    rotate.dir.mkdir()
    (rotate.dir / "db_password").write_text("current0password")
    accept = rotate("accept")
    current, new = passwords(rotate.dir)
    assert current == "current0password" and new and new != current
    assert len(new) == 32 and new.isalnum()
    assert new not in accept.output, "passwords must not be printed"
    assert oct((rotate.dir / "db_password.next").stat().st_mode & 0o777) == "0o600"
    assert rotate("accept").changed == 0 and passwords(rotate.dir) == (current, new), "a repeated accept keeps it"

    switch = rotate("switch")
    assert passwords(rotate.dir) == (new, None)
    assert new not in switch.output and current not in switch.output
    assert oct((rotate.dir / "db_password").stat().st_mode & 0o777) == "0o600"


def test_apply_and_switch_without_an_accepted_password_are_refused(rotate):
    rotate.dir.mkdir()
    (rotate.dir / "db_password").write_text("current0password")
    for phase in ("apply", "switch"):
        refused = rotate(phase, ok=False)
        assert "run the accept phase first" in refused.output
    assert passwords(rotate.dir) == ("current0password", None)
