"""Worked examples: returns that count interest, fees, taxes and dividends, reproduced to 1e-6.

Everything is recorded through the services (the ledger's and holdings'), then read through the API, so that the
figures are those a user gets.
"""

import datetime
from decimal import Decimal
from typing import Any

import pytest

from clients.tests.factories import ClientFactory, main_portfolio
from holdings.dividends import dividend_create
from holdings.services import allocation_create
from holdings.tests.factories import AssetFactory
from ledger.services import transaction_post

pytestmark = pytest.mark.django_db
D = Decimal
TOLERANCE = D("1e-6")


def test_a_cash_only_account_earns_its_interest_and_pays_its_fees_and_taxes_day_by_day(advisor, api) -> None:
    """A week of a EUR cash account. Deposits and withdrawals are external flows; interest, fees, taxes and tax
    refunds are not: they are what the account earned or lost. Issue 11's rule for each day: (MVE + CFout) /
    (MVB + CFin) - 1, an inflow counted at the day's start and an outflow at its end; days chained.

    day  movements                          MVB        CFin    CFout     MVE        daily return
    1    deposit 10,000                     0          10,000  0         10,000.00  10000 / 10000 - 1 = 0
    2    interest 2.50                      10,000.00  0       0         10,002.50  10002.5 / 10000 - 1 = 0.00025
    3    deposit 5,000, fee 12.00           10,002.50  5,000   0         14,990.50  14990.5 / 15002.5 - 1
    4    nothing                            14,990.50  0       0         14,990.50  0
    5    withdrawal 3,000, tax 1.50         14,990.50  0       3,000     11,989.00  14989 / 14990.5 - 1
    6    interest 4.00, tax refund 0.50     11,989.00  0       0         11,993.50  11993.5 / 11989 - 1
    7    withdrawal 1,993.50, fee 5.00      11,993.50  0       1,993.50  9,995.00   11988.5 / 11993.5 - 1

    Cumulative: the product of (1 + daily return) through the day, less 1. By hand (40 digits, rounded here):
    day 3: 1.00025 x 14990.5 / 15002.5 - 1 = -0.000550066655557407...; day 5: that x 14989 / 14990.5 =
    -0.000650074987502083...; day 6: -0.000274974923897425...; day 7: -0.000691752772347045...
    """
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    portfolio = main_portfolio(client)
    first = datetime.date(2026, 3, 2)
    week = [
        [("deposit", "10000")],
        [("interest", "2.50")],
        [("deposit", "5000"), ("fee", "12.00")],
        [],
        [("withdrawal", "3000"), ("tax", "1.50")],
        [("interest", "4.00"), ("tax_refund", "0.50")],
        [("withdrawal", "1993.50"), ("fee", "5.00")],
    ]
    for offset, movements in enumerate(week):
        for kind, amount in movements:
            transaction_post(
                actor=advisor,
                portfolio_id=portfolio.pk,
                kind=kind,
                amount=D(amount),
                currency="EUR",
                date=first + datetime.timedelta(days=offset),
            )
    last = first + datetime.timedelta(days=6)

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/?start={first}&end={last}").json()

    daily = [
        D(0),
        D("2.5") / D("10000"),
        D("14990.5") / D("15002.5") - 1,
        D(0),
        D("14989") / D("14990.5") - 1,
        D("11993.5") / D("11989") - 1,
        D("11988.5") / D("11993.5") - 1,
    ]
    expected_cumulative = [
        D("0"),
        D("0.00025"),
        D("-0.000550066655557407"),
        D("-0.000550066655557407"),
        D("-0.000650074987502083"),
        D("-0.000274974923897425"),
        D("-0.000691752772347045"),
    ]
    series = body["series"]
    assert [day["value"] for day in series] == [
        "10000.00",
        "10002.50",
        "14990.50",
        "14990.50",
        "11989.00",
        "11993.50",
        "9995.00",
    ]
    flows = ["10000.00", "0.00", "5000.00", "0.00", "-3000.00", "0.00", "-1993.50"]
    assert [day["external_flow"] for day in series] == flows  # interest, fees and taxes are no flows
    for day, rate, cumulative in zip(series[1:], daily[1:], expected_cumulative[1:], strict=True):
        assert abs(D(day["daily_return"]) - rate) < TOLERANCE, day
        assert abs(D(day["cumulative_return"]) - cumulative) < TOLERANCE, day
    assert abs(D(body["figures"]["time_weighted"]) - expected_cumulative[-1]) < TOLERANCE


def test_a_position_s_irr_counts_its_fees_dividend_and_taxes_and_is_also_given_with_taxes_added_back(
    advisor, api
) -> None:
    """A USD position in a USD portfolio, its flows a year apart (actual/365: exponents 1 and 2 exactly):

    2025-01-02  buy 100 at 50.00, fee 10.00                 paid      5,010.00
    2026-01-02  dividend 1.50 a unit on 100 units: gross 150.00, withholding 22.50
                                                              received    127.50  (150.00 with taxes added back)
    2027-01-02  sell 100 at 55.00, fee 10.00, tax 12.00     received  5,478.00  (5,490.00 with taxes added back)

    The IRR r solves -B + D / (1 + r) + S / (1 + r)^2 = 0; with x = 1 / (1 + r), S x^2 + D x - B = 0, so
    x = (-D + sqrt(D^2 + 4 S B)) / (2 S) and r = 1 / x - 1 (computed apart from the code's Newton iteration):

    with taxes:           D = 127.50, S = 5,478: sqrt(127.5^2 + 4 x 5478 x 5010) = sqrt(109,795,376.25),
                          x = 0.944763498204211..., r = 0.058465956719095...
    taxes added back:     D = 150.00, S = 5,490: sqrt(150^2 + 4 x 5490 x 5010) = sqrt(110,042,100),
                          x = 0.941720886015619..., r = 0.061885761322505...
    """
    client = ClientFactory(advisor=advisor, base_currency="USD")
    portfolio = main_portfolio(client)
    asset = AssetFactory(ticker="ACME", currency="USD")
    bought, paid, sold = datetime.date(2025, 1, 2), datetime.date(2026, 1, 2), datetime.date(2027, 1, 2)
    transaction_post(
        actor=advisor, portfolio_id=portfolio.pk, kind="deposit", amount=D("10000"), currency="USD", date=bought
    )
    trade: dict[str, Any] = {"actor": advisor, "portfolio": portfolio, "asset": asset, "quantity": D("100")}
    allocation_create(**trade, kind="buy", price=D("50"), fees=D("10"), date=bought)
    dividend_create(
        actor=advisor,
        portfolio=portfolio,
        asset=asset,
        ex_date=datetime.date(2025, 12, 19),
        pay_date=paid,
        amount_per_unit=D("1.50"),
        withholding_tax=D("22.50"),
    )
    allocation_create(**trade, kind="sell", price=D("55"), fees=D("10"), taxes=D("12"), date=sold)

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/positions/{asset.pk}/performance/?end={sold}").json()

    assert [(flow["date"], flow["kind"], flow["amount"], flow["taxes"]) for flow in body["flows"]] == [
        (str(bought), "buy", "-5010.00", "0.00"),
        (str(paid), "dividend", "127.50", "22.50"),
        (str(sold), "sell", "5478.00", "12.00"),
    ]
    assert (body["paid"], body["received"], body["taxes"], body["gain"]) == ("5010.00", "5605.50", "34.50", "595.50")
    assert abs(D(body["money_weighted"]) - D("0.058465956719095")) < TOLERANCE
    assert abs(D(body["money_weighted_before_taxes"]) - D("0.061885761322505")) < TOLERANCE
    assert body["error"] is None
