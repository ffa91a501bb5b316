"""The rebalancing endpoints: proposing for a portfolio, accepting once into drafts, listing proposals, the model
portfolios and assignments, and the drift report: what each role may do and see, the errors, and their cost."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Price
from holdings.tests.factories import AllocationFactory, AssetFactory, FxRateFactory, PriceFactory, UnitHoldFactory
from ledger.tests.factories import CashHoldFactory, TransactionFactory
from portfolio_site.tests.test_schema import as_user, openapi, schema_document  # noqa: F401 (fixtures)
from trading.models import ModelAssignment, ModelWeight, Order, RebalanceProposal
from trading.tests.factories import (
    ModelAssignmentFactory,
    ModelPortfolioFactory,
    ModelWeightFactory,
    OrderFactory,
    RebalanceProposalFactory,
    paper_account,
)

pytestmark = pytest.mark.django_db

D = Decimal
TODAY = timezone.localdate()
YESTERDAY = TODAY - datetime.timedelta(days=1)


def priced(ticker: str, close: str, currency: str = "USD", **fields: Any) -> Any:
    asset = AssetFactory(ticker=ticker, currency=currency, **fields)
    PriceFactory(asset=asset, date=YESTERDAY, close=D(close))
    return asset


def fifty_fifty(*assets: Any, cash: str = "0", band: str = "5") -> Any:
    model = ModelPortfolioFactory(cash_weight=D(cash), drift_band=D(band))
    share = (D(100) - D(cash)) / len(assets)
    for asset in assets:
        ModelWeightFactory(model=model, asset=asset, weight=share)
    return model


@pytest.fixture(autouse=True)
def _no_market_buffer(settings: Any) -> None:
    """The hand-checked sums below size buys at the price itself, without fees; the buffer's own test sets both."""
    settings.TRADING_MARKET_ORDER_BUFFER = "0"
    settings.TRADING_BROKER_KINDS = {"paper": {"BACKEND": "trading.brokers.paper.PaperBroker", "OPTIONS": {}}}


@pytest.fixture
def lopsided(advisor: Any) -> Any:
    """Advisor's client's USD portfolio: A 16 x 50 = 800, B 4 x 50 = 200, no cash; following A 50 / B 50, band 5.
    By hand: sell 6 A (300), buy 6 B (300)."""
    portfolio = main_portfolio(ClientFactory(advisor=advisor, base_currency="USD"))
    a, b = priced("AAA", "50"), priced("BBB", "50")
    AllocationFactory(portfolio=portfolio, asset=a, quantity=D("16"))
    AllocationFactory(portfolio=portfolio, asset=b, quantity=D("4"))
    ModelAssignmentFactory(portfolio=portfolio, model=fifty_fifty(a, b))
    paper_account(portfolio)
    return portfolio


def propose(api: Any, user: Any, portfolio: Any) -> Any:
    return api(user).post(f"/api/v1/portfolios/{portfolio.pk}/rebalance-proposal/", format="json")


def test_a_proposal_is_stored_and_answered_201_with_its_orders_and_weights(advisor, lopsided, api) -> None:
    response = propose(api, advisor, lopsided)
    assert response.status_code == 201, response.content
    body = response.json()
    assert RebalanceProposal.objects.get().pk == body["id"]
    document = body["proposal"]
    assert [(o["side"], o["asset_label"], o["quantity"], o["price"], o["value"]) for o in document["orders"]] == [
        ("sell", "AAA.XNAS", "6", "50", "300.00"),
        ("buy", "BBB.XNAS", "6", "50", "300.00"),
    ]
    assert [(o["weight_before"], o["weight_after"]) for o in document["orders"]] == [("80", "50"), ("20", "50")]
    assert (document["total_value"], document["cash_before"], document["cash_after"]) == ("1000.00", "0.00", "0.00")
    assert document["rates"] == [{"currency": "USD", "to": "USD", "rate": "1", "date": TODAY.isoformat(), "via": ""}]


