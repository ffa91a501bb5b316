"""Reading a published number or day as exactly what it says: text straight into Decimal, never through float."""

import datetime
import re
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

from holdings.models import FxRate, Price
from portfolio_site.money import validate_currency

# Plain decimal notation only: Decimal() would also take "NaN", "Infinity", "1e3" and "1_000", none of which a
# price file means.
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?|-?\.[0-9]+", re.ASCII)
_CURRENCY_SHAPE = re.compile(r"[A-Z]{3}", re.ASCII)


class BadValue(ValueError):
    """A value that is not what its place in the file needs; the message says why, without saying where."""


def positive_decimal(text: str, *, what: str, field: str = "close") -> Decimal:
    """`text` as a Decimal greater than zero that the database holds exactly (the quantity field's digits)."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise BadValue(f"{what} {text!r} is not a number")
    value = Decimal(text)
    if value <= 0:
        raise BadValue(f"{what} {text} is not greater than zero")
    column = (FxRate if field == "rate" else Price)._meta.get_field(field)
    assert isinstance(column, models.DecimalField)
    try:
        column.clean(value, None)
    except ValidationError as error:
        raise BadValue(f"{what} {text}: {' '.join(error.messages)}") from None
    return value


def iso_date(text: str, *, what: str = "date") -> datetime.date:
    text = text.strip()
    try:
        if len(text) != 10:
            raise ValueError
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise BadValue(f"{what} {text!r} is not a date (YYYY-MM-DD)") from None


def currency_code(text: str) -> str | None:
    """The code, or None for a well-formed code that is no longer in ISO 4217 (a retired currency, such as the
    ones the euro replaced, which historical files still carry); BadValue for anything else."""
    if not _CURRENCY_SHAPE.fullmatch(text):
        raise BadValue(f"currency {text!r} is not a three-letter upper-case code")
    try:
        validate_currency(text)
    except ValidationError:
        return None
    return text
