"""Money, quantities and prices as the admin shows them: rounded only when presented, never stored so."""

from decimal import Decimal

import pytest
from django.utils import formats

from portfolio_site.display import money, number, plain_decimal
from portfolio_site.money import minor_unit


@pytest.mark.parametrize(("currency", "places"), [("JPY", 0), ("USD", 2), ("EUR", 2), ("BHD", 3), ("KWD", 3)])
def test_minor_units_come_from_the_cldr_currency_table(currency: str, places: int) -> None:
    assert minor_unit(currency) == places


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        ("191000.0000", "USD", "191,000.00 USD"),
        ("1234.5000", "JPY", "1,234 JPY"),  # half-even: 1234.5 → 1234
        ("1235.5000", "JPY", "1,236 JPY"),
        ("1234.5678", "BHD", "1,234.568 BHD"),
        ("0.125", "USD", "0.12 USD"),  # half-even, not half-up
        ("0.135", "USD", "0.14 USD"),
        ("-1234.5650", "USD", "-1,234.56 USD"),
        ("-0.0040", "USD", "0.00 USD"),
        ("9999999999999999.9999", "EUR", "10,000,000,000,000,000.00 EUR"),
        ("1E+3", "USD", "1,000.00 USD"),
        ("0", "JPY", "0 JPY"),
    ],
)
def test_money_is_rounded_half_even_to_the_minor_unit_with_separators_and_the_code(
    value: str, currency: str, shown: str
) -> None:
    assert money(Decimal(value), currency) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1.2345000000", "1.2345"),
        ("100.0000", "100"),
        ("1234567.5000000000", "1,234,567.5"),
        ("0.0000001000", "0.0000001"),
        ("0.0000000001", "0.0000000001"),
        ("-12.5000", "-12.5"),
        ("0E-10", "0"),
        ("-0.0000", "0"),
    ],
)
def test_quantities_and_prices_lose_trailing_zeros_and_never_show_an_exponent(value: str, shown: str) -> None:
    assert number(Decimal(value)) == shown


def test_no_value_shows_a_dash() -> None:
    assert money(None, "USD") == "-"
    assert number(None) == "-"


@pytest.mark.parametrize(
    ("value", "shown"),
    [("12.5000000000", "12.5"), ("100.0000", "100"), ("1234567.5", "1234567.5"), ("0E-10", "0"), ("1E-7", "0.0000001")],
)
def test_an_inputs_decimal_loses_trailing_zeros_but_stays_the_same_number(value: str, shown: str) -> None:
    plain = plain_decimal(Decimal(value))

    assert plain == Decimal(value)
    assert formats.localize_input(plain) == shown  # as a form's number input renders it
