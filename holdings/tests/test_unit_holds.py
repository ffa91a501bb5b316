"""Unit holds: units of an asset set aside under an opaque reference (a sell order's, say), and cash holds seen
from holdings' side. From today on a portfolio's units of an asset stay at or above its holds of it (split-scaled),
in every check that takes units out; a buy cannot spend held cash."""

import datetime
import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import holds, services
from holdings.models import Allocation, Asset, UnitHold
from holdings.selectors import unit_hold_quantity, units_free, units_on_hold, units_shortfall
from holdings.tests.factories import AllocationFactory, AssetFactory, SplitFactory, UnitHoldFactory
from ledger.services import cash_hold_place
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError, InsufficientUnits
from portfolio_site.imports.run import CommandLineActor, run_import
from portfolio_site.testing import page_queries, portfolio_client_agreement, refused_by

pytestmark = pytest.mark.django_db
EMAIL = "holder@example.org"
ALLOCATIONS = "client,ticker,exchange,kind,quantity,price,fees,date,notes\n"


def today() -> datetime.date:
    return timezone.localdate()


@pytest.fixture
def sap() -> Asset:
    return AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")


@pytest.fixture
def holder(sap: Asset) -> Portfolio:
    """A client's main portfolio with 10 SAP (moved in long ago) and 10,000 EUR."""
    portfolio = main_portfolio(ClientFactory(email=EMAIL, base_currency="EUR"))
    TransactionFactory(portfolio=portfolio, amount=Decimal("10000"), currency="EUR", date=datetime.date(2026, 1, 2))
    AllocationFactory(portfolio=portfolio, asset=sap, quantity=Decimal("10"), date=datetime.date(2026, 2, 1))
    return portfolio


def hold(actor: Any, portfolio: Portfolio, asset: Asset, quantity: str, reference: str = "order:1") -> UnitHold:
    return holds.unit_hold_place(
        actor=actor, portfolio_id=portfolio.pk, asset_id=asset.pk, quantity=Decimal(quantity), reference=reference
    )


def sell(actor: Any, portfolio: Portfolio, asset: Asset, quantity: str, **extra: Any) -> Allocation:
    fields: dict[str, Any] = {"price": Decimal("100"), "date": today(), **extra}
    return services.allocation_create(
        actor=actor, portfolio=portfolio, asset=asset, kind=Allocation.Kind.SELL, quantity=Decimal(quantity), **fields
    )


def buy(actor: Any, portfolio: Portfolio, asset: Asset, quantity: str, **extra: Any) -> Allocation:
    fields: dict[str, Any] = {"price": Decimal("100"), "date": today(), **extra}
    return services.allocation_create(
        actor=actor, portfolio=portfolio, asset=asset, kind=Allocation.Kind.BUY, quantity=Decimal(quantity), **fields
    )


def run(text: str) -> Any:
    return run_import(
        kind="allocations", stream=io.BytesIO(text.encode()), file_name="allocations.csv", actor=CommandLineActor()
    )


# --- Placing, resizing, releasing ----------------------------------------------------------------


def test_placing_a_unit_hold_within_the_units_held_succeeds(operations: Any, holder: Portfolio, sap: Asset) -> None:
    placed = hold(operations, holder, sap, "6")
    assert (placed.client_id, placed.as_of, placed.quantity) == (holder.client_id, today(), Decimal("6"))
    assert units_on_hold(portfolio_id=holder.pk) == {sap.pk: Decimal("6")}
    assert units_on_hold(client_id=holder.client_id) == {sap.pk: Decimal("6")}
    assert units_free(portfolio_id=holder.pk, asset_id=sap.pk) == Decimal("4")
    assert unit_hold_quantity(reference="order:1") == Decimal("6")


def test_placing_a_unit_hold_beyond_the_free_units_is_refused_naming_what_is_missing(
    operations: Any, holder: Portfolio, sap: Asset
) -> None:
    hold(operations, holder, sap, "6")
    with pytest.raises(InsufficientUnits) as refusal:
        hold(operations, holder, sap, "5", reference="order:2")
    error = refusal.value
    assert isinstance(error, ConflictError)
    assert (error.asset, error.needed, error.available, error.missing) == (
        sap,
        Decimal("5"),
        Decimal("4"),
        Decimal("1"),
    )
    assert "Not enough units of SAP.XETR" in error.message
    assert "the hold order:2 needs 1.0000000000 more than the 4.0000000000 available (6.0000000000 on hold)" in (
        error.message
    )


