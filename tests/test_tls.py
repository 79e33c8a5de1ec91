"""The tls role, run for real on this machine (controller = target = localhost).

Each run is an `ansible-playbook` subprocess (the kit's runner) with the JSON
callback, so the recap (stats), task results and the facts the stack role
consumes can be read without scraping text.
"""

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from loginapp_kit import REPO
from loginapp_kit.playbook import run_playbook

PLAYBOOK = """
- name: Apply the tls role
  hosts: all
  gather_facts: {gather}
  roles:
    - role: tls
  post_tasks:
    - name: Expose the facts the stack role consumes
      ansible.builtin.debug:
        msg:
          tls_server_cert_path: "{{{{ tls_server_cert_path }}}}"
          tls_server_key_path: "{{{{ tls_server_key_path }}}}"
          tls_ca_cert_path: "{{{{ tls_ca_cert_path }}}}"
          tls_acme_challenge_dir: "{{{{ tls_acme_challenge_dir }}}}"
          tls_crl_path: "{{{{ tls_crl_path }}}}"
          tls_db_cert_path: "{{{{ tls_db_cert_path }}}}"
          tls_db_key_path: "{{{{ tls_db_key_path }}}}"
          tls_internal_ca_cert_path: "{{{{ tls_internal_ca_cert_path }}}}"
"""


class Run:
    """A run of the role through the kit's runner, its JSON result document read."""

    def __init__(self, run):
        self.rc = run.returncode
        self.output = run.output
        self.data = run.json() if run.stdout.strip() else {}

    @property
    def stats(self):
        return self.data.get("stats", {})

    def changed(self):
        return sum(host["changed"] for host in self.stats.values())

    def ran(self, name):
        """Whether a task of this name ran (was not skipped) on some host."""
        for play in self.data["plays"]:
            for task in play["tasks"]:
                hosts = task["hosts"].values()
                if task["task"]["name"].split(" : ", 1)[-1] == name and any(not r.get("skipped") for r in hosts):
                    return True
        return False

    def facts(self):
        for play in self.data["plays"]:
            for task in play["tasks"]:
                if task["task"]["name"] == "Expose the facts the stack role consumes":
                    return next(iter(task["hosts"].values()))["msg"]
        raise AssertionError("facts task did not run")


def make_project(tmp_path):
    """Inventory of two edge hosts (local connection)."""
    (tmp_path / "inventory").mkdir()
    py = sys.executable
    (tmp_path / "inventory" / "hosts.ini").write_text(
        f"[edge]\n"
        f"edge1 ansible_connection=local ansible_host=10.9.8.7 ansible_python_interpreter={py}\n"
        f"edge2 ansible_connection=local ansible_python_interpreter={py}\n"
    )
    return tmp_path


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def run(project, extra=None, gather=False, env=None, state=True):
    """The role on the project's hosts; its state (outputs, and tls/ unless overridden) under the project."""
    playbook = project / "play.yml"
    playbook.write_text(PLAYBOOK.format(gather=str(gather).lower()))
    extra_vars = {"loginapp_state_dir": str(project / "state"), "tls_dir": str(project / "tls")} if state else {}
    result = run_playbook(
        playbook, project / "inventory" / "hosts.ini", {**extra_vars, **(extra or {})},
        facts_dir=project / "facts", json_output=True, env=env,
    )  # fmt: skip
    return Run(result)


