"""The back-office in a real browser: headless Chromium against the live server, through the pages staff use."""

import re
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyotp
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from accounts.services.events import ClientInfo
from accounts.services.two_factor import totp_confirm, totp_enrol
from accounts.tests.factories import PASSWORD, AdvisorFactory, SuperuserFactory
from clients.models import Client, Portfolio
from clients.services import portfolios_history_changed
from clients.tests.factories import ClientFactory
from holdings.models import Allocation
from holdings.services import daily_values_refresh
from holdings.tests.factories import AssetFactory, BuyFactory, PriceFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.counting import CountedPaginator

from .steps import (
    add_inline_allocation,
    dashboard_row,
    log_in,
    pick_autocomplete,
    reverse_transaction,
    save,
    see_dashboard,
    see_history,
    upload_import,
)

pytestmark = pytest.mark.browser


def two_factor_on(user: User) -> pyotp.TOTP:
    totp = pyotp.TOTP(totp_enrol(user=user).secret)
    totp_confirm(user=user, code=totp.at(time.time(), counter_offset=-1), client=ClientInfo())
    return totp


def write_csv(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def two_advisors_books() -> dict[str, Any]:
    """Anna's client Elena Rossi: 20,000 EUR deposited today, 14,000 of it spent on 100 SAP at 140, which closed at
    150 today: 6,000 cash + 15,000 of SAP = 21,000 EUR. Ben's clients: David Chen, 5,000 EUR deposited today, and an
    inactive one. The daily values computed as the refresh job would (jobs run eagerly in tests), through today."""
    today = timezone.localdate()
    anna = AdvisorFactory(full_name="Anna Advisor", email="anna@example.com")
    ben = AdvisorFactory(full_name="Ben Advisor", email="ben@example.com")
    sap = AssetFactory(ticker="SAP", name="SAP SE", exchange="XETR", currency="EUR")
    PriceFactory(asset=sap, date=today, close=Decimal("150"))
    elena = ClientFactory(name="Elena Rossi", advisor=anna, base_currency="EUR")
    TransactionFactory(client=elena, amount=Decimal("20000"), date=today, reference="WIRE-ELENA")
    BuyFactory(client=elena, asset=sap, quantity=Decimal("100"), price=Decimal("140"), date=today)
    david = ClientFactory(name="David Chen", advisor=ben, base_currency="EUR")
    TransactionFactory(client=david, amount=Decimal("5000"), date=today, reference="WIRE-DAVID")
    ClientFactory(name="Gone Client", advisor=ben, is_active=False)
    # The factories write rows, not through the services: mark the portfolios as the ledger's services would.
    portfolios_history_changed(portfolios=Portfolio.objects.values("pk"), since=today)
    daily_values_refresh(until=today)
    return {"anna": anna, "ben": ben, "elena": elena, "david": david}


def test_a_user_with_two_factor_logs_in_through_the_second_step_and_sees_the_dashboard(page: Page) -> None:
    user = SuperuserFactory(email="second.step@example.com")
    log_in(page, user.email, totp=two_factor_on(user))
    see_dashboard(page)


def test_the_dashboard_shows_the_firms_figures_each_linking_to_the_rows_behind_it(page: Page, superuser: User) -> None:
    two_advisors_books()
    log_in(page, superuser.email)
    see_dashboard(
        page,
        aum="26,000.00 EUR",  # Elena's 21,000 and David's 5,000
        active_clients=2,
        deposits_this_month=("25,000.00 EUR", 2),
        largest=("Elena Rossi", "SAP", "15,000.00 EUR"),
    )

    dashboard_row(page, "Deposits this month").locator("a.dashboard-flow").click()
    expect(page).to_have_url(re.compile(r"/admin/ledger/transaction/\?.*kind__exact=deposit"))
    deposits = page.locator("#result_list tbody tr")
    expect(deposits).to_have_count(2)  # the deposits, not the buy's settlement
    expect(deposits.filter(has_text="WIRE-ELENA")).to_contain_text("20,000.00 EUR")
    expect(deposits.filter(has_text="WIRE-DAVID")).to_contain_text("5,000.00 EUR")

    page.goto("/admin/")
    page.locator("#dashboard-active-clients").click()
    expect(page).to_have_url(re.compile(r"/admin/clients/client/\?is_active__exact=1$"))
    expect(page.locator("#result_list tbody th")).to_have_text(["David Chen", "Elena Rossi"])


def test_a_user_with_two_factor_is_not_let_in_by_the_password_alone(page: Page) -> None:
    user = SuperuserFactory(email="second.step@example.com")
    two_factor_on(user)
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_label("Authenticator or recovery code")).to_be_visible()
    page.goto("/admin/")
    expect(page).to_have_url("/admin/login/?next=/admin/")