def test_a_portfolio_in_two_currencies_is_valued_at_the_latest_rate_and_the_answer_names_it(advisor, api) -> None:
    # Base EUR. EUR/USD 1.25 (the latest, yesterday; an older 1.10 ignored): 1 USD = 0.8 EUR. U (USD) at 100 USD =
    # 80 EUR; E (EUR) 50 x 10 = 500 EUR; cash 500 USD (400 EUR) and 100 EUR: V = 1000 EUR. Model U 50 / E 50:
    # U wants 500 EUR / 80 = 6.25, 6 units for 600 USD, but only 500 USD is free: 5 units (500 USD, 400 EUR).
    portfolio = main_portfolio(ClientFactory(advisor=advisor, base_currency="EUR"))
    u, e = priced("UUU", "100"), priced("EEE", "10", currency="EUR")
    FxRateFactory(base="EUR", quote="USD", date=YESTERDAY - datetime.timedelta(days=5), rate=D("1.10"))
    FxRateFactory(base="EUR", quote="USD", date=YESTERDAY, rate=D("1.25"))
    AllocationFactory(portfolio=portfolio, asset=e, quantity=D("50"))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("500"))
    TransactionFactory(portfolio=portfolio, currency="EUR", amount=D("100"))
    ModelAssignmentFactory(portfolio=portfolio, model=fifty_fifty(u, e))

    response = propose(api, advisor, portfolio)

    assert response.status_code == 201, response.content
    document = response.json()["proposal"]
    [buy] = document["orders"]
    assert (buy["quantity"], buy["currency"], buy["value"], buy["fx_rate"], buy["value_base"]) == (
        "5",
        "USD",
        "500.00",
        "0.8",
        "400.00",
    )
    assert document["total_value"] == "1000.00"
    assert {"currency": "USD", "to": "EUR", "rate": "0.8", "date": YESTERDAY.isoformat(), "via": ""} in document[
        "rates"
    ]
    assert any("reduced to 5 units" in warning for warning in document["warnings"])


def test_units_on_hold_for_an_open_order_are_not_proposed_for_sale(advisor, lopsided, api) -> None:
    # As in `lopsided`, but 13 of the 16 A are held by an open order: 3 are free, so 3 are sold (150), not 6, and the
    # buy of B is funded only as far as those 150 go: 3 units.
    UnitHoldFactory(portfolio=lopsided, asset=AssetFactory(ticker="AAA"), quantity=D("13"))
    document = propose(api, advisor, lopsided).json()["proposal"]
    assert [(o["side"], o["quantity"]) for o in document["orders"]] == [("sell", "3"), ("buy", "3")]
    assert any("only 3 units are free" in warning for warning in document["warnings"])


def test_a_portfolio_following_no_model_is_refused_with_409(advisor, api) -> None:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    response = propose(api, advisor, portfolio)
    assert response.status_code == 409
    assert "follows no model" in response.json()["detail"]


def test_an_asset_without_a_price_is_a_409_naming_it(advisor, lopsided, api) -> None:
    extra = AssetFactory(ticker="NOPX")
    AllocationFactory(portfolio=lopsided, asset=extra, quantity=D("1"))
    response = propose(api, advisor, lopsided)
    assert response.status_code == 409
    assert "NOPX" in response.json()["detail"]


def test_a_currency_without_a_rate_is_a_409_naming_it(advisor, lopsided, api) -> None:
    TransactionFactory(portfolio=lopsided, currency="JPY", amount=D("1000"))
    response = propose(api, advisor, lopsided)
    assert response.status_code == 409
    assert "JPY/USD" in response.json()["detail"]


def test_another_advisors_portfolio_is_404(other_advisor, lopsided, api) -> None:
    assert propose(api, other_advisor, lopsided).status_code == 404
    assert not RebalanceProposal.objects.exists()


def test_an_auditor_reads_proposals_but_cannot_make_or_accept_one(auditor, advisor, lopsided, api) -> None:
    made = propose(api, advisor, lopsided).json()
    assert propose(api, auditor, lopsided).status_code == 403
    assert api(auditor).post(f"/api/v1/rebalance-proposals/{made['id']}/accept/").status_code == 403
    assert api(auditor).get(f"/api/v1/rebalance-proposals/{made['id']}/").status_code == 200


