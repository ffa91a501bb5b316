"""Fixtures of the browser tests: one headless Chromium for the package, a fresh context (cookies, storage) per test,
pointed at pytest-django's live server.

Plain `playwright.sync_api` rather than pytest-playwright: that plugin's fixtures launch the browsers Playwright
downloads for itself (which this machine and CI cannot fetch) and add options we do not need; Debian's `chromium`,
launched through `executable_path`, is all these tests use.
"""

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SKIP_REASON = f"needs Chromium at {CHROMIUM} (apt-get install chromium)"
# A step that has not happened in this time has failed: Playwright's 30 s default for actions only makes a failure
# slow, and its 5 s for `expect` is short for a loaded CI machine. One limit for both.
STEP_TIMEOUT_MS = 10_000
# Where a failed test leaves a screenshot of the page as it was (the test's name.png).
FAILURES = Path(tempfile.gettempdir()) / "browser-test-failures"
CALL_FAILED = pytest.StashKey[bool]()
# What Chromium writes to the console when the content security policy (settings: CONTENT_SECURITY_POLICY) blocks
# something: "Refused to load the script ...", "Applying inline style violates the following Content Security Policy
# directive ...".
CSP_VIOLATION = re.compile(r"Content Security Policy|Refused to")
# The one violation let through: django-simple-history's object_history_list.html (the history page's table) has
# `<p class="paginator" style="border-top: 0">`, a style attribute the policy blocks, so the entry count under the
# table keeps the admin paginator's top border: cosmetic only. Copying that 80-line template to drop the attribute
# would leave us a stale fork of it on the library's next upgrade. Chromium names the blocked style by its hash,
# which is the hash of exactly "border-top: 0": any other blocked style or script still fails the test.
KNOWN_VIOLATIONS = ("'sha256-XMXSevYjgSjXgRafBFDvtjwX+yyWLrxfso9DcNZ9UXM='",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(SKIP_REASON)
    # Playwright's sync API keeps its asyncio loop marked as running in this thread for as long as it is started,
    # so Django's async-safety check would refuse every ORM call of the tests (factories, assertions, the
    # transactional flush). That loop only runs inside a Playwright call, never at the same time as the test's own
    # database work, so the check is lifted for this package's span only (the browser is package-scoped for that
    # reason too: the tests outside it keep the check).
    expect.set_options(timeout=STEP_TIMEOUT_MS)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Browser, live_server: Any, staff_roles: None) -> Iterator[Page]:
    """A page in a new browser context on the live server (`page.goto("/admin/")` is relative to it). The live
    server implies a transactional database, which `staff_roles` fills with the roles' groups again.

    Every page the test opens is watched for content security policy violations (Chromium reports them on the
    console): the test fails on any, after its own steps."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda message: _note_violation(violations, page.url, message.text))
        yield page
        if request.node.stash.get(CALL_FAILED, False):
            FAILURES.mkdir(exist_ok=True)
            page.screenshot(path=FAILURES / f"{request.node.name}.png", full_page=True)
        else:
            page.evaluate("0")  # a round trip: the console messages still on their way are delivered first
            if violations:
                pytest.fail("content security policy violations:\n" + "\n".join(violations), pytrace=False)
    finally:
        context.close()


def _note_violation(violations: list[str], url: str, text: str) -> None:
    if CSP_VIOLATION.search(text) and not any(known in text for known in KNOWN_VIOLATIONS):
        violations.append(f"{url}: {text}")
