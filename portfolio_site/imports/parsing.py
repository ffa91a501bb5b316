"""Parsers for CSV cells: each takes the cell's text and returns a value or raises ValueError(reason)."""

import datetime
import functools
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from portfolio_site.money import PLAIN_DECIMAL_HELP, is_plain_decimal, validate_currency, validate_storable


def text(max_length: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"longer than {max_length} characters")
        return value

    return parse


def decimal(
    *, max_digits: int, places: int, minimum: str | None = None, exclusive: bool = False
) -> Callable[[str], Decimal]:
    """An exact decimal (never through float); more decimal places than the field keeps is an error, not rounded."""
    floor = Decimal(minimum) if minimum is not None else None

    def parse(value: str) -> Decimal:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a number")
        if not is_plain_decimal(value):  # what Decimal() takes but a person does not write: say what is
            raise ValueError(f"{value!r} is not a number in {PLAIN_DECIMAL_HELP}")
        _, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)
        if -exponent > places:
            raise ValueError(f"{value} has more than {places} decimal places")
        if max(len(digits) + exponent, 0) > max_digits - places:
            raise ValueError(f"{value} has more than {max_digits - places} digits before the decimal point")
        if floor is not None and (number <= floor if exclusive else number < floor):
            raise ValueError(f"must be {'greater than' if exclusive else 'at least'} {floor}")
        try:
            validate_storable(number)
        except ValidationError as error:
            raise ValueError(error.messages[0]) from None
        return number

    return parse


def iso_date(value: str) -> datetime.date:
    try:
        if len(value) != 10 or value[4] != "-" or value[7] != "-":  # fromisoformat takes 20260101 too
            raise ValueError
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


# Files repeat the same few currencies and client addresses on every row: remember the answers.
@functools.lru_cache(maxsize=1024)
def currency(value: str) -> str:
    code = value.upper()
    try:
        validate_currency(code)
    except ValidationError:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code") from None
    return code


@functools.lru_cache(maxsize=65_536)
def email(value: str) -> str:
    address = value.lower()
    try:
        validate_email(address)
    except ValidationError:
        raise ValueError(f"{value!r} is not an email address") from None
    return address


def choice(values: Iterable[str]) -> Callable[[str], str]:
    allowed = tuple(values)

    def parse(value: str) -> str:
        lowered = value.lower()
        if lowered not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return lowered

    return parse


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"true", "yes", "1", "y"}:
        return True
    if lowered in {"false", "no", "0", "n"}:
        return False
    raise ValueError(f"{value!r} is not true or false")