def test_accepting_creates_the_orders_as_drafts_once_and_a_second_accept_is_409(advisor, lopsided, api) -> None:
    made = propose(api, advisor, lopsided).json()
    url = f"/api/v1/rebalance-proposals/{made['id']}/accept/"

    first = api(advisor).post(url, format="json")
    again = api(advisor).post(url, format="json")

    assert first.status_code == 200, first.content
    orders = Order.objects.order_by("pk")
    assert [(o.side, o.asset.ticker, o.quantity, o.status) for o in orders] == [
        ("sell", "AAA", D("6"), Order.Status.DRAFT),
        ("buy", "BBB", D("6"), Order.Status.DRAFT),
    ]
    assert sorted(first.json()["orders"]) == [o.pk for o in orders]
    assert first.json()["accepted_by"] == advisor.pk
    assert again.status_code == 409
    assert Order.objects.count() == 2


def test_a_proposal_whose_prices_changed_since_is_refused_with_409(advisor, lopsided, api) -> None:
    made = propose(api, advisor, lopsided).json()
    Price.objects.filter(asset__ticker="AAA").update(close=D("51"))
    response = api(advisor).post(f"/api/v1/rebalance-proposals/{made['id']}/accept/", format="json")
    assert response.status_code == 409
    assert "changed" in response.json()["detail"]
    assert not Order.objects.exists()


def test_a_proposal_whose_cash_on_hold_changed_since_is_refused_with_409(advisor, lopsided, api) -> None:
    TransactionFactory(portfolio=lopsided, currency="USD", amount=D("100"))
    made = propose(api, advisor, lopsided).json()
    CashHoldFactory(portfolio=lopsided, currency="USD", amount=D("10"))
    response = api(advisor).post(f"/api/v1/rebalance-proposals/{made['id']}/accept/", format="json")
    assert response.status_code == 409


def test_a_proposal_older_than_the_limit_is_refused_with_409(advisor, lopsided, api, settings) -> None:
    made = propose(api, advisor, lopsided).json()
    old = timezone.now() - datetime.timedelta(minutes=settings.TRADING_PROPOSAL_MAX_AGE_MINUTES + 1)
    RebalanceProposal.objects.filter(pk=made["id"]).update(created_at=old)
    response = api(advisor).post(f"/api/v1/rebalance-proposals/{made['id']}/accept/", format="json")
    assert response.status_code == 409
    assert "minutes old" in response.json()["detail"]
    assert not Order.objects.exists()


def test_another_advisors_proposal_is_404_to_read_and_to_accept(advisor, other_advisor, lopsided, api) -> None:
    made = propose(api, advisor, lopsided).json()
    assert api(other_advisor).get(f"/api/v1/rebalance-proposals/{made['id']}/").status_code == 404
    assert api(other_advisor).post(f"/api/v1/rebalance-proposals/{made['id']}/accept/").status_code == 404
    assert api(other_advisor).get("/api/v1/rebalance-proposals/").json()["count"] == 0


def test_proposals_filter_by_portfolio_and_by_accepted(operations, api) -> None:
    wanted = RebalanceProposalFactory()
    RebalanceProposalFactory(accepted_at=timezone.now())
    assert {
        row["id"]
        for row in api(operations)
        .get(f"/api/v1/rebalance-proposals/?portfolio={wanted.portfolio_id}")
        .json()["results"]
    } == {wanted.pk}
    assert {
        row["id"] for row in api(operations).get("/api/v1/rebalance-proposals/?accepted=false").json()["results"]
    } == {wanted.pk}


def test_proposals_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    client = ClientFactory(advisor=advisor)
    assert_list_queries_constant(
        api(advisor), "/api/v1/rebalance-proposals/", lambda n: RebalanceProposalFactory.create_batch(n, client=client)
    )


# --- Model portfolios and assignments ----------------------------------------------------------------------------


def test_operations_create_a_model_with_its_weights_in_one_request(operations, api) -> None:
    a, b = AssetFactory(), AssetFactory()
    body = {
        "name": "Balanced",
        "cash_weight": "10",
        "drift_band": "5",
        "weights": [{"asset": a.pk, "weight": "60"}, {"asset": b.pk, "weight": "30"}],
    }
    response = api(operations).post("/api/v1/model-portfolios/", body, format="json")
    assert response.status_code == 201, response.content
    assert {(w["asset"], w["weight"]) for w in response.json()["weights"]} == {(a.pk, "60.0000"), (b.pk, "30.0000")}


