"""Each role's defaults and argument specs describe the same variables, so neither can drift.

`defaults/` lists every knob a role has (with a one-line comment); its
`meta/argument_specs.yml` types and documents the same names, over all its
entry points (main, backup, ...). Options an entry point requires have no
default and are the only ones missing from `defaults/`.
"""

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from loginapp_kit import REPO

ROLES = sorted(path.name for path in (REPO / "roles").iterdir() if (path / "meta" / "argument_specs.yml").exists())


def defaults(role: str) -> dict:
    folder = REPO / "roles" / role / "defaults"
    files = [folder / "main.yml"] if (folder / "main.yml").exists() else sorted((folder / "main").glob("*.yml"))
    merged = {}
    for path in files:
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def options(role: str) -> dict:
    specs = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    merged = {}
    for entry_point in specs.values():
        merged.update(entry_point.get("options") or {})
    return merged


class RoleVarsLoader(yaml.SafeLoader):
    """Reads vars files that mark Go templates `!unsafe` (kept away from Jinja)."""


RoleVarsLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def templated(value) -> bool:
    return isinstance(value, str) and "{{" in value


def test_every_role_is_checked():
    assert set(ROLES) == {path.name for path in (REPO / "roles").iterdir() if path.is_dir()}
    assert "loginapp" in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_specs_name_the_same_variables(role):
    specs, values = options(role), defaults(role)
    required = {name for name, spec in specs.items() if spec.get("required")}
    assert set(values) == set(specs) - required, "defaults/ and meta/argument_specs.yml differ"
    assert not required & set(values), "a required option must not have a default"
    assert all(name.startswith(role + "_") for name in specs), "variables carry the role's prefix"


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_are_the_real_defaults(role):
    specs, values = options(role), defaults(role)
    for name, value in values.items():
        if templated(value):
            # Computed at run time: the spec describes it in words instead of claiming a value.
            assert "default" not in specs[name], f"{name}: computed default, yet the spec gives one"
        else:
            assert specs[name].get("default") == value, name


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_documented_and_defaults_validate(role):
    specs, values = options(role), defaults(role)
    assert all(spec.get("description") for spec in specs.values())
    # Validates the defaults only: whether an entry point requires an option is its own business.
    checks = {
        name: {k: v for k, v in spec.items() if k not in ("description", "required")} for name, spec in specs.items()
    }
    literal = {name: value for name, value in values.items() if not templated(value)}
    assert ArgumentSpecValidator(checks).validate(literal).error_messages == []


def test_role_vars_do_not_shadow_knobs():
    for role in ROLES:
        path = REPO / "roles" / role / "vars" / "main.yml"
        derived = set(yaml.load(path.read_text(), Loader=RoleVarsLoader) or {}) if path.exists() else set()
        assert not derived & set(defaults(role)), role


def test_a_validator_refuses_a_wrong_type():
    """Control for the test above: the validator does refuse a wrong type."""
    checks = {name: {k: v for k, v in spec.items() if k != "description"} for name, spec in options("stack").items()}
    assert ArgumentSpecValidator(checks).validate({"stack_nginx_https_port": "https"}).error_messages


def _stage_names(key: str) -> set[str]:
    """Every stage named under ``key`` in the roles' task files."""
    names = set()
    for path in (REPO / "roles").glob("*/tasks/*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            value = (task.get("vars") or {}).get(key)
            names.update([value] if isinstance(value, str) else value or [])
    return names


def test_every_stage_is_named_after_its_playbook():
    """read_outputs tells the user to run playbooks/<stage>.yml: that playbook must exist."""
    published, read = _stage_names("loginapp_outputs_stage"), _stage_names("loginapp_outputs_stages")
    assert read <= published, f"stages read but never published: {read - published}"
    missing = {stage for stage in published if not (REPO / "playbooks" / f"{stage}.yml").exists()}
    assert not missing, f"stages without a playbooks/<stage>.yml: {missing}"
