"""Money and quantity fields shared by the apps: Decimal end to end, currencies as validated ISO 4217 codes."""

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pycountry
from babel.numbers import get_currency_precision
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.functions import Length, Upper
from django.db.models.lookups import Exact

AMOUNT_DIGITS, AMOUNT_PLACES = 20, 4
QUANTITY_DIGITS, QUANTITY_PLACES = 30, 10
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)
QUANTITY_QUANTUM = Decimal(1).scaleb(-QUANTITY_PLACES)
# SQLite keeps a decimal column as REAL: 15 significant digits survive the round trip, more are rounded.
SQLITE_EXACT_DIGITS = 15


def significant_digits(value: Decimal) -> int:
    """Digits from the first non-zero one to the last (100 has one, 0.0120 two): what a float must hold."""
    _, digits, _ = value.as_tuple()
    return len("".join(map(str, digits)).strip("0"))


def validate_storable(value: Decimal) -> None:
    """Refuses a number the database would round when storing it: every door (API, import, service) calls this.

    Only SQLite rounds; PostgreSQL's numeric keeps whatever the field's digits allow.
    """
    if connections[DEFAULT_DB_ALIAS].vendor != "sqlite" or not isinstance(value, Decimal) or not value.is_finite():
        return
    digits = significant_digits(value)
    if digits > SQLITE_EXACT_DIGITS:
        raise ValidationError(
            "%(value)s has %(digits)s significant digits; this database stores at most %(limit)s exactly.",
            code="inexact",
            params={"value": value, "digits": digits, "limit": SQLITE_EXACT_DIGITS},
        )


# Decimal() also takes other scripts' digits (Arabic-Indic, full-width, ...), "1_000", exponents ("1e5") and
# "NaN"/"Infinity": input is refused unless written as people write amounts, in ASCII digits.
PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
PLAIN_DECIMAL_HELP = "digits 0-9 with an optional sign and decimal point (no exponent, no separators)"


def is_plain_decimal(text: str) -> bool:
    """Whether `text` is a decimal number in ASCII digits, as every door accepts amounts and quantities."""
    return PLAIN_DECIMAL.fullmatch(text) is not None


def validate_currency(value: str) -> None:
    if not isinstance(value, str) or len(value) != 3 or pycountry.currencies.get(alpha_3=value) is None:
        raise ValidationError(
            "%(value)s is not an ISO 4217 currency code.", code="invalid_currency", params={"value": value}
        )


class CurrencyField(models.CharField):
    """An ISO 4217 code, stored upper-case in a varchar(3) (see ARCHITECTURE: char(3) misbehaves on bulk_create)."""

    default_validators = [validate_currency]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["max_length"] = 3
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_length", None)
        return name, path, args, kwargs

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        return value.strip().upper() if isinstance(value, str) else value


def currency_constraint(field: str, *, name: str) -> models.CheckConstraint:
    """The shape of a currency code, as the database can check it (the full ISO list is checked by the field)."""
    return models.CheckConstraint(
        condition=models.Q(Exact(Length(field), 3), **{field: Upper(field)}),
        name=name,
        violation_error_message="The currency must be a three-letter upper-case ISO 4217 code.",
    )


def amount_field(**kwargs: Any) -> models.DecimalField:
    return models.DecimalField(
        max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, validators=[validate_storable], **kwargs
    )


def quantity_field(**kwargs: Any) -> models.DecimalField:
    """Quantities and unit prices: ten decimal places, enough for crypto."""
    return models.DecimalField(
        max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, validators=[validate_storable], **kwargs
    )


class ExactSum(models.Sum):
    """SUM of a decimal expression that is exact on every database.

    PostgreSQL adds numerics exactly already. SQLite would add REALs (0.1 + 0.2 != 0.3, and totals past 15
    digits rounded): there the project's backend (`portfolio_site.sqlite3`) adds the rows as Decimals and answers
    text. On SQLite the result is therefore for reading, not for comparing inside the same SQL statement.
    """

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # Not Sum's own as_sqlite: its CAST(... AS NUMERIC) would turn the exact text back into a REAL.
        return self.as_sql(compiler, connection, function="exact_decimal_sum", **extra_context)


