"""Money and quantity fields shared by the apps: Decimal end to end, currencies as validated ISO 4217 codes."""

import datetime
import functools
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


@functools.cache
def _rounds_decimals() -> bool:
    """Whether the default database rounds decimals (SQLite). Asked once a process: `connections[...]` is a
    thread-local look-up, and an import asks it for every number of every row (a sixth of its parsing time)."""
    return connections[DEFAULT_DB_ALIAS].vendor == "sqlite"


def validate_storable(value: Decimal) -> None:
    """Refuses a number the database would round when storing it: every door (API, import, service) calls this.

    Only SQLite rounds; PostgreSQL's numeric keeps whatever the field's digits allow.
    """
    if not _rounds_decimals() or not isinstance(value, Decimal) or not value.is_finite():
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
    """The first day a running balance (cash, or units of an asset) closes below its floor, and what is free then:
    the balance less the floor (negative). The floor is zero, or from today on what is on hold (`held`)."""

    day: datetime.date
    balance: Decimal
    held: Decimal = Decimal(0)


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
    floors: "models.QuerySet[Any] | None" = None,
    floor_from: datetime.date | None = None,
) -> dict[tuple[Any, ...], Shortfall]:
    """`first_shortfall` for many balances at once: for each key (a portfolio and a currency, a portfolio and
    an asset) the first day from its `since` on whose closing balance is below its floor.

    `daily` is a `values(*keys, "day").annotate(net=...)` query over every day of the keys' history. The floor is
    zero, except for the keys of `floors` (a `values(*keys).annotate(held=...)` query: what is on hold per key) on
    the days from `floor_from` on, where it is their `held`. A day from `floor_from` on without a movement still
    closes at the running balance of the last one before it, so each key with a floor also has a day of no
    movement at `floor_from`. On PostgreSQL the running balances are one window query, whatever the number of keys
    and days (`key_types` are the keys' SQL types); elsewhere (SQLite, for development) the days are summed here.
    A shortfall's `balance` is the balance less the floor (what is free, negative), its `held` the floor.
    """
    if not since:
        return {}
    if floors is not None and floor_from is None:
        raise ValueError("floors apply from a day: pass floor_from")
    connection = connections[daily.db]
    if connection.vendor == "postgresql":
        return _first_shortfalls_postgresql(
            connection, daily, keys=keys, key_types=key_types, since=since, floors=floors, floor_from=floor_from
        )
    held_of: dict[tuple[Any, ...], Decimal] = {}
    if floors is not None:
        for row in floors.order_by():
            key = tuple(row[name] for name in keys)
            if key in since and row["held"] is not None and Decimal(row["held"]) > 0:
                held_of[key] = Decimal(row["held"])
    days: dict[tuple[Any, ...], list[tuple[datetime.date, Decimal]]] = {}
    for row in daily.order_by(*keys, "day"):
        key = tuple(row[name] for name in keys)
        if key in since:
            days.setdefault(key, []).append((row["day"], Decimal(row["net"])))
    for key in held_of:
        assert floor_from is not None
        days.setdefault(key, []).append((floor_from, Decimal(0)))
    found: dict[tuple[Any, ...], Shortfall] = {}
    for key, movements in days.items():
        movements.sort(key=lambda movement: movement[0])
        running = Decimal(0)
        for index, (day, net) in enumerate(movements):
            running += net
            if index + 1 < len(movements) and movements[index + 1][0] == day:
                continue  # the day closes after its last movement
            floor = held_of.get(key, Decimal(0)) if floor_from is not None and day >= floor_from else Decimal(0)
            if day >= since[key] and running < floor:
                found[key] = Shortfall(day, running - floor, floor)
                break
    return found


def _first_shortfalls_postgresql(
    connection: Any,
    daily: "models.QuerySet[Any]",
    *,
    keys: tuple[str, ...],
    key_types: tuple[str, ...],
    since: dict[tuple[Any, ...], datetime.date],
    floors: "models.QuerySet[Any] | None",
    floor_from: datetime.date | None,
) -> dict[tuple[Any, ...], Shortfall]:
    daily_sql, daily_params = daily.order_by().query.sql_with_params()
    columns = ", ".join(keys)
    arrays = ", ".join(f"%s::{sql_type}[]" for sql_type in (*key_types, "date"))

    def joined(left: str, right: str) -> str:
        return " AND ".join(f"{left}.{key} = {right}.{key}" for key in keys)

    r_keys = ", ".join(f"r.{key}" for key in keys)
    columns_of_since = [list(column) for column in zip(*[(*key, day) for key, day in since.items()], strict=True)]
    params: list[Any] = [*columns_of_since]
    ctes = [f"touched ({columns}, since) AS (SELECT * FROM unnest({arrays}))"]
    days = f"SELECT {columns}, day, net FROM ({daily_sql}) d"
    held = "0"
    floor_join = ""
    if floors is not None:
        floors_sql, floors_params = floors.order_by().query.sql_with_params()
        f_keys = ", ".join(f"f.{key}" for key in keys)
        ctes.append(
            f"floors ({columns}, held) AS (SELECT {f_keys}, f.held FROM ({floors_sql}) f "
            f"JOIN touched t ON {joined('f', 't')} WHERE f.held > 0)"
        )
        params.extend(floors_params)
        days = f"{days} UNION ALL SELECT {columns}, %s::date, 0 FROM floors"
        params.extend([*daily_params, floor_from])
        held = "CASE WHEN r.day >= %s::date THEN COALESCE(f.held, 0) ELSE 0 END"
        floor_join = f"LEFT JOIN floors f ON {joined('r', 'f')}"
    else:
        params.extend(daily_params)
    ctes.append(
        f"running AS (SELECT {columns}, day, SUM(net) OVER (PARTITION BY {columns} ORDER BY day) AS balance "
        f"FROM ({days}) d)"
    )
    query = (
        f"WITH {', '.join(ctes)} "
        f"SELECT DISTINCT ON ({r_keys}) {r_keys}, r.day, r.balance - h.held, h.held "
        f"FROM running r JOIN touched t ON {joined('r', 't')} {floor_join} "
        f"CROSS JOIN LATERAL (SELECT {held} AS held) h "
        f"WHERE r.day >= t.since AND r.balance < h.held ORDER BY {r_keys}, r.day"
    )
    if floors is not None:
        params.append(floor_from)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return {
            tuple(row[: len(keys)]): Shortfall(row[-3], Decimal(row[-2]), Decimal(row[-1])) for row in cursor.fetchall()
        }


def minor_unit(currency: str) -> int:
    """Decimal places of a currency's minor unit: 2 for most, 0 for JPY, 3 for BHD.

    Read from the Unicode CLDR's currency data through Babel (a maintained table, updated with each Babel release),
    not a hand-written list that drifts. A code CLDR does not know is presented with two places, like most.
    """
    return int(get_currency_precision(currency))


def present_amount(value: Decimal, currency: str) -> Decimal:
    """An amount as shown to people: rounded once, half-even, to the currency's minor unit."""
    return value.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_EVEN)
