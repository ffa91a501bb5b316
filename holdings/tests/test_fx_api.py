"""Exchange rates through the API: CRUD as prices, filters, and `convert/` answering which day and pivot it used."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from clients.models import Portfolio
from clients.tests.factories import ClientFactory
from holdings.models import FxRate
from holdings.tests.factories import FxRateFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/fx-rates/"


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def test_operations_record_a_rate_normalised_with_its_decimal_as_a_string(operations, api) -> None:
    response = api(operations).post(URL, {"base": "eur", "quote": "usd", "date": "2026-03-02", "rate": "1.0812"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["base"], body["quote"], body["rate"]) == ("EUR", "USD", "1.0812000000")
    assert FxRate.objects.get().rate == Decimal("1.0812")


def test_a_second_rate_for_the_same_pair_and_date_is_refused_with_400(operations, api) -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 2))
    response = api(operations).post(URL, {"base": "EUR", "quote": "USD", "date": "2026-03-02", "rate": "1.1"})
    assert response.status_code == 400
    assert FxRate.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("rate", {"rate": "0"}),
        ("rate", {"rate": "-1.2"}),
        ("base", {"base": "EURO"}),
        ("quote", {"quote": "XXY"}),
        ("date", {"date": "tomorrow"}),
    ],
)
def test_an_invalid_rate_is_refused_with_400_naming_the_field(field, body, operations, api) -> None:
    valid = {"base": "EUR", "quote": "USD", "date": "2026-03-02", "rate": "1.08"}
    response = api(operations).post(URL, {**valid, **body})
    assert response.status_code == 400
    assert field in response.json()


def test_a_rate_between_a_currency_and_itself_is_refused_with_400(operations, api) -> None:
    response = api(operations).post(URL, {"base": "EUR", "quote": "EUR", "date": "2026-03-02", "rate": "1"})
    assert response.status_code == 400
    assert not FxRate.objects.exists()


def test_a_rate_is_changed_and_deleted_by_operations_marking_every_portfolio_stale(operations, api) -> None:
    fx = FxRateFactory(date=datetime.date(2026, 3, 5))
    ClientFactory.create_batch(2)
    Portfolio.objects.update(history_changed_from=None)

    assert api(operations).patch(f"{URL}{fx.pk}/", {"rate": "1.1", "date": "2026-03-04"}).status_code == 200
    assert set(Portfolio.objects.values_list("history_changed_from", flat=True)) == {datetime.date(2026, 3, 4)}
    assert api(operations).delete(f"{URL}{fx.pk}/").status_code == 204
    assert not FxRate.objects.exists()


def test_advisors_and_auditors_read_rates_but_cannot_write_them(advisor, auditor, nobody, api) -> None:
    fx = FxRateFactory()
    for user in (advisor, auditor):
        assert ids(api(user).get(URL)) == {fx.pk}
        assert api(user).patch(f"{URL}{fx.pk}/", {"rate": "2"}).status_code == 403
        assert api(user).delete(f"{URL}{fx.pk}/").status_code == 403
    assert api(nobody).get(URL).status_code == 403
    assert api(nobody).get(f"{URL}convert/?base=EUR&quote=USD").status_code == 403


def test_rates_filter_by_base(advisor, api) -> None:
    eur = FxRateFactory(base="EUR", quote="USD")
    FxRateFactory(base="GBP", quote="USD")
    assert ids(api(advisor).get(f"{URL}?base=eur")) == {eur.pk}


def test_rates_filter_by_quote(advisor, api) -> None:
    FxRateFactory(base="EUR", quote="USD")
    gbp = FxRateFactory(base="EUR", quote="GBP")
    assert ids(api(advisor).get(f"{URL}?quote=GBP")) == {gbp.pk}


def test_rates_filter_by_date_range_inclusive(advisor, api) -> None:
    FxRateFactory(date=datetime.date(2026, 2, 27))
    inside = FxRateFactory(date=datetime.date(2026, 3, 1)), FxRateFactory(date=datetime.date(2026, 3, 31))
    FxRateFactory(date=datetime.date(2026, 4, 1))
    found = ids(api(advisor).get(f"{URL}?date_after=2026-03-01&date_before=2026-03-31"))
    assert found == {fx.pk for fx in inside}


def test_rates_search_either_currency_of_the_pair(advisor, api) -> None:
    chf_base = FxRateFactory(base="CHF", quote="USD")
    chf_quote = FxRateFactory(base="EUR", quote="CHF")
    FxRateFactory(base="EUR", quote="USD")
    assert ids(api(advisor).get(f"{URL}?search=chf")) == {chf_base.pk, chf_quote.pk}


def test_rates_are_ordered_by_pair_then_newest_first_and_by_rate_when_asked(advisor, api) -> None:
    old = FxRateFactory(date=datetime.date(2026, 3, 1), rate=Decimal("1.2"))
    new = FxRateFactory(date=datetime.date(2026, 3, 2), rate=Decimal("1.1"))
    gbp = FxRateFactory(base="EUR", quote="GBP", date=datetime.date(2026, 3, 1), rate=Decimal("0.9"))
    listed = api(advisor).get(URL).json()["results"]
    assert [row["id"] for row in listed] == [gbp.pk, new.pk, old.pk]
    by_rate = api(advisor).get(f"{URL}?ordering=-rate").json()["results"]
    assert [row["id"] for row in by_rate] == [old.pk, new.pk, gbp.pk]


def test_rates_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(api(advisor), URL, FxRateFactory.create_batch)


# --- convert/ -----------------------------------------------------------------------------------


def convert(client: Any, **params: str) -> Any:
    return client.get(f"{URL}convert/", params)


def test_convert_answers_the_latest_rate_on_or_before_the_day_and_says_which_day(advisor, api) -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 2), rate=Decimal("1.08"))
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 6), rate=Decimal("1.09"))
    response = convert(api(advisor), base="eur", quote="usd", on="2026-03-05")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "base": "EUR",
        "quote": "USD",
        "on": "2026-03-05",
        "rate": "1.0800000000",
        "rate_date": "2026-03-02",
        "via": None,
    }


def test_convert_derives_the_inverse_of_a_published_pair(advisor, api) -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 2), rate=Decimal("1.25"))
    body = convert(api(advisor), base="USD", quote="EUR", on="2026-03-02").json()
    assert (Decimal(body["rate"]), body["via"]) == (Decimal("0.8"), None)


def test_convert_crosses_through_the_pivot_dated_by_the_older_leg(advisor, api, settings) -> None:
    settings.FX_PIVOT_CURRENCY = "EUR"
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 2), rate=Decimal("1.10"))
    FxRateFactory(base="EUR", quote="GBP", date=datetime.date(2026, 3, 3), rate=Decimal("0.88"))
    body = convert(api(advisor), base="GBP", quote="USD", on="2026-03-03").json()
    assert Decimal(body["rate"]) == Decimal("1.10") / Decimal("0.88")
    assert (body["rate_date"], body["via"]) == ("2026-03-02", "EUR")


def test_convert_without_a_day_answers_for_today(advisor, api) -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2020, 1, 2))
    body = convert(api(advisor), base="EUR", quote="USD").json()
    assert body["on"] == timezone.localdate().isoformat()
    assert body["rate_date"] == "2020-01-02"


def test_convert_with_no_rate_published_by_then_is_404_naming_the_pair_never_1(advisor, api) -> None:
    FxRateFactory(base="EUR", quote="USD", date=datetime.date(2026, 3, 2))
    response = convert(api(advisor), base="EUR", quote="USD", on="2026-03-01")
    assert response.status_code == 404
    assert "EUR/USD" in response.json()["detail"]
    assert convert(api(advisor), base="JPY", quote="USD", on="2026-03-02").status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"quote": "USD"}, "base"),
        ({"base": "EUR"}, "quote"),
        ({"base": "EURO", "quote": "USD"}, "base"),
        ({"base": "EUR", "quote": "XYZ"}, "quote"),
        ({"base": "EUR", "quote": "USD", "on": "2026-02-30"}, "on"),
    ],
)
def test_convert_with_bad_input_is_refused_with_400_naming_the_field(params, field, advisor, api) -> None:
    response = convert(api(advisor), **params)
    assert response.status_code == 400
    assert field in response.json()


def test_convert_of_a_currency_into_itself_is_1_on_the_day_asked(advisor, api) -> None:
    body = convert(api(advisor), base="CHF", quote="CHF", on="2026-03-02").json()
    assert (body["rate"], body["rate_date"], body["via"]) == ("1", "2026-03-02", None)


def test_convert_costs_one_query_for_the_rates_whatever_their_number(advisor, api, count_queries) -> None:
    client = api(advisor)
    FxRateFactory.create_batch(3)
    convert(client, base="USD", quote="EUR", on="2026-12-31")  # the caller's permissions are cached from here on
    few = count_queries(lambda: convert(client, base="USD", quote="EUR", on="2026-12-31"))
    FxRateFactory.create_batch(30)
    assert count_queries(lambda: convert(client, base="USD", quote="EUR", on="2026-12-31")) == few == 1