def test_a_unit_hold_counts_future_dated_sells(operations: Any, holder: Portfolio, sap: Asset) -> None:
    sell(operations, holder, sap, "7", date=today() + datetime.timedelta(days=3))
    assert units_free(portfolio_id=holder.pk, asset_id=sap.pk) == Decimal("3")
    with pytest.raises(InsufficientUnits):
        hold(operations, holder, sap, "4")


def test_a_reference_already_holding_units_is_refused(operations: Any, holder: Portfolio, sap: Asset) -> None:
    hold(operations, holder, sap, "1")
    with pytest.raises(ConflictError, match="already holds units"):
        hold(operations, holder, sap, "1")


@pytest.mark.parametrize("quantity", ["0", "-1"])
def test_a_unit_hold_of_nothing_or_less_is_invalid(
    operations: Any, holder: Portfolio, sap: Asset, quantity: str
) -> None:
    with pytest.raises(ValidationError):
        hold(operations, holder, sap, quantity)


def test_an_advisor_cannot_hold_units_of_a_client_they_do_not_see(advisor: Any, holder: Portfolio, sap: Asset) -> None:
    with pytest.raises(PermissionDenied):
        hold(advisor, holder, sap, "1")


def test_releasing_a_unit_hold_frees_its_units(operations: Any, holder: Portfolio, sap: Asset) -> None:
    hold(operations, holder, sap, "10")
    with pytest.raises(ConflictError):
        sell(operations, holder, sap, "1")
    assert holds.unit_hold_release(actor=operations, reference="order:1") is True
    assert holds.unit_hold_release(actor=operations, reference="order:1") is False
    assert unit_hold_quantity(reference="order:1") == Decimal("0")
    assert sell(operations, holder, sap, "10").quantity == Decimal("10")


def test_growing_a_unit_hold_is_checked_and_shrinking_or_zero_always_succeeds(
    operations: Any, holder: Portfolio, sap: Asset
) -> None:
    hold(operations, holder, sap, "6")
    with pytest.raises(InsufficientUnits) as refusal:
        holds.unit_hold_resize(actor=operations, reference="order:1", quantity=Decimal("11"))
    assert (refusal.value.needed, refusal.value.missing) == (Decimal("5"), Decimal("1"))
    grown = holds.unit_hold_resize(actor=operations, reference="order:1", quantity=Decimal("10"))
    assert grown is not None
    assert grown.quantity == Decimal("10")
    shrunk = holds.unit_hold_resize(actor=operations, reference="order:1", quantity=Decimal("2"))
    assert shrunk is not None
    assert unit_hold_quantity(reference="order:1") == Decimal("2")
    assert holds.unit_hold_resize(actor=operations, reference="order:1", quantity=Decimal("0")) is None
    assert not UnitHold.objects.exists()
    with pytest.raises(ConflictError, match="No units are on hold"):
        holds.unit_hold_resize(actor=operations, reference="order:1", quantity=Decimal("1"))


# --- Splits --------------------------------------------------------------------------------------


def test_a_unit_hold_is_scaled_by_a_split_after_its_day(operations: Any, holder: Portfolio, sap: Asset) -> None:
    UnitHoldFactory(portfolio=holder, asset=sap, quantity=Decimal("10"), as_of=today() - datetime.timedelta(days=10))
    SplitFactory(asset=sap, date=today() - datetime.timedelta(days=5), new_units=Decimal("2"), old_units=Decimal("1"))
    held = unit_hold_quantity(reference=UnitHold.objects.get().reference)
    assert held == Decimal("20")
    assert units_on_hold(portfolio_id=holder.pk) == {sap.pk: Decimal("20")}
    assert units_free(portfolio_id=holder.pk, asset_id=sap.pk) == Decimal("0")
    with pytest.raises(ConflictError, match=r"leave -1\.0000000000 available .* \(20\.0000000000 on hold\)"):
        sell(operations, holder, sap, "1")


def test_resizing_a_split_hold_takes_todays_units(operations: Any, holder: Portfolio, sap: Asset) -> None:
    UnitHoldFactory(
        portfolio=holder, asset=sap, quantity=Decimal("4"), as_of=today() - datetime.timedelta(days=10), reference="r"
    )
    SplitFactory(asset=sap, date=today() - datetime.timedelta(days=5), new_units=Decimal("2"), old_units=Decimal("1"))
    assert unit_hold_quantity(reference="r") == Decimal("8")
    resized = holds.unit_hold_resize(actor=operations, reference="r", quantity=Decimal("12"))  # grows by 4 of 12
    assert resized is not None
    assert (resized.quantity, resized.as_of) == (Decimal("12"), today())
    assert units_free(portfolio_id=holder.pk, asset_id=sap.pk) == Decimal("8")


# --- The rule in every check that takes units or cash out ----------------------------------------


