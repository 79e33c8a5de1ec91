"""Fixtures of the end-to-end scenario (`molecule/default`), on top of the kit's.

The kit's pytest plugin gives ``target`` (this scenario's deployment, as the
controller reaches it), ``new_client`` / ``https_client`` and ``credentials``.
Here: ``manager``, the testinfra host of the first manager, where Swarm is
inspected. Everything is read from the Molecule inventory and the stages'
outputs, so the fixtures keep working when the scenario's variables change.
"""

from __future__ import annotations

import pytest
import testinfra


@pytest.fixture(scope="session")
def manager(target):
    """testinfra host of the first manager: where the stack is deployed and inspected."""
    name = target.settings["loginapp_first_manager"]
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(target.inventory))
