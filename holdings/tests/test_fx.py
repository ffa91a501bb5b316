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


def test_a_latest_only_book_answers_as_of_its_day_as_the_full_book_does_in_one_query(
    django_assert_num_queries,
) -> None:
    """Direct, inverse and crossed pairs, a pair whose latest rate is older than the others', rates after the
    day left out, a pair with no rate: every answer (rate, its day, its pivot) and every refusal the same."""
    for day, usd, gbp in ((D(2026, 1, 5), "1.08", "0.84"), (D(2026, 3, 2), "1.10", "0.85"), (D(2026, 4, 1), "2", "2")):
        publish("EUR", "USD", day, usd)
        if day < D(2026, 3, 1):
            publish("EUR", "GBP", day, gbp)
    publish("JPY", "EUR", D(2026, 2, 10), "0.0062")
    publish("USD", "EUR", D(2026, 1, 20), "0.93")  # an inverse published too, older than the direct rate
    until = D(2026, 3, 15)
    currencies = ["USD", "GBP", "JPY", "CHF"]
    full = RateBook(currencies, until=until)
    with django_assert_num_queries(1):
        latest = RateBook(currencies, until=until, latest_only=True)

    def answer(book: RateBook, base: str, quote: str) -> object:
        try:
            return book.rate(base, quote, until)
        except MissingRate as missing:
            return ("missing", missing.base, missing.quote, missing.on)

    pairs = [(b, q) for b in [*currencies, "EUR"] for q in [*currencies, "EUR"]]
    assert [answer(latest, b, q) for b, q in pairs] == [answer(full, b, q) for b, q in pairs]
    assert latest.rate("EUR", "USD", until).rate == Decimal("1.10")
    assert latest.rate("GBP", "EUR", until).date == D(2026, 1, 5)