def test_a_sell_eating_into_a_unit_hold_is_refused(operations: Any, holder: Portfolio, sap: Asset) -> None:
    hold(operations, holder, sap, "6")
    with pytest.raises(ConflictError, match=f"leave -1.0000000000 available at the end of {today()}"):
        sell(operations, holder, sap, "5")
    assert sell(operations, holder, sap, "4").quantity == Decimal("4")


def test_a_back_dated_transfer_out_leaving_todays_units_below_the_holds_is_refused(
    operations: Any, holder: Portfolio, sap: Asset
) -> None:
    hold(operations, holder, sap, "6")
    with pytest.raises(ConflictError, match="available"):
        services.allocation_create(
            actor=operations,
            portfolio=holder,
            asset=sap,
            kind=Allocation.Kind.TRANSFER_OUT,
            quantity=Decimal("5"),
            price=Decimal("0"),
            date=datetime.date(2026, 3, 1),
        )


def test_a_buy_allocation_eating_into_a_cash_hold_is_refused(operations: Any, holder: Portfolio, sap: Asset) -> None:
    cash_hold_place(
        actor=operations, portfolio_id=holder.pk, currency="EUR", amount=Decimal("9500"), reference="order:9"
    )
    with pytest.raises(ConflictError, match=r"Insufficient cash in Main: .* \(9500\.0000 EUR on hold\)"):
        buy(operations, holder, sap, "6")
    assert buy(operations, holder, sap, "5").quantity == Decimal("5")


def test_a_buy_through_the_api_eating_into_a_cash_hold_is_refused_with_409(
    operations: Any, api: Any, holder: Portfolio, sap: Asset
) -> None:
    cash_hold_place(
        actor=operations, portfolio_id=holder.pk, currency="EUR", amount=Decimal("9500"), reference="order:9"
    )
    body = {
        "client": holder.client_id,
        "asset": sap.pk,
        "kind": "buy",
        "quantity": "6",
        "price": "100",
        "date": today().isoformat(),
    }
    response = api(operations).post("/api/v1/allocations/", body)
    assert response.status_code == 409, response.content
    assert "on hold" in response.json()["detail"]
    assert not Allocation.objects.filter(kind="buy").exists()


def test_a_fill_with_overdraft_allowed_is_recorded_and_the_shortfall_selectors_report_it(
    operations: Any, holder: Portfolio, sap: Asset
) -> None:
    hold(operations, holder, sap, "6")
    filled = sell(operations, holder, sap, "8", overdraft_allowed=True)
    assert filled.settlement is not None
    shortfall = units_shortfall(portfolio_id=holder.pk, asset_id=sap.pk, since=today())
    assert shortfall is not None
    assert (shortfall.day, shortfall.balance, shortfall.held) == (today(), Decimal("-4"), Decimal("6"))


def test_an_allocation_import_refuses_a_sell_eating_into_a_unit_hold(
    operations: Any, holder: Portfolio, sap: Asset
) -> None:
    hold(operations, holder, sap, "6")
    result = run(ALLOCATIONS + f"{EMAIL},SAP,XETR,sell,5,100,0,{today()},\n")
    assert [str(issue) for issue in result.issues] == [
        f"line 2, quantity: Not enough units of SAP.XETR in {holder}: the change would leave -1.0000000000 available "
        f"at the end of {today()} (6.0000000000 on hold); a sell or transfer out cannot exceed the quantity held "
        "that day less what is on hold."
    ]
    assert not Allocation.objects.filter(kind="sell").exists()
    assert run(ALLOCATIONS + f"{EMAIL},SAP,XETR,sell,4,100,0,{today()},\n").ok


def test_an_allocation_import_refuses_a_buy_eating_into_a_cash_hold(
    operations: Any, holder: Portfolio, sap: Asset
) -> None:
    cash_hold_place(
        actor=operations, portfolio_id=holder.pk, currency="EUR", amount=Decimal("9500"), reference="order:9"
    )
    result = run(ALLOCATIONS + f"{EMAIL},SAP,XETR,buy,6,100,0,{today()},\n")
    assert [str(issue) for issue in result.issues] == [
        "line 2, quantity: Insufficient cash in Main: the buy settlement of 600.0000 EUR would leave -100.0000 EUR "
        f"available at the end of {today()} (9500.0000 EUR on hold)."
    ]
    assert not Allocation.objects.filter(kind="buy").exists()


def test_a_unit_hold_in_another_portfolio_does_not_count(operations: Any, holder: Portfolio, sap: Asset) -> None:
    other = PortfolioFactory(client=holder.client)
    AllocationFactory(portfolio=other, asset=sap, quantity=Decimal("10"), date=datetime.date(2026, 2, 1))
    UnitHoldFactory(portfolio=other, asset=sap, quantity=Decimal("10"))
    assert sell(operations, holder, sap, "10").quantity == Decimal("10")