def load_certs(path):
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def load_key(path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def sans(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


# --- selfsigned mode --------------------------------------------------------


@pytest.fixture(scope="module")
def selfsigned(tmp_path_factory):
    """First and second run of the default mode, shared by the tests that only read."""
    project = make_project(tmp_path_factory.mktemp("selfsigned"))
    first = run(project, {"tls_extra_names": ["login.example.test", "203.0.113.5"]}, gather=True)
    assert first.rc == 0, first.output
    second = run(project, {"tls_extra_names": ["login.example.test", "203.0.113.5"]}, gather=True)
    return project / "tls", first, second


def test_selfsigned_creates_ca_and_server_cert_that_chain(selfsigned):
    tls, first, _ = selfsigned
    assert first.changed() > 0
    assert oct(tls.stat().st_mode & 0o777) == "0o700"
    for name in ("ca.key", "server.key"):
        assert oct((tls / name).stat().st_mode & 0o777) == "0o600", name

    (ca,) = load_certs(tls / "ca.crt")
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign

    served = load_certs(tls / "server.crt")
    assert len(served) == 2 and served[1] == ca, "server.crt must be leaf + CA"
    leaf = served[0]
    leaf.verify_directly_issued_by(ca)  # raises if the signature does not verify
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku

    for key_file, cert in (("server.key", leaf), ("ca.key", ca)):
        key = load_key(tls / key_file)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert key.public_key() == cert.public_key(), f"{key_file} does not match its certificate"


def test_selfsigned_sans_cover_edge_hosts_and_extras(selfsigned):
    tls, _, _ = selfsigned
    leaf = load_certs(tls / "server.crt")[0]
    names = sans(leaf)
    expected = {
        "edge1",
        "edge2",
        "10.9.8.7",
        "localhost",
        "127.0.0.1",
        "login.example.test",
        "203.0.113.5",
    }
    assert expected <= names
    ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.9.8.7" in {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}, "IPs must be IP SANs"
    # Facts were gathered: the controller's FQDN is named as well.
    assert len(names) > len(expected)


def test_selfsigned_second_run_changes_nothing(selfsigned):
    _, _, second = selfsigned
    assert second.rc == 0, second.output
    assert second.changed() == 0, second.output


def test_unchanged_certificate_is_not_rechecked(selfsigned):
    """A current certificate skips the key, request and issuing tasks (no module runs to confirm it)."""
    _, first, second = selfsigned
    assert first.ran("Issue the server certificate")
    assert not second.ran("Issue the server certificate"), second.output
    assert not second.ran("Create the server private key"), second.output


def test_damaged_server_file_is_repaired(project):
    """The skip compares file hashes: a replaced server.crt is rebuilt, not trusted."""
    assert run(project).rc == 0
    tls = project / "tls"
    good = (tls / "server.crt").read_bytes()
    (tls / "server.crt").write_bytes(good[: len(good) // 2])
    again = run(project)
    assert again.rc == 0, again.output
    assert again.changed() > 0
    assert (tls / "server.crt").read_bytes() == good


def test_selfsigned_sets_facts_for_stack_role(selfsigned):
    tls, first, _ = selfsigned
    assert first.facts() == {
        "tls_server_cert_path": str(tls / "server.crt"),
        "tls_server_key_path": str(tls / "server.key"),
        "tls_ca_cert_path": str(tls / "ca.crt"),
        "tls_acme_challenge_dir": "/var/lib/loginapp/acme-challenge",
        "tls_crl_path": str(tls / "ca.crl"),
        "tls_db_cert_path": str(tls / "internal" / "db.crt"),
        "tls_db_key_path": str(tls / "internal" / "db.key"),
        "tls_internal_ca_cert_path": str(tls / "internal" / "ca.crt"),
    }
    assert str(tls / "ca.crt") in first.output  # told where to find the CA for the browser


def test_default_tls_dir_is_per_inventory_under_home(project):
    result = run(project, env={"HOME": str(project / "home")}, state=False)
    assert result.rc == 0, result.output
    state = project / "home" / ".local" / "share" / "loginapp" / "inventory"
    assert result.facts()["tls_server_cert_path"] == str(state / "tls" / "server.crt")
    assert len(load_certs(state / "tls" / "server.crt")) == 2
    # The outputs later stages read when they run alone.
    assert json.loads((state / "outputs" / "tls.json").read_text()) == result.facts()


def test_changed_extra_names_reissue_leaf_but_keep_ca(project):
    # A domain the CA may grow into (its name constraints are fixed when it is made); any IPv4 address, since
    # this machine's own is among the names.
    permitted = ["example.test", "edge1", "edge2", "localhost", "0.0.0.0/0"]
    assert run(project, {"tls_extra_names": ["a.example.test"], "tls_ca_permitted_names": permitted}).rc == 0
    tls = project / "tls"
    ca_before = (tls / "ca.crt").read_bytes(), (tls / "ca.key").read_bytes()
    leaf_before = load_certs(tls / "server.crt")[0]

    again = run(project, {"tls_extra_names": ["b.example.test"], "tls_ca_permitted_names": permitted})
    assert again.rc == 0, again.output
    assert again.changed() > 0
    assert ((tls / "ca.crt").read_bytes(), (tls / "ca.key").read_bytes()) == ca_before
    leaf_after = load_certs(tls / "server.crt")[0]
    assert leaf_after.serial_number != leaf_before.serial_number
    assert "b.example.test" in sans(leaf_after) and "a.example.test" not in sans(leaf_after)
    leaf_after.verify_directly_issued_by(load_certs(tls / "ca.crt")[0])


def test_leaf_close_to_expiry_is_renewed(project):
    assert run(project, {"tls_server_days": 10, "tls_renew_days": 5}).rc == 0
    tls = project / "tls"
    short = load_certs(tls / "server.crt")[0]

    renewed = run(project, {"tls_server_days": 365, "tls_renew_days": 20})
    assert renewed.rc == 0, renewed.output
    leaf = load_certs(tls / "server.crt")[0]
    assert leaf.serial_number != short.serial_number
    assert leaf.not_valid_after_utc - short.not_valid_after_utc > dt.timedelta(days=300)


def test_key_rotation_makes_a_new_key_and_certificate_and_keeps_the_ca(project):
    assert run(project).rc == 0
    tls = project / "tls"
    ca_before, key_before = (tls / "ca.key").read_bytes(), (tls / "server.key").read_bytes()
    leaf_before = load_certs(tls / "server.crt")[0]

    rotated = run(project, {"tls_rotate_server_key": True})
    assert rotated.rc == 0, rotated.output
    assert (tls / "ca.key").read_bytes() == ca_before
    assert (tls / "server.key").read_bytes() != key_before
    leaf = load_certs(tls / "server.crt")[0]
    key = serialization.load_pem_private_key((tls / "server.key").read_bytes(), password=None)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert leaf.public_key().public_numbers() != leaf_before.public_key().public_numbers()
    assert sans(leaf) == sans(leaf_before)
    leaf.verify_directly_issued_by(load_certs(tls / "ca.crt")[0])

    again = run(project)
    assert again.rc == 0 and again.changed() == 0, again.output

    # The replaced certificate is revoked (superseded) in the CA's list, which openssl checks against.
    crl = x509.load_der_x509_crl((tls / "ca.crl").read_bytes())
    assert crl.is_signature_valid(load_certs(tls / "ca.crt")[0].public_key())
    revoked = crl.get_revoked_certificate_by_serial_number(leaf_before.serial_number)
    assert revoked is not None, "the rotated-away certificate is not in ca.crl"
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is None
    assert "certificate revoked" in openssl_verify(tls, leaf_before, crl_check=True)
    assert openssl_verify(tls, leaf, crl_check=True) == "OK"


def openssl_verify(tls: Path, leaf: x509.Certificate, crl_check: bool = False, hostname: str = "") -> str:
    """What `openssl verify` (the library nginx, curl, libpq and Python use) says of a leaf against ca.crt in
    ``tls`` (and ca.crl), for ``hostname`` when given."""
    pem = tls / f"verify-{leaf.serial_number}.pem"
    pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    args = ["openssl", "verify", "-CAfile", str(tls / "ca.crt")]
    if crl_check:
        args += ["-crl_check", "-CRLfile", str(tls / "ca.crl")]
    if hostname:
        args += ["-verify_hostname", hostname]
    done = subprocess.run([*args, str(pem)], capture_output=True, text=True, check=False)
    return "OK" if done.returncode == 0 else done.stdout + done.stderr


def test_ca_is_name_constrained_to_the_deployment_and_publishes_a_crl(selfsigned):
    """The CA may sign only for the deployment's names and addresses: a certificate its key makes for another
    name is refused by OpenSSL. Its revocation list is where the server certificate says."""
    tls, first, second = selfsigned
    (ca,) = load_certs(tls / "ca.crt")
    leaf = load_certs(tls / "server.crt")[0]
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = {str(name.value) for name in constraints.value.permitted_subtrees}
    assert {"edge1", "login.example.test", "10.9.8.7/32", "203.0.113.5/32", "127.0.0.1/32"} <= permitted
    # No IPv6 address among the names: every IPv6 address is excluded (else IPv6 would be unconstrained).
    assert {str(name.value) for name in constraints.value.excluded_subtrees} == {"::/0"}
    assert openssl_verify(tls, leaf) == "OK"

    ca_key = load_key(tls / "ca.key")
    for name in ("login.example.test.evil.test", "bank.example"):
        assert "permitted subtree violation" in openssl_verify(tls, forge(ca, ca_key, name)), name

    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [str(n.value) for p in points for n in p.full_name] == ["http://login.example.test/ca.crl"]
    crl = x509.load_der_x509_crl((tls / "ca.crl").read_bytes())
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())
    assert len(crl) == 0
    assert crl.next_update_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)
    assert not second.ran("Sign the revocation list"), "a current list is not signed again"


def forge(ca: x509.Certificate, ca_key, name: str) -> x509.Certificate:
    """A certificate for ``name`` signed with a CA's key (what a stolen key could make)."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def test_database_certificate_comes_from_an_internal_ca_for_its_name_alone(selfsigned):
    """The app trusts the internal CA alone for the database (verify-full): it signs for the service's name only
    and is not the CA browsers import."""
    tls, first, second = selfsigned
    internal = tls / "internal"
    (ca,) = load_certs(internal / "ca.crt")
    (db,) = load_certs(internal / "db.crt")
    assert ca.subject != load_certs(tls / "ca.crt")[0].subject
    assert sans(db) == {"db"}
    assert db.public_key() == load_key(internal / "db.key").public_key()
    assert openssl_verify(internal, db, hostname="db") == "OK"
    assert "hostname mismatch" in openssl_verify(internal, db, hostname="login.example.test")
    forged = forge(ca, load_key(internal / "ca.key"), "bank.example")
    assert "permitted subtree violation" in openssl_verify(internal, forged)
    assert db.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=820)
    assert first.ran("Issue the database's certificate")
    assert not second.ran("Issue the database's certificate"), "a current certificate is not issued again"


def test_permitted_names_that_leave_out_a_name_fail_before_the_ca_is_made(project):
    result = run(project, {"tls_extra_names": ["login.example.test"], "tls_ca_permitted_names": ["example.org"]})
    assert result.rc != 0
    assert "tls_ca_permitted_names (example.org) leaves out" in " ".join(result.output.split()), result.output
    assert "login.example.test" in result.output
    assert not (project / "tls" / "ca.crt").exists() and not (project / "tls" / "ca.key").exists()


def test_names_outside_the_ca_fail_before_anything_changes(project):
    assert run(project, {"tls_extra_names": ["login.example.test"]}).rc == 0
    tls = project / "tls"
    before = {name: (tls / name).read_bytes() for name in ("ca.crt", "server.crt", "ca.crl")}

    outside = run(project, {"tls_extra_names": ["login.example.test", "other.example.test", "198.51.100.7"]})
    assert outside.rc != 0
    assert "not for 198.51.100.7, other.example.test" in " ".join(outside.output.split()), outside.output
    assert "tls_ca_permitted_names" in outside.output
    assert {name: (tls / name).read_bytes() for name in before} == before


def test_key_rotation_is_refused_in_provided_mode(project, operator_pki):
    files, _ = operator_pki
    result = run(project, provided(files, tls_rotate_server_key=True))
    assert result.rc != 0
    assert "tls_rotate_server_key" in result.output and "tls_cert_file" in result.output
    assert not (project / "tls" / "server.key").exists()


def test_unknown_mode_fails_naming_the_variable_and_creates_nothing(project):
    result = run(project, {"tls_mode": "letsencrypt"})
    assert result.rc != 0
    assert "tls_mode" in result.output and "letsencrypt" in result.output
    assert not (project / "tls").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"tls_renew_days": 0}, "tls_renew_days"),
        ({"tls_server_days": 20, "tls_renew_days": 30}, "tls_renew_days"),
        ({"tls_ca_days": "ten years"}, "tls_ca_days"),
        ({"tls_extra_names": {"not": "a list"}}, "tls_extra_names"),
        ({"tls_edge_group": "no_such_group"}, "no_such_group"),
        ({"tls_crl_days": 30}, "tls_crl_days"),
        ({"tls_db_days": 2}, "tls_db_days"),
        ({"tls_crl_url": "https://login.example.test/ca.crl"}, "tls_crl_url"),
        ({"tls_ca_permitted_names": ["example.test", "http://example.test/"]}, "http://example.test/"),
    ],
)
def test_bad_inputs_fail_before_anything_changes(project, extra, named):
    result = run(project, extra)
    assert result.rc != 0
    if named:
        assert named in result.output
    assert not (project / "tls").exists()


# --- provided mode -----------------------------------------------------------


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca, days=30, start=None):
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def operator_pki(tmp_path):
    """A root CA, an intermediate and a leaf, as an operator would bring them."""
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("root", "inter", "leaf", "other")}
    root = _cert("Operator Root", keys["root"], "Operator Root", keys["root"], ca=True, days=3650)
    inter = _cert(
        "Operator Intermediate",
        keys["inter"],
        "Operator Root",
        keys["root"],
        ca=True,
        days=1000,
    )
    leaf = _cert(
        "www.example.test",
        keys["leaf"],
        "Operator Intermediate",
        keys["inter"],
        ca=False,
    )
    expired = _cert(
        "old.example.test",
        keys["leaf"],
        "Operator Intermediate",
        keys["inter"],
        ca=False,
        days=10,
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=40),
    )
    files = tmp_path / "operator"
    files.mkdir()
    for name, obj in {
        "root.crt": root,
        "inter.crt": inter,
        "leaf.crt": leaf,
        "expired.crt": expired,
        "leaf.key": keys["leaf"],
        "other.key": keys["other"],
    }.items():
        (files / name).write_bytes(_pem(obj))
    return files, {"root": root, "inter": inter, "leaf": leaf}


def provided(files, **overrides):
    extra = {
        "tls_mode": "provided",
        "tls_cert_file": str(files / "leaf.crt"),
        "tls_key_file": str(files / "leaf.key"),
        "tls_chain_file": str(files / "inter.crt"),
        "tls_ca_file": str(files / "root.crt"),
    }
    extra.update(overrides)
    return {k: v for k, v in extra.items() if v is not None}


def test_provided_good_files_are_installed(project, operator_pki):
    files, certs = operator_pki
    result = run(project, provided(files))
    assert result.rc == 0, result.output
    tls = project / "tls"
    assert load_certs(tls / "server.crt") == [certs["leaf"], certs["inter"]]
    assert (tls / "server.key").read_bytes() == (files / "leaf.key").read_bytes()
    assert oct((tls / "server.key").stat().st_mode & 0o777) == "0o600"
    assert load_certs(tls / "ca.crt") == [certs["root"]]
    assert not (tls / "ca.key").exists()
    assert result.facts()["tls_ca_cert_path"] == str(tls / "ca.crt")

    again = run(project, provided(files))
    assert again.rc == 0 and again.changed() == 0, again.output


def test_provided_without_ca_file_leaves_ca_path_empty(project, operator_pki):
    files, _ = operator_pki
    result = run(project, provided(files, tls_ca_file=None))
    assert result.rc == 0, result.output
    assert result.facts()["tls_ca_cert_path"] == ""
    assert not (project / "tls" / "ca.crt").exists()
    # The database's certificate comes from the internal CA in every mode.
    assert Path(result.facts()["tls_db_cert_path"]).is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_key_file": "other.key"}, "does not match tls_cert_file"),
        ({"tls_cert_file": "expired.crt"}, "expired"),
        ({"tls_chain_file": None, "tls_ca_file": None}, "no chain leads there"),
        ({"tls_chain_file": "root.crt", "tls_ca_file": None}, "no chain leads there"),
        ({"tls_cert_file": "missing.crt"}, "is not a file on the controller"),
        ({"tls_key_file": ""}, "needs tls_cert_file and tls_key_file"),
    ],
)
def test_provided_bad_files_fail_clearly(project, operator_pki, overrides, message):
    files, _ = operator_pki
    overrides = {k: (str(files / v) if v else v) for k, v in overrides.items()}
    result = run(project, provided(files, **overrides))
    assert result.rc != 0
    assert message in result.output
    assert not (project / "tls" / "server.key").exists()


# --- acme mode (the TLS stage's part: keys and the temporary certificate) ----


def acme(**overrides):
    extra = {"tls_mode": "acme", "tls_acme_email": "ops@example.test", "stack_public_host": "login.example.test"}
    extra.update(overrides)
    return {k: v for k, v in extra.items() if v is not None}


def test_acme_starts_with_a_temporary_certificate_for_the_dns_names(project):
    result = run(project, acme(tls_extra_names=["www.example.test", "203.0.113.5"]))
    assert result.rc == 0, result.output
    tls = project / "tls"
    (leaf,) = load_certs(tls / "server.crt")
    # The public name and the extra DNS names; an address cannot be certified over HTTP-01.
    assert sans(leaf) == {"login.example.test", "www.example.test"}
    assert leaf.issuer == leaf.subject
    assert leaf.public_key() == load_key(tls / "server.key").public_key()
    for key in ("acme-account.key", "server.key"):
        assert oct((tls / key).stat().st_mode & 0o777) == "0o600"
    record = json.loads((tls / "acme-issued.json").read_text())
    assert record["status"] == "temporary"
    assert record["names"] == ["login.example.test", "www.example.test"]
    # The smoke test trusts the temporary certificate itself until the CA's arrives.
    facts = result.facts()
    assert facts["tls_ca_cert_path"] == str(tls / "acme-ca.crt")
    assert load_certs(tls / "acme-ca.crt") == [leaf]
    assert not (tls / "ca.crt").exists()  # the self-signed mode's CA, untouched
    assert facts["tls_acme_challenge_dir"] == "/var/lib/loginapp/acme-challenge"
    assert facts["tls_crl_path"] == "", "only the private CA publishes a revocation list"

    account_key = (tls / "acme-account.key").read_bytes()
    again = run(project, acme(tls_extra_names=["www.example.test", "203.0.113.5"]))
    assert again.rc == 0 and again.changed() == 0, again.output
    assert load_certs(tls / "server.crt") == [leaf]
    assert (tls / "acme-account.key").read_bytes() == account_key


def test_acme_names_changed_get_a_new_temporary_certificate_with_the_same_keys(project):
    assert run(project, acme()).rc == 0
    tls = project / "tls"
    server_key, account_key = (tls / "server.key").read_bytes(), (tls / "acme-account.key").read_bytes()
    result = run(project, acme(tls_acme_names=["shop.example.test"], stack_public_host="shop.example.test"))
    assert result.rc == 0, result.output
    (leaf,) = load_certs(tls / "server.crt")
    assert sans(leaf) == {"shop.example.test"}
    assert (tls / "server.key").read_bytes() == server_key
    assert (tls / "acme-account.key").read_bytes() == account_key


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_acme_email": None}, "needs tls_acme_email"),
        ({"tls_acme_email": "not-an-address"}, "needs tls_acme_email"),
        ({"tls_acme_directory": "http://acme.example.test/dir"}, "https:// URL"),
        ({"stack_public_host": "203.0.113.5"}, "needs a DNS name"),
        ({"stack_public_host": None}, "needs a DNS name"),
        ({"tls_acme_names": ["login.example.test", "203.0.113.5"]}, "not 203.0.113.5"),
        ({"tls_acme_names": ["*.example.test"]}, "not *.example.test"),
        ({"stack_public_host": None, "tls_acme_names": ["login.example.test"]}, "needs stack_public_host"),
        ({"stack_nginx_server_names": ["other.example.test"]}, "nginx does not serve login.example.test"),
        ({"tls_acme_ca_bundle": "/no/such/bundle.pem"}, "is not a file on the controller"),
        ({"tls_rotate_server_key": True}, "rotating it on its own is not supported"),
    ],
)
def test_acme_bad_inputs_fail_before_anything_changes(project, overrides, message):
    result = run(project, acme(**overrides))
    assert result.rc != 0
    assert message in result.output
    assert not (project / "tls").exists()


def test_switching_modes_keeps_each_modes_files_apart(project):
    """acme, selfsigned, acme: the self-signed CA is never overwritten; acme never takes another mode's certificate."""
    assert run(project, acme()).rc == 0
    selfsigned = run(project, {"tls_extra_names": ["login.example.test"]})
    assert selfsigned.rc == 0, selfsigned.output
    tls = project / "tls"
    (ca,) = load_certs(tls / "ca.crt")
    assert ca.public_key() == load_key(tls / "ca.key").public_key()
    assert load_certs(tls / "server.crt")[0].issuer == ca.subject

    again = run(project, acme())
    assert again.rc == 0, again.output
    (leaf,) = load_certs(tls / "server.crt")
    assert leaf.issuer == leaf.subject and sans(leaf) == {"login.example.test"}
    assert json.loads((tls / "acme-issued.json").read_text())["status"] == "temporary"
    assert load_certs(tls / "ca.crt") == [ca]


@pytest.fixture
def crontab():
    """The controller user's crontab, restored after the test (``crontab`` comes with `make tools`)."""
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    yield lambda: subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
    if before.returncode == 0:
        subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], check=False)


