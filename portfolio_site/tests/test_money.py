"""The money rule of SQLite: a value it cannot store exactly is refused, never rounded."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from portfolio_site.money import significant_digits, validate_storable

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="the 15-digit limit is SQLite's")


@pytest.mark.parametrize(
    ("value", "digits"),
    [("0", 0), ("100", 1), ("0.0120", 2), ("1234.5678", 8), ("9999999999999999.9999", 20), ("1E+20", 1)],
)
def test_significant_digits_count_from_the_first_to_the_last_non_zero_digit(value: str, digits: int) -> None:
    assert significant_digits(Decimal(value)) == digits


@on_sqlite
@pytest.mark.parametrize("value", ["99999999999.9999", "9999999999999990", "0.000000000123456789012345"])
def test_fifteen_significant_digits_are_storable_on_sqlite(value: str) -> None:
    validate_storable(Decimal(value))


@on_sqlite
@pytest.mark.parametrize("value", ["999999999999.9999", "9999999999999999.9999", "1234567890.1234567891"])
def test_sixteen_or_more_significant_digits_are_refused_on_sqlite(value: str) -> None:
    with pytest.raises(ValidationError, match="stores at most 15 exactly"):
        validate_storable(Decimal(value))


@pytest.mark.postgres
def test_postgresql_stores_every_digit_the_field_allows() -> None:
    validate_storable(Decimal("9999999999999999.9999"))
