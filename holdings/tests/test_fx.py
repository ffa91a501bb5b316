"""Exchange rates: the latest published on or before a day, inverses and crosses derived, never a silent 1."""

import datetime
from decimal import Decimal

import pytest

from holdings.fx import MissingRate, RateBook, fx_rate
from holdings.models import FxRate
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db
D = datetime.date


def publish(base: str, quote: str, day: datetime.date, rate: str) -> FxRate:
    return FxRate.objects.create(base=base, quote=quote, date=day, rate=Decimal(rate))


def test_the_rate_of_a_day_is_the_latest_published_on_or_before_it_and_says_which() -> None:
    publish("EUR", "USD", D(2026, 3, 2), "1.0800")
    publish("EUR", "USD", D(2026, 3, 6), "1.0900")
    rate = fx_rate(base="EUR", quote="USD", on=D(2026, 3, 5))  # a Thursday without publication
    assert (rate.rate, rate.date, rate.via) == (Decimal("1.0800"), D(2026, 3, 2), None)
    assert fx_rate(base="EUR", quote="USD", on=D(2026, 3, 6)).rate == Decimal("1.0900")


def test_a_pairs_inverse_is_derived() -> None:
    publish("EUR", "USD", D(2026, 3, 2), "1.25")
    assert fx_rate(base="USD", quote="EUR", on=D(2026, 3, 2)).rate == Decimal("0.8")


def test_a_cross_goes_through_the_pivot_and_is_dated_by_its_older_leg() -> None:
    publish("EUR", "USD", D(2026, 3, 2), "1.10")
    publish("EUR", "GBP", D(2026, 3, 3), "0.88")
    rate = fx_rate(base="GBP", quote="USD", on=D(2026, 3, 3))
    assert rate.rate == Decimal("1.10") / Decimal("0.88")
    assert (rate.date, rate.via) == (D(2026, 3, 2), "EUR")


def test_a_missing_rate_is_an_error_never_one() -> None:
    publish("EUR", "USD", D(2026, 3, 2), "1.10")
    with pytest.raises(MissingRate, match="JPY/USD"):
        fx_rate(base="JPY", quote="USD", on=D(2026, 3, 2))
    with pytest.raises(MissingRate):
        fx_rate(base="EUR", quote="USD", on=D(2026, 3, 1))  # before the first publication


def test_a_currency_against_itself_is_one_without_any_rate() -> None:
    assert fx_rate(base="CHF", quote="CHF", on=D(2026, 3, 2)).rate == Decimal(1)


def test_a_rate_book_answers_many_questions_from_one_query(django_assert_num_queries) -> None:
    publish("EUR", "USD", D(2026, 3, 2), "1.10")
    publish("EUR", "GBP", D(2026, 3, 2), "0.85")
    with django_assert_num_queries(1):
        book = RateBook(["USD", "GBP"], until=D(2026, 12, 31))
        answers = [
            book.rate(b, q, D(2026, 3, day)) for day in range(2, 30) for b, q in [("USD", "GBP"), ("GBP", "EUR")]
        ]
    assert len(answers) == 56


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"rate": Decimal("0")}, "holdings_fxrate_rate_positive"),
        ({"quote": "EUR"}, "holdings_fxrate_two_currencies"),
    ],
)
def test_the_database_refuses_a_rate_that_is_not_positive_or_not_between_two_currencies(fields, constraint) -> None:
    with refused_by(constraint):
        FxRate.objects.create(
            **{"base": "EUR", "quote": "USD", "date": D(2026, 3, 2), "rate": Decimal("1.1"), **fields}
        )


def test_the_database_refuses_two_rates_of_a_pair_on_one_day() -> None:
    publish("EUR", "USD", D(2026, 3, 2), "1.10")
    with refused_by("holdings_fxrate_pair_date_unique"):
        publish("EUR", "USD", D(2026, 3, 2), "1.11")