def test_acme_installs_the_daily_renewal_when_asked(project, crontab):
    result = run(project, acme(tls_acme_renew_cron=True, tls_acme_renew_cron_minute="41"))
    assert result.rc == 0, result.output
    inventory = project / "inventory" / "hosts.ini"
    (entry,) = [line for line in crontab().splitlines() if line.startswith("41 3 ")]
    # The job runs this checkout's renew playbook with this venv's ansible-playbook, for this inventory.
    repo = Path(__file__).resolve().parents[1]
    assert f"cd {repo} && " in entry and f"-i {inventory} playbooks/renew.yml" in entry
    ansible_playbook = entry.split(" && ", 1)[1].split()[0]
    assert Path(ansible_playbook).name == "ansible-playbook" and os.access(ansible_playbook, os.X_OK)
    assert (repo / "playbooks" / "renew.yml").is_file()
    assert f">> {project / 'state' / 'renew.log'} 2>&1" in entry

    again = run(project, acme(tls_acme_renew_cron=True, tls_acme_renew_cron_minute="41"))
    assert again.rc == 0 and again.changed() == 0, again.output
    assert crontab().count("playbooks/renew.yml") == 1


def test_acme_renewal_time_must_be_cron_fields(project):
    result = run(project, acme(tls_acme_renew_cron=True, tls_acme_renew_cron_hour="3am"))
    assert result.rc != 0
    assert "must be cron fields" in result.output
    assert not (project / "tls").exists()


def test_seconds_left_counts_from_now_in_utc():
    spec = importlib.util.spec_from_file_location("tls_time", REPO / "roles/tls/filter_plugins/tls_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    in_an_hour = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    assert 3590 < module.tls_seconds_left(in_an_hour) <= 3600
    assert module.tls_seconds_left("20000101000000Z") < 0
