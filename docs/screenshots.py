"""Takes the README's screenshots (docs/screenshots/*.png) of the admin with the demo data: `make screenshots`.

A throw-away SQLite database gets the migrations and `seed_demo`; `runserver` serves it on a free local port; the
headless Chromium the browser tests use logs in as the demo administrator and saves the dashboard at the top of
the admin index and the top of the first client's page (its details and first valuation). The developer's db.sqlite3
is never touched.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ADMIN_EMAIL = "admin@example.com"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"runserver stopped (exit code {server.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def log_in(page: Page, password: str) -> None:
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin/$"))


def take(page: Page, password: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    log_in(page, password)
    # The dashboard: the top of the index down to the end of its panel (the list of apps below it is Django's own).
    panel = page.locator("#dashboard").bounding_box()
    if panel is None:
        raise SystemExit("the admin index shows no dashboard")
    bottom = panel["y"] + panel["height"] + 16
    page.screenshot(path=OUT / "dashboard.png", full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": bottom})
    page.goto("/admin/clients/client/")
    page.locator("#result_list tbody th a").first.click()
    page.wait_for_url(re.compile(r"/admin/clients/client/\d+/change/$"))
    page.wait_for_load_state("networkidle")  # the valuation's charts
    # The client's details and its first portfolio's valuation and chart: the whole page is several screens long.
    page.screenshot(path=OUT / "client.png", full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1680})


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.dev",
            "DATABASE_URL": f"sqlite:///{scratch}/demo.sqlite3",
            "REDIS_URL": "",
            "CELERY_BROKER_URL": "",
            "LOG_LEVEL": "WARNING",
        }
        manage(env, "migrate", "--noinput")
        printed = manage(env, "seed_demo")
        found = re.search(r"password: (\S+)", printed)
        if found is None:
            raise SystemExit(f"seed_demo printed no password: {printed!r}")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_up(f"{base_url}/health/live", server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
                take(context.new_page(), found.group(1))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    sys.stdout.write(f"Saved {OUT / 'dashboard.png'} and {OUT / 'client.png'}\n")


if __name__ == "__main__":
    main()