# --- The database's rules ------------------------------------------------------------------------


def test_the_database_refuses_a_unit_hold_of_zero(holder: Portfolio, sap: Asset) -> None:
    with refused_by("holdings_unithold_quantity_positive"):
        UnitHoldFactory(portfolio=holder, asset=sap, quantity=Decimal("0"))


def test_the_database_refuses_two_unit_holds_under_one_reference(holder: Portfolio, sap: Asset) -> None:
    UnitHoldFactory(portfolio=holder, asset=sap, reference="order:7")
    with refused_by("holdings_unithold.reference"):
        UnitHoldFactory(portfolio=holder, asset=sap, reference="order:7")


def test_the_database_refuses_a_unit_hold_whose_client_is_not_its_portfolios(holder: Portfolio, sap: Asset) -> None:
    stranger = ClientFactory(main_portfolio=None)
    with refused_by(portfolio_client_agreement(UnitHold._meta.db_table)):
        UnitHold.objects.create(
            client=stranger, portfolio=holder, asset=sap, quantity=Decimal("1"), as_of=today(), reference="order:9"
        )


# --- The API's positions and the admin -----------------------------------------------------------


def test_positions_show_the_units_on_hold_and_available(
    operations: Any, api: Any, holder: Portfolio, sap: Asset
) -> None:
    c = api(operations)
    url = f"/api/v1/portfolios/{holder.pk}/positions/"

    def position_of_sap(url: str) -> tuple[str, str, str]:
        response = c.get(url)
        assert response.status_code == 200, response.content
        row = next(row for row in response.json()["positions"] if row["asset"] == sap.pk)
        return row["quantity"], row["units_on_hold"], row["units_available"]

    assert position_of_sap(url) == ("10.0000000000", "0.0000000000", "10.0000000000")
    hold(operations, holder, sap, "6")  # no new data version: the cached answer must not be served
    assert position_of_sap(url) == ("10.0000000000", "6.0000000000", "4.0000000000")
    assert position_of_sap(f"/api/v1/clients/{holder.client_id}/positions/") == (
        "10.0000000000",
        "6.0000000000",
        "4.0000000000",
    )
    holds.unit_hold_release(actor=operations, reference="order:1")
    assert position_of_sap(url) == ("10.0000000000", "0.0000000000", "10.0000000000")


@pytest.mark.parametrize("kind", ["portfolio", "client"])
def test_positions_queries_do_not_grow_with_the_number_of_holds(
    operations: Any, api: Any, count_queries: Any, holder: Portfolio, kind: str
) -> None:
    url = f"/api/v1/{kind}s/{holder.client_id if kind == 'client' else holder.pk}/positions/"

    def add(number: int) -> None:
        for _ in range(number):
            asset = AssetFactory(currency="EUR")
            AllocationFactory(portfolio=holder, asset=asset, quantity=Decimal("3"), date=datetime.date(2026, 2, 1))
            UnitHoldFactory(portfolio=holder, asset=asset, quantity=Decimal("1"))
            SplitFactory(asset=asset, date=datetime.date(2026, 3, 1))

    def measure() -> int:
        def load() -> None:
            response = api(operations).get(url)
            assert response.status_code == 200, response.content
            assert all(row["units_on_hold"] != "0.0000000000" for row in response.json()["positions"][1:])

        load()  # the first read refolds the snapshots
        return int(count_queries(load))

    add(2)
    few = measure()
    add(20)
    assert measure() == few


UNIT_HOLDS = "admin:holdings_unithold_changelist"


def test_the_unit_hold_changelist_shows_an_advisor_only_their_clients_holds_and_offers_no_changes(
    client: Any, advisor: Any
) -> None:
    own = UnitHoldFactory(client=ClientFactory(advisor=advisor))
    UnitHoldFactory()
    client.force_login(advisor)
    response = client.get(reverse(UNIT_HOLDS))
    assert response.status_code == 200
    assert {row.pk for row in response.context["cl"].result_list} == {own.pk}
    assert client.get(reverse("admin:holdings_unithold_add")).status_code == 403


def test_the_unit_hold_changelist_queries_do_not_grow_with_its_rows(
    client: Any, advisor: Any, count_queries: Any
) -> None:
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)
    url = reverse(UNIT_HOLDS)
    UnitHoldFactory.create_batch(3, client=owner)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    UnitHoldFactory.create_batch(30, client=owner)
    UnitHoldFactory.create_batch(5)
    assert page_queries(client, count_queries, url) == few
