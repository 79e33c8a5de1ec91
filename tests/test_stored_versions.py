"""The stack role's stored_versions filter: which secrets and configs docker_secret/docker_config leave alone.

The Molecule scenarios prove it against real Swarm objects (a second run
changes nothing; a key rotation stores new versions); here, the decisions.
"""

import hashlib
import importlib.util

from loginapp_kit import REPO

spec = importlib.util.spec_from_file_location("stored_versions", REPO / "roles/stack/filter_plugins/stored_versions.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
stored_versions = module.stored_versions

LABELS = {"com.docker.stack.namespace": "app"}


def stored(name: str, version: int, value: str, **labels) -> dict:
    """A Spec as docker_secret writes it: <name>_v<version>, ansible_key = sha224 of the data."""
    key = hashlib.sha224(value.encode()).hexdigest()
    return {
        "Name": f"{name}_v{version}",
        "Labels": {"ansible_key": key, "ansible_version": str(version), **LABELS, **labels},
    }


def test_the_newest_version_holding_the_value_is_kept():
    specs = [stored("app_db_password", 9, "old"), stored("app_db_password", 10, "new")]
    assert stored_versions([{"key": "db_password", "value": "new"}], specs, "app", LABELS) == {
        "db_password": "app_db_password_v10"
    }


def test_a_value_only_an_older_version_holds_is_changed():
    specs = [stored("app_db_password", 9, "old"), stored("app_db_password", 10, "new")]
    assert stored_versions([{"key": "db_password", "value": "old"}], specs, "app", LABELS) == {}


def test_an_object_never_stored_is_changed():
    assert stored_versions([{"key": "tls_key", "value": "k"}], [], "app", LABELS) == {}


def test_a_name_that_only_starts_the_same_is_another_object():
    specs = [stored("app_secret_key_fallbacks", 3, "same")]
    assert stored_versions([{"key": "secret_key", "value": "same"}], specs, "app", LABELS) == {}


def test_missing_labels_or_a_template_driver_send_it_to_the_module():
    unlabelled = stored("app_nginx_conf", 2, "conf")
    del unlabelled["Labels"]["com.docker.stack.namespace"]
    templated = {**stored("app_nginx_conf", 2, "conf"), "Templating": {"Name": "golang"}}
    for specs in ([unlabelled], [templated]):
        assert stored_versions([{"key": "nginx_conf", "value": "conf"}], specs, "app", LABELS) == {}


def test_each_item_is_decided_alone():
    specs = [stored("app_secret_key", 1, "a"), stored("app_db_password", 4, "b")]
    items = [{"key": "secret_key", "value": "a"}, {"key": "db_password", "value": "changed"}]
    assert stored_versions(items, specs, "app", LABELS) == {"secret_key": "app_secret_key_v1"}