def to_amount(value: Decimal) -> Decimal:
    """Rounds a computed cash amount (quantity x price) to the ledger's precision, half-even."""
    return value.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


def to_quantity(value: Decimal) -> Decimal:
    return value.quantize(QUANTITY_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Shortfall:
    """The first day a running balance (cash, or units of an asset) closes below zero, and that balance."""

    day: datetime.date
    balance: Decimal


def first_shortfall(opening: Decimal, daily: Iterable[tuple[datetime.date, Decimal]]) -> Shortfall | None:
    """The money rule every door applies, on a balance and the net movement of each later day (in date order):
    the first day whose closing balance is negative, if any."""
    running = opening
    for day, net in daily:
        running += net
        if running < 0:
            return Shortfall(day, running)
    return None


def first_shortfalls(
    daily: "models.QuerySet[Any]",
    *,
    keys: tuple[str, ...],
    key_types: tuple[str, ...],
    since: dict[tuple[Any, ...], datetime.date],
) -> dict[tuple[Any, ...], Shortfall]:
    """`first_shortfall` for many balances at once: for each key (a portfolio and a currency, a portfolio and
    an asset) the first day from its `since` on whose closing balance is negative.

    `daily` is a `values(*keys, "day").annotate(net=...)` query over every day of the keys' history. On
    PostgreSQL the running balances are one window query, whatever the number of keys and days
    (`key_types` are the keys' SQL types); elsewhere (SQLite, for development) the days are summed here.
    """
    if not since:
        return {}
    connection = connections[daily.db]
    if connection.vendor == "postgresql":
        daily_sql, daily_params = daily.order_by().query.sql_with_params()
        columns = ", ".join(keys)
        arrays = ", ".join(f"%s::{sql_type}[]" for sql_type in (*key_types, "date"))
        joined = " AND ".join(f"r.{key} = t.{key}" for key in keys)
        query = (
            f"WITH touched ({columns}, since) AS (SELECT * FROM unnest({arrays})), "
            f"running AS (SELECT {columns}, day, SUM(net) OVER (PARTITION BY {columns} ORDER BY day) AS balance "
            f"FROM ({daily_sql}) d) "
            f"SELECT DISTINCT ON ({', '.join(f'r.{key}' for key in keys)}) {', '.join(f'r.{key}' for key in keys)}, "
            f"r.day, r.balance FROM running r JOIN touched t ON {joined} "
            f"WHERE r.day >= t.since AND r.balance < 0 ORDER BY {', '.join(f'r.{key}' for key in keys)}, r.day"
        )
        columns_of_since = [list(column) for column in zip(*[(*key, day) for key, day in since.items()], strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(query, [*columns_of_since, *daily_params])
            return {tuple(row[: len(keys)]): Shortfall(row[-2], row[-1]) for row in cursor.fetchall()}
    found: dict[tuple[Any, ...], Shortfall] = {}
    running: dict[tuple[Any, ...], Decimal] = {}
    for row in daily.order_by(*keys, "day"):
        key = tuple(row[name] for name in keys)
        if key not in since or key in found:
            continue
        running[key] = running.get(key, Decimal(0)) + Decimal(row["net"])
        if row["day"] >= since[key] and running[key] < 0:
            found[key] = Shortfall(row["day"], running[key])
    return found


def minor_unit(currency: str) -> int:
    """Decimal places of a currency's minor unit: 2 for most, 0 for JPY, 3 for BHD.

    Read from the Unicode CLDR's currency data through Babel (a maintained table, updated with each Babel release),
    not a hand-written list that drifts. A code CLDR does not know is presented with two places, like most.
    """
    return int(get_currency_precision(currency))


def present_amount(value: Decimal, currency: str) -> Decimal:
    """An amount as shown to people: rounded once, half-even, to the currency's minor unit."""
    return value.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_EVEN)