def test_weights_that_do_not_sum_to_a_hundred_are_a_400_on_weights(operations, api) -> None:
    body = {
        "name": "Off",
        "cash_weight": "10",
        "drift_band": "5",
        "weights": [{"asset": AssetFactory().pk, "weight": "80"}],
    }
    response = api(operations).post("/api/v1/model-portfolios/", body, format="json")
    assert response.status_code == 400
    assert "weights" in response.json()
    assert not ModelWeight.objects.exists()


def test_advisors_read_models_but_cannot_create_them(advisor, api) -> None:
    assert api(advisor).get("/api/v1/model-portfolios/").status_code == 200
    response = api(advisor).post("/api/v1/model-portfolios/", {"name": "Mine", "cash_weight": "100"}, format="json")
    assert response.status_code == 403


def test_an_advisor_assigns_a_model_to_their_portfolio_but_not_to_another_advisors(advisor, other_advisor, api) -> None:
    model = ModelPortfolioFactory()
    mine = main_portfolio(ClientFactory(advisor=advisor))
    theirs = main_portfolio(ClientFactory(advisor=other_advisor))
    ok = api(advisor).post("/api/v1/model-assignments/", {"portfolio": mine.pk, "model": model.pk}, format="json")
    refused = api(advisor).post(
        "/api/v1/model-assignments/", {"portfolio": theirs.pk, "model": model.pk}, format="json"
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["client"] == mine.client_id
    assert refused.status_code == 400
    assert "portfolio" in refused.json()
    assert ModelAssignment.objects.count() == 1


def test_a_second_model_for_one_portfolio_is_a_400_on_portfolio(advisor, api) -> None:
    assignment = ModelAssignmentFactory(client=ClientFactory(advisor=advisor))
    body = {"portfolio": assignment.portfolio_id, "model": ModelPortfolioFactory().pk}
    response = api(advisor).post("/api/v1/model-assignments/", body, format="json")
    assert response.status_code == 400
    assert "portfolio" in response.json()


# --- The drift report ---------------------------------------------------------------------------------------------


def test_the_drift_report_names_each_followed_portfolios_largest_drift_and_band(advisor, lopsided, api) -> None:
    balanced = main_portfolio(ClientFactory(advisor=advisor, base_currency="USD"))
    a = AssetFactory(ticker="AAA")
    AllocationFactory(portfolio=balanced, asset=a, quantity=D("20"))  # 1000 of A: 100% against 100%
    ModelAssignmentFactory(portfolio=balanced, model=fifty_fifty(a))

    rows = {row["portfolio"]: row for row in api(advisor).get("/api/v1/drift/").json()["results"]}

    assert (rows[lopsided.pk]["largest_drift"], rows[lopsided.pk]["outside_band"]) == ("30.0000", True)
    assert (rows[balanced.pk]["largest_drift"], rows[balanced.pk]["outside_band"]) == ("0.0000", False)
    outside = api(advisor).get("/api/v1/drift/?outside_band=true").json()["results"]
    assert [row["portfolio"] for row in outside] == [lopsided.pk]


def test_the_drift_report_shows_only_the_callers_portfolios(other_advisor, lopsided, api) -> None:
    assert api(other_advisor).get("/api/v1/drift/").json()["count"] == 0


def test_a_portfolio_that_cannot_be_valued_has_no_drift_and_says_what_is_missing(advisor, lopsided, api) -> None:
    AllocationFactory(portfolio=lopsided, asset=AssetFactory(ticker="NOPX"), quantity=D("1"))
    [row] = api(advisor).get("/api/v1/drift/").json()["results"]
    assert (row["largest_drift"], row["outside_band"], row["missing"]) == (None, None, ["price of NOPX"])


def _followed_portfolios(advisor: Any, assets: list[Any]) -> Any:
    def make(n: int) -> None:
        for _ in range(n):
            portfolio = main_portfolio(ClientFactory(advisor=advisor, base_currency="EUR"))
            for asset in assets:
                AllocationFactory(portfolio=portfolio, asset=asset, quantity=D("3"))
            TransactionFactory(portfolio=portfolio, currency="USD", amount=D("100"))
            ModelAssignmentFactory(portfolio=portfolio, model=fifty_fifty(*assets))

    return make


@pytest.mark.parametrize("query", ["", "?outside_band=true"])
def test_the_drift_report_costs_the_same_however_many_portfolios(
    advisor, api, assert_list_queries_constant, query
) -> None:
    FxRateFactory(base="EUR", quote="USD", date=YESTERDAY, rate=D("1.25"))
    assets = [priced("AAA", "10"), priced("EEE", "20", currency="EUR")]
    assert_list_queries_constant(api(advisor), f"/api/v1/drift/{query}", _followed_portfolios(advisor, assets))


def test_model_assignments_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(
        api(advisor),
        "/api/v1/model-assignments/",
        lambda n: [ModelAssignmentFactory(client=ClientFactory(advisor=advisor)) for _ in range(n)],
    )


def test_model_portfolios_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(
        api(advisor), "/api/v1/model-portfolios/", lambda n: ModelWeightFactory.create_batch(n)
    )


# --- The schema tells the truth ---------------------------------------------------------------------------------


def test_rebalancing_endpoints_match_the_schema(as_user, advisor) -> None:  # noqa: F811
    portfolio = main_portfolio(ClientFactory(advisor=advisor, base_currency="USD"))
    a, b = priced("AAA", "50"), priced("BBB", "50")
    AllocationFactory(portfolio=portfolio, asset=a, quantity=D("16"))
    AllocationFactory(portfolio=portfolio, asset=b, quantity=D("4"))
    model = fifty_fifty(a, b)
    paper_account(portfolio)
    api = as_user(advisor)

    assert "detail" in api.post(
        f"/api/v1/portfolios/{portfolio.pk}/rebalance-proposal/", None, expect=409, check_request=False
    )
    assignment = api.post("/api/v1/model-assignments/", {"portfolio": portfolio.pk, "model": model.pk}, expect=201)
    api.get(f"/api/v1/model-assignments/{assignment['id']}/", expect=200)
    api.get("/api/v1/model-portfolios/", expect=200)
    api.get(f"/api/v1/model-portfolios/{model.pk}/", expect=200)
    made = api.post(f"/api/v1/portfolios/{portfolio.pk}/rebalance-proposal/", None, expect=201, check_request=False)
    api.get(f"/api/v1/rebalance-proposals/{made['id']}/", expect=200)
    assert api.get(f"/api/v1/rebalance-proposals/?portfolio={portfolio.pk}", expect=200)["count"] == 1
    assert api.get("/api/v1/drift/?outside_band=true", expect=200)["count"] == 1
    accepted = api.post(f"/api/v1/rebalance-proposals/{made['id']}/accept/", {}, expect=200)
    assert len(accepted["orders"]) == 2
    assert "detail" in api.post(f"/api/v1/rebalance-proposals/{made['id']}/accept/", {}, expect=409)
    assert "detail" in api.post("/api/v1/portfolios/999999/rebalance-proposal/", None, expect=404, check_request=False)


def test_a_model_a_portfolio_follows_cannot_be_deleted_409(operations, api) -> None:
    assignment = ModelAssignmentFactory()
    response = api(operations).delete(f"/api/v1/model-portfolios/{assignment.model_id}/")
    assert response.status_code == 409
    assert ModelAssignment.objects.exists()


def test_the_drift_report_refuses_an_outside_band_that_is_not_true_or_false(advisor, api) -> None:
    response = api(advisor).get("/api/v1/drift/?outside_band=maybe")
    assert response.status_code == 400
    assert "outside_band" in response.json()


def test_a_portfolio_with_orders_not_yet_ended_gets_no_proposal(advisor, lopsided, api) -> None:
    """Its drafts and open orders will change what it holds: trading the drift again would double it."""
    OrderFactory(portfolio=lopsided, asset=AssetFactory(ticker="AAA"), side=Order.Side.SELL, quantity=D("6"))

    response = propose(api, advisor, lopsided)

    assert response.status_code == 409
    assert "not yet ended" in response.json()["detail"]


def test_two_proposals_of_one_portfolio_are_not_both_accepted(advisor, lopsided, api) -> None:
    first = propose(api, advisor, lopsided).json()["id"]
    second = propose(api, advisor, lopsided).json()["id"]

    accepted = api(advisor).post(f"/api/v1/rebalance-proposals/{first}/accept/", {}, format="json")
    again = api(advisor).post(f"/api/v1/rebalance-proposals/{second}/accept/", {}, format="json")

    assert accepted.status_code == 200, accepted.content
    assert again.status_code == 409
    assert Order.objects.count() == 2


def test_an_accepted_buy_is_sized_so_that_its_market_order_can_be_submitted(advisor, api, settings) -> None:
    # 1,000 USD, model A 100% at 50. A market buy holds 50 x 1.05 = 52.50 a unit plus the paper broker's fees (0.1%,
    # at least 1.00): 20 units would hold 1,051.05; 19 hold 997.50 + 1.00 = 998.50, within the 1,000.
    settings.TRADING_MARKET_ORDER_BUFFER = "0.05"
    settings.TRADING_BROKER_KINDS = {
        "paper": {"BACKEND": "trading.brokers.paper.PaperBroker", "OPTIONS": {"fee_rate": "0.001", "minimum_fee": "1"}}
    }
    portfolio = main_portfolio(ClientFactory(advisor=advisor, base_currency="USD"))
    paper_account(portfolio)
    a = priced("AAA", "50")
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("1000"))
    ModelAssignmentFactory(portfolio=portfolio, model=fifty_fifty(a))

    proposed = propose(api, advisor, portfolio)
    assert proposed.status_code == 201, proposed.content
    proposal = proposed.json()
    accepted = api(advisor).post(f"/api/v1/rebalance-proposals/{proposal['id']}/accept/", {}, format="json")
    [order] = Order.objects.all()
    submitted = api(advisor).post(f"/api/v1/orders/{order.pk}/submit/")

    assert [(o["side"], o["quantity"]) for o in proposal["proposal"]["orders"]] == [("buy", "19")]
    assert accepted.status_code == 200, accepted.content
    assert submitted.status_code == 200, submitted.content


