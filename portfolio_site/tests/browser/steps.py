"""What a member of staff does in the admin, one function per step, so that a test reads as the story it checks."""

import re
from pathlib import Path

import pyotp
from playwright.sync_api import Locator, Page, expect

from accounts.tests.factories import PASSWORD

INDEX = "/admin/"


def log_in(page: Page, email: str, *, password: str = PASSWORD, totp: pyotp.TOTP | None = None) -> None:
    """The admin's login form, then its two-factor step for a user who has an authenticator."""
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    if totp is not None:
        expect(page).to_have_url(re.compile(r"/admin/login/two-factor/$"))
        page.get_by_label("Authenticator or recovery code").fill(totp.now())
        page.get_by_role("button", name="Verify").click()
    expect(page).to_have_url(re.compile(f"{INDEX}$"))


def see_dashboard(
    page: Page,
    *,
    currency: str = "EUR",
    aum: str | None = None,
    active_clients: int | None = None,
    deposits_this_month: tuple[str, int] | None = None,
    largest: tuple[str, str, str] | None = None,
) -> None:
    """The admin index with its dashboard, in the reporting currency; and, when given, its figures as people read
    them: assets under management, active clients, this month's deposits (total, number posted), the largest
    position (client, asset's ticker, value)."""
    page.goto(INDEX)
    expect(page.locator("#site-name")).to_have_text("Portfolio back-office")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.locator("#dashboard h2")).to_contain_text(f"(amounts in {currency})")
    if aum is not None:
        expect(page.locator("#dashboard-aum")).to_have_text(aum)
    if active_clients is not None:
        expect(page.locator("#dashboard-active-clients")).to_have_text(str(active_clients))
    if deposits_this_month is not None:
        total, posted = deposits_this_month
        row = dashboard_row(page, "Deposits this month")
        expect(row.locator("a.dashboard-flow")).to_have_text(total)
        expect(row).to_contain_text(f"{posted} posted")
    if largest is not None:
        top = page.locator("#dashboard-largest tbody tr").first
        for text in largest:
            expect(top).to_contain_text(text)


def dashboard_row(page: Page, label: str) -> Locator:
    """The row of the dashboard's overview headed `label` ("Assets under management", "Deposits this month")."""
    return page.locator("#dashboard-overview tr", has=page.locator("th", has_text=label))


def pick_autocomplete(page: Page, field: str, search: str, choice: str | None = None) -> None:
    """Chooses in one of the admin's autocomplete pickers (select2, answered by the admin's autocomplete view):
    opens the field's picker, types `search`, and clicks the result reading `choice` (or `search`)."""
    page.locator(f".field-{field} .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(search)
    page.locator(".select2-results__option", has_text=choice or search).first.click()
    expect(page.locator(f"#select2-id_{field}-container")).to_contain_text(choice or search)


def add_inline_allocation(page: Page, row: int, *, kind: str, quantity: str, price: str) -> None:
    """On a client's page: "Add another" in its allocations, then the new row (`row`, counting the rows shown) in its
    first portfolio, for the asset SAP, on 2026-01-20."""
    group = page.locator("#allocations-group")
    group.locator(".add-row a").click()
    prefix = f"allocations-{row}"
    page.locator(f"#id_{prefix}-portfolio").select_option(index=1)
    page.locator(f"#{prefix} .field-asset .select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill("SAP")
    page.locator(".select2-results__option", has_text="SAP").first.click()
    page.locator(f"#id_{prefix}-kind").select_option(label=kind)
    page.locator(f"#id_{prefix}-quantity").fill(quantity)
    page.locator(f"#id_{prefix}-price").fill(price)
    page.locator(f"#id_{prefix}-fees").fill("0")
    page.locator(f"#id_{prefix}-date").fill("2026-01-20")


def save(page: Page) -> None:
    page.get_by_role("button", name="Save", exact=True).click()


def upload_import(page: Page, kind: str, csv_file: Path) -> None:
    """The import page's dry run: pick the kind and the file, and upload them."""
    page.goto("/admin/imports/importbatch/import/")
    page.get_by_label("Kind").select_option(kind)
    page.get_by_label("File").set_input_files(csv_file)
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#dry-run-report")).to_be_visible()


def reverse_transaction(page: Page, reference: str, *, reason: str = "Posted twice") -> None:
    """Reverses the transaction with this reference from the transaction list: the list's action, then the page
    that asks for the reason, which the reversal keeps as its notes."""
    page.goto(f"/admin/ledger/transaction/?q={reference}")
    row = page.locator("#result_list tbody tr", has_text=reference)
    expect(row).to_have_count(1)
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("reverse_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("#content")).to_contain_text(reference)
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="Reverse").click()


def see_history(page: Page, change_url: str, *, by: str, field: str, before: str, after: str) -> None:
    """Opens an object's history page from its change page and checks that its latest entry names who changed it,
    through which door, and the field with its value before and after."""
    page.goto(change_url)
    page.locator("a.historylink").click()
    expect(page).to_have_url(re.compile(r"/history/$"))
    latest = page.locator("#change-history tbody tr").first
    expect(latest).to_contain_text(by)
    expect(latest).to_contain_text("Admin")
    expect(latest).to_contain_text(
        re.compile(rf"{field}:\s*{re.escape(before)}\s*→\s*{re.escape(after)}", re.IGNORECASE)
    )
