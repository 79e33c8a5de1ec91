"""A person in a real browser: Debian's Chromium driven by Playwright.

The browser trusts the project's CA the way a user would make it trust it:
the CA is imported into an NSS database under the browser's HOME (Chromium's
certificate store on Linux). Certificate errors are never ignored, and a
control test shows the same browser refuses the site without the CA.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from loginapp_kit import REPO
from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO / "build" / "artifacts"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


def make_home(path: Path, ca_cert: Path | None) -> Path:
    """A HOME for Chromium; with ``ca_cert``, its NSS db trusts that CA for TLS servers."""
    nssdb = path / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    if ca_cert is not None:
        db = f"sql:{nssdb}"
        subprocess.run(["certutil", "-d", db, "-N", "--empty-password"], check=True)
        subprocess.run(
            [
                "certutil",
                "-d",
                db,
                "-A",
                "-n",
                "loginapp-ca",
                "-t",
                "C,,",
                "-i",
                str(ca_cert),
            ],
            check=True,
        )
    return path


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as p:
        yield p


def launch(playwright, home: Path):
    # A persistent profile under HOME: Chromium reads HOME's NSS db at start.
    return playwright.chromium.launch_persistent_context(
        str(home / "profile"),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        env={**os.environ, "HOME": str(home)},
        headless=True,
        viewport={"width": 1024, "height": 720},
    )


@pytest.fixture(scope="module")
def browser(playwright, target, tmp_path_factory):
    """A Chromium whose only extra trust anchor is the project's CA."""
    context = launch(playwright, make_home(tmp_path_factory.mktemp("home-ca"), target.ca_cert))
    context.set_default_timeout(30_000)
    yield context
    context.close()


def test_browser_refuses_the_site_without_the_ca(playwright, target, tmp_path):
    context = launch(playwright, make_home(tmp_path, ca_cert=None))
    try:
        page = context.new_page()
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(f"{target.base_url}/login")
    finally:
        context.close()


def test_register_login_dashboard_logout(browser, target, credentials):
    username, password = credentials
    page = browser.new_page()

    # Plain HTTP lands on HTTPS; the dashboard needs a login first.
    page.goto(f"http://{target.host}/")
    assert page.url == f"{target.base_url}/login?next=/"
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()

    page.get_by_role("link", name="Register").first.click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(password)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("status")).to_contain_text("Your account has been created")
    assert page.url == f"{target.base_url}/login"

    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=f"Hello, {username}")).to_be_visible()
    assert page.url == f"{target.base_url}/"
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text(username)
    # The address the host saw: the controller's on the Docker bridge.
    expect(facts.locator("code").first).to_have_text(target.controller_address())
    expect(facts).to_contain_text("This is your first login.")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.locator("main").get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_contain_text("You have been logged out.")
    page.goto(target.base_url + "/")
    assert page.url.startswith(f"{target.base_url}/login")

    # A wrong password gets the same message as an unknown user.
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password + "-wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password.")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.close()
