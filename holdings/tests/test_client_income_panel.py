"""The income section holdings adds to a client's admin page: figures and a server-side SVG bar chart by month,
from the income report, at a query cost that does not grow with payments."""

import datetime
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.models import Client
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.charts import MonthBar, income_chart
from holdings.tests.factories import AssetFactory, DividendFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import page_queries

pytestmark = pytest.mark.django_db
TODAY = timezone.localdate()
D = Decimal


def _url(client: Client) -> str:
    return reverse("admin:clients_client_change", args=[client.pk])


def _panel(html: str) -> str:
    (panel,) = re.findall(r'<fieldset class="module income-panel">.*?</fieldset>', html, re.S)
    return panel


def _paid(owner: Client, count: int) -> None:
    for n in range(count):
        day = TODAY - datetime.timedelta(days=3 * n)
        DividendFactory(
            client=owner,
            asset=AssetFactory(currency="EUR"),
            gross=D("10"),
            withholding_tax=D("2.5"),
            ex_date=day,
            pay_date=day,
        )
        TransactionFactory(client=owner, kind="interest", amount=D("1"), currency="EUR", date=day)


def test_client_page_shows_income_figures_and_a_bar_per_month(client, advisor) -> None:
    owner = ClientFactory(advisor=advisor, base_currency="EUR", name="Ada <b>Lovelace</b>")
    DividendFactory(client=owner, asset=AssetFactory(currency="EUR"), gross=D("100"), withholding_tax=D("26.38"),
                    ex_date=TODAY, pay_date=TODAY)  # fmt: skip
    TransactionFactory(client=owner, kind="interest", amount=D("3.10"), currency="EUR", date=TODAY)
    client.force_login(advisor)

    panel = _panel(client.get(_url(owner)).content.decode())

    for label, figure in [("Dividends, gross", "100.00"), ("Tax withheld", "26.38"), ("Interest", "3.10")]:
        assert re.search(rf"{label}</th><td[^>]*>{figure} EUR", panel), label
    assert re.search(r"Net income</th><td[^>]*>76.72 EUR", panel)
    assert panel.count("<g><title>") == 12  # a column per month, empty ones too
    assert f"{TODAY:%Y-%m}: 76.72 net, 26.38 withheld" in panel  # the dividend's 73.62 and the interest
    assert "<b>Lovelace</b>" not in panel
    assert "&lt;b&gt;Lovelace&lt;/b&gt;" in panel
    assert "http" not in panel.replace("http://www.w3.org", "")


def test_income_chart_columns_stack_the_tax_on_the_net_from_a_zero_axis() -> None:
    svg = income_chart(
        chart_id="c1",
        title="Income",
        months=[MonthBar("2026-01", D("75"), D("25")), MonthBar("2026-02", D("0"), D("0"))],
        currency="EUR",
    )
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    net, tax, empty_net, empty_tax = heights
    assert net == pytest.approx(3 * tax)  # 75 and 25 on one scale
    assert (empty_net, empty_tax) == (0.0, 0.0)
    assert "2026-01: 75.00 net, 25.00 withheld; 2026-02: 0.00 net, 0.00 withheld." in svg


def test_income_chart_without_income_says_so_instead_of_drawing() -> None:
    svg = income_chart(chart_id="c1", title="Income", months=[MonthBar("2026-01", D(0), D(0))], currency="EUR")
    assert "No income over these months." in svg
    assert "<rect" not in svg


def test_client_page_query_count_is_the_same_for_5_and_50_payments(client, superuser, count_queries) -> None:
    owner = ClientFactory(base_currency="EUR")
    main_portfolio(owner)
    client.force_login(superuser)
    url = _url(owner)
    page_queries(client, count_queries, url)
    _paid(owner, 3)
    few = page_queries(client, count_queries, url)
    _paid(owner, 25)
    assert page_queries(client, count_queries, url) == few