def test_staff_open_a_client_and_a_second_portfolio_through_the_add_forms(page: Page, superuser: User) -> None:
    advisor = AdvisorFactory(full_name="Anna Advisor", email="anna.advisor@example.com")
    log_in(page, superuser.email)

    page.goto("/admin/clients/client/add/")
    page.get_by_label("Name").fill("Elena Rossi")
    page.get_by_label("Email").fill("elena.rossi@example.it")
    pick_autocomplete(page, "advisor", "anna.advisor", "Anna Advisor")
    page.get_by_label("Base currency").fill("eur")
    save(page)
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    client = Client.objects.get(email="elena.rossi@example.it")
    assert (client.advisor, client.base_currency) == (advisor, "EUR")

    page.goto(f"/admin/clients/client/{client.pk}/change/")
    page.get_by_role("link", name="Open another portfolio").click()
    expect(page.locator("#select2-id_client-container")).to_contain_text("Elena Rossi")
    page.get_by_label("Name").fill("Retirement")
    page.get_by_label("Kind").select_option(label="Retirement")
    page.get_by_label("Custodian").fill("Banca Uno")
    page.get_by_label("Account number").fill("IT-0042")
    save(page)
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    # The client's page lists both: the "Main" one client_create opened and the new one.
    page.goto(f"/admin/clients/client/{client.pk}/change/")
    portfolios = page.locator(".inline-group", has_text="Portfolios")
    expect(portfolios).to_contain_text("Main")
    expect(portfolios).to_contain_text("Retirement")
    expect(portfolios).to_contain_text("IT-0042")


def test_a_deposit_imported_through_the_upload_page_funds_a_buy_added_in_the_allocation_form(
    page: Page, superuser: User, tmp_path: Path
) -> None:
    client = ClientFactory(name="David Chen", email="david.chen@example.com", base_currency="EUR")
    AssetFactory(ticker="SAP", name="SAP SE", exchange="XETR", currency="EUR")
    log_in(page, superuser.email)

    # The admin records deposits through the transactions import (the transaction pages are read-only).
    deposit = write_csv(
        tmp_path / "deposit.csv",
        "client,kind,amount,currency,date,reference,notes",
        "david.chen@example.com,deposit,10000.00,EUR,2026-01-15,WIRE-001,Initial funding",
    )
    upload_import(page, "transactions", deposit)
    expect(page.locator("#rows-created")).to_have_text("1")
    page.get_by_role("button", name="Confirm import").click()
    expect(page.locator(".messagelist")).to_contain_text("Imported transactions from deposit.csv")

    page.goto("/admin/holdings/allocation/add/")
    pick_autocomplete(page, "client", "David", "David Chen")
    pick_autocomplete(page, "asset", "SAP")
    page.get_by_label("Kind").select_option(label="Buy")
    page.get_by_label("Quantity").fill("10")
    page.get_by_label("Price").fill("150")
    page.get_by_label("Fees").fill("5")
    page.get_by_label("Date").fill("2026-01-20")
    save(page)
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")

    # The client's page shows the deposit and the buy's settlement (10 x 150 + 5 in fees) among its transactions.
    page.goto(f"/admin/clients/client/{client.pk}/change/")
    transactions = page.locator(".inline-group", has_text="transactions")
    # Amounts as people read them (stored as 10000.0000 and 1505.0000).
    expect(transactions.locator("tr", has_text="WIRE-001")).to_contain_text("10,000.00 EUR")
    expect(transactions.locator("tr", has_text="Buy settlement")).to_contain_text("1,505.00 EUR")
    expect(page.locator(".inline-group", has_text="allocations")).to_contain_text("SAP")
    assert Transaction.objects.get(reference="WIRE-001").amount == Decimal("10000")


def test_an_import_with_one_bad_row_shows_its_line_error_and_cannot_be_confirmed(
    page: Page, superuser: User, tmp_path: Path
) -> None:
    ClientFactory(email="david.chen@example.com", base_currency="EUR")
    log_in(page, superuser.email)
    bad = write_csv(
        tmp_path / "deposits.csv",
        "client,kind,amount,currency,date,reference,notes",
        "david.chen@example.com,deposit,100.00,EUR,2026-01-15,DEP-1,",
        "david.chen@example.com,deposit,lots,EUR,2026-01-16,DEP-2,",
        "david.chen@example.com,deposit,300.00,EUR,2026-01-17,DEP-3,",
    )
    upload_import(page, "transactions", bad)
    expect(page.locator("#row-errors li")).to_have_text(["line 3, amount: 'lots' is not a number"])
    expect(page.locator("#rows-rejected")).to_have_text("1")
    expect(page.get_by_role("button", name="Confirm import")).to_have_count(0)
    assert not Transaction.objects.exists()


def test_a_deposit_is_reversed_from_the_transaction_list(page: Page, superuser: User) -> None:
    deposit = TransactionFactory(reference="WIRE-002", amount=Decimal("2500"))
    log_in(page, superuser.email)
    reverse_transaction(page, "WIRE-002", reason="Wired twice by the bank")
    expect(page.locator(".messagelist")).to_contain_text("Reversed 1 transaction(s).")
    reversal = Transaction.objects.get(reverses=deposit)
    assert (reversal.kind, reversal.amount, reversal.created_by, reversal.notes) == (
        deposit.kind,
        deposit.amount,
        superuser,
        "Wired twice by the bank",
    )
    # The list shows both: the deposit, unchanged, and its reversal pointing at it.
    page.goto(f"/admin/ledger/transaction/?portfolio={deposit.portfolio_id}")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="WIRE-002").locator("td.field-reverses")).to_have_text("-")
    expect(rows.filter(has_not_text="WIRE-002").locator("td.field-reverses")).to_contain_text("Deposit")


