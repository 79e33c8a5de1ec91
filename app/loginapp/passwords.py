"""Password hashing (argon2id) and the password policy (ASVS V2.1, NIST 800-63B)."""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, current_app

MIN_LENGTH = 8
# ASVS asks that at least 64 characters be allowed; the cap only bounds hashing work.
MAX_LENGTH = 128

EXTENSION = "loginapp.passwords"


def normalize(password: str) -> str:
    # NFKC so the same password typed on different keyboards/IMEs still matches.
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (lower-cased, 8+ characters)."""
    data = resources.files("loginapp").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").splitlines())


def policy_errors(password: str, username: str | None = None) -> list[str]:
    """Why the password is unacceptable; empty when it is fine.

    Deliberately no composition rules (upper/lower/digit/symbol): length and a
    blocklist of known passwords are what resist guessing.
    """
    password = normalize(password)
    errors = []
    if len(password) < MIN_LENGTH:
        errors.append(f"Use at least {MIN_LENGTH} characters.")
    elif len(password) > MAX_LENGTH:
        errors.append(f"Use at most {MAX_LENGTH} characters.")
    elif password.lower() in common_passwords():
        errors.append("This password is too common; choose one that is harder to guess.")
    elif username and password.lower() == username.lower():
        errors.append("The password must not be your username.")
    return errors


class Passwords:
    """Argon2id hasher configured from the app, plus a dummy hash for timing parity."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verified when the username is unknown, so both cases cost one hash.
        self.dummy_hash = self.hasher.hash("not a real password, only for timing")

    def hash(self, password: str) -> str:
        return self.hasher.hash(normalize(password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash or self.dummy_hash, normalize(password)) and (
                password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Passwords(
        app.config["ARGON2_TIME_COST"],
        app.config["ARGON2_MEMORY_COST"],
        app.config["ARGON2_PARALLELISM"],
    )


def passwords() -> Passwords:
    return current_app.extensions[EXTENSION]
