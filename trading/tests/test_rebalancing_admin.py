"""Model portfolios and the drift report in the admin: weights saved with their model through the service (a wrong
sum shown on the page), the assignments' list with each portfolio's drift and an "outside band" filter, scoped and
at a fixed cost."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory, main_portfolio
from holdings.tests.factories import AllocationFactory, AssetFactory, FxRateFactory, PriceFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import changelist_ids, page_queries
from trading.models import ModelPortfolio, ModelWeight
from trading.tests.factories import (
    ModelAssignmentFactory,
    ModelPortfolioFactory,
    ModelWeightFactory,
    RebalanceProposalFactory,
)

pytestmark = pytest.mark.django_db

D = Decimal
YESTERDAY = timezone.localdate() - datetime.timedelta(days=1)
ASSIGNMENTS = "admin:trading_modelassignment_changelist"


def weights_form(cash: str, *rows: tuple[Any, str]) -> dict[str, Any]:
    form: dict[str, Any] = {
        "name": "Balanced",
        "cash_weight": cash,
        "drift_band": "5",
        "minimum_trade": "0",
        "notes": "",
        "weights-TOTAL_FORMS": str(len(rows)),
        "weights-INITIAL_FORMS": "0",
        "weights-MIN_NUM_FORMS": "0",
        "weights-MAX_NUM_FORMS": "1000",
    }
    for index, (asset, weight) in enumerate(rows):
        form |= {f"weights-{index}-asset": asset.pk, f"weights-{index}-weight": weight}
    return form


def test_operations_add_a_model_with_its_weights(client, operations) -> None:
    client.force_login(operations)
    a, b = AssetFactory(), AssetFactory()
    response = client.post(reverse("admin:trading_modelportfolio_add"), weights_form("10", (a, "60"), (b, "30")))
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.non_form_errors()
    model = ModelPortfolio.objects.get()
    assert dict(ModelWeight.objects.filter(model=model).values_list("asset_id", "weight")) == {a.pk: 60, b.pk: 30}


def test_weights_that_do_not_sum_to_a_hundred_are_shown_on_the_page_and_nothing_is_saved(client, operations) -> None:
    client.force_login(operations)
    response = client.post(reverse("admin:trading_modelportfolio_add"), weights_form("10", (AssetFactory(), "80")))
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.non_form_errors()
    assert "sum to exactly 100%" in str(errors)
    assert not ModelPortfolio.objects.exists()


def followed(advisor: Any, *, a_units: str) -> Any:
    """A USD portfolio of `a_units` x 10 of A and 100 USD, following A 50 / cash 50 (band 5)."""
    portfolio = main_portfolio(ClientFactory(advisor=advisor, base_currency="USD"))
    asset = AssetFactory(ticker="AAA")
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=D(a_units))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("100"))
    model = ModelPortfolioFactory(cash_weight=D("50"))
    ModelWeightFactory(model=model, asset=asset, weight=D("50"))
    return ModelAssignmentFactory(portfolio=portfolio, model=model)


@pytest.fixture
def priced(db: None) -> None:
    PriceFactory(asset=AssetFactory(ticker="AAA"), date=YESTERDAY, close=D("10"))


def test_the_assignments_list_shows_each_drift_and_filters_those_outside_their_band(client, advisor, priced) -> None:
    # In band: 10 x 10 = 100 of A, 100 cash: 50 / 50. Outside: 30 x 10 = 300 of A, 100 cash: 75%, 25 points over.
    inside, outside = followed(advisor, a_units="10"), followed(advisor, a_units="30")
    client.force_login(advisor)

    page = client.get(reverse(ASSIGNMENTS))
    only_outside = client.get(reverse(ASSIGNMENTS) + "?outside_band=yes")
    only_inside = client.get(reverse(ASSIGNMENTS) + "?outside_band=no")

    assert changelist_ids(page) == {inside.pk, outside.pk}
    assert changelist_ids(only_outside) == {outside.pk}
    assert changelist_ids(only_inside) == {inside.pk}
    assert '<td class="field-largest_drift">25</td>' in page.content.decode()


def test_the_assignments_list_shows_an_advisor_only_their_clients(client, advisor, other_advisor, priced) -> None:
    followed(advisor, a_units="10")
    client.force_login(other_advisor)
    assert changelist_ids(client.get(reverse(ASSIGNMENTS))) == set()
    assert changelist_ids(client.get(reverse(ASSIGNMENTS) + "?outside_band=yes")) == set()


@pytest.mark.parametrize("query", ["", "?outside_band=yes"])
def test_the_assignments_list_costs_the_same_for_5_and_50_portfolios(client, superuser, count_queries, query) -> None:
    FxRateFactory(base="EUR", quote="USD", date=YESTERDAY, rate=D("1.25"))
    a = AssetFactory(ticker="AAA")
    PriceFactory(asset=a, date=YESTERDAY, close=D("10"))
    e = AssetFactory(ticker="EEE", currency="EUR")
    PriceFactory(asset=e, date=YESTERDAY, close=D("10"))

    def make(n: int) -> None:
        for _ in range(n):
            portfolio = main_portfolio(ClientFactory(base_currency="EUR"))
            AllocationFactory(portfolio=portfolio, asset=a, quantity=D("30"))
            AllocationFactory(portfolio=portfolio, asset=e, quantity=D("1"))
            TransactionFactory(portfolio=portfolio, currency="USD", amount=D("100"))
            model = ModelPortfolioFactory(cash_weight=D("50"))
            ModelWeightFactory(model=model, asset=a, weight=D("50"))
            ModelAssignmentFactory(portfolio=portfolio, model=model)

    client.force_login(superuser)
    url = reverse(ASSIGNMENTS) + query
    make(5)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)
    make(45)
    many = page_queries(client, count_queries, url)
    assert client.get(url).context["cl"].result_count == 50
    assert few == many


def test_the_proposals_list_costs_the_same_for_5_and_50_rows(client, superuser, count_queries) -> None:
    client.force_login(superuser)
    url = reverse("admin:trading_rebalanceproposal_changelist")
    RebalanceProposalFactory.create_batch(5, created_by=superuser)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    RebalanceProposalFactory.create_batch(45, created_by=superuser)
    assert page_queries(client, count_queries, url) == few