def test_staff_drill_a_long_transaction_list_down_by_year_and_month_and_search_it_by_client(
    page: Page, superuser: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CountedPaginator, "bound", 2)  # as if the ledger were long: the count stops at the bound
    zoe = ClientFactory(name="Zoe Lambert")
    for day in ("2025-03-03", "2025-05-05", "2025-05-06"):
        TransactionFactory(client=zoe, date=date.fromisoformat(day))
    TransactionFactory(client=ClientFactory(name="Other Client"), date=date(2026, 1, 5))
    log_in(page, superuser.email)

    page.goto("/admin/ledger/transaction/?kind__exact=deposit")
    expect(page.locator("p.paginator")).to_contain_text("more than 2 transactions")
    hierarchy = page.locator("nav.toplinks")
    expect(hierarchy.get_by_role("link")).to_have_text(["2025", "2026"])
    hierarchy.get_by_role("link", name="2025").click()
    expect(hierarchy.get_by_role("link")).to_have_text(
        [re.compile("All dates"), "March 2025", "April 2025", "May 2025"]
    )
    hierarchy.get_by_role("link", name="May 2025").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)

    page.goto("/admin/ledger/transaction/")
    page.locator("#searchbar").fill("lambert")
    page.locator("#changelist-search").get_by_role("button").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    expect(page.locator("#result_list")).not_to_contain_text("Other Client")


def test_a_change_made_in_the_admin_shows_on_the_clients_history_page(page: Page, superuser: User) -> None:
    client = ClientFactory(name="Fondation Aubert", phone="+41 22 000 00 00")
    change_url = f"/admin/clients/client/{client.pk}/change/"
    log_in(page, superuser.email)
    page.goto(change_url)
    page.get_by_label("Phone").fill("+41 22 123 45 67")
    save(page)
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")

    see_history(page, change_url, by=str(superuser), field="phone", before="+41 22 000 00 00", after="+41 22 123 45 67")


def test_an_advisor_sees_their_clients_and_not_another_advisors(page: Page) -> None:
    books = two_advisors_books()
    log_in(page, books["anna"].email)

    # Her dashboard counts Elena only: Ben's David and his inactive client are not hers.
    see_dashboard(
        page,
        aum="21,000.00 EUR",
        active_clients=1,
        deposits_this_month=("20,000.00 EUR", 1),
        largest=("Elena Rossi", "SAP", "15,000.00 EUR"),
    )
    expect(page.locator("#dashboard-inactive-clients")).to_have_text("0")
    expect(page.locator("#dashboard")).not_to_contain_text("David Chen")

    page.goto("/admin/clients/client/")
    names = page.locator("#result_list tbody th")
    expect(names).to_have_text(["Elena Rossi"])

    # Ben's client's page, asked for by its address, is as if it did not exist.
    davids = books["david"]
    page.goto(f"/admin/clients/client/{davids.pk}/change/")
    expect(page).to_have_url("/admin/")
    expect(page.locator(".messagelist")).to_contain_text(re.compile(rf"with ID .{davids.pk}. doesn.t exist"))
    expect(page.locator("body")).not_to_contain_text("David Chen")


def test_allocations_are_added_inline_on_the_client_page_and_a_sell_beyond_the_units_is_refused_on_its_row(
    page: Page, superuser: User
) -> None:
    owner = ClientFactory(name="Grace Hopper", base_currency="EUR")
    TransactionFactory(client=owner, kind=Transaction.Kind.DEPOSIT, amount=Decimal("10000"), currency="EUR")
    AssetFactory(ticker="SAP", name="SAP SE", exchange="XETR", currency="EUR")
    log_in(page, superuser.email)
    url = f"/admin/clients/client/{owner.pk}/change/"

    page.goto(url)
    add_inline_allocation(page, 0, kind="Buy", quantity="10", price="150")
    save(page)
    # (The valuation panel may add its own message list: SAP has no price yet.)
    expect(page.locator(".messagelist", has_text="was changed successfully")).to_have_count(1)
    buy = Allocation.objects.get(client=owner)
    assert (buy.quantity, buy.settlement.amount) == (Decimal("10"), Decimal("1500"))

    page.goto(url)
    add_inline_allocation(page, 1, kind="Sell", quantity="50", price="150")
    save(page)
    expect(page.locator(".messagelist", has_text="Not saved")).to_contain_text("Not enough units")
    expect(page.locator("#allocations-group .errorlist")).to_contain_text("Not enough units")  # on its row
    assert Allocation.objects.filter(client=owner).count() == 1