def test_an_asset_priced_at_zero_is_a_409_naming_it(advisor, lopsided, api) -> None:
    Price.objects.filter(asset__ticker="BBB").update(close=D("0"))

    response = propose(api, advisor, lopsided)

    assert response.status_code == 409
    assert "BBB" in response.json()["detail"]


def test_a_portfolio_thousands_of_points_off_its_model_is_reported_not_a_500(advisor, lopsided, api) -> None:
    # 1,000 of assets and -990 cash (a fill beyond its hold may leave cash below zero): V = 10, A weighs 8,000%.
    TransactionFactory(portfolio=lopsided, currency="USD", kind="withdrawal", amount=D("990"))

    response = api(advisor).get("/api/v1/drift/")

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("field", "value"),
    [("drift_band", "0"), ("drift_band", "101"), ("cash_weight", "-10"), ("cash_weight", "100.5")],
)
def test_a_band_or_cash_weight_out_of_range_is_a_400_naming_its_field(field, value, operations, api) -> None:
    body = {"name": "Off", "cash_weight": "100", "drift_band": "5", field: value}

    response = api(operations).post("/api/v1/model-portfolios/", body, format="json")

    assert response.status_code == 400
    assert field in response.json(), response.content


def test_an_assignment_stays_with_its_portfolio_through_the_api_and_the_admin(advisor, lopsided, api, client) -> None:
    assignment = ModelAssignment.objects.get(portfolio=lopsided)
    other = PortfolioFactory(client=lopsided.client)

    through_api = api(advisor).patch(
        f"/api/v1/model-assignments/{assignment.pk}/", {"portfolio": other.pk}, format="json"
    )
    client.force_login(advisor)
    client.post(
        f"/admin/trading/modelassignment/{assignment.pk}/change/",
        {"portfolio": other.pk, "model": assignment.model_id},
    )

    assert through_api.status_code == 400
    assert "portfolio" in through_api.json()
    assert ModelAssignment.objects.get().portfolio_id == lopsided.pk
