"""Hashing parameters and the common-password list."""

from __future__ import annotations

from argon2 import extract_parameters

from loginapp.passwords import MAX_LENGTH, Passwords, common_passwords, policy_errors


def test_owasp_argon2id_parameters() -> None:
    hasher = Passwords(time_cost=2, memory_cost=19456, parallelism=1)
    stored = hasher.hash("correct horse battery staple")
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 19456, 1)
    assert hasher.verify(stored, "correct horse battery staple")
    assert not hasher.verify(stored, "correct horse battery stapl")
    assert not hasher.verify("not a hash", "whatever")
    assert not hasher.needs_rehash(stored)
    assert Passwords(time_cost=3, memory_cost=19456, parallelism=1).needs_rehash(stored)


def test_common_password_list_is_shipped() -> None:
    common = common_passwords()
    assert len(common) > 5000
    assert {"password", "12345678", "iloveyou"} <= common
    assert all(len(p) >= 8 for p in common)


def test_policy() -> None:
    assert policy_errors("a" * 7)
    assert policy_errors("a" * (MAX_LENGTH + 1))
    assert not policy_errors("tr0ub4dor&3 horse")
    assert not policy_errors("a" * 64)  # at least 64 characters must be allowed
    assert not policy_errors("lowercase only but long")  # no composition rules
    # NFKC: full-width letters count as their plain forms for the blocklist too.
    assert policy_errors("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44")  # "password"
