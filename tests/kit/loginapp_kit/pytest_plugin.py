"""pytest plugin of the kit (the ``pytest11`` entry point): fixtures for tests of a deployment.

* ``target``: the deployment under test (a Molecule scenario's first manager
  when pytest runs as its verifier, else this machine's ``inventory/local``);
* ``new_client`` / ``https_client``: independent browsers for it;
* ``credentials``: a fresh username and a password the app accepts;
* the ``disruptive`` marker: tests that break or redeploy the stack run after
  every other test of the session. Each of them must leave the deployment
  healthy again (and wait, bounded, until it is), so no test depends on
  which ran before it.
"""

from __future__ import annotations

import secrets

import pytest

from .deployment import Target


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "disruptive: breaks or redeploys the deployment on purpose; runs after all other tests"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable: each group keeps its files' own order.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def target() -> Target:
    return Target.from_environment()


@pytest.fixture
def new_client(target: Target):
    """Factory of independent browsers (separate cookie jars); ``new_client(host)`` goes through that node."""
    return target.client


@pytest.fixture
def https_client(new_client):
    return new_client()


@pytest.fixture
def credentials() -> tuple[str, str]:
    return f"user-{secrets.token_hex(4)}", f"Pass-{secrets.token_urlsafe(12)}"
